"""ViLD-image distillation targets: teacher embeddings of proposal crops at 1x and 1.5x.

For each proposal the target is normalize(teacher(crop 1x) + teacher(crop 1.5x)): the 1.5x
crop, around the same centre and clipped to the image, adds context (VILD.md). Boxes are
(ymin, xmin, ymax, xmax) in pixels of the image given; rows without area (the -1 / zero
padding of proposal lists) get an all-zero embedding and cost no teacher time.

Crops are cut and resized straight to the teacher's square input with bilinear
`tf.image.crop_and_resize`, sampling at pixel centres (a box covering whole pixels at the
output size reproduces them exactly). `RegionEmbedder.embed_many` streams the crops of many
images through fixed-size teacher batches, so small images do not mean small batches; the
TFRecord, Beam and "CLIP on cropped regions" jobs are loops around it.
"""
import collections
import dataclasses
import time
from typing import Iterable, Iterator, Sequence, Tuple

import gin
import numpy as np
import tensorflow as tf
import tqdm

from vild import text_embeddings
from vild.teacher import interface

VILD_SCALES = (1.0, 1.5)


def scale_boxes(boxes, scale: float, image_height, image_width) -> tf.Tensor:
  """[N, 4] boxes -> the same centres with sides x `scale`, clipped to the image."""
  boxes = tf.cast(boxes, tf.float32)
  ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
  center_y, center_x = (ymin + ymax) / 2, (xmin + xmax) / 2
  half_h, half_w = (ymax - ymin) * scale / 2, (xmax - xmin) * scale / 2
  height, width = tf.cast(image_height, tf.float32), tf.cast(image_width, tf.float32)
  return tf.stack([tf.clip_by_value(center_y - half_h, 0.0, height),
                   tf.clip_by_value(center_x - half_w, 0.0, width),
                   tf.clip_by_value(center_y + half_h, 0.0, height),
                   tf.clip_by_value(center_x + half_w, 0.0, width)], axis=-1)


def has_area(boxes) -> tf.Tensor:
  """[N] bool: finite boxes with ymax > ymin and xmax > xmin (padding rows fail)."""
  boxes = tf.cast(boxes, tf.float32)
  finite = tf.reduce_all(tf.math.is_finite(boxes), axis=-1)
  return finite & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])


def crop_regions(image, boxes, crop_size: int) -> tf.Tensor:
  """[H, W, 3] image, [N, 4] pixel boxes -> [N, crop_size, crop_size, 3] float32 0..255."""
  image = tf.cast(image, tf.float32)
  boxes = tf.cast(boxes, tf.float32)
  height = tf.cast(tf.shape(image)[0], tf.float32)
  width = tf.cast(tf.shape(image)[1], tf.float32)
  # crop_and_resize puts its first/last samples at y1 * (H - 1) and y2 * (H - 1); choose them
  # at the centres of the first/last output pixels of the box (half-pixel convention).
  ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
  step_y, step_x = (ymax - ymin) / crop_size, (xmax - xmin) / crop_size
  sample_boxes = tf.stack([
      (ymin + step_y / 2 - 0.5) / tf.maximum(height - 1, 1.0),
      (xmin + step_x / 2 - 0.5) / tf.maximum(width - 1, 1.0),
      (ymax - step_y / 2 - 0.5) / tf.maximum(height - 1, 1.0),
      (xmax - step_x / 2 - 0.5) / tf.maximum(width - 1, 1.0)], axis=-1)
  return tf.image.crop_and_resize(
      image[tf.newaxis], sample_boxes, tf.zeros([tf.shape(boxes)[0]], tf.int32),
      [crop_size, crop_size], method="bilinear", extrapolation_value=0.0)


def _checked_boxes(boxes) -> tf.Tensor:
  boxes = tf.cast(tf.convert_to_tensor(boxes), tf.float32)
  if boxes.shape.num_elements() == 0:  # an image without proposals, e.g. np.array([])
    return tf.zeros([0, 4], tf.float32)
  if boxes.shape.rank != 2 or boxes.shape[-1] != 4:
    raise ValueError(f"boxes must be [N, 4] (ymin, xmin, ymax, xmax) pixels, got shape "
                     f"{boxes.shape}.")
  return boxes


@dataclasses.dataclass(frozen=True)
class _PendingCrops:
  """Crops of `image` at `boxes` [k, 4] (already scaled), cut only when their batch runs.

  Cutting lazily keeps memory at one batch of crops: an image with 300 proposals at two
  scales would otherwise hold 600 crops (about 360 MB at 224 x 224) at once.
  """
  image: tf.Tensor
  boxes: tf.Tensor

  def __len__(self) -> int:
    return int(self.boxes.shape[0])

  def __getitem__(self, rows: slice) -> "_PendingCrops":
    return _PendingCrops(self.image, self.boxes[rows])


