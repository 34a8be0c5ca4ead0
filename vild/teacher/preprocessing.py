"""CLIP image preprocessing in TensorFlow: [N, H, W, 3] pixels -> the model's input.

CLIP resizes the shorter side to the input size (bicubic, antialiased when shrinking),
crops the centre square, scales to [0, 1] and normalises with the per-channel mean and std
(`clip_config.CLIP_MEAN`, `CLIP_STD`). Crops that are already square at the input size (as
`vild.teacher.crops` makes them) skip straight to the normalisation.

The reference resizes with PIL on uint8 images; TF's bicubic kernel is the same (Keys,
a = -0.5), and results are rounded back to uint8 levels as PIL does, so the two agree to
within a few grey levels near sharp edges (tests/test_teacher_clip.py measures it).
"""
from typing import Sequence

import tensorflow as tf


def resize_shorter_side(images: tf.Tensor, size: int) -> tf.Tensor:
  """[N, H, W, 3] -> [N, H', W', 3] float32 on the 0..255 scale, the shorter side = size."""
  images = tf.cast(images, tf.float32)
  height, width = tf.shape(images)[1], tf.shape(images)[2]
  short = tf.minimum(height, width)
  # Integer arithmetic: float scaling can land one pixel short (224 * 300 / 200 -> 335.99).
  new_height = tf.where(height == short, size, size * height // short)
  new_width = tf.where(width == short, size, size * width // short)
  resized = tf.image.resize(images, tf.stack([new_height, new_width]), method="bicubic",
                            antialias=True)
  return tf.clip_by_value(tf.round(resized), 0.0, 255.0)


def center_crop(images: tf.Tensor, size: int) -> tf.Tensor:
  """The central size x size window (offsets rounded down, as transformers does)."""
  height, width = tf.shape(images)[1], tf.shape(images)[2]
  top, left = (height - size) // 2, (width - size) // 2
  return images[:, top:top + size, left:left + size, :]


def normalize(images: tf.Tensor, mean: Sequence[float], std: Sequence[float]) -> tf.Tensor:
  """0..255 pixels -> (x / 255 - mean) / std, float32."""
  images = tf.cast(images, tf.float32) / 255.0
  return (images - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)


def preprocess(images: tf.Tensor, size: int, mean: Sequence[float],
               std: Sequence[float]) -> tf.Tensor:
  """[N, H, W, 3] uint8 or float 0..255 -> [N, size, size, 3] CLIP input (float32)."""
  images = tf.convert_to_tensor(images)
  if images.shape.rank != 4 or images.shape[-1] != 3:
    raise ValueError(f"images must be [N, H, W, 3] RGB, got shape {images.shape}.")
  if images.shape[1] != size or images.shape[2] != size:
    images = center_crop(resize_shorter_side(images, size), size)
  return normalize(images, mean, std)
