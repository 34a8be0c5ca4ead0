"""Offline ViLD-image data, which the official release never shipped.

Two record-to-record steps over a dataset's TFRecord shards:
  proposals.py           a base-trained detector's class-agnostic proposals, top M per image,
                         added as image/roi/bbox/* and image/roi/bbox/score
  region_embeddings.py   the teacher's embeddings of each proposal's 1x + 1.5x crops, added as
                         image/roi/feature
Both run through shard_jobs.py (sharded across machines, resumable, atomic shards);
beam_pipeline.py runs the region-embedding step as an Apache Beam pipeline at LVIS scale.
"""
