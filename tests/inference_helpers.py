"""Test-only pieces for the inference tests: a bag-of-words teacher and a trained tiny ViLD.

The teacher implements the vild.teacher protocol with deterministic vectors (a fixed random
vector per word, summed; a fixed projection of an image's mean colour), so text and crop
embeddings are real functions of their input, never canned results.
"""
import os
import subprocess
import sys
import zlib

import gin
import numpy as np
import tensorflow as tf
import tf_keras

from tests.conftest import REPO
from tests.conftest import TINY_GIN
from vild import losses
from vild import text_embeddings
from vild import vocabulary as vocabulary_lib
from vild.data import toy
from vild.inference import checkpoint
from vild.inference import detector as detector_lib
from vild.modeling import factory
from vild.training import train_step

TOY_NAMES = list(toy.TOY_CATEGORIES)
TOY_NOVEL = [False] * 4 + [True] * 2  # the baked vocabulary of the exported model
DIM = 32
SIZE = (128, 128)
TRAIN_STEPS = 15


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
  tf_keras.utils.set_random_seed(0)
  model = factory.build_vild_model(image_size=SIZE)
  config_text = gin.config_str()
  teacher = BagOfWordsTeacher()
  model.set_text_embeddings(teacher.encode_text(toy.TOY_CATEGORIES),
                            base_mask=[True] * len(toy.TOY_CATEGORIES))
  images, labels = toy.toy_batch([0, 1], SIZE, num_distill_rois=4, embedding_dim=DIM)
  optimizer = tf_keras.optimizers.Adam(2e-3)
  optimizer.build(model.trainable_variables)
  loss_fn = losses.ViLDLoss()
  for _ in range(TRAIN_STEPS):  # eager: a few tiny steps cost less than tracing one
    train_step.train_step(model, optimizer, loss_fn, images, labels)
  os.makedirs(model_dir, exist_ok=True)
  with open(os.path.join(model_dir, "config.gin"), "w") as f:
    f.write(config_text)
  tf.train.Checkpoint(model=model, optimizer=optimizer).save(os.path.join(model_dir, "ckpt"))
  gin.clear_config()
  return model_dir


_SESSION = {}  # built once per test session, shared by the inference test modules


def trained_model_dir(tmp_path_factory) -> str:
  """A trained ViLD-ensemble ('separate') model directory."""
  if "model_dir" not in _SESSION:
    _SESSION["model_dir"] = write_trained_model_dir(str(tmp_path_factory.mktemp("vild")))
  return _SESSION["model_dir"]


def teacher() -> BagOfWordsTeacher:
  if "teacher" not in _SESSION:
    _SESSION["teacher"] = BagOfWordsTeacher()
  return _SESSION["teacher"]


def keras_model(tmp_path_factory):
  """The trained model restored from its directory (with the model's default NMS settings)."""
  if "keras_model" not in _SESSION:
    _SESSION["keras_model"] = checkpoint.load_model(trained_model_dir(tmp_path_factory),
                                                    input_size=SIZE).model
  return _SESSION["keras_model"]


def detector(tmp_path_factory, use_ensemble=None):
  """A Detector on the trained model with the bag-of-words teacher's text and crop encoders."""
  key = ("detector", use_ensemble)
  if key not in _SESSION:
    _SESSION[key] = detector_lib.Detector.from_model(
        keras_model(tmp_path_factory), SIZE, teacher=teacher(),
        embed_names=teacher().encode_text, embed_crops=teacher().embed_crops,
        use_ensemble=use_ensemble)
  return _SESSION[key]


def toy_image(seed: int) -> np.ndarray:
  return toy.toy_scene(seed, SIZE)["image"]


def run_python(args, expect_success: bool = True) -> subprocess.CompletedProcess:
  """Runs `python args...` in a fresh interpreter from the repository root."""
  env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"}
  result = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=600)
  if expect_success:
    assert result.returncode == 0, result.stderr[-3000:]
  return result


def exported_dir(tmp_path_factory) -> str:
  """scripts/export_saved_model.py's export of the trained model, toy vocabulary baked in."""
  if "exported_dir" not in _SESSION:
    work = tmp_path_factory.mktemp("export")
    npy = str(work / "toy.npy")
    novel = [n for n, is_novel in zip(TOY_NAMES, TOY_NOVEL) if is_novel]
    text_embeddings.save(npy, teacher().encode_text(TOY_NAMES),
                         vocabulary_lib.Vocabulary.from_names(TOY_NAMES, novel_names=novel))
    export_dir = str(work / "vild_export")
    run_python(["scripts/export_saved_model.py", f"--model={trained_model_dir(tmp_path_factory)}",
                f"--export_dir={export_dir}", f"--vocabulary={npy}", "--input_size=128,128"])
    _SESSION["exported_dir"] = export_dir
  return _SESSION["exported_dir"]
