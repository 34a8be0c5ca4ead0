"""Tiny records, shards, teachers and an untrained tiny detector for the distillation-data tests."""
import os
from typing import List, Optional, Sequence

import gin
import numpy as np
import tensorflow as tf

from vild.data import conversion
from vild.data import tf_example
from vild.data import toy
from vild.modeling import factory
from vild.teacher import interface

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_GIN = os.path.join(REPO, "configs", "tiny", "vild_tiny.gin")
TINY_CLIP = os.path.join(REPO, "tests", "fixtures", "tiny_clip")
DETECTOR_INPUT = (64, 64)  # multiple of 32 (levels 3-5 in the tiny config)


def toy_record(seed: int, size=(48, 80), rois: Optional[np.ndarray] = None) -> bytes:
  """A toy scene as a ViLD record (PNG image and masks); `rois` [M, 4] normalised adds
  proposals without features, as scripts/generate_proposals.py writes them."""
  scene = toy.toy_scene(seed, size=size, num_objects=3)
  height, width = size
  fields = {
      "encoded_image": conversion.encode_png(scene["image"]), "image_format": "png",
      "source_id": seed, "height": height, "width": width,
      "boxes": scene["boxes"] / np.array([height, width, height, width], np.float32),
      "classes": scene["classes"], "areas": scene["masks"].sum(axis=(1, 2)),
      "masks_png": [conversion.encode_png(m.astype(np.uint8)) for m in scene["masks"]],
  }
  if rois is not None:
    fields.update(distill_rois=rois, distill_roi_scores=np.linspace(0.9, 0.5, len(rois)),
                  distill_features=np.zeros([len(rois), 0]))
  return tf_example.encode_example(fields).SerializeToString()


def some_rois(seed: int, num: int = 4) -> np.ndarray:
  """[num, 4] normalised boxes, the last one padding-like (no area)."""
  rng = np.random.default_rng(seed)
  corner = rng.uniform(0.0, 0.5, size=(num, 2))
  rois = np.concatenate([corner, corner + rng.uniform(0.1, 0.5, size=(num, 2))], axis=1)
  rois[-1] = [0.5, 0.5, 0.5, 0.6]
  return np.clip(rois, 0.0, 1.0).astype(np.float32)


def write_shards(directory: str, records: Sequence[bytes], num_shards: int,
                 name: str = "train") -> List[str]:
  """Splits `records` over `num_shards` shards named like scripts/create_tfrecords.py's."""
  os.makedirs(directory, exist_ok=True)
  paths = []
  for index in range(num_shards):
    path = os.path.join(directory, f"{name}-{index:05d}-of-{num_shards:05d}.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
      for record in records[index::num_shards]:
        writer.write(record)
    paths.append(path)
  return paths


def read_records(pattern: str) -> List[tf.train.Example]:
  files = sorted(tf.io.gfile.glob(pattern))
  return [tf.train.Example.FromString(r) for f in files
          for r in tf.data.TFRecordDataset(f).as_numpy_iterator()]


def make_tiny_detector_dir(model_dir: str, extra_bindings: Sequence[str] = ()) -> str:
  """An untrained tiny ViLD saved as the trainer does: ckpt-1 and config.gin."""
  gin.clear_config()
  bindings = ["import vild.data.input_pipeline",
              f"Parser.output_size = {DETECTOR_INPUT}"] + list(extra_bindings)
  gin.parse_config_file(TINY_GIN)
  gin.parse_config(bindings)
  model = factory.build_vild_model(image_size=DETECTOR_INPUT)
  tf.train.CheckpointManager(tf.train.Checkpoint(model=model), model_dir, 3).save(1)
  with open(TINY_GIN, encoding="utf-8") as f:
    config = f.read() + "\n" + "\n".join(bindings) + "\n"
  with open(os.path.join(model_dir, "config.gin"), "w", encoding="utf-8") as f:
    f.write(config)
  gin.clear_config()
  return model_dir


_DETECTOR_DIRS = {}


def tiny_detector_dir(tmp_path_factory) -> str:
  """`make_tiny_detector_dir`, made once per test session (a model build costs seconds)."""
  if "tiny" not in _DETECTOR_DIRS:
    _DETECTOR_DIRS["tiny"] = make_tiny_detector_dir(str(tmp_path_factory.mktemp("detector")))
  return _DETECTOR_DIRS["tiny"]


class MeanColourTeacher(interface.Teacher):
  """A 3-d teacher: the mean colour of each crop, normalised. Cheap and easy to follow."""
  name = "mean_colour"

  @property
  def embedding_dim(self):
    return 3

  @property
  def image_size(self):
    return 4

  def encode_text(self, texts):
    raise NotImplementedError("images only")

  def encode_images(self, images):
    means = np.asarray(images, np.float32).mean(axis=(1, 2)) + 1.0
    return means / np.linalg.norm(means, axis=-1, keepdims=True)
