"""ViLD's losses, next to the Mask R-CNN losses it keeps from `official.vision`.

  ViLD-text:  softmax cross-entropy over [bg, classes] logits of the sampled RoIs; optionally
              the logits of some classes (the official code: LVIS rare) are set to 0 while
              staying in the softmax denominator.
  ViLD-image: L1 distillation, the mean over valid distill RoIs of ||e_r - t_r||_1 where t_r is
              the L2-normalised teacher embedding; padded RoIs (-1 boxes) count for nothing.
              `ViLDLoss.distill_loss_type = 'l2'` takes ||e_r - t_r||_2^2 instead (the
              paper's ablation: L1 is better).
  ViLD:       L_text + w * L_image, plus the RPN, box and mask losses of Mask R-CNN.

Losses follow the Model Garden's replica convention: a trainer divides each replica's loss by
the number of replicas and sums gradients; normalisers that vary across replicas are averaged
across replicas first, so the result equals the global mean.
"""
from typing import Dict, Mapping, Optional, Sequence

import gin
import tensorflow as tf

from official.vision.losses import maskrcnn_losses
from vild.modeling.vild_model import valid_roi_mask


def sum_in_order(values: Sequence[tf.Tensor]) -> tf.Tensor:
  """The sum of equally shaped tensors, always added in the same order.

  tf.add_n accumulates into whichever input buffer it may reuse, which depends on what else
  still holds the buffers at that moment, so its float sum can differ in the last bit from
  run to run (set_determinism and bitwise resumes need the same sum every time).
  """
  return tf.reduce_sum(tf.stack(list(values)), axis=0)


def _replica_mean(value: tf.Tensor) -> tf.Tensor:
  context = tf.distribute.get_replica_context()
  if context is None:
    return value
  return context.all_reduce(tf.distribute.ReduceOp.MEAN, value)


def text_classification_loss(class_outputs: tf.Tensor, class_targets: tf.Tensor,
                             class_mask: Optional[tf.Tensor] = None) -> tf.Tensor:
  """ViLD-text cross-entropy.

  Args:
    class_outputs: [B, R, 1 + C] logits, background first.
    class_targets: [B, R] int, 0 = background, 1..C = class; negative = ignore.
    class_mask: optional [C] bool; False classes get logit 0 (the official "mask rare").

  Returns:
    Scalar mean cross-entropy over the non-ignored RoIs.
  """
  class_outputs = tf.cast(class_outputs, tf.float32)
  if class_mask is not None:
    keep = tf.concat([[True], tf.cast(class_mask, tf.bool)], axis=0)
    class_outputs = tf.where(keep, class_outputs, 0.0)
  class_targets = tf.cast(class_targets, tf.int32)
  valid = tf.cast(class_targets >= 0, tf.float32)
  cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=tf.maximum(class_targets, 0), logits=class_outputs)
  return tf.reduce_sum(cross_entropy * valid) / tf.maximum(_replica_mean(
      tf.reduce_sum(valid)), 1.0)


DISTILL_LOSS_TYPES = ("l1", "l2")


def distillation_loss(region_embeddings: tf.Tensor, teacher_embeddings: tf.Tensor,
                      distill_rois: tf.Tensor,
                      distill_roi_valid: Optional[tf.Tensor] = None,
                      loss_type: str = "l1") -> tf.Tensor:
  """ViLD-image distillation loss (unweighted).

  Args:
    region_embeddings: [B, M, D] unit-norm region embeddings of the distill RoIs.
    teacher_embeddings: [B, M, D] teacher (CLIP) embeddings; L2-normalised here.
    distill_rois: [B, M, 4] the RoIs, -1 padded.
    distill_roi_valid: [B, M] bool or 0/1, the RoIs that count (the input pipeline's label);
      default: those with area.
    loss_type: 'l1' (the paper's): the per-RoI L1 norm ||e - t||_1; 'l2': the squared
      Euclidean distance ||e - t||_2^2 (= 2 - 2 cos for unit vectors).

  Returns:
    Scalar: sum over valid RoIs of the per-RoI distance / number of valid RoIs (0 if none).
  """
  if loss_type not in DISTILL_LOSS_TYPES:
    raise ValueError(f"ViLDLoss.distill_loss_type: {loss_type!r} is not one of "
                     f"{DISTILL_LOSS_TYPES}.")
  teacher = tf.cast(teacher_embeddings, tf.float32)
  teacher_norm = tf.norm(teacher, axis=-1)
  valid = (valid_roi_mask(tf.cast(distill_rois, tf.float32)) if distill_roi_valid is None
           else tf.cast(distill_roi_valid, tf.bool))
  valid = tf.logical_and(valid, teacher_norm > 0.0)
  teacher = tf.math.divide_no_nan(teacher, teacher_norm[..., tf.newaxis])
  difference = tf.cast(region_embeddings, tf.float32) - teacher
  per_roi = tf.reduce_sum(tf.abs(difference) if loss_type == "l1" else tf.square(difference),
                          axis=-1)
  valid = tf.cast(valid, tf.float32)
  return tf.math.divide_no_nan(tf.reduce_sum(per_roi * valid),
                               _replica_mean(tf.reduce_sum(valid)))


