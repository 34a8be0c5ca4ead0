"""The ViLD-text classifier: cosine similarity to frozen text embeddings plus a learned background.

  logits = [cos(e_r, e_bg), cos(e_r, t_1), ..., cos(e_r, t_C)] / temperature

`t_i` are the L2-normalised text embeddings of the vocabulary (data, never trained, never in a
checkpoint); `e_bg` is the only weight. The text-embedding matrix can be replaced at any time
with any number of rows C (`set_text_embeddings`), or passed per call, so one trained model
detects any vocabulary without rebuilding.
"""
from typing import Any, Dict, Optional

import tensorflow as tf
import tf_keras

from vild import text_embeddings as text_embeddings_lib


class Untracked:
  """Holds a variable out of Keras' reach: text embeddings are data, not checkpointed weights.

  Restoring a checkpoint trained on one vocabulary must never silently replace the vocabulary a
  user has set, so the matrix never enters `model.weights` or checkpoints.
  """

  def __init__(self, value):
    self.value = value


def cosine_logits(region_embeddings: tf.Tensor, text_embeddings: tf.Tensor,
                  temperature: float) -> tf.Tensor:
  """[B, N, D] x [C, D] -> [B, N, C] cosine similarities / temperature (inputs unit-norm)."""
  return tf.einsum("bnd,cd->bnc", region_embeddings, text_embeddings) / temperature


@tf_keras.utils.register_keras_serializable(package="vild")
class TextEmbeddingClassifier(tf_keras.layers.Layer):
  """Call: `classifier(region_embeddings [B, N, D], text_embeddings=None)` -> [B, N, 1 + C].

  Column 0 is background. `text_embeddings` [C, D] overrides the stored matrix for this call
  (serving with a matrix chosen at request time); gradients never flow into it.
  """
  reads_region_features = False  # it reads region embeddings

  def __init__(self, embedding_dim: int, temperature: float = 0.01, **kwargs):
    # float32 under mixed precision: Keras would otherwise round the region embeddings to
    # bfloat16 on the way in, and 1 / temperature (100) amplifies that rounding to ~0.1.
    kwargs.setdefault("dtype", "float32")
    super().__init__(**kwargs)
    if temperature <= 0:
      raise ValueError(f"TextEmbeddingClassifier: temperature must be > 0, got {temperature}.")
    self._embedding_dim = embedding_dim
    self._temperature = temperature
    self._text_embeddings = Untracked(None)

  @property
  def embedding_dim(self) -> int:
    return self._embedding_dim

  @property
  def temperature(self) -> float:
    return self._temperature

  def build(self, input_shape):
    self.background_embedding = self.add_weight(
        name="background_embedding", shape=(self._embedding_dim,),
        initializer=tf_keras.initializers.RandomNormal(stddev=0.01), trainable=True)
    super().build(input_shape)

  def set_text_embeddings(self, matrix, source: str = "<matrix>") -> None:
    """Stores a [C, D] matrix (any C); rows are L2-normalised. Checked for D and NaN/inf."""
    matrix = text_embeddings_lib.l2_normalize(text_embeddings_lib.validate(
        matrix, source, embedding_dim=self._embedding_dim))
    holder = self._text_embeddings
    if holder.value is None:
      with tf.init_scope():
        holder.value = tf.Variable(matrix, trainable=False, shape=tf.TensorShape(
            [None, self._embedding_dim]), name="text_embeddings")
    else:
      holder.value.assign(matrix)

  @property
  def text_embeddings(self) -> Optional[tf.Variable]:
    """The stored [C, D] matrix, or None if none was set."""
    return self._text_embeddings.value

  @property
  def num_classes(self) -> Optional[int]:
    value = self._text_embeddings.value
    return None if value is None else int(tf.shape(value)[0])

  def resolve_text_embeddings(self, text_embeddings=None) -> tf.Tensor:
    """The matrix to score against: the given one (normalised here) or the stored one."""
    if text_embeddings is not None:
      matrix = tf.math.l2_normalize(tf.cast(text_embeddings, tf.float32), axis=-1,
                                    epsilon=1e-12)
    elif self._text_embeddings.value is not None:
      matrix = tf.convert_to_tensor(self._text_embeddings.value)
    else:
      raise ValueError(
          "TextEmbeddingClassifier: no text embeddings. Call "
          "model.set_text_embeddings(matrix) with a [num_classes, dim] matrix (see "
          "vild.text_embeddings.load) or pass text_embeddings= to the call.")
    # Text embeddings are frozen: data, not parameters.
    return tf.stop_gradient(matrix)

  def call(self, region_embeddings: tf.Tensor, text_embeddings=None) -> tf.Tensor:
    matrix = self.resolve_text_embeddings(text_embeddings)
    # float32 under mixed precision too: 1 / temperature (100) would amplify bfloat16 rounding.
    background = tf.math.l2_normalize(tf.cast(self.background_embedding, tf.float32),
                                      epsilon=1e-12)[tf.newaxis]
    classifier = tf.concat([background, matrix], axis=0)  # [1 + C, D]
    return cosine_logits(tf.cast(region_embeddings, tf.float32), classifier, self._temperature)

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "embedding_dim": self._embedding_dim,
            "temperature": self._temperature}
