"""Scoring over embeddings, with no detector pass: ViLD's classifier applied to stored vectors.

A ViLD detection keeps its region embedding (and, for ViLD-ensemble, its image-branch
embedding), so any vocabulary can score it later:
  class_scores          the model's own scoring (softmax over [bg, classes] of cosine /
                        temperature; ViLD-ensemble fusion) for new text embeddings
  select_detections     per-class NMS over already-decoded boxes (the model's generator)
  vocabulary_probabilities
                        softmax over a vocabulary without background: Pr(a_j | e) of the
                        paper's attribute expansion, and the classifier of CLIP on crops
  attribute_scores      Pr(v_i, a_j | e) = Pr(v_i | e) * Pr(a_j | e)  (p names x q attributes)

Every function reuses the model's layers and functions (TextEmbeddingClassifier, fuse_scores,
ViLDDetectionGenerator), so re-scoring reproduces what the model would have computed.
"""
import dataclasses
from typing import Any, Dict, Optional, Tuple

import numpy as np
import tensorflow as tf

from vild.modeling import detection_generator as detection_generator_lib
from vild.modeling import ensemble
from vild.modeling import text_classifier as text_classifier_lib
from vild.modeling import vild_model


@dataclasses.dataclass(frozen=True)
class ScoringParams:
  """The model's scoring head: all re-scoring needs besides the embeddings.

  Attributes:
    background_embedding: [D] the learned background embedding (as stored, unnormalised).
    temperature: tau of the cosine classifier.
    ensemble_lambda: lambda of ViLD-ensemble fusion, or None to score with the text branch.
  """
  background_embedding: np.ndarray
  temperature: float
  ensemble_lambda: Optional[float] = None

  @classmethod
  def from_model(cls, model: vild_model.ViLDModel,
                 use_ensemble: Optional[bool] = None) -> "ScoringParams":
    """The model's head; `use_ensemble=False` drops ViLD-ensemble fusion (text branch only)."""
    if not isinstance(model.classifier, text_classifier_lib.TextEmbeddingClassifier):
      raise ValueError(
          f"This model classifies with a {type(model.classifier).__name__} (a supervised "
          "baseline): its classes are weights, so it cannot detect or re-score by name. Open-"
          "vocabulary inference needs a ViLD model (text-embedding classifier).")
    fuse = model.uses_ensemble and use_ensemble is not False
    return cls(background_embedding=model.classifier.background_embedding.numpy(),
               temperature=float(model.classifier.temperature),
               ensemble_lambda=float(model.get_config()["ensemble_lambda"]) if fuse else None)

  def to_dict(self) -> Dict[str, Any]:
    return {"background_embedding": [float(v) for v in self.background_embedding],
            "temperature": self.temperature, "ensemble_lambda": self.ensemble_lambda}

  @classmethod
  def from_dict(cls, data: Dict[str, Any]) -> "ScoringParams":
    return cls(background_embedding=np.asarray(data["background_embedding"], np.float32),
               temperature=float(data["temperature"]),
               ensemble_lambda=data.get("ensemble_lambda"))

  def text_classifier(self) -> text_classifier_lib.TextEmbeddingClassifier:
    """The model's classifier layer rebuilt from these parameters."""
    classifier = text_classifier_lib.TextEmbeddingClassifier(
        embedding_dim=len(self.background_embedding), temperature=self.temperature)
    classifier.build(None)
    classifier.background_embedding.assign(self.background_embedding)
    return classifier


def class_scores(params: ScoringParams, region_embeddings: np.ndarray,
                 text_embeddings: np.ndarray, image_embeddings: Optional[np.ndarray] = None,
                 base_mask: Optional[np.ndarray] = None) -> np.ndarray:
  """Per-class scores [K, C] of K region embeddings [K, D] for a vocabulary [C, D].

  ViLD-text: softmax over [bg, classes], background dropped. With `params.ensemble_lambda`
  set, fused with the image branch (`image_embeddings` [K, D] and `base_mask` [C] needed).
  """
  classifier = params.text_classifier()
  text_logits = classifier(tf.constant(region_embeddings, tf.float32)[tf.newaxis],
                           text_embeddings=tf.constant(text_embeddings, tf.float32))
  if params.ensemble_lambda is None:
    return ensemble.text_scores(text_logits)[0].numpy()
  if image_embeddings is None or base_mask is None:
    raise ValueError("ViLD-ensemble re-scoring needs the detections' image embeddings and a "
                     "base mask; or score with the text branch only (use_ensemble=False).")
  image_logits = text_classifier_lib.cosine_logits(
      tf.constant(image_embeddings, tf.float32)[tf.newaxis],
      classifier.resolve_text_embeddings(text_embeddings), params.temperature)
  return ensemble.fuse_scores(text_logits, image_logits, tf.constant(base_mask, tf.bool),
                              params.ensemble_lambda)[0].numpy()


def vocabulary_probabilities(embeddings: np.ndarray, text_embeddings: np.ndarray,
                             temperature: float) -> np.ndarray:
  """[K, D] embeddings, [C, D] vocabulary -> [K, C] softmax of cosine / temperature.

  No background: every embedding is distributed over the vocabulary. This is Pr(a_j | e) for
  an attribute vocabulary, and the classifier of CLIP on cropped regions.
  """
  text = tf.math.l2_normalize(tf.constant(text_embeddings, tf.float32), axis=-1, epsilon=1e-12)
  embeddings = tf.math.l2_normalize(tf.constant(embeddings, tf.float32), axis=-1,
                                    epsilon=1e-12)
  logits = text_classifier_lib.cosine_logits(embeddings[tf.newaxis], text, temperature)
  return tf.nn.softmax(logits, axis=-1)[0].numpy()


def attribute_scores(name_scores: np.ndarray, attribute_probabilities: np.ndarray
                     ) -> np.ndarray:
  """Pr(v_i, a_j | e) = Pr(v_i | e) * Pr(a_j | e): [K, p] and [K, q] -> [K, p, q]."""
  return name_scores[:, :, np.newaxis] * attribute_probabilities[:, np.newaxis, :]


def select_detections(boxes: np.ndarray, scores: np.ndarray,
                      image_size: Tuple[int, int], detection_settings: Dict[str, Any]
                      ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Per-class NMS of N decoded boxes [N, 4] (pixel yxyx) with scores [N, C].

  Runs the model's ViLDDetectionGenerator with zero box deltas (the boxes are already
  decoded), so selection follows exactly the model's rules and settings.

  Returns:
    (indices [K] into the N boxes, class indices [K] 0-based, scores [K]), best first.
  """
  if len(boxes) == 0:
    return np.zeros([0], np.int64), np.zeros([0], np.int64), np.zeros([0], np.float32)
  generator = detection_generator_lib.ViLDDetectionGenerator(**detection_settings)
  out = generator(tf.zeros([1, len(boxes), 4]), tf.constant(scores[np.newaxis],
                                                            tf.float32),
                  tf.constant(boxes[np.newaxis], tf.float32),
                  tf.constant([image_size], tf.float32))
  num = int(out["num_detections"][0])
  return (out["detection_roi_indices"][0, :num].numpy().astype(np.int64),
          out["detection_classes"][0, :num].numpy().astype(np.int64) - 1,
          out["detection_scores"][0, :num].numpy())
