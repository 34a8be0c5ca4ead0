"""The stock `official.vision` Mask R-CNN that ViLD is measured against.

Built from the same gin builders as the ViLD model (vild.modeling.factory), so backbone, FPN,
RPN, proposal settings, RoI counts and mask head are the same; what differs is exactly what
ViLD changes: the stock DetectionHead (same convs and FCs) with a softmax classifier over
C + 1 classes and class-agnostic boxes, the official random RoI sampler, the official
DetectionGenerator, and the official Mask R-CNN losses as `official/vision/tasks/maskrcnn.py`
combines them.
"""
import inspect
from typing import Callable, Dict, Mapping

import gin
import tensorflow as tf

from official.vision.losses import maskrcnn_losses
from official.vision.modeling import maskrcnn_model
from official.vision.modeling.heads import instance_heads
from official.vision.modeling.layers import detection_generator
from official.vision.modeling.layers import mask_sampler
from official.vision.modeling.layers import roi_aligner
from official.vision.modeling.layers import roi_sampler
from vild import anchors as anchors_lib
from vild.modeling import factory

# The Model Garden's Mask R-CNN config default: candidates kept per class before NMS.
STOCK_PRE_NMS_TOP_K = 5000


def build_stock_maskrcnn(num_classes: int, nms_version: str = "batched"
                        ) -> maskrcnn_model.MaskRCNNModel:
  """Mask R-CNN with a (1 + `num_classes`)-way softmax head; other sizes from the gin builders.

  `nms_version` is the official DetectionGenerator's. 'batched' (one
  combined_non_max_suppression, per-class) is the default here: the config default 'v2'
  unrolls a Python loop of one NMS per class, which at LVIS's 1203 classes takes longer to
  build than this whole benchmark may run.
  """
  anchor_spec = anchors_lib.AnchorSpec()
  sampler = factory.build_roi_sampler().get_config()
  vild_args = effective_arguments(factory.build_vild_model)
  backbone = factory.build_backbone()
  return maskrcnn_model.MaskRCNNModel(
      backbone=backbone,
      decoder=factory.build_fpn(backbone, anchor_spec),
      rpn_head=factory.build_rpn_head(anchor_spec),
      detection_head=build_detection_head(num_classes),
      roi_generator=factory.build_roi_generator(),
      roi_sampler=roi_sampler.ROISampler(
          mix_gt_boxes=True, num_sampled_rois=sampler["num_sampled_rois"],
          foreground_fraction=sampler["foreground_fraction"],
          foreground_iou_threshold=sampler["foreground_iou_threshold"],
          background_iou_high_threshold=sampler["foreground_iou_threshold"],
          background_iou_low_threshold=0.0),
      roi_aligner=roi_aligner.MultilevelROIAligner(crop_size=vild_args["roi_crop_size"]),
      detection_generator=build_detection_generator(nms_version),
      mask_head=factory.build_mask_head(),
      mask_sampler=mask_sampler.MaskSampler(
          mask_target_size=vild_args["mask_target_size"],
          num_sampled_masks=vild_args["num_sampled_masks"]),
      mask_roi_aligner=roi_aligner.MultilevelROIAligner(crop_size=vild_args["mask_crop_size"]),
      class_agnostic_bbox_pred=True,
      min_level=anchor_spec.min_level,
      max_level=anchor_spec.max_level,
      num_scales=anchor_spec.num_scales,
      aspect_ratios=list(anchor_spec.aspect_ratios),
      anchor_size=anchor_spec.anchor_size)


def build_detection_generator(nms_version: str = "batched"
                              ) -> detection_generator.DetectionGenerator:
  """The official generator with ViLD's inference settings (build_detection_generator's)."""
  settings = factory.build_detection_generator().get_config()
  return detection_generator.DetectionGenerator(
      pre_nms_top_k=STOCK_PRE_NMS_TOP_K, pre_nms_score_threshold=settings["score_threshold"],
      nms_iou_threshold=settings["nms_iou_threshold"],
      max_num_detections=settings["max_num_detections"], nms_version=nms_version)


