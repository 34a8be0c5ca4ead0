"""Detections: one image's results, with masks pasted on demand and a JSON form.

Coordinates are pixels of the original image. In JSON each detection has `box_yxyx`
[ymin, xmin, ymax, xmax] and COCO-style `bbox` [x, y, width, height], the category `label`
(name) and `category_id` (the vocabulary's id), `score`, and optionally `segmentation`, a COCO
RLE of the pasted mask ({"size": [height, width], "counts": str}).
"""
import dataclasses
import functools
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from pycocotools import mask as mask_api

from official.vision.ops import mask_ops
from vild import vocabulary as vocabulary_lib

METHODS = ("vild", "clip_on_crops")


@dataclasses.dataclass(frozen=True)
class Detections:
  """Detections of one image, best first. K detections, C classes, D embedding dims.

  Attributes:
    boxes: [K, 4] float32 pixel [ymin, xmin, ymax, xmax] in the original image.
    scores: [K] the detection's score for its class.
    class_indices: [K] int, 0-based index into `vocabulary.names`.
    class_scores: [K, C] the full score vector of each detection.
    region_embeddings: [K, D] unit-norm region embeddings (CLIP crop embeddings for
      'clip_on_crops'); re-score them against new text with Detector.rescore.
    vocabulary: the vocabulary that was scored.
    image_size: (height, width) of the original image.
    roi_indices: [K] the proposal each detection came from (one RoI can give several
      detections, one per class).
    image_embeddings: [K, D] ViLD-ensemble image-branch embeddings, else None.
    box_masks: [K, m, m] mask probabilities in each box's frame, else None.
    method: 'vild' or 'clip_on_crops' (how the scores were made).
  """
  boxes: np.ndarray
  scores: np.ndarray
  class_indices: np.ndarray
  class_scores: np.ndarray
  region_embeddings: np.ndarray
  vocabulary: vocabulary_lib.Vocabulary
  image_size: Tuple[int, int]
  roi_indices: np.ndarray
  image_embeddings: Optional[np.ndarray] = None
  box_masks: Optional[np.ndarray] = None
  method: str = "vild"

  def __len__(self) -> int:
    return len(self.scores)

  @property
  def names(self) -> List[str]:
    return [self.vocabulary.names[i] for i in self.class_indices]

  @functools.cached_property
  def masks(self) -> Optional[np.ndarray]:
    """[K, H, W] uint8 {0, 1} masks pasted into the original image (on first use), or None."""
    if self.box_masks is None:
      return None
    height, width = self.image_size
    if len(self) == 0:
      return np.zeros([0, height, width], np.uint8)
    return mask_ops.paste_instance_masks(self.box_masks, xywh(self.boxes), height, width)

  def select(self, indices: Sequence[int], **replace) -> "Detections":
    """The detections at `indices` (in that order); `replace` overrides fields."""
    indices = np.asarray(indices, np.int64)
    per_detection = {}
    for field in ("boxes", "scores", "class_indices", "class_scores", "region_embeddings",
                  "roi_indices", "image_embeddings", "box_masks"):
      value = getattr(self, field)
      per_detection[field] = None if value is None else value[indices]
    return dataclasses.replace(self, **{**per_detection, **replace})

  def to_json(self, include_masks: bool = True) -> List[Dict[str, Any]]:
    """One dict per detection (see the module docstring)."""
    masks = self.masks if include_masks else None
    rles = encode_rle(masks) if masks is not None else [None] * len(self)
    results = []
    for i, (box, index) in enumerate(zip(self.boxes, self.class_indices)):
      item = {"label": self.vocabulary.names[index],
              "category_id": int(self.vocabulary.category_ids[index]),
              "score": round(float(self.scores[i]), 6),
              "box_yxyx": [round(float(v), 2) for v in box],
              "bbox": [round(float(v), 2) for v in xywh(box[np.newaxis])[0]]}
      if rles[i] is not None:
        item["segmentation"] = rles[i]
      results.append(item)
    return results


def xywh(boxes: np.ndarray) -> np.ndarray:
  """[N, 4] [ymin, xmin, ymax, xmax] -> COCO [x, y, width, height]."""
  boxes = np.asarray(boxes, np.float32)
  return np.stack([boxes[:, 1], boxes[:, 0], boxes[:, 3] - boxes[:, 1],
                   boxes[:, 2] - boxes[:, 0]], axis=-1)


def encode_rle(masks: np.ndarray) -> List[Dict[str, Any]]:
  """[K, H, W] binary masks -> COCO RLEs with str counts (JSON-ready)."""
  if len(masks) == 0:
    return []
  rles = mask_api.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
  return [{"size": [int(s) for s in r["size"]], "counts": r["counts"].decode("ascii")}
          for r in rles]
