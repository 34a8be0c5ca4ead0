"""The ViLD Mask R-CNN: `official.vision` parts, with the classifier replaced by ViLD's.

The forward pass, in paper order (Gu et al., ICLR 2022, Fig. 3):
  image -> ResNet -> FPN -> RPN -> class-agnostic proposals
  training:  sample RoIs vs. ground truth -> region tower -> region embeddings e_r
             -> ViLD-text logits [cos(e_r, e_bg), cos(e_r, t_1..C)] / tau, box deltas;
             distill RoIs -> (same | separate) tower -> embeddings for the L1 loss;
             positive RoIs -> mask head.
  inference: proposals -> region tower -> scores (text, or ViLD-ensemble fusion with the
             separate image branch) -> per-class NMS -> boxes, scores, classes, masks and the
             region embeddings of the kept detections.

Distillation modes: 'none' (ViLD-text, or supervised baselines), 'shared' (ViLD and
ViLD-image: distill RoIs go through the same tower and projection), 'separate'
(ViLD-ensemble: a second tower + projection for them, fused at inference).
"""
from typing import Any, Dict, Mapping, Optional

import tensorflow as tf
import tf_keras

from official.vision.ops import box_ops
from vild import anchors as anchors_lib
from vild.modeling import detection_generator as detection_generator_lib
from vild.modeling import ensemble
from vild.modeling import text_classifier as text_classifier_lib

DISTILLATION_MODES = ("none", "shared", "separate")
BOX_REGRESSION_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def valid_roi_mask(rois: tf.Tensor) -> tf.Tensor:
  """[B, M, 4] -> [B, M] bool: True for real boxes, False for -1 padding or empty boxes."""
  return tf.logical_and(
      tf.reduce_min(rois, axis=-1) >= 0.0,
      tf.logical_and(rois[..., 2] > rois[..., 0], rois[..., 3] > rois[..., 1]))