class _RowQueue:
  """First-in first-out rows (of arrays or `_PendingCrops`), taken in chunks of any size."""

  def __init__(self):
    self._chunks = collections.deque()
    self.size = 0

  def put(self, rows) -> None:
    if len(rows):
      self._chunks.append(rows)
      self.size += len(rows)

  def take(self, count: int) -> list:
    parts = []
    while count > 0:
      chunk = self._chunks.popleft()
      parts.append(chunk[:count])
      if len(chunk) > count:
        self._chunks.appendleft(chunk[count:])
      count -= len(parts[-1])
    self.size -= sum(len(p) for p in parts)
    return parts


@gin.configurable
class RegionEmbedder:
  """Proposal boxes -> L2-normalised sum of the teacher's embeddings of their crops.

  Attributes:
    teacher: any `vild.teacher.Teacher`; crops are resized to its `image_size`.
    scales: crop scales around each box centre (ViLD: 1x and 1.5x).
    batch_size: crops per teacher call, across image boundaries.
    progress: show a crops/s progress bar.
    num_crops, seconds: crops embedded so far and the time spent in the teacher.
  """

  def __init__(self, teacher: interface.Teacher, scales: Sequence[float] = VILD_SCALES,
               batch_size: int = 64, progress: bool = False):
    if not scales or min(scales) <= 0:
      raise ValueError(f"scales must be positive numbers, got {scales}.")
    self.teacher = teacher
    self.scales = tuple(scales)
    self.batch_size = batch_size
    self.progress = progress
    self.num_crops = 0
    self.seconds = 0.0

  def __call__(self, image, boxes) -> np.ndarray:
    """One image [H, W, 3] and its [N, 4] pixel boxes -> [N, D] float32."""
    return next(self.embed_many([(image, boxes)]))

  def embed_many(self, examples: Iterable[Tuple[object, object]]) -> Iterator[np.ndarray]:
    """Yields [N_i, D] per (image, boxes) pair, in order, batching crops across images."""
    pending = collections.deque()  # per image: (number of boxes, indices of boxes with area)
    crops, embeddings = _RowQueue(), _RowQueue()
    with tqdm.tqdm(unit="crop", desc="region embeddings", disable=not self.progress) as bar:
      for image, boxes in examples:
        boxes = _checked_boxes(boxes)
        valid = np.flatnonzero(has_area(boxes).numpy())
        pending.append((int(boxes.shape[0]), valid))
        crops.put(self._pending_crops(image, tf.gather(boxes, valid)))
        while crops.size >= self.batch_size:
          embeddings.put(self._embed(crops.take(self.batch_size), bar))
        yield from self._finished(pending, embeddings)
      if crops.size:
        embeddings.put(self._embed(crops.take(crops.size), bar))
      yield from self._finished(pending, embeddings)

  def _pending_crops(self, image, boxes) -> _PendingCrops:
    """len(scales) * n crops: all boxes at the first scale, then the next scale, ..."""
    image = tf.convert_to_tensor(image)
    if image.shape.rank != 3 or image.shape[-1] != 3:
      raise ValueError(f"image must be [H, W, 3] RGB, got shape {image.shape}.")
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    return _PendingCrops(image, tf.concat(
        [scale_boxes(boxes, s, height, width) for s in self.scales], axis=0))

  def _embed(self, parts: Sequence[_PendingCrops], bar) -> np.ndarray:
    size = self.teacher.image_size
    batch = tf.concat([crop_regions(p.image, p.boxes, size) for p in parts], axis=0)
    start = time.perf_counter()
    out = self.teacher.encode_images(batch)
    self.seconds += time.perf_counter() - start
    count = int(batch.shape[0])
    self.num_crops += count
    bar.update(count)
    return interface.checked_embeddings(self.teacher, out, count, "encode_images")

  def _finished(self, pending, embeddings) -> Iterator[np.ndarray]:
    """Region embeddings of the images whose crops have all been embedded."""
    num_scales = len(self.scales)
    while pending and embeddings.size >= num_scales * len(pending[0][1]):
      num_boxes, valid = pending.popleft()
      per_scale = np.concatenate(
          [np.zeros([0, self.teacher.embedding_dim], np.float32)] +
          embeddings.take(num_scales * len(valid)))
      dim = self.teacher.embedding_dim
      summed = per_scale.reshape(num_scales, len(valid), dim).sum(axis=0)  # [n, D]
      regions = np.zeros([num_boxes, dim], np.float32)
      regions[valid] = text_embeddings.l2_normalize(summed)
      yield regions
