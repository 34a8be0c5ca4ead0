"""Gin-configurable builders: one function per part, so a gin file reads as the model's spec.

  build_backbone.depth = 50                  # official.vision ResNet
  build_fpn.num_filters = 256                # official.vision FPN
  build_region_tower.num_convs = 4           # vild RegionTower
  build_vild_model.distillation = 'shared'   # ViLD mode
  build_classifier.kind = 'text'             # 'linear' for the supervised baselines
  AnchorSpec.min_level = 2                   # shared by model and input pipeline

Every default is the paper's (VILD.md); configs/ holds complete named experiments and tiny
variants for tests and the laptop demo.
"""
from typing import Optional, Tuple

import gin
import tensorflow as tf
import tf_keras

from official.vision.modeling.backbones import resnet
from official.vision.modeling.decoders import fpn
from official.vision.modeling.heads import dense_prediction_heads
from official.vision.modeling.heads import instance_heads
from official.vision.modeling.layers import mask_sampler as mask_sampler_lib
from official.vision.modeling.layers import roi_aligner as roi_aligner_lib
from official.vision.modeling.layers import roi_generator as roi_generator_lib
from vild import anchors as anchors_lib
from vild.modeling import detection_generator as detection_generator_lib
from vild.modeling import ensemble
from vild.modeling import learned_classifier
from vild.modeling import region_tower as region_tower_lib
from vild.modeling import roi_sampler
from vild.modeling import text_classifier as text_classifier_lib
from vild.modeling import vild_model

RESNET_DEPTHS = (10, 18, 26, 34, 50, 101, 152, 200)


@gin.configurable
def normalization(use_sync_bn: bool = False, momentum: float = 0.997,
                  epsilon: float = 1e-4) -> dict:
  """Batch-norm settings shared by every part (paper: sync BN, momentum 0.997, eps 1e-4)."""
  return dict(use_sync_bn=use_sync_bn, norm_momentum=momentum, norm_epsilon=epsilon)


@gin.configurable
def build_backbone(depth: int = 50, width_multiplier: float = 1.0) -> tf_keras.Model:
  """ResNet-`depth`; `width_multiplier` < 1 scales every layer's channels (tiny test models)."""
  if depth not in RESNET_DEPTHS:
    raise ValueError(f"build_backbone.depth: {depth} is not a ResNet depth; use one of "
                     f"{RESNET_DEPTHS}.")
  return resnet.ResNet(
      model_id=depth,
      input_specs=tf_keras.layers.InputSpec(shape=[None, None, None, 3]),
      depth_multiplier=width_multiplier,
      **normalization())


@gin.configurable
def build_fpn(backbone: tf_keras.Model, anchor_spec: anchors_lib.AnchorSpec,
              num_filters: int = 256) -> tf_keras.Model:
  return fpn.FPN(input_specs=backbone.output_specs, min_level=anchor_spec.min_level,
                 max_level=anchor_spec.max_level, num_filters=num_filters, **normalization())


@gin.configurable
def build_rpn_head(anchor_spec: anchors_lib.AnchorSpec, num_convs: int = 1,
                   num_filters: int = 256) -> tf_keras.layers.Layer:
  return dense_prediction_heads.RPNHead(
      min_level=anchor_spec.min_level, max_level=anchor_spec.max_level,
      num_anchors_per_location=anchor_spec.anchors_per_location, num_convs=num_convs,
      num_filters=num_filters, **normalization())


@gin.configurable
def build_roi_generator(pre_nms_top_k: int = 2000, nms_iou_threshold: float = 0.7,
                        num_proposals: int = 1000, test_pre_nms_top_k: int = 1000,
                        test_nms_iou_threshold: float = 0.7, test_num_proposals: int = 1000,
                        min_size_threshold: float = 0.0,
                        use_batched_nms: bool = False) -> tf_keras.layers.Layer:
  """Class-agnostic proposals (paper: train 2000/1000, test 1000/1000, NMS 0.7).

  `use_batched_nms`: official.vision's option to run each level's NMS with TensorFlow's
  combined_non_max_suppression kernel instead of the padded while-loop NMS written for TPUs
  (the paper's). Both keep the top `num_proposals` after NMS at `nms_iou_threshold`; the
  kernel considers every box of a level rather than its top `pre_nms_top_k` first. On CPU it
  saved about 10% of the synthetic benchmark's training step (docs/synthetic_benchmark.md).
  """
  return roi_generator_lib.MultilevelROIGenerator(
      pre_nms_top_k=pre_nms_top_k, nms_iou_threshold=nms_iou_threshold,
      num_proposals=num_proposals, test_pre_nms_top_k=test_pre_nms_top_k,
      test_nms_iou_threshold=test_nms_iou_threshold, test_num_proposals=test_num_proposals,
      pre_nms_min_size_threshold=min_size_threshold,
      test_pre_nms_min_size_threshold=min_size_threshold, use_batched_nms=use_batched_nms)


