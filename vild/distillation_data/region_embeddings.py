"""ViLD-image targets in the records: the teacher's embedding of each proposal's crops.

For every proposal a record carries (image/roi/bbox/*, from `proposals`), the target is
normalize(teacher(crop 1x) + teacher(crop 1.5x)), crops clipped to the image
(`vild.teacher.crops.RegionEmbedder`), written as image/roi/feature (flat M x D) into the same
example as the image, every original field kept: the official record layout.

`embed_records` is the one per-record function: the local tool (`compute_region_embeddings`,
sharded and resumable through `shard_jobs`) and the Apache Beam pipeline (`beam_pipeline`) both
run it, so their features agree by construction. It streams: crops of many records fill each
teacher batch. A record without proposals (generate_proposals gives none to a record whose image
does not decode) passes with no features and its image is not decoded; a record with proposals
whose image does not decode stops the job, naming shard, record and image/source_id.

The settings file (`region_embeddings.json`) identifies the teacher by content (`sources`): a
rerun with another teacher, even one at the same path, stops.
"""
import collections
import time
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np
import tensorflow as tf

from vild.data import schema
from vild.data import tf_example
from vild.distillation_data import shard_jobs
from vild.distillation_data import sources
from vild.teacher import clip_teacher
from vild.teacher import crops
from vild.teacher import interface

SETTINGS_NAME = "region_embeddings"
_NO_PIXELS = np.zeros([1, 1, 3], np.uint8)  # stands in for the image of a record without boxes


def decode_image(example: tf.train.Example, source: str = "records",
                 index: int = 0) -> tf.Tensor:
  """A parsed record's image, uint8 [H, W, 3]; `source` and `index` name it in errors."""
  try:
    return tf.io.decode_image(tf_example.encoded_image(example, source), channels=3,
                              expand_animations=False)
  except tf.errors.InvalidArgumentError as e:
    raise tf_example.RecordError(
        f"{shard_jobs.record_name(source, index, example)}: its image does not decode "
        f"({shard_jobs.op_error_text(e)}), yet it has proposals. Convert the image again "
        "(scripts/create_tfrecords.py), then rerun scripts/generate_proposals.py.") from e


def embed_records(embedder: crops.RegionEmbedder, records: Iterable[bytes],
                  source: str = "records") -> Iterator[bytes]:
  """Yields each serialized record with image/roi/feature [M x D] set from its proposals.

  Args:
    embedder: the teacher, its crop scales and batch size.
    records: serialized records carrying image/roi/bbox/* (scripts/generate_proposals.py).
    source: where the records come from, for error messages (e.g. the shard's path).
  """
  waiting = collections.deque()  # (record, proposal fields), in order, until embedded

  def images_and_boxes():
    for index, record in enumerate(records):
      example = tf.train.Example.FromString(record)
      fields = tf_example.read_distillation(example)
      if fields is None:
        raise tf_example.RecordError(
            f"{shard_jobs.record_name(source, index, example)} has no proposals "
            f"({schema.ROI_YMIN} etc.); add them first with scripts/generate_proposals.py.")
      waiting.append((record, fields))
      if not len(fields["rois"]):  # nothing to crop: its image need not (or cannot) decode
        yield _NO_PIXELS, fields["rois"]
        continue
      image = decode_image(example, source, index)
      height, width = image.shape[0], image.shape[1]
      yield image, fields["rois"] * np.array([height, width, height, width], np.float32)

  for features in embedder.embed_many(images_and_boxes()):  # [M, D] per record, in order
    record, fields = waiting.popleft()
    yield tf_example.add_distillation(record, fields["rois"], features, fields["scores"])


def settings(teacher: interface.Teacher, scales: Sequence[float]) -> dict:
  """What makes two runs' features comparable: saved beside the shards, checked on rerun."""
  return {"format": "vild.region_embeddings/2", **sources.teacher_identity(teacher),
          "embedding_dim": teacher.embedding_dim, "teacher_image_size": teacher.image_size,
          "scales": [float(s) for s in scales]}


def compute_region_embeddings(file_pattern: str, output_dir: str,
                              teacher: Optional[interface.Teacher] = None,
                              checkpoint_dir: Optional[str] = None,
                              scales: Sequence[float] = crops.VILD_SCALES,
                              batch_size: int = 64, jit_compile: bool = False,
                              shard_index: int = 0, num_shards: int = 1) -> dict:
  """Adds region embeddings to this machine's share of the record shards.

  Args:
    file_pattern: glob of shards with proposals (scripts/generate_proposals.py output).
    output_dir: output shards, under the input file names; `region_embeddings.json` there
      records the teacher (by content: `sources.teacher_identity`), D and scales, and a rerun
      with another teacher stops.
    teacher: any `vild.teacher.Teacher`; or `checkpoint_dir`, a CLIP checkpoint directory.
    scales: crop scales (ViLD: 1x and 1.5x).
    batch_size: crops per teacher call, across images.
    jit_compile: XLA-compile the CLIP teacher (with `checkpoint_dir`).
    shard_index, num_shards: this machine's share (`shard_jobs`).

  Returns:
    {'written': [...], 'skipped': [...]} output shard paths.
  """
  if (teacher is None) == (checkpoint_dir is None):
    raise ValueError("compute_region_embeddings: give exactly one of teacher and "
                     "checkpoint_dir.")
  if teacher is None:
    teacher = clip_teacher.load_clip_teacher(checkpoint_dir, batch_size=batch_size,
                                             jit_compile=jit_compile)
  shard_jobs.check_settings(output_dir, SETTINGS_NAME, settings(teacher, scales))
  embedder = crops.RegionEmbedder(teacher, scales=scales, batch_size=batch_size)
  start = time.monotonic()

  def crop_rate():
    return {"crops/s": f"{embedder.num_crops / max(time.monotonic() - start, 1e-9):.1f}"}

  return shard_jobs.run(file_pattern, output_dir,
                        lambda records, source: embed_records(embedder, records, source),
                        shard_index, num_shards, description="region embeddings",
                        postfix=crop_rate)
