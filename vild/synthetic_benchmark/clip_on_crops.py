"""CLIP on cropped regions: the paper's R-CNN-style baseline, evaluated like every method.

A Mask R-CNN trained on base categories with class-agnostic box and mask heads (the supervised
base-only detector) gives, per validation image, its top RPN proposals; each is refined by
its class-agnostic box head, its 1x and 1.5x crops are embedded by the teacher and classified
by the vocabulary's text embeddings (softmax of cosine / temperature, no background), and
the score is combined with the RPN's objectness as the paper does, since the teacher alone
finds the best-matching box, not the best box (geometric mean: `objectness_weight = 0.5`).
Per-class NMS (the detector's own generator) picks the detections and the class-agnostic mask
head predicts their masks, so it gets mask AP like the other rows.

`ClipOnCropsSpec` holds those choices; each can be switched off to measure what it is worth
(the ablations' investigation of why CLIP on crops sits below ViLD-text on novel categories).
`ClipOnCropsEvaluator` is the evaluation: `vild.evaluation.Evaluator` with its predict step
replaced, so detections, metrics and files are those of every other row.
"""
import dataclasses
from typing import Dict, Tuple

import gin
import numpy as np
import tensorflow as tf

from official.vision.ops import box_ops
from vild import text_embeddings as text_embeddings_lib
from vild.data import augmentation
from vild.evaluation import evaluator as evaluator_lib
from vild.modeling import text_classifier
from vild.modeling import vild_model
from vild.teacher import crops


@gin.configurable
@dataclasses.dataclass(frozen=True)
class ClipOnCropsSpec:
  """How CLIP on cropped regions detects.

  Attributes:
    num_proposals: the top RPN proposals classified per image (at most the detector's
      build_roi_generator.test_num_proposals).
    objectness_weight: score = p_teacher^(1 - w) * objectness^w; 0 = the teacher's class
      probability alone, 0.5 = their geometric mean.
    regress_boxes: refine each proposal with the base detector's class-agnostic box head
      (and crop the refined box); False crops and outputs the raw proposals.
    masks: predict masks with the base detector's class-agnostic mask head (mask AP).
    crop_scales: crop scales around each box, their embeddings summed (ViLD's Eq. 1: 1x and
      1.5x).
    square_crops: crop the square around each box (side = its longer side) instead of
      squashing the box to the teacher's square input.
  """
  num_proposals: int = 100
  objectness_weight: float = 0.5
  regress_boxes: bool = True
  masks: bool = True
  crop_scales: Tuple[float, ...] = crops.VILD_SCALES
  square_crops: bool = False

  def __post_init__(self):
    if self.num_proposals < 1:
      raise ValueError(f"ClipOnCropsSpec.num_proposals must be positive, got "
                       f"{self.num_proposals}.")
    if not 0.0 <= self.objectness_weight <= 1.0:
      raise ValueError(f"ClipOnCropsSpec.objectness_weight must be in [0, 1], got "
                       f"{self.objectness_weight}.")


def square_boxes(boxes: np.ndarray) -> np.ndarray:
  """[..., 4] yxyx boxes -> squares around the same centres, side = the longer side."""
  boxes = np.asarray(boxes, np.float32)
  centre = (boxes[..., :2] + boxes[..., 2:]) / 2
  half = np.max(boxes[..., 2:] - boxes[..., :2], axis=-1, keepdims=True) / 2
  return np.concatenate([centre - half, centre + half], axis=-1)


def combined_scores(class_probabilities: np.ndarray, objectness: np.ndarray,
                    objectness_weight: float) -> np.ndarray:
  """[B, N, C] teacher probabilities, [B, N] objectness -> p^(1 - w) * objectness^w."""
  objectness = np.clip(objectness, 0.0, 1.0)[..., np.newaxis]
  return class_probabilities ** (1.0 - objectness_weight) * objectness ** objectness_weight


