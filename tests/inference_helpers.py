"""Test-only pieces for the inference tests: a bag-of-words teacher and a trained tiny ViLD.

The teacher implements the vild.teacher protocol with deterministic vectors (a fixed random
vector per word, summed; a fixed projection of an image's mean colour), so text and crop
embeddings are real functions of their input, never canned results.
"""
import os
import zlib

import gin
import numpy as np
import tensorflow as tf
import tf_keras

from tests.conftest import TINY_GIN
from vild import losses
from vild.data import toy
from vild.modeling import factory
from vild.training import train_step

DIM = 32
SIZE = (128, 128)
TRAIN_STEPS = 30


class BagOfWordsTeacher:
  """The teacher protocol: embedding_dim, image_size, encode_text, encode_images."""

  image_size = 16

  def __init__(self, embedding_dim: int = DIM):
    self.embedding_dim = embedding_dim
    self.texts_encoded = []  # every text ever encoded, to check caching
    self._colour_projection = np.random.default_rng(7).normal(size=(3, embedding_dim))

  def _word(self, word: str) -> np.ndarray:
    return np.random.default_rng(zlib.crc32(word.encode())).normal(size=self.embedding_dim)

  def encode_text(self, texts):
    self.texts_encoded.extend(texts)
    vectors = np.stack([sum(self._word(w) for w in t.lower().split()) for t in texts])
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)

  def encode_images(self, images):
    colours = np.stack([np.asarray(i, np.float32).reshape(-1, 3).mean(0) for i in images])
    vectors = (colours / 255.0 - 0.5) @ self._colour_projection + 1e-3
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)

  def embed_crops(self, image, boxes):
    """The ViLD region embedding: normalize(embed(1x crop) + embed(1.5x crop))."""
    height, width = image.shape[:2]
    total = 0.0
    for scale in (1.0, 1.5):
      crops = []
      for ymin, xmin, ymax, xmax in boxes:
        cy, cx, h, w = (ymin + ymax) / 2, (xmin + xmax) / 2, ymax - ymin, xmax - xmin
        y0, y1 = int(max(0, cy - scale * h / 2)), int(min(height, cy + scale * h / 2) + 1)
        x0, x1 = int(max(0, cx - scale * w / 2)), int(min(width, cx + scale * w / 2) + 1)
        crops.append(image[y0:y1, x0:x1])
      total = total + self.encode_images(crops)
    return total / np.linalg.norm(total, axis=1, keepdims=True)


def write_trained_model_dir(model_dir: str, distillation: str = "separate") -> str:
  """Trains the tiny config a few steps on toy scenes; writes config.gin + a checkpoint."""
  gin.clear_config()
  gin.parse_config_file(TINY_GIN)
  gin.parse_config([f"build_vild_model.distillation = '{distillation}'"])
  model = factory.build_vild_model(image_size=SIZE)
  config_text = gin.config_str()
  teacher = BagOfWordsTeacher()
  model.set_text_embeddings(teacher.encode_text(toy.TOY_CATEGORIES),
                            base_mask=[True] * len(toy.TOY_CATEGORIES))
  images, labels = toy.toy_batch([0, 1], SIZE, num_distill_rois=4, embedding_dim=DIM)
  optimizer = tf_keras.optimizers.Adam(2e-3)
  optimizer.build(model.trainable_variables)
  loss_fn = losses.ViLDLoss()
  step = tf.function(lambda: train_step.train_step(model, optimizer, loss_fn, images, labels))
  tf.random.set_seed(0)
  for _ in range(TRAIN_STEPS):
    step()
  os.makedirs(model_dir, exist_ok=True)
  with open(os.path.join(model_dir, "config.gin"), "w") as f:
    f.write(config_text)
  tf.train.Checkpoint(model=model, optimizer=optimizer).save(os.path.join(model_dir, "ckpt"))
  gin.clear_config()
  return model_dir


_TRAINED = {}


def trained_model_dir(tmp_path_factory, distillation: str = "separate") -> str:
  """One trained model directory per test session (shared by the inference test modules)."""
  if distillation not in _TRAINED:
    _TRAINED[distillation] = write_trained_model_dir(
        str(tmp_path_factory.mktemp(f"vild_{distillation}")), distillation)
  return _TRAINED[distillation]


def toy_image(seed: int) -> np.ndarray:
  return toy.toy_scene(seed, SIZE)["image"]