@tf_keras.utils.register_keras_serializable(package="vild")
class ViLDModel(tf_keras.Model):
  """ViLD on Mask R-CNN. See the module docstring for the forward pass."""

  def __init__(self,
               backbone: tf_keras.Model,
               decoder: tf_keras.Model,
               rpn_head: tf_keras.layers.Layer,
               roi_generator: tf_keras.layers.Layer,
               roi_sampler: tf_keras.layers.Layer,
               roi_aligner: tf_keras.layers.Layer,
               region_tower: tf_keras.layers.Layer,
               classifier: tf_keras.layers.Layer,
               detection_generator: tf_keras.layers.Layer,
               mask_head: Optional[tf_keras.layers.Layer] = None,
               mask_sampler: Optional[tf_keras.layers.Layer] = None,
               mask_roi_aligner: Optional[tf_keras.layers.Layer] = None,
               distill_tower: Optional[tf_keras.layers.Layer] = None,
               distillation: str = "none",
               ensemble_lambda: float = ensemble.DEFAULT_LAMBDA,
               anchor_spec: Optional[anchors_lib.AnchorSpec] = None,
               padded_rois_in_batch_norm: bool = False,
               name: str = "vild",
               **kwargs):
    """Builds the model from its parts.

    Args:
      backbone, decoder, rpn_head, roi_generator, roi_sampler, roi_aligner, mask_head,
        mask_sampler, mask_roi_aligner: `official.vision` layers (see vild.modeling.factory).
      region_tower: maps RoI features to {'features', 'embeddings'} (RegionTower).
      classifier: maps region embeddings to [bg, classes] logits: ViLD's
        TextEmbeddingClassifier, or for the supervised baselines a LinearClassifier (Mask
        R-CNN's, over the region features) or a LearnedClassifier (cosine).
      detection_generator: ViLDDetectionGenerator.
      distill_tower: the ViLD-ensemble image branch; required iff distillation='separate'.
      distillation: 'none', 'shared' or 'separate'.
      ensemble_lambda: lambda of the ViLD-ensemble fusion (used when 'separate').
      anchor_spec: levels and anchors; used when anchor boxes are not passed to `call`.
      padded_rois_in_batch_norm: let every distill RoI slot, padding and RoIs that do not
        count included, into the region tower's batch-norm statistics (the official code);
        default: only the RoIs that count.
    """
    super().__init__(name=name, **kwargs)
    if distillation not in DISTILLATION_MODES:
      raise ValueError(f"ViLDModel: distillation must be one of {DISTILLATION_MODES}, got "
                       f"{distillation!r}.")
    if (distillation == "separate") != (distill_tower is not None):
      raise ValueError("ViLDModel: distill_tower must be given exactly when "
                       f"distillation='separate' (got distillation={distillation!r}).")
    if region_tower.embedding_dim != classifier.embedding_dim:
      raise ValueError(
          f"ViLDModel: region tower projects to {region_tower.embedding_dim} dims but the "
          f"classifier expects {classifier.embedding_dim}.")
    if distillation == "separate" and not isinstance(
        classifier, text_classifier_lib.TextEmbeddingClassifier):
      raise ValueError("ViLDModel: ViLD-ensemble ('separate') scores its image branch against "
                       "text embeddings; it needs a TextEmbeddingClassifier.")
    if not 0.0 <= ensemble_lambda <= 1.0:
      raise ValueError(f"ViLDModel: ensemble_lambda must be in [0, 1], got {ensemble_lambda}.")
    if mask_head is not None and (mask_sampler is None or mask_roi_aligner is None):
      raise ValueError("ViLDModel: a mask head needs mask_sampler and mask_roi_aligner.")
    self._config_dict = dict(
        backbone=backbone, decoder=decoder, rpn_head=rpn_head, roi_generator=roi_generator,
        roi_sampler=roi_sampler, roi_aligner=roi_aligner, region_tower=region_tower,
        classifier=classifier, detection_generator=detection_generator,
        mask_head=mask_head, mask_sampler=mask_sampler, mask_roi_aligner=mask_roi_aligner,
        distill_tower=distill_tower, distillation=distillation,
        ensemble_lambda=ensemble_lambda, anchor_spec=anchor_spec,
        padded_rois_in_batch_norm=padded_rois_in_batch_norm)
    self.backbone = backbone
    self.decoder = decoder
    self.rpn_head = rpn_head
    self.roi_generator = roi_generator
    self.roi_sampler = roi_sampler
    self.roi_aligner = roi_aligner
    self.region_tower = region_tower
    self.box_predictor = tf_keras.layers.Dense(
        4, kernel_initializer=tf_keras.initializers.RandomNormal(stddev=0.001),
        name="box_predictor")
    self.classifier = classifier
    if getattr(classifier, "reads_region_features", False):
      # Mask R-CNN's linear classifier reads the FC features: the embedding projection feeds
      # no loss, so it is not trained (nor decayed).
      region_tower.projection.trainable = False
    self.detection_generator = detection_generator
    self.mask_head = mask_head
    self.mask_sampler = mask_sampler
    self.mask_roi_aligner = mask_roi_aligner
    self.distill_tower = distill_tower
    self._distillation = distillation
    self._ensemble_lambda = ensemble_lambda
    self._anchor_spec = anchor_spec or anchors_lib.AnchorSpec()
    self._padded_rois_in_batch_norm = padded_rois_in_batch_norm
    self._base_mask = text_classifier_lib.Untracked(None)

  # ------------------------------------------------------------------------------------------
  # Vocabulary (data, not weights).
  @property
  def distillation(self) -> str:
    return self._distillation

  @property
  def embedding_dim(self) -> int:
    return self.classifier.embedding_dim

  @property
  def uses_ensemble(self) -> bool:
    return self._distillation == "separate"

  def set_text_embeddings(self, matrix, base_mask=None, source: str = "<matrix>") -> None:
    """Sets the vocabulary the model scores: [C, D] embeddings and a [C] base mask.

    `base_mask` (True = base class) is needed only by ViLD-ensemble scoring; take it from the
    vocabulary (`Vocabulary.base_mask`), never hard-code it. Any C works, at any time.
    """
    self.classifier.set_text_embeddings(matrix, source=source)
    num_classes = self.classifier.num_classes
    if base_mask is None:
      if self.uses_ensemble:
        raise ValueError(
            f"{source}: ViLD-ensemble scoring needs a base/novel mask; pass "
            "base_mask=vocabulary.base_mask with the text embeddings.")
      self._base_mask.value = None
      return
    base_mask = tf.convert_to_tensor(base_mask, tf.bool)
    if base_mask.shape != (num_classes,):
      raise ValueError(f"{source}: base_mask has shape {tuple(base_mask.shape)} but the text "
                       f"embeddings have {num_classes} classes; pass one flag per class.")
    self._base_mask.value = base_mask

  # ------------------------------------------------------------------------------------------
  def call(self,
           images: tf.Tensor,
           image_shape: tf.Tensor,
           anchor_boxes: Optional[Mapping[str, tf.Tensor]] = None,
           gt_boxes: Optional[tf.Tensor] = None,
           gt_classes: Optional[tf.Tensor] = None,
           gt_masks: Optional[tf.Tensor] = None,
           distill_rois: Optional[tf.Tensor] = None,
           distill_roi_valid: Optional[tf.Tensor] = None,
           text_embeddings: Optional[tf.Tensor] = None,
           base_mask: Optional[tf.Tensor] = None,
           sampling_seeds: Optional[tf.Tensor] = None,
           use_ensemble: Optional[bool] = None,
           training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    """Runs the model.

    Args:
      images: [B, H, W, 3] normalised images.
      image_shape: [B, 2] height and width of the real (unpadded) image content.
      anchor_boxes: {level: [B, H_l, W_l, A*4]}; generated from `anchor_spec` if None.
      gt_boxes, gt_classes, gt_masks: training targets, -1 padded ([B, I, 4], [B, I] with
        1-based class indices into the vocabulary, [B, I, h, w] box-cropped masks).
      distill_rois: [B, M, 4] pixel boxes for distillation, -1 padded (training only).
      distill_roi_valid: [B, M] bool or 0/1, the distill RoIs that count (the input
        pipeline's label); default: those with area (valid_roi_mask).
      text_embeddings: [C, D] vocabulary for this call; default the stored one.
      base_mask: [C] bool for ViLD-ensemble; default the stored one.
      sampling_seeds: [B, 2] int, one seed per image for the RoI subsample (training); with
        them a step is reproducible across resumes and replica layouts (see roi_sampler.py).
      use_ensemble: inference scoring of a ViLD-ensemble ('separate') model: None or True
        fuse both branches, False scores with the text branch only (the image branch's
        embeddings are still returned). Ignored by other models.
      training: training mode.

    Returns:
      Training: rpn_scores, rpn_boxes, class_outputs [B, R, 1+C], box_outputs [B, R, 4],
        class_targets, box_targets, region_embeddings [B, R, D], and when distilling
        distill_region_embeddings [B, M, D]; with masks mask_outputs, mask_targets,
        mask_class_targets.
      Inference: proposals [B, P, 4], proposal_scores [B, P], detection_boxes [B, K, 4],
        detection_scores [B, K], detection_classes [B, K] (1-based, 0 = padding),
        num_detections [B], detection_class_scores [B, K, C], detection_roi_indices [B, K],
        detection_region_embeddings [B, K, D] (and detection_image_embeddings when
        'separate'); with masks detection_masks [B, K, h, w] probabilities.
    """
    features, outputs = self.propose(images, image_shape, anchor_boxes, training=training)
    proposals, proposal_scores = outputs.pop("proposals"), outputs.pop("proposal_scores")

    if training:
      outputs.update(self._training_outputs(
          features, tf.stop_gradient(proposals), gt_boxes, gt_classes, gt_masks,
          distill_rois, distill_roi_valid, text_embeddings, sampling_seeds))
    else:
      outputs.update({"proposals": proposals, "proposal_scores": proposal_scores})
      outputs.update(self._inference_outputs(
          features, proposals, image_shape, text_embeddings, base_mask,
          use_ensemble=self.uses_ensemble and use_ensemble is not False))
    return outputs

  def propose(self, images: tf.Tensor, image_shape: tf.Tensor,
              anchor_boxes: Optional[Mapping[str, tf.Tensor]] = None,
              training: Optional[bool] = None):
    """The class-agnostic first stage alone: image -> ResNet -> FPN -> RPN -> proposals.

    Offline proposals (vild.distillation_data) need only this, not the per-RoI heads.

    Returns:
      (features {level: [B, H_l, W_l, C]}, {rpn_scores, rpn_boxes: {level: ...},
      proposals [B, P, 4] pixel yxyx in `images`, proposal_scores [B, P]}); P is the RoI
      generator's (test_)num_proposals and each FPN level has its own NMS.
    """
    features = self.decoder(self.backbone(images, training=training), training=training)
    rpn_scores, rpn_boxes = self.rpn_head(features, training=training)
    if anchor_boxes is None:
      anchor_boxes = self._anchor_boxes(images)
    # Proposals are decoded in float32 under mixed precision: bfloat16 keeps 8 significant
    # bits (pixels off at 1024 px), and combined-NMS proposals take no bfloat16 at all.
    as_float32 = lambda levels: {k: tf.cast(v, tf.float32) for k, v in levels.items()}  # noqa: E731
    proposals, proposal_scores = self.roi_generator(
        as_float32(rpn_boxes), as_float32(rpn_scores), anchor_boxes, image_shape,
        training=training)
    return features, {"rpn_scores": rpn_scores, "rpn_boxes": rpn_boxes, "proposals": proposals,
                      "proposal_scores": proposal_scores}

  # ------------------------------------------------------------------------------------------
  def _training_outputs(self, features, proposals, gt_boxes, gt_classes, gt_masks,
                        distill_rois, distill_roi_valid, text_embeddings,
                        sampling_seeds) -> Dict[str, tf.Tensor]:
    if gt_boxes is None or gt_classes is None:
      raise ValueError("ViLDModel: training needs gt_boxes and gt_classes.")
    rois, matched_boxes, matched_classes, matched_indices = self.roi_sampler(
        proposals, gt_boxes, gt_classes, sampling_seeds=sampling_seeds)
    box_targets = box_ops.encode_boxes(matched_boxes, rois, weights=BOX_REGRESSION_WEIGHTS)
    box_targets = tf.where((matched_classes == 0)[..., tf.newaxis],
                           tf.zeros_like(box_targets), box_targets)

    region, distill_embeddings = self._region_and_distill(features, rois, distill_rois,
                                                          distill_roi_valid)
    outputs = {
        "class_outputs": self._class_logits(region, text_embeddings),
        "box_outputs": self.box_predictor(region["features"]),
        "class_targets": matched_classes,
        "box_targets": box_targets,
        "region_embeddings": region["embeddings"],
    }
    if distill_embeddings is not None:
      outputs["distill_region_embeddings"] = distill_embeddings

    if self.mask_head is not None:
      if gt_masks is None:
        raise ValueError("ViLDModel: a model with a mask head needs gt_masks for training.")
      mask_rois, mask_classes, mask_targets = self.mask_sampler(
          rois, matched_boxes, matched_classes, matched_indices, gt_masks)
      outputs.update({
          "mask_outputs": self._mask_logits(features, mask_rois, mask_classes, training=True),
          "mask_targets": tf.stop_gradient(mask_targets),
          "mask_class_targets": mask_classes,
      })
    return outputs

  def _region_and_distill(self, features, rois, distill_rois, distill_roi_valid=None):
    """Training-time region tower pass; distill RoIs join it ('shared') or get their own.

    Batch norm leaves out the distill RoIs that do not count, unless
    `padded_rois_in_batch_norm` (the official code: every one of the M slots)."""
    if self._distillation == "none":
      return self.region_tower(self.roi_aligner(features, rois), training=True), None
    if distill_rois is None:
      raise ValueError(
          f"ViLDModel: distillation={self._distillation!r} needs distill_rois [B, M, 4] "
          "(precomputed proposals with their CLIP embeddings; see "
          "scripts/compute_region_embeddings.py).")
    distill_rois = tf.cast(distill_rois, rois.dtype)
    if distill_rois.shape.rank != 3 or distill_rois.shape[-1] != 4:
      raise ValueError(f"ViLDModel: distill_rois must be [batch, M, 4], got shape "
                       f"{distill_rois.shape}.")
    distill_valid = (valid_roi_mask(distill_rois) if distill_roi_valid is None
                     else tf.cast(distill_roi_valid, tf.bool))
    if self._padded_rois_in_batch_norm:
      distill_valid = tf.ones_like(distill_valid)
    if self._distillation == "separate":
      region = self.region_tower(self.roi_aligner(features, rois), training=True)
      distill = self.distill_tower(self.roi_aligner(features, distill_rois),
                                   valid_mask=distill_valid, training=True)
      return region, distill["embeddings"]
    # 'shared': one tower pass over [sampled RoIs ; distill RoIs], padded ones masked out.
    num_rois = tf.shape(rois)[1]
    all_rois = tf.concat([rois, distill_rois], axis=1)
    valid = tf.concat([tf.ones_like(rois[..., 0], tf.bool), distill_valid], axis=1)
    both = self.region_tower(self.roi_aligner(features, all_rois), valid_mask=valid,
                             training=True)
    region = {k: v[:, :num_rois] for k, v in both.items()}
    return region, both["embeddings"][:, num_rois:]

  def detect_with_teacher(self, features: Mapping[str, tf.Tensor], proposals: tf.Tensor,
                          image_shape: tf.Tensor, teacher_embeddings: tf.Tensor,
                          text_embeddings: Optional[tf.Tensor] = None,
                          base_mask: Optional[tf.Tensor] = None) -> Dict[str, tf.Tensor]:
    """ViLD-text + CLIP (the paper's R-CNN-style ensemble): the second stage on `propose`'s
    output, with the text branch's class scores fused as in ViLD-ensemble (same lambda, same
    base/novel mask) with a teacher's scores of the same proposals' crops.

    Args:
      features, proposals: from `propose` ([B, P, 4] pixel yxyx in the model input).
      image_shape: [B, 2] real content size.
      teacher_embeddings: [B, P, D] unit teacher embeddings of the proposals (e.g.
        vild.teacher.crops.RegionEmbedder: 1x + 1.5x crops); zero rows for padding.
      text_embeddings, base_mask: as in `call`.

    Returns:
      The inference outputs of `call`, plus detection_teacher_embeddings [B, K, D].
    """
    outputs = {"proposals": proposals}
    outputs.update(self._inference_outputs(features, proposals, image_shape, text_embeddings,
                                           base_mask, use_ensemble=False,
                                           teacher_embeddings=teacher_embeddings))
    return outputs

  # ------------------------------------------------------------------------------------------
  def _inference_outputs(self, features, rois, image_shape, text_embeddings, base_mask,
                         use_ensemble, teacher_embeddings=None):
    region = self.region_tower(self.roi_aligner(features, rois), training=False)
    text_logits = self._class_logits(region, text_embeddings)
    box_outputs = self.box_predictor(region["features"])
    per_roi = {"region_embeddings": region["embeddings"]}
    if self.uses_ensemble:
      per_roi["image_embeddings"] = self.distill_tower(self.roi_aligner(features, rois),
                                                       training=False)["embeddings"]
    # The image branch fused with the text branch: the teacher's own embeddings when given
    # (ViLD-text + CLIP), else ViLD-ensemble's distilled tower.
    image_embeddings = per_roi.get("image_embeddings") if use_ensemble else None
    if teacher_embeddings is not None:
      image_embeddings = per_roi["teacher_embeddings"] = tf.cast(teacher_embeddings,
                                                                 text_logits.dtype)
    if image_embeddings is not None:
      text_matrix = self.classifier.resolve_text_embeddings(text_embeddings)
      image_logits = text_classifier_lib.cosine_logits(
          image_embeddings, text_matrix, self.classifier.temperature)
      class_scores = ensemble.fuse_scores(text_logits, image_logits,
                                          self._resolve_base_mask(base_mask),
                                          self._ensemble_lambda)
    else:
      class_scores = ensemble.text_scores(text_logits)
    per_roi["class_scores"] = class_scores

    detections = self.detection_generator(box_outputs, class_scores, rois, image_shape)
    for name, values in per_roi.items():
      detections[f"detection_{name}"] = detection_generator_lib.gather_by_roi(
          values, detections["detection_roi_indices"])
    if self.mask_head is not None:
      detections["detection_masks"] = tf.sigmoid(self._mask_logits(
          features, detections["detection_boxes"], detections["detection_classes"],
          training=False))
    return detections

  def _class_logits(self, region, text_embeddings):
    """[B, N, 1 + C] logits; Mask R-CNN's linear classifier reads the FC features instead."""
    if getattr(self.classifier, "reads_region_features", False):
      return self.classifier(region["features"], text_embeddings)
    return self.classifier(region["embeddings"], text_embeddings)

  def _resolve_base_mask(self, base_mask):
    if base_mask is not None:
      return tf.convert_to_tensor(base_mask, tf.bool)
    if self._base_mask.value is None:
      raise ValueError("ViLDModel: ViLD-ensemble scoring needs a base mask; call "
                       "set_text_embeddings(matrix, base_mask=vocabulary.base_mask) or pass "
                       "base_mask= to the call.")
    return self._base_mask.value

  def _mask_logits(self, features, rois, classes, training):
    mask_features = self.mask_roi_aligner(features, rois)
    return self.mask_head([mask_features, classes], training=training)

  def _anchor_boxes(self, images) -> Dict[str, tf.Tensor]:
    height, width = images.shape[1], images.shape[2]
    if height is None or width is None:
      raise ValueError("ViLDModel: images need a static height and width when anchor_boxes "
                       "are not passed.")
    batch_size = tf.shape(images)[0]
    return {level: tf.tile(boxes[tf.newaxis], [batch_size, 1, 1, 1])
            for level, boxes in self._anchor_spec.multilevel_anchor_boxes(
                (height, width)).items()}

  # ------------------------------------------------------------------------------------------
  @property
  def checkpoint_items(self) -> Dict[str, tf_keras.layers.Layer]:
    """Parts that can be restored on their own (e.g. a backbone for initialisation)."""
    items = {"backbone": self.backbone, "decoder": self.decoder, "rpn_head": self.rpn_head,
             "region_tower": self.region_tower}
    if self.mask_head is not None:
      items["mask_head"] = self.mask_head
    if self.distill_tower is not None:
      items["distill_tower"] = self.distill_tower
    return items

  def get_config(self) -> Dict[str, Any]:
    return dict(self._config_dict)

  @classmethod
  def from_config(cls, config, custom_objects=None):
    return cls(**config)