class ClipOnCropsEvaluator(evaluator_lib.Evaluator):
  """Evaluates CLIP on cropped regions with the proposals (and heads) of `model`.

  Args:
    model: the base-trained detector (any ViLDModel: only its RPN, class-agnostic box head
      and mask head are used, never its classifier).
    vocabulary, text_embeddings: the evaluation vocabulary and its [C, D] matrix.
    teacher: the vild.teacher.Teacher that embeds the crops (the text embeddings' own).
    spec: ClipOnCropsSpec.
    temperature: of the softmax over cosine similarities.
    **kwargs: Evaluator's (metric, annotation_file, iou_types).
  """

  def __init__(self, model, vocabulary, text_embeddings, teacher, spec: ClipOnCropsSpec,
               temperature: float, **kwargs):
    if not spec.masks:
      kwargs["iou_types"] = tuple(t for t in kwargs.get("iou_types", ("bbox", "segm"))
                                  if t != "segm")
    super().__init__(model, vocabulary, text_embeddings, **kwargs)
    self.spec = spec
    self._temperature = temperature
    self._embedder = crops.RegionEmbedder(teacher, scales=spec.crop_scales, batch_size=256)
    self._unit_text = tf.constant(text_embeddings_lib.l2_normalize(
        np.asarray(text_embeddings, np.float32)))

  @tf.function(autograph=False)
  def _boxes(self, features, proposals, image_shape):
    """The proposals refined by the class-agnostic box head, clipped to the image."""
    region = self.model.region_tower(self.model.roi_aligner(features, proposals),
                                     training=False)
    box_outputs = self.model.box_predictor(region["features"])
    boxes = box_ops.decode_boxes(tf.cast(box_outputs, tf.float32), proposals,
                                 weights=list(vild_model.BOX_REGRESSION_WEIGHTS))
    return box_ops.clip_boxes(boxes, tf.cast(image_shape, tf.float32)[:, tf.newaxis])

  @tf.function(autograph=False)
  def _detect(self, features, boxes, class_scores, image_shape):
    """Per-class NMS by the detector's own generator (zero deltas: boxes are final), then
    masks of the detections by the class-agnostic mask head."""
    detections = self.model.detection_generator(tf.zeros_like(boxes), class_scores, boxes,
                                                image_shape)
    if self.spec.masks and self.model.mask_head is not None:
      mask_features = self.model.mask_roi_aligner(features, detections["detection_boxes"])
      detections["detection_masks"] = tf.sigmoid(self.model.mask_head(
          [mask_features, detections["detection_classes"]], training=False))
    return {k: tf.cast(v, tf.float32) if v.dtype.is_floating else v
            for k, v in detections.items() if k in evaluator_lib.OUTPUT_KEYS}

  def _predict(self, images, labels) -> Tuple[Dict[str, tf.Tensor], Dict[str, tf.Tensor]]:
    features, first_stage = self._propose(images, labels)
    image_shape = augmentation.content_size(labels["image_info"])
    count = self.spec.num_proposals
    proposals = first_stage["proposals"][:, :count]
    objectness = first_stage["proposal_scores"][:, :count].numpy()
    boxes = (self._boxes(features, proposals, image_shape) if self.spec.regress_boxes
             else proposals)
    cut = square_boxes(boxes.numpy()) if self.spec.square_crops else boxes.numpy()
    pixels = evaluator_lib.unnormalized_images(images)
    embeddings = np.stack(list(self._embedder.embed_many(zip(pixels, cut))))  # [B, N, D]
    logits = text_classifier.cosine_logits(tf.constant(embeddings), self._unit_text,
                                           self._temperature)
    probabilities = tf.nn.softmax(logits, axis=-1).numpy()
    scores = combined_scores(probabilities, objectness, self.spec.objectness_weight)
    scores[~crops.has_area(tf.reshape(boxes, [-1, 4])).numpy().reshape(scores.shape[:2])] = 0
    outputs = self._detect(features, boxes, tf.constant(scores, tf.float32), image_shape)
    return outputs, evaluator_lib.passed_labels(labels)
