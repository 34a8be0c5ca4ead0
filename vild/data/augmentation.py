"""Seeded large-scale jitter and a one-coin horizontal flip for detection inputs.

Why not official.vision's `resize_and_crop_image` / `random_horizontal_flip` as they are: they
draw from stateful random ops, which give different augmentations from run to run inside a
parallel tf.data map; and ViLD's distillation RoIs must share the image's flip (the official
ViLD parser flips twice with independent coins, so half the time its RoIs miss their objects).
Here every draw is stateless from an explicit per-example seed, and one coin flips the image,
boxes, masks and RoIs together. The geometry (random scale of the output size, aspect kept,
random crop offset, pad at bottom-right) and the image_info layout are official.vision's:

  image_info [4, 2] = [[original h, w], [output h, w], [y_scale, x_scale], [y_offset, x_offset]]
  a pixel point p of the original image lands at p * scale - offset in the output.

Row 1 is the padded output size (official.vision's layout); the real image content covers
`content_size(image_info)` of it from the top-left, the rest is padding. The official ViLD code
(tensorflow/tpu) stores the scaled size there instead, and clips proposals and detections to it:
the model here takes `content_size` as its `image_shape` for the same clipping.
"""
from typing import Optional, Sequence, Tuple

import tensorflow as tf

from official.vision.ops import box_ops
from official.vision.ops import preprocess_ops


def jitter_image_info(image_size: tf.Tensor, output_size: Sequence[int],
                      scale_range: Tuple[float, float], seed: tf.Tensor) -> tf.Tensor:
  """The image_info [4, 2] of a large-scale-jitter resize and crop (scale_range (1, 1): none).

  Args:
    image_size: [2] original (height, width).
    output_size: (height, width) of the model input.
    scale_range: (min, max) random scale of the output size (paper: 0.1-2.0).
    seed: [2] int stateless seed.
  """
  image_size = tf.cast(image_size, tf.float32)
  desired = tf.constant(output_size, tf.float32)
  scale_seed, offset_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  random_scale = tf.random.stateless_uniform([], scale_seed, scale_range[0], scale_range[1])
  target = tf.round(random_scale * desired)
  scale = tf.minimum(target[0] / image_size[0], target[1] / image_size[1])  # keep aspect
  scaled_size = tf.round(image_size * scale)
  max_offset = tf.maximum(scaled_size - desired, 0.0)
  offset = tf.floor(max_offset * tf.random.stateless_uniform([2], offset_seed))
  return tf.stack([image_size, desired, scaled_size / image_size, offset])


def content_size(image_info: tf.Tensor) -> tf.Tensor:
  """[..., 4, 2] image_info -> [..., 2] (height, width) of the real image content in the output.

  The scaled image minus the crop offset, at most the output size: what is left of the image
  after the jitter's crop, with the padding (bottom and right) excluded.
  """
  image_info = tf.cast(image_info, tf.float32)
  scaled = tf.round(image_info[..., 0, :] * image_info[..., 2, :])
  return tf.minimum(scaled - image_info[..., 3, :], image_info[..., 1, :])


def resample_to_output(images: tf.Tensor, image_info: tf.Tensor, output_size: Sequence[int],
                       method: str = "bilinear") -> tf.Tensor:
  """Resizes, crops and zero-pads [N, H, W, C] images to [N, out_h, out_w, C] per image_info.

  One `crop_and_resize` per image, sampling each output pixel centre at its exact source
  position, so an image and its masks go through identical geometry and nothing is resized to
  the (up to 2x) intermediate scaled size first.
  """
  height_width = tf.cast(tf.shape(images)[1:3], tf.float32)
  out = tf.constant(output_size, tf.float32)
  scale, offset = image_info[2], image_info[3]
  # Output pixel i has its centre at (offset + i + 0.5) / scale - 0.5 in source pixel indices;
  # crop_and_resize samples index box_start * (size - 1) + i * box_extent * (size - 1) / (n - 1).
  denominator = tf.maximum(height_width - 1.0, 1.0)
  start = ((offset + 0.5) / scale - 0.5) / denominator
  end = start + (out - 1.0) / scale / denominator
  window = tf.concat([start, end], axis=0)  # [y1, x1, y2, x2]
  num = tf.shape(images)[0]
  return tf.image.crop_and_resize(
      tf.cast(images, tf.float32), tf.tile(window[tf.newaxis], [num, 1]),
      box_indices=tf.range(num), crop_size=list(output_size), method=method,
      extrapolation_value=0.0)


def transform_boxes(boxes: tf.Tensor, image_info: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
  """Pixel boxes of the original image -> boxes in the output, and the indices still visible."""
  boxes = preprocess_ops.resize_and_crop_boxes(boxes, image_info[2], image_info[1],
                                               image_info[3])
  keep = box_ops.get_non_empty_box_indices(boxes)
  return tf.gather(boxes, keep), keep


def flip_left_right(flip: tf.Tensor, image: tf.Tensor, boxes: tf.Tensor,
                    masks: Optional[tf.Tensor] = None, rois: Optional[tf.Tensor] = None):
  """Mirrors image [H, W, C], normalised boxes, masks [N, H, W] and normalised RoIs when `flip`.

  One decision for all of them: the whole point.
  """
  def maybe(fn, x):
    return None if x is None else tf.cond(flip, lambda: fn(x), lambda: x)
  return (maybe(preprocess_ops.horizontal_flip_image, image),
          maybe(box_ops.horizontal_flip_boxes, boxes),
          maybe(preprocess_ops.horizontal_flip_masks, masks),
          maybe(box_ops.horizontal_flip_boxes, rois))