def build_detection_head(num_classes: int) -> instance_heads.DetectionHead:
  """The stock head: ViLD's region-tower convs and FCs, then a (1 + C)-way softmax classifier
  and class-agnostic boxes."""
  tower = factory.build_region_tower(embedding_dim=1).get_config()
  return instance_heads.DetectionHead(
      num_classes=num_classes + 1, num_convs=tower["num_convs"],
      num_filters=tower["conv_filters"], num_fcs=tower["num_fcs"], fc_dims=tower["fc_dims"],
      class_agnostic_bbox_pred=True, **factory.normalization())


def effective_arguments(function: Callable) -> Dict[str, object]:
  """A gin-configurable function's keyword defaults with the current gin bindings applied."""
  defaults = {name: p.default for name, p in inspect.signature(function).parameters.items()
              if p.default is not inspect.Parameter.empty}
  return {**defaults, **gin.get_bindings(function)}


class StockMaskRCNNLoss:
  """The Model Garden Mask R-CNN task's loss (official/vision/tasks/maskrcnn.py), weights 1.

  `ViLDLoss` keeps the same RPN, box and mask terms; it replaces the softmax classification
  term with ViLD-text's and adds the distillation term.
  """

  def __init__(self, rpn_huber_loss_delta: float = 1.0 / 9.0,
               frcnn_huber_loss_delta: float = 1.0):
    self._rpn_box = maskrcnn_losses.RpnBoxLoss(rpn_huber_loss_delta)
    self._frcnn_class = maskrcnn_losses.FastrcnnClassLoss()
    self._frcnn_box = maskrcnn_losses.FastrcnnBoxLoss(frcnn_huber_loss_delta,
                                                      class_agnostic_bbox_pred=True)
    self._mask = maskrcnn_losses.MaskrcnnLoss()

  def __call__(self, outputs: Mapping[str, tf.Tensor],
               labels: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    # As the task does: the RPN score loss normalises by the batch of box outputs.
    rpn_score = maskrcnn_losses.RpnScoreLoss(tf.shape(outputs["box_outputs"])[1])
    terms = {
        "rpn_score_loss": rpn_score(outputs["rpn_scores"], labels["rpn_score_targets"]),
        "rpn_box_loss": self._rpn_box(outputs["rpn_boxes"], labels["rpn_box_targets"]),
        "frcnn_cls_loss": self._frcnn_class(outputs["class_outputs"],
                                            outputs["class_targets"]),
        "frcnn_box_loss": self._frcnn_box(outputs["box_outputs"], outputs["class_targets"],
                                          outputs["box_targets"]),
        "mask_loss": self._mask(outputs["mask_outputs"], outputs["mask_targets"],
                                outputs["mask_class_targets"]),
    }
    terms = {name: tf.reduce_mean(value) for name, value in terms.items()}
    terms["total_loss"] = tf.add_n(list(terms.values()))
    return terms


def compute_losses(model: maskrcnn_model.MaskRCNNModel, loss_fn: StockMaskRCNNLoss,
                   images: tf.Tensor, labels: Mapping) -> Dict[str, tf.Tensor]:
  """Loss terms of a training forward pass (labels as vild.data.targets builds them)."""
  outputs = model(images, image_shape=labels["image_info"][:, 1, :],
                  anchor_boxes=labels["anchor_boxes"], gt_boxes=labels["gt_boxes"],
                  gt_classes=labels["gt_classes"], gt_masks=labels["gt_masks"], training=True)
  # Losses in float32 under mixed precision, as the Model Garden task does.
  outputs = tf.nest.map_structure(
      lambda x: tf.cast(x, tf.float32) if x.dtype.is_floating else x, outputs)
  return loss_fn(outputs, labels)


def train_step(model: maskrcnn_model.MaskRCNNModel, optimizer, loss_fn: StockMaskRCNNLoss,
               images: tf.Tensor, labels: Mapping) -> Dict[str, tf.Tensor]:
  """One optimisation step, the same sequence as vild.training.train_step.train_step."""
  with tf.GradientTape() as tape:
    terms = compute_losses(model, loss_fn, images, labels)
  variables = model.trainable_variables
  optimizer.apply_gradients(zip(tape.gradient(terms["total_loss"], variables), variables))
  return terms
