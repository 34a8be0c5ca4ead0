"""CLIP as a ViLD teacher: strings and images in, unit-norm numpy embeddings out.

`load_clip_teacher(dir)` reads a local Hugging Face CLIP directory; `CLIPTeacher.untrained`
builds a preset's architecture with fresh weights (tests; a teacher trained from scratch).
Work runs in fixed-size batches through `tf.function`s; with `jit_compile=True` they are XLA
compiled and the last batch is padded so one compiled program serves every batch.
"""
from typing import Callable, Optional, Sequence

import gin
import numpy as np
import tensorflow as tf

from vild.teacher import checkpoint
from vild.teacher import clip_config as config_lib
from vild.teacher import clip_model
from vild.teacher import interface
from vild.teacher import preprocessing
from vild.teacher import tokenizer as tokenizer_lib


class CLIPTeacher(interface.Teacher):
  """vild's tf_keras CLIP behind the `Teacher` interface."""

  def __init__(self, model: clip_model.CLIPModel, tokenizer: tokenizer_lib.ClipTokenizer,
               config: config_lib.CLIPConfig, batch_size: int = 256,
               jit_compile: bool = False, name: Optional[str] = None):
    if batch_size < 1:
      raise ValueError(f"batch_size must be positive, got {batch_size}.")
    self.model = model
    self.tokenizer = tokenizer
    self.config = config
    self.batch_size = batch_size
    self.jit_compile = jit_compile
    self.name = name or config.name
    size, length = config.vision.image_size, config.text.context_length
    self._text_fn = tf.function(
        self._embed_tokens, jit_compile=jit_compile,
        input_signature=[tf.TensorSpec([None, length], tf.int32)])
    self._image_fn = tf.function(
        self.embed_pixels, jit_compile=jit_compile,
        input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])

  @classmethod
  def untrained(cls, preset: str = "tiny", **kwargs) -> "CLIPTeacher":
    """Fresh random weights of a preset, with vild's packaged tokenizer."""
    config = config_lib.preset(preset)
    return cls(clip_model.build_clip_model(config),
               tokenizer_lib.default_tokenizer(config.text.context_length), config, **kwargs)

  @property
  def embedding_dim(self) -> int:
    return self.config.embed_dim

  @property
  def image_size(self) -> int:
    return self.config.vision.image_size

  @property
  def temperature(self) -> float:
    """1 / the learned logit scale: the softmax temperature of this CLIP's own image-text
    scores. OpenAI's CLIP ends at the clip value 100, hence ViLD's 0.01."""
    return float(1.0 / np.exp(float(self.model.logit_scale.numpy())))

  # ------------------------------------------------------------------------------------------
  # Graph-friendly cores (usable inside tf.data / other tf.functions).
  def embed_pixels(self, images: tf.Tensor) -> tf.Tensor:
    """[N, S, S, 3] float 0..255 at the input size -> [N, D] unit-norm embeddings."""
    pixels = preprocessing.normalize(images, self.config.image_mean, self.config.image_std)
    return tf.math.l2_normalize(self.model.encode_image(pixels), axis=-1)

  def _embed_tokens(self, token_ids: tf.Tensor) -> tf.Tensor:
    return tf.math.l2_normalize(self.model.encode_text(token_ids), axis=-1)

  # ------------------------------------------------------------------------------------------
  # The Teacher interface.
  def encode_text(self, texts: Sequence[str]) -> np.ndarray:
    if isinstance(texts, str):
      raise TypeError("encode_text takes a list of strings, not one string.")
    token_ids = self.tokenizer.tokenize(texts)  # [N, context_length]
    return self._run_batched(self._text_fn, token_ids)

  def encode_images(self, images) -> np.ndarray:
    images = tf.convert_to_tensor(images)
    if images.shape.rank != 4 or images.shape[-1] != 3:
      raise ValueError(f"encode_images takes [N, H, W, 3] RGB images, got shape "
                       f"{images.shape}.")
    if images.shape[1] != self.image_size or images.shape[2] != self.image_size:
      images = preprocessing.center_crop(
          preprocessing.resize_shorter_side(images, self.image_size), self.image_size)
    return self._run_batched(self._image_fn, tf.cast(images, tf.float32))

  def _run_batched(self, fn: Callable, inputs) -> np.ndarray:
    """Applies `fn` to `batch_size` rows at a time; pads the last batch under XLA."""
    total = int(inputs.shape[0])
    outputs = [np.zeros([0, self.embedding_dim], np.float32)]
    for start in range(0, total, self.batch_size):
      batch = tf.convert_to_tensor(inputs[start:start + self.batch_size])
      rows = int(batch.shape[0])
      if self.jit_compile and rows < self.batch_size:
        padding = tf.zeros([self.batch_size - rows, *batch.shape[1:]], batch.dtype)
        batch = tf.concat([batch, padding], axis=0)
      outputs.append(fn(batch).numpy()[:rows])
    return np.concatenate(outputs, axis=0)


@gin.configurable
def load_clip_teacher(checkpoint_dir: str, batch_size: int = 256,
                      jit_compile: bool = False) -> CLIPTeacher:
  """The CLIP teacher of a local Hugging Face checkpoint directory."""
  model, tokenizer, config = checkpoint.load_clip(checkpoint_dir)
  return CLIPTeacher(model, tokenizer, config, batch_size=batch_size, jit_compile=jit_compile)
