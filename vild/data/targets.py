"""Training targets for one image: anchors, RPN labels, padded boxes/classes and box-cropped masks.

The input pipeline calls this after augmentation; tests and the demo call it on generated
images. Anchor labelling is `official.vision`'s (RpnAnchorLabeler); the layout of the returned
dict is the contract between the data and the model (see `vild.training.train_step`).
"""
from typing import Dict, Optional, Sequence

import gin
import tensorflow as tf

from official.vision.ops import anchor as anchor_ops
from official.vision.ops import preprocess_ops
from vild import anchors as anchors_lib


@gin.configurable
def build_training_labels(image_size: Sequence[int],
                          boxes: tf.Tensor,
                          classes: tf.Tensor,
                          masks: Optional[tf.Tensor] = None,
                          anchor_spec: Optional[anchors_lib.AnchorSpec] = None,
                          image_info: Optional[tf.Tensor] = None,
                          max_num_instances: int = 100,
                          mask_crop_size: int = 112,
                          rpn_match_threshold: float = 0.7,
                          rpn_unmatched_threshold: float = 0.3,
                          rpn_batch_size_per_im: int = 256,
                          rpn_fg_fraction: float = 0.5,
                          seed: Optional[tf.Tensor] = None) -> Dict[str, tf.Tensor]:
  """Labels for one (already resized and padded) image.

  Args:
    image_size: (height, width) of the model input.
    boxes: [N, 4] float pixel boxes [ymin, xmin, ymax, xmax] in the model input.
    classes: [N] int, 1-based class indices into the training vocabulary.
    masks: optional [N, H, W] float instance masks aligned with the model input.
    anchor_spec: levels and anchors (gin: AnchorSpec).
    image_info: optional [4, 2] official.vision image info; default: no rescaling.
    max_num_instances: boxes/classes/masks are clipped or -1 padded to this many (the official
      recipe keeps 300; `num_clipped_instances` counts what a smaller limit drops).
    mask_crop_size: masks are cropped to their boxes and resized to this square size.
    rpn_*: RPN anchor matching (paper: 0.7 / 0.3, 256 anchors per image).
    seed: optional [2] int stateless seed for the RPN anchor subsampling; the input pipeline
      passes one so that seeded runs give identical labels (the official sampler draws from a
      stateful op, which a parallel tf.data map makes irreproducible).

  Returns:
    dict with image_info [4, 2], anchor_boxes {level: [H_l, W_l, A*4]},
    rpn_score_targets {level: [H_l, W_l, A]}, rpn_box_targets {level: [H_l, W_l, A*4]},
    gt_boxes [I, 4], gt_classes [I] (-1 padded), num_clipped_instances [] int32 (instances
    beyond max_num_instances, dropped from the targets: their objects then count as background
    for the sampled RoIs) and, with masks, gt_masks [I, s, s].
  """
  anchor_spec = anchor_spec or anchors_lib.AnchorSpec()
  height, width = int(image_size[0]), int(image_size[1])
  boxes = tf.cast(tf.reshape(boxes, [-1, 4]), tf.float32)
  classes = tf.cast(tf.reshape(classes, [-1]), tf.int32)

  anchor_boxes = anchor_spec.multilevel_anchor_boxes((height, width))
  labeler_args = (rpn_match_threshold, rpn_unmatched_threshold, rpn_batch_size_per_im,
                  rpn_fg_fraction)
  labeler = (anchor_ops.RpnAnchorLabeler(*labeler_args) if seed is None
             else SeededRpnAnchorLabeler(*labeler_args, seed=seed))
  rpn_score_targets, rpn_box_targets = labeler.label_anchors(
      anchor_boxes, boxes, tf.cast(classes[:, tf.newaxis], tf.float32))
  if image_info is None:
    size = tf.constant([height, width], tf.float32)
    image_info = tf.stack([size, size, tf.ones([2]), tf.zeros([2])])

  labels = {
      "image_info": image_info,
      "anchor_boxes": anchor_boxes,
      "rpn_score_targets": rpn_score_targets,
      "rpn_box_targets": rpn_box_targets,
      "gt_boxes": preprocess_ops.clip_or_pad_to_fixed_size(boxes, max_num_instances, -1),
      "gt_classes": preprocess_ops.clip_or_pad_to_fixed_size(classes, max_num_instances, -1),
      "num_clipped_instances": tf.maximum(tf.size(classes) - max_num_instances, 0),
  }
  if masks is not None:
    cropped = crop_masks_to_boxes(masks, boxes, (height, width), mask_crop_size)
    labels["gt_masks"] = preprocess_ops.clip_or_pad_to_fixed_size(
        cropped, max_num_instances, -1)
  return labels


class SeededRpnAnchorLabeler(anchor_ops.RpnAnchorLabeler):
  """official.vision's RPN anchor labeler with the same balanced subsampling, drawn statelessly.

  Up to fg_fraction x batch positives, then negatives to fill the batch, each chosen uniformly
  at random among the candidates (BalancedPositiveNegativeSampler's non-static rule).
  """

  def __init__(self, *args, seed: tf.Tensor, **kwargs):
    super().__init__(*args, **kwargs)
    self._seed = seed

  def _get_rpn_samples(self, match_results):
    # match_results: [N] 1 matched, -1 unmatched (negative), -2 ignored.
    positive = match_results > -1
    negative = tf.equal(match_results, -1)
    priority = tf.random.stateless_uniform(tf.shape(match_results), self._seed)
    max_positives = int(self._rpn_fg_fraction * self._rpn_batch_size_per_im)
    sampled_positive = _random_subset(positive, max_positives, priority)
    num_positives = tf.reduce_sum(tf.cast(sampled_positive, tf.int32))
    sampled_negative = _random_subset(negative, self._rpn_batch_size_per_im - num_positives,
                                      priority)
    score_targets = tf.where(sampled_positive, 1, tf.where(sampled_negative, 0, -1))
    return score_targets, tf.cast(sampled_positive, tf.int32), tf.cast(sampled_negative,
                                                                       tf.int32)


def _random_subset(candidates: tf.Tensor, count, priority: tf.Tensor) -> tf.Tensor:
  """[N] bool: `count` of the True `candidates` (all if fewer), those of highest `priority`."""
  score = tf.where(candidates, priority, -1.0)
  rank = tf.argsort(tf.argsort(score, direction="DESCENDING", stable=True), stable=True)
  return tf.logical_and(candidates, rank < count)


def crop_masks_to_boxes(masks: tf.Tensor, boxes: tf.Tensor, image_size: Sequence[int],
                        crop_size: int) -> tf.Tensor:
  """[N, H, W] image-aligned masks -> [N, s, s] crops of each mask's own box."""
  height, width = float(image_size[0]), float(image_size[1])
  normalized = boxes / tf.constant([height, width, height, width])
  num = tf.shape(boxes)[0]
  crops = tf.image.crop_and_resize(
      tf.cast(masks, tf.float32)[..., tf.newaxis], normalized,
      box_indices=tf.range(num), crop_size=[crop_size, crop_size], method="bilinear")
  return tf.squeeze(crops, axis=-1)


def stack_labels(per_image: Sequence[Dict]) -> Dict:
  """Batches a list of per-image label dicts (nested dicts of tensors) along a new axis 0."""
  return tf.nest.map_structure(lambda *xs: tf.stack(xs), *per_image)