@gin.configurable
class ViLDLoss:
  """All loss terms of a ViLD training step.

  Call: `loss(outputs, labels, class_mask=None)` with the model's training outputs and the
  input pipeline's labels (rpn_score_targets, rpn_box_targets and, when distilling,
  distill_rois and distill_features). Returns a dict of scalar terms and `model_loss`, their
  weighted sum. Supervised baselines: distill_loss_weight=0. ViLD-image: text_loss_weight=0.
  `distill_loss_type`: 'l1' (the paper's) or 'l2' (squared Euclidean; `distillation_loss`).
  """

  def __init__(self,
               rpn_batch_size_per_im: int = 256,
               rpn_huber_loss_delta: float = 1.0 / 9.0,
               frcnn_huber_loss_delta: float = 1.0,
               rpn_score_weight: float = 1.0,
               rpn_box_weight: float = 1.0,
               text_loss_weight: float = 1.0,
               box_loss_weight: float = 1.0,
               mask_loss_weight: float = 1.0,
               distill_loss_weight: float = 0.5,
               distill_loss_type: str = "l1"):
    if distill_loss_type not in DISTILL_LOSS_TYPES:
      raise ValueError(f"ViLDLoss.distill_loss_type: {distill_loss_type!r} is not one of "
                       f"{DISTILL_LOSS_TYPES}.")
    self.distill_loss_type = distill_loss_type
    self.weights = dict(rpn_score_loss=rpn_score_weight, rpn_box_loss=rpn_box_weight,
                        text_loss=text_loss_weight, box_loss=box_loss_weight,
                        mask_loss=mask_loss_weight, distill_loss=distill_loss_weight)
    self._rpn_score = maskrcnn_losses.RpnScoreLoss(rpn_batch_size_per_im)
    self._rpn_box = maskrcnn_losses.RpnBoxLoss(rpn_huber_loss_delta)
    self._box = maskrcnn_losses.FastrcnnBoxLoss(frcnn_huber_loss_delta,
                                                class_agnostic_bbox_pred=True)
    self._mask = maskrcnn_losses.MaskrcnnLoss()

  def __call__(self, outputs: Mapping[str, tf.Tensor], labels: Mapping[str, tf.Tensor],
               class_mask: Optional[tf.Tensor] = None) -> Dict[str, tf.Tensor]:
    terms = {
        "rpn_score_loss": self._rpn_score(outputs["rpn_scores"], labels["rpn_score_targets"]),
        "rpn_box_loss": self._rpn_box(outputs["rpn_boxes"], labels["rpn_box_targets"]),
        "text_loss": text_classification_loss(outputs["class_outputs"],
                                              outputs["class_targets"], class_mask),
        "box_loss": self._box(outputs["box_outputs"], outputs["class_targets"],
                              outputs["box_targets"]),
    }
    if "mask_outputs" in outputs:
      terms["mask_loss"] = self._mask(outputs["mask_outputs"], outputs["mask_targets"],
                                      outputs["mask_class_targets"])
    if "distill_region_embeddings" in outputs:
      if "distill_features" not in labels or "distill_rois" not in labels:
        raise ValueError("ViLDLoss: the model distils but the labels have no "
                         "'distill_rois'/'distill_features'; train on TFRecords with region "
                         "embeddings (scripts/compute_region_embeddings.py).")
      terms["distill_loss"] = distillation_loss(outputs["distill_region_embeddings"],
                                                labels["distill_features"],
                                                labels["distill_rois"],
                                                labels.get("distill_roi_valid"),
                                                self.distill_loss_type)
    terms = {k: tf.cast(v, tf.float32) for k, v in terms.items()}
    terms["model_loss"] = sum_in_order([self.weights[k] * v for k, v in terms.items()])
    return terms
