"""One ViLD training step: forward pass, loss terms, gradients, update.

The step is plain TensorFlow so a trainer can wrap it in `tf.function` and `strategy.run`.
Following the Model Garden convention, the loss is divided by the number of replicas before
differentiation and gradients are summed across replicas by the optimizer.
"""
from typing import Callable, Dict, Mapping, Optional, Sequence

import tensorflow as tf
import tf_keras

from vild import losses as losses_lib
from vild.modeling import vild_model


def forward(model: vild_model.ViLDModel, images: tf.Tensor, labels: Mapping,
            training: bool, text_embeddings: Optional[tf.Tensor] = None,
            base_mask: Optional[tf.Tensor] = None) -> Dict:
  """Calls the model with the input pipeline's labels (see vild.data.targets).

  `base_mask` [C] (True = base class) is used by ViLD-ensemble scoring at inference.
  """
  return model(
      images,
      image_shape=labels["image_info"][:, 1, :],
      anchor_boxes=labels.get("anchor_boxes"),
      gt_boxes=labels.get("gt_boxes"),
      gt_classes=labels.get("gt_classes"),
      gt_masks=labels.get("gt_masks"),
      distill_rois=labels.get("distill_rois") if training else None,
      text_embeddings=text_embeddings,
      base_mask=base_mask,
      sampling_seeds=labels.get("sampling_seeds") if training else None,
      training=training)


def compute_losses(model: vild_model.ViLDModel, loss_fn: losses_lib.ViLDLoss,
                   images: tf.Tensor, labels: Mapping,
                   text_embeddings: Optional[tf.Tensor] = None,
                   class_mask: Optional[tf.Tensor] = None) -> Dict[str, tf.Tensor]:
  """Loss terms of a training forward pass; 'total_loss' adds the model's regularisers."""
  outputs = forward(model, images, labels, training=True, text_embeddings=text_embeddings)
  # Losses in float32 whatever the compute precision (bfloat16 on TPU), as the Model Garden does.
  outputs = tf.nest.map_structure(
      lambda x: tf.cast(x, tf.float32) if x.dtype.is_floating else x, outputs)
  terms = loss_fn(outputs, labels, class_mask=class_mask)
  regularization = (losses_lib.sum_in_order(model.losses) if model.losses
                    else tf.constant(0.0))
  terms["total_loss"] = losses_lib.sum_in_order(
      [terms["model_loss"], tf.cast(regularization, tf.float32)])
  return terms


def train_step(model: vild_model.ViLDModel, optimizer: tf_keras.optimizers.Optimizer,
               loss_fn: losses_lib.ViLDLoss, images: tf.Tensor, labels: Mapping,
               text_embeddings: Optional[tf.Tensor] = None,
               class_mask: Optional[tf.Tensor] = None,
               trainable_variables: Optional[Sequence[tf.Variable]] = None,
               weight_decay_fn: Optional[Callable[[Sequence[tf.Variable]], tf.Tensor]] = None
               ) -> Dict[str, tf.Tensor]:
  """Runs one optimisation step; returns the loss terms (before the replica division) and
  'gradient_norm', the global norm of this replica's loss gradient.

  `weight_decay_fn(variables)` (e.g. vild.training.optimizer.weight_decay_loss) adds the
  'weight_decay_loss' term to 'total_loss'.
  """
  variables = trainable_variables if trainable_variables is not None else (
      model.trainable_variables)
  num_replicas = tf.distribute.get_strategy().num_replicas_in_sync
  with tf.GradientTape() as tape:
    terms = compute_losses(model, loss_fn, images, labels, text_embeddings, class_mask)
    if weight_decay_fn is not None:
      terms["weight_decay_loss"] = weight_decay_fn(variables)
      terms["total_loss"] = losses_lib.sum_in_order(
          [terms["total_loss"], terms["weight_decay_loss"]])
    scaled_loss = terms["total_loss"] / num_replicas
  gradients = tape.gradient(scaled_loss, variables)
  # The norm of this replica's own gradient: a diagnostic, and it turns NaN that ReLUs hide
  # from the loss (relu(NaN) = 0 on CPU) into a visible non-finite term.
  terms["gradient_norm"] = tf.linalg.global_norm(gradients) * num_replicas
  optimizer.apply_gradients(zip(gradients, variables))
  return terms
