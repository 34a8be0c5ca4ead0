"""The anchor and feature-level specification shared by the model and the input pipeline.

One gin-configurable object, so the levels the FPN produces, the anchors the RPN head predicts
for, and the anchors the input pipeline labels can never disagree.
"""
import dataclasses
from typing import Dict, Sequence, Tuple

import gin
import tensorflow as tf

from official.vision.ops import anchor as anchor_ops


@gin.configurable
@dataclasses.dataclass(frozen=True)
class AnchorSpec:
  """Feature levels and anchors. Paper defaults: levels 2-6, 1 scale, size 8, ratios 1/2/0.5."""
  min_level: int = 2
  max_level: int = 6
  num_scales: int = 1
  aspect_ratios: Tuple[float, ...] = (1.0, 2.0, 0.5)
  anchor_size: float = 8.0

  def __post_init__(self):
    if not 2 <= self.min_level <= self.max_level:
      raise ValueError(
          f"AnchorSpec: need 2 <= min_level <= max_level, got min_level={self.min_level}, "
          f"max_level={self.max_level}. Fix AnchorSpec.min_level/max_level in the gin config.")
    object.__setattr__(self, "aspect_ratios", tuple(float(r) for r in self.aspect_ratios))

  @property
  def anchors_per_location(self) -> int:
    return self.num_scales * len(self.aspect_ratios)

  @property
  def stride(self) -> int:
    """Input sizes must be a multiple of this (the coarsest level's stride)."""
    return 2 ** self.max_level

  def multilevel_anchor_boxes(self, image_size: Sequence[int]) -> Dict[str, tf.Tensor]:
    """Anchor boxes per level, {level: [H_l, W_l, A * 4]}, for an image of `image_size`."""
    return anchor_ops.Anchor(
        min_level=self.min_level,
        max_level=self.max_level,
        num_scales=self.num_scales,
        aspect_ratios=list(self.aspect_ratios),
        anchor_size=self.anchor_size,
        image_size=tuple(int(s) for s in image_size)).multilevel_boxes
