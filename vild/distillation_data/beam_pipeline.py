"""Region embeddings as an Apache Beam pipeline, for LVIS scale (about 60 million crops).

  ReadFromTFRecord -> BatchElements -> RegionEmbeddingsDoFn -> WriteToTFRecord

The DoFn loads the teacher once per worker (`setup`) and runs `region_embeddings.embed_records`
on each batch of records: the local tool's per-record function, so the features are the same.
Shards are named as everywhere in vild: `{name}-00000-of-00008.tfrecord`. The DirectRunner
runs it on one machine; Dataflow, Flink or Spark spread it over many (docs/distillation_data.md).
Beam writes each shard atomically, but a failed job is rerun whole (no per-shard resume; the
local tool has that).

Needs the optional extra: pip install 'vild[beam]'.
"""
import os
import re
from typing import Iterator, List, Optional, Sequence

try:
  import apache_beam as beam
except ImportError as e:  # the extra is optional; say how to get it
  raise ImportError("vild.distillation_data.beam_pipeline needs Apache Beam: pip install "
                    "'vild[beam]' (see docs/distillation_data.md).") from e

from vild.distillation_data import region_embeddings
from vild.distillation_data import shard_jobs
from vild.teacher import clip_teacher
from vild.teacher import crops


class RegionEmbeddingsDoFn(beam.DoFn):
  """Batches of serialized records -> the records with image/roi/feature set.

  Args:
    checkpoint_dir: a CLIP checkpoint directory each worker can read (a local path on the
      worker: bake it into the worker image or mount it).
    scales, batch_size, jit_compile: as in `region_embeddings.compute_region_embeddings`.
  """

  def __init__(self, checkpoint_dir: str, scales: Sequence[float] = crops.VILD_SCALES,
               batch_size: int = 64, jit_compile: bool = False):
    super().__init__()
    self._checkpoint_dir = checkpoint_dir
    self._scales = tuple(scales)
    self._batch_size = batch_size
    self._jit_compile = jit_compile
    self._embedder = None

  def setup(self):
    teacher = clip_teacher.load_clip_teacher(self._checkpoint_dir, batch_size=self._batch_size,
                                             jit_compile=self._jit_compile)
    self._embedder = crops.RegionEmbedder(teacher, scales=self._scales,
                                          batch_size=self._batch_size)

  def process(self, records: List[bytes]) -> Iterator[bytes]:
    yield from region_embeddings.embed_records(self._embedder, records, source="beam batch")


def shard_name(file_pattern: str) -> str:
  """'data/train-*.tfrecord' matching train-00000-of-00008.tfrecord ... -> 'train'."""
  first = os.path.basename(shard_jobs.list_shards(file_pattern)[0])
  return re.sub(r"(-\d{5}-of-\d{5})?\.tfrecord$", "", first)


def add_region_embeddings(pipeline: beam.Pipeline, file_pattern: str, output_dir: str,
                          checkpoint_dir: str, name: Optional[str] = None,
                          num_shards: Optional[int] = None,
                          scales: Sequence[float] = crops.VILD_SCALES, batch_size: int = 64,
                          records_per_batch: int = 16, jit_compile: bool = False):
  """Adds the read -> embed -> write steps to `pipeline`; returns the written-files PCollection.

  Args:
    pipeline: a beam.Pipeline (its options choose the runner).
    file_pattern: shards with proposals (scripts/generate_proposals.py output).
    output_dir: gets `{name}-SSSSS-of-NNNNN.tfrecord`.
    checkpoint_dir: the CLIP teacher (see RegionEmbeddingsDoFn).
    name: output shard name; default the input shards' ('train' for train-00000-of-00008).
    num_shards: output shards; default as many as the input has.
    scales, batch_size, jit_compile: as in `region_embeddings.compute_region_embeddings`.
    records_per_batch: most records per DoFn call (their crops fill teacher batches).
  """
  name = name or shard_name(file_pattern)
  num_shards = num_shards or len(shard_jobs.list_shards(file_pattern))
  return (pipeline
          | "ReadRecords" >> beam.io.ReadFromTFRecord(file_pattern)
          | "BatchRecords" >> beam.BatchElements(min_batch_size=1,
                                                 max_batch_size=records_per_batch)
          | "RegionEmbeddings" >> beam.ParDo(RegionEmbeddingsDoFn(
              checkpoint_dir, scales, batch_size, jit_compile))
          | "WriteRecords" >> beam.io.WriteToTFRecord(
              os.path.join(output_dir, name), file_name_suffix=".tfrecord",
              num_shards=num_shards))
