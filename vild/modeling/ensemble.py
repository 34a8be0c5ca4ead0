"""ViLD-ensemble: geometric fusion of the text branch's and the image branch's class scores.

  p_txt = softmax([bg, classes] text logits), background dropped       (ViLD-text branch)
  p_img = softmax(class logits of the distillation branch's embedding)  (ViLD-image branch)
  score = p_txt^lambda     * p_img^(1 - lambda)   for base classes
  score = p_txt^(1-lambda) * p_img^lambda         for novel classes

Base classes trust the branch trained with their boxes; novel classes the one distilled from
the teacher. The base/novel mask comes from the vocabulary at call time, never from the code.
"""
import tensorflow as tf

DEFAULT_LAMBDA = 2.0 / 3.0


def fuse_scores(text_logits: tf.Tensor, image_logits: tf.Tensor, base_mask: tf.Tensor,
                ensemble_lambda: float = DEFAULT_LAMBDA) -> tf.Tensor:
  """Fused per-class scores.

  Args:
    text_logits: [B, N, 1 + C] text-branch logits, background in column 0.
    image_logits: [B, N, C] image-branch logits (no background).
    base_mask: [C] bool, True for base classes.
    ensemble_lambda: lambda in [0, 1].

  Returns:
    [B, N, C] scores in [0, 1].
  """
  log_p_text = tf.nn.log_softmax(text_logits, axis=-1)[..., 1:]
  log_p_image = tf.nn.log_softmax(image_logits, axis=-1)
  text_weight = tf.where(tf.cast(base_mask, tf.bool), ensemble_lambda, 1.0 - ensemble_lambda)
  return tf.exp(text_weight * log_p_text + (1.0 - text_weight) * log_p_image)


def text_scores(text_logits: tf.Tensor) -> tf.Tensor:
  """ViLD-text scores: softmax over [bg, classes], background dropped. [B, N, C]."""
  return tf.nn.softmax(text_logits, axis=-1)[..., 1:]
