"""The supervised baselines' classifiers: learned class weights instead of text embeddings.

  LinearClassifier   Mask R-CNN's own: a dense layer over the region tower's FC features to
                     1 + C logits, softmax cross-entropy (official.vision's DetectionHead, the
                     official code's 'class-predict'). The paper's supervised rows.
  LearnedClassifier  ViLD-text's cosine form with learned class rows (below).

ViLD's classifier is a text-embedding matrix (data); the paper's supervised baselines (Mask
R-CNN trained on base, or base+novel with RFS) learn one weight vector per class instead, so
they can only ever score the classes they were trained on: a base-only supervised model scores
exactly 0 on novel categories. Same call interface as `TextEmbeddingClassifier`, so the model
and losses are unchanged; text embeddings passed to it are ignored apart from a size check.

LearnedClassifier: the logits have ViLD-text's form, cosine / temperature, with the class rows learned instead of
given by text. Region embeddings are unit vectors, so a plain linear layer on them starts with
logits near 0 and needs its weights to grow ~1/temperature-fold before it is as confident as
the text classifier: with the same budget it trained far worse, which made the supervised rows
of a comparison a weak baseline rather than the architecture with learned classes.
"""
from typing import Any, Dict, Optional

import tensorflow as tf
import tf_keras

from vild.modeling import text_classifier


@tf_keras.utils.register_keras_serializable(package="vild")
class LearnedClassifier(tf_keras.layers.Layer):
  """Call: `classifier(region_embeddings [B, N, D], text_embeddings=None)` -> [B, N, 1 + C].

  logits = [cos(e_r, w_bg), cos(e_r, w_1), ..., cos(e_r, w_C)] / temperature, every w learned.
  Column 0 is background. C is fixed at construction: the classes are weights.
  """
  reads_region_features = False  # it reads region embeddings

  def __init__(self, num_classes: int, embedding_dim: int, temperature: float = 0.01,
               **kwargs):
    # float32 under mixed precision: Keras would otherwise round the region embeddings to
    # bfloat16 on the way in, and 1 / temperature (100) amplifies that rounding to ~0.1.
    kwargs.setdefault("dtype", "float32")
    super().__init__(**kwargs)
    if num_classes <= 0:
      raise ValueError(f"LearnedClassifier: num_classes must be positive, got {num_classes}.")
    if temperature <= 0:
      raise ValueError(f"LearnedClassifier: temperature must be > 0, got {temperature}.")
    self._num_classes = num_classes
    self._embedding_dim = embedding_dim
    self._temperature = temperature

  def build(self, input_shape):
    self.class_embeddings = self.add_weight(  # [1 + C, D], row 0 background
        name="class_embeddings", shape=(self._num_classes + 1, self._embedding_dim),
        initializer=tf_keras.initializers.RandomNormal(stddev=0.01), trainable=True)
    super().build(input_shape)

  @property
  def embedding_dim(self) -> int:
    return self._embedding_dim

  @property
  def num_classes(self) -> int:
    return self._num_classes

  @property
  def temperature(self) -> float:
    return self._temperature

  def set_text_embeddings(self, matrix, source: str = "<matrix>") -> None:
    """Accepts a vocabulary only of the trained size: the classes themselves cannot change."""
    self._check_num_classes(tf.shape(matrix)[0] if not hasattr(matrix, "shape") else
                            matrix.shape[0], source)

  def _check_num_classes(self, num_classes: Optional[int], source: str) -> None:
    if num_classes is not None and int(num_classes) != self._num_classes:
      raise ValueError(
          f"{source}: {num_classes} classes given to a supervised model with a learned "
          f"classifier over {self._num_classes} classes; its classes are weights and cannot "
          "change. Evaluate it with its training vocabulary, or train a ViLD model "
          "(text-embedding classifier) for open-vocabulary detection.")

  def call(self, region_embeddings: tf.Tensor, text_embeddings=None) -> tf.Tensor:
    if text_embeddings is not None:
      self._check_num_classes(text_embeddings.shape[0], "text_embeddings")
    classes = tf.math.l2_normalize(tf.cast(self.class_embeddings, tf.float32), axis=-1,
                                   epsilon=1e-12)
    # float32 under mixed precision, as the text classifier: 1 / temperature amplifies rounding.
    return text_classifier.cosine_logits(tf.cast(region_embeddings, tf.float32), classes,
                                         self._temperature)

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "num_classes": self._num_classes,
            "embedding_dim": self._embedding_dim, "temperature": self._temperature}


@tf_keras.utils.register_keras_serializable(package="vild")
class LinearClassifier(LearnedClassifier):
  """Call: `classifier(region_features [B, N, F], text_embeddings=None)` -> [B, N, 1 + C].

  Mask R-CNN's classifier: logits = features @ W + b, W [F, 1 + C] ~ N(0, 0.01^2), b = 0, column
  0 background (official.vision DetectionHead, the official code's 'class-predict'). It reads
  the region tower's FC features, not its embeddings (`reads_region_features`); the model then
  freezes the tower's embedding projection, which no loss reads. `embedding_dim` is kept for
  the model's shape checks; `temperature` is not used.
  """
  reads_region_features = True

  def build(self, input_shape):
    self.class_weights = tf_keras.layers.Dense(
        self._num_classes + 1, kernel_initializer=tf_keras.initializers.RandomNormal(
            stddev=0.01), bias_initializer="zeros", name="class_predict")
    tf_keras.layers.Layer.build(self, input_shape)

  def call(self, region_features: tf.Tensor, text_embeddings=None) -> tf.Tensor:
    if text_embeddings is not None:
      self._check_num_classes(text_embeddings.shape[0], "text_embeddings")
    # float32 logits under mixed precision, as the other classifiers.
    return tf.cast(self.class_weights(region_features), tf.float32)
