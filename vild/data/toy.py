"""Tiny generated scenes (coloured squares and discs) for smoke tests and the quick demo.

Class k (1-based) is `TOY_CATEGORIES[k - 1]`, a (colour, shape) pair, so category names mean
something to a text encoder. The richer synthetic open-vocabulary world lives in
`vild.data.synthetic`; this module stays minimal and dependency-free.
"""
import itertools
from typing import Dict, Tuple

import numpy as np

COLOURS = {"red": (220, 40, 40), "green": (40, 190, 60), "blue": (40, 70, 220)}
SHAPES = ("square", "disc")
TOY_CATEGORIES = tuple(f"{c} {s}" for s, c in itertools.product(SHAPES, COLOURS))


def toy_scene(seed: int, size: Tuple[int, int] = (128, 128),
              num_objects: int = 3) -> Dict[str, np.ndarray]:
  """One scene: image [H, W, 3] uint8, boxes [N, 4] pixel yxyx, classes [N] 1-based,
  masks [N, H, W] float32 (visible part of each object; later objects occlude earlier ones)."""
  rng = np.random.default_rng(seed)
  height, width = size
  image = rng.integers(90, 140, size=(height, width, 3)).astype(np.uint8)
  yy, xx = np.mgrid[:height, :width]
  masks, classes = [], []
  for _ in range(num_objects):
    k = int(rng.integers(len(TOY_CATEGORIES)))
    colour, shape = TOY_CATEGORIES[k].split(" ")
    side = int(rng.integers(min(size) // 6, min(size) // 2.5))
    y0 = int(rng.integers(0, height - side))
    x0 = int(rng.integers(0, width - side))
    if shape == "square":
      mask = (yy >= y0) & (yy < y0 + side) & (xx >= x0) & (xx < x0 + side)
    else:
      r = side / 2.0
      mask = (yy - (y0 + r)) ** 2 + (xx - (x0 + r)) ** 2 <= r * r
    image[mask] = COLOURS[colour]
    for earlier in masks:
      earlier &= ~mask
    masks.append(mask)
    classes.append(k + 1)
  keep = [i for i, m in enumerate(masks) if m.sum() > 16]
  masks = [masks[i] for i in keep]
  boxes = np.array([_mask_box(m) for m in masks], np.float32).reshape(-1, 4)
  return {"image": image, "boxes": boxes, "classes": np.array([classes[i] for i in keep],
                                                              np.int32),
          "masks": np.array(masks, np.float32).reshape(-1, height, width)}


def _mask_box(mask: np.ndarray):
  ys, xs = np.nonzero(mask)
  return [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1]


def toy_batch(seeds, size: Tuple[int, int] = (128, 128), num_objects: int = 3,
              num_distill_rois: int = 0, embedding_dim: int = 0):
  """(images, labels) for a batch of toy scenes, in the input pipeline's layout.

  With `num_distill_rois` > 0 the labels also hold distill_rois [B, M, 4] (the objects' boxes
  first, then -1 padding) and random distill_features [B, M, embedding_dim].
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from official.vision.ops import preprocess_ops  # pylint: disable=g-import-not-at-top
  from vild.data import targets  # pylint: disable=g-import-not-at-top
  scenes = [toy_scene(s, size, num_objects) for s in seeds]
  images = tf.stack([preprocess_ops.normalize_image(tf.constant(s["image"])) for s in scenes])
  labels = targets.stack_labels([
      targets.build_training_labels(size, s["boxes"], s["classes"], s["masks"])
      for s in scenes])
  # One stateless RoI-sampling seed per image, derived from the scene (see roi_sampler.py).
  labels["sampling_seeds"] = tf.constant([[s, 0] for s in seeds], tf.int32)
  if num_distill_rois:
    rois = -np.ones((len(scenes), num_distill_rois, 4), np.float32)
    for i, s in enumerate(scenes):
      n = min(len(s["boxes"]), num_distill_rois)
      rois[i, :n] = s["boxes"][:n]
    rng = np.random.default_rng(0)
    labels["distill_rois"] = tf.constant(rois)
    labels["distill_features"] = tf.constant(
        rng.normal(size=(len(scenes), num_distill_rois, embedding_dim)).astype(np.float32))
  return images, labels
