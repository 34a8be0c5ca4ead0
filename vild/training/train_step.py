"""One ViLD training step: forward pass, loss terms, gradients, update.

The step is plain TensorFlow so a trainer can wrap it in `tf.function` and `strategy.run`.
Following the Model Garden convention, the loss is divided by the number of replicas before
differentiation and gradients are summed across replicas by the optimizer.
"""
from typing import Callable, Dict, Mapping, Optional, Sequence

import tensorflow as tf
import tf_keras

from vild import losses as losses_lib
from vild.data import augmentation
from vild.modeling import vild_model


# Input diagnostics returned with the loss terms (means over this replica's images): how many
# instances per image build_training_labels.max_num_instances dropped, and the fraction of
# images that lost any. The trainer writes them under input/ and warns when they are not 0.
CLIPPED_INSTANCES = "clipped_instances_per_image"
CLIPPED_IMAGES = "clipped_image_fraction"
INPUT_STATS = (CLIPPED_INSTANCES, CLIPPED_IMAGES)


def input_stats(labels: Mapping) -> Dict[str, tf.Tensor]:
  """The INPUT_STATS of a batch whose labels count their clipped instances (else none)."""
  if "num_clipped_instances" not in labels:
    return {}
  clipped = tf.cast(labels["num_clipped_instances"], tf.float32)
  return {CLIPPED_INSTANCES: tf.reduce_mean(clipped),
          CLIPPED_IMAGES: tf.reduce_mean(tf.cast(clipped > 0, tf.float32))}


def forward(model: vild_model.ViLDModel, images: tf.Tensor, labels: Mapping,
            training: bool, text_embeddings: Optional[tf.Tensor] = None,
            base_mask: Optional[tf.Tensor] = None) -> Dict:
  """Calls the model with the input pipeline's labels (see vild.data.targets).

  `base_mask` [C] (True = base class) is used by ViLD-ensemble scoring at inference.
  Proposals and detections are clipped to the image content (not the padding), as the
  official code does.
  """
  return model(
      images,
      image_shape=augmentation.content_size(labels["image_info"]),
      anchor_boxes=labels.get("anchor_boxes"),
      gt_boxes=labels.get("gt_boxes"),
      gt_classes=labels.get("gt_classes"),
      gt_masks=labels.get("gt_masks"),
      distill_rois=labels.get("distill_rois") if training else None,
      distill_roi_valid=labels.get("distill_roi_valid") if training else None,
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
  """Runs one optimisation step; returns the loss terms (before the replica division),
  'gradient_norm', the global norm of this replica's loss gradient, and the INPUT_STATS.

  `weight_decay_fn(variables)` (e.g. vild.training.optimizer.weight_decay_loss) adds the
  'weight_decay_loss' term to 'total_loss'. With a LossScaleOptimizer (mixed_float16) the
  loss is scaled before differentiation and the gradients unscaled; 'loss_scale' is reported.
  """
  variables = trainable_variables if trainable_variables is not None else (
      model.trainable_variables)
  num_replicas = tf.distribute.get_strategy().num_replicas_in_sync
  loss_scaling = isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer)
  with tf.GradientTape() as tape:
    terms = compute_losses(model, loss_fn, images, labels, text_embeddings, class_mask)
    if weight_decay_fn is not None:
      terms["weight_decay_loss"] = weight_decay_fn(variables)
      terms["total_loss"] = losses_lib.sum_in_order(
          [terms["total_loss"], terms["weight_decay_loss"]])
    scaled_loss = terms["total_loss"] / num_replicas
    if loss_scaling:
      scaled_loss = optimizer.get_scaled_loss(scaled_loss)
  gradients = tape.gradient(scaled_loss, variables)
  if loss_scaling:
    gradients = optimizer.get_unscaled_gradients(gradients)
  # The norm of this replica's own gradient: a diagnostic, and it turns NaN that ReLUs hide
  # from the loss (relu(NaN) = 0 on CPU) into a visible non-finite term.
  terms["gradient_norm"] = tf.linalg.global_norm(gradients) * num_replicas
  if loss_scaling:
    # float16 overflows while the loss scale settles: the optimizer skips such a step and
    # halves the scale, so a non-finite gradient is not an error here (and never reaches the
    # weights). Its norm counts as 0; a scale that keeps falling shows in 'loss_scale'.
    terms["gradient_norm"] = tf.where(tf.math.is_finite(terms["gradient_norm"]),
                                      terms["gradient_norm"], 0.0)
    terms["loss_scale"] = tf.cast(optimizer.loss_scale, tf.float32)
  optimizer.apply_gradients(zip(gradients, variables))
  terms.update(input_stats(labels))
  return terms