@gin.configurable
def build_roi_sampler(num_sampled_rois: int = 512, foreground_fraction: float = 0.25,
                      foreground_iou_threshold: float = 0.5) -> tf_keras.layers.Layer:
  """Training RoIs (paper: 512 per image, 25% foreground at IoU 0.5), seeded per image."""
  return roi_sampler.SeededROISampler(
      num_sampled_rois=num_sampled_rois, foreground_fraction=foreground_fraction,
      foreground_iou_threshold=foreground_iou_threshold)


@gin.configurable
def build_region_tower(embedding_dim: int, num_convs: int = 4, conv_filters: int = 256,
                       num_fcs: int = 2, fc_dims: int = 1024,
                       name: str = "region_tower") -> region_tower_lib.RegionTower:
  return region_tower_lib.RegionTower(
      embedding_dim=embedding_dim, num_convs=num_convs, conv_filters=conv_filters,
      num_fcs=num_fcs, fc_dims=fc_dims, name=name, **normalization())


@gin.configurable
def build_mask_head(num_convs: int = 4, num_filters: int = 256) -> tf_keras.layers.Layer:
  """Class-agnostic mask head (one 28x28 channel)."""
  return instance_heads.MaskHead(num_classes=1, upsample_factor=2, num_convs=num_convs,
                                 num_filters=num_filters, class_agnostic=True,
                                 **normalization())


@gin.configurable
def build_classifier(embedding_dim: int, temperature: float = 0.01, kind: str = "text",
                     num_learned_classes: Optional[int] = None) -> tf_keras.layers.Layer:
  """The region classifier.

  kind: 'text' (ViLD: cosine to the text embeddings, learned background); for the supervised
    baselines, whose classes are weights (num_learned_classes = size of the training
    vocabulary): 'linear' (Mask R-CNN's softmax classifier over the region features: the
    paper's supervised rows, configs/lvis/supervised_*) or 'learned' (cosine / temperature
    over the region embeddings with learned class rows).
  """
  if kind == "text":
    return text_classifier_lib.TextEmbeddingClassifier(embedding_dim, temperature=temperature)
  if kind in ("linear", "learned"):
    if not num_learned_classes:
      raise ValueError(f"build_classifier: kind={kind!r} needs num_learned_classes (the size "
                       "of the training vocabulary).")
    cls = (learned_classifier.LinearClassifier if kind == "linear"
           else learned_classifier.LearnedClassifier)
    return cls(num_learned_classes, embedding_dim, temperature=temperature)
  raise ValueError(f"build_classifier.kind must be 'text', 'linear' or 'learned', got "
                   f"{kind!r}.")


@gin.configurable
def build_detection_generator(pre_nms_top_k: int = 10000, score_threshold: float = 0.0,
                              nms_iou_threshold: float = 0.5, max_num_detections: int = 300,
                              pre_nms_rule: str = "overall"
                              ) -> detection_generator_lib.ViLDDetectionGenerator:
  """Paper inference: per-class NMS 0.5, score threshold 0, 300 detections per image.

  `pre_nms_rule`: 'overall' keeps the top `pre_nms_top_k` (RoI, class) pairs of the image
  before per-class NMS (ours: 10000, cheap at any class count); 'per_class' keeps the top
  `pre_nms_top_k` RoIs of each class (the official code's rule: 1000; configs/lvis and
  configs/ov_coco). Both are exact per-class NMS (vild.modeling.detection_generator).
  """
  return detection_generator_lib.ViLDDetectionGenerator(
      pre_nms_top_k=pre_nms_top_k, score_threshold=score_threshold,
      nms_iou_threshold=nms_iou_threshold, max_num_detections=max_num_detections,
      box_regression_weights=vild_model.BOX_REGRESSION_WEIGHTS, pre_nms_rule=pre_nms_rule)


@gin.configurable
def build_vild_model(embedding_dim: int = 512,
                     distillation: str = "none",
                     ensemble_lambda: float = ensemble.DEFAULT_LAMBDA,
                     include_mask: bool = True,
                     roi_crop_size: int = 7,
                     mask_crop_size: int = 14,
                     mask_target_size: int = 28,
                     num_sampled_masks: int = 128,
                     anchor_spec: Optional[anchors_lib.AnchorSpec] = None,
                     image_size: Optional[Tuple[int, int]] = None,
                     padded_rois_in_batch_norm: bool = False) -> vild_model.ViLDModel:
  """Builds a ViLD Mask R-CNN.

  Args:
    embedding_dim: D, the teacher's embedding size (CLIP ViT-B/32: 512).
    distillation: 'none' (ViLD-text / supervised), 'shared' (ViLD, ViLD-image),
      'separate' (ViLD-ensemble).
    ensemble_lambda: lambda of ViLD-ensemble (paper 2/3).
    include_mask: build the class-agnostic mask branch.
    roi_crop_size, mask_crop_size, mask_target_size, num_sampled_masks: RoI-align and mask
      sampling sizes (paper 7, 14, 28, 128).
    anchor_spec: levels and anchors (gin: AnchorSpec.*).
    image_size: if given, the model is built (variables created) for this input size.
    padded_rois_in_batch_norm: every distill RoI slot (padding included) in the region
      tower's batch-norm statistics, as the official code; default only the RoIs that count.
  """
  anchor_spec = anchor_spec or anchors_lib.AnchorSpec()
  backbone = build_backbone()
  mask_parts = {}
  if include_mask:
    mask_parts = dict(
        mask_head=build_mask_head(),
        mask_sampler=mask_sampler_lib.MaskSampler(mask_target_size=mask_target_size,
                                                  num_sampled_masks=num_sampled_masks),
        mask_roi_aligner=roi_aligner_lib.MultilevelROIAligner(crop_size=mask_crop_size))
  model = vild_model.ViLDModel(
      backbone=backbone,
      decoder=build_fpn(backbone, anchor_spec),
      rpn_head=build_rpn_head(anchor_spec),
      roi_generator=build_roi_generator(),
      roi_sampler=build_roi_sampler(),
      roi_aligner=roi_aligner_lib.MultilevelROIAligner(crop_size=roi_crop_size),
      region_tower=build_region_tower(embedding_dim),
      classifier=build_classifier(embedding_dim),
      detection_generator=build_detection_generator(),
      distill_tower=(build_region_tower(embedding_dim, name="distill_tower")
                     if distillation == "separate" else None),
      distillation=distillation,
      ensemble_lambda=ensemble_lambda,
      anchor_spec=anchor_spec,
      padded_rois_in_batch_norm=padded_rois_in_batch_norm,
      **mask_parts)
  if image_size is not None:
    build_variables(model, image_size)
  return model


def build_variables(model: vild_model.ViLDModel, image_size: Tuple[int, int]) -> None:
  """Creates every variable (both training- and inference-only parts) with one dummy pass.

  Needed before restoring a checkpoint or counting parameters. Uses a throw-away one-row
  vocabulary if none is set; the model's own vocabulary is left untouched.
  """
  height, width = image_size
  images = tf.zeros([1, height, width, 3])
  image_shape = tf.constant([[height, width]], tf.float32)
  num_classes = (model.classifier.num_classes
                 if isinstance(model.classifier, learned_classifier.LearnedClassifier) else 1)
  dummy_text = tf.one_hot([0] * num_classes, model.embedding_dim)
  gt = dict(gt_boxes=tf.constant([[[0.0, 0.0, height / 2, width / 2]]]),
            gt_classes=tf.constant([[1]]),
            gt_masks=tf.ones([1, 1, 8, 8]))
  distill_rois = (tf.constant([[[0.0, 0.0, height / 2, width / 2]]])
                  if model.distillation != "none" else None)
  model(images, image_shape, distill_rois=distill_rois, text_embeddings=dummy_text,
        training=True, **gt)
  model(images, image_shape, text_embeddings=dummy_text, base_mask=tf.ones([num_classes], tf.bool),
        training=False)
