"""The paper's optimiser: momentum SGD, linear warm-up, step decay (or cosine), kernel-only L2.

  learning rate: linear warm-up from `warmup_learning_rate` to `base_learning_rate` over
                 `warmup_steps`, then x`decay_factor` at EVERY step in `decay_boundaries`
                 (the official ViLD config lists three steps but two levels, so its code
                 silently dropped the third), or a cosine decay to `total_steps`.
  batch scaling: with `reference_batch_size` set, the base and warm-up rates are the ones of
                 that batch and are scaled linearly to the run's global batch
                 (lr = base * batch / reference; the LVIS recipe: 0.32 at 256), logged.
  weight decay:  an L2 term `weight_decay * sum(v^2) / 2` over the variables whose name
                 matches `pattern` (kernels: not BN, not biases), added to the loss as the
                 official code does. The learned background embedding is decayed only with
                 `decay_background_embedding` (the official code's rule: its background is a
                 dense kernel, so its '.*(kernel|weight):0$' decays it; configs/lvis).
  momentum:      tf_keras SGD (velocity = m * velocity - lr * gradient, the rate inside the
                 velocity), or with `momentum_form = 'tf1'` TF1's MomentumOptimizer, the
                 official code's (accumulation = m * accumulation + gradient, step
                 lr * accumulation). They differ while the rate changes (warm-up, decays).
  frozen:        variables whose name matches a `frozen_patterns` regex are not trained. The
                 text embeddings are never variables of the model at all (they are data).
  clipping:      optional global-norm clipping of the replica-summed gradient.

The schedule and SGD are the Model Garden's and Keras' own (official.modeling.optimization,
tf_keras.optimizers); this module only wires ViLD's recipe into them.
"""
import re
from typing import List, Optional, Sequence

from absl import logging
import gin
import tensorflow as tf
import tf_keras

from official.modeling.optimization import lr_schedule
from vild import losses as losses_lib

SCHEDULES = ("step", "cosine")
# Kernels of convolutions and dense layers (the official regex is '.*(kernel|weight):0$').
KERNEL_PATTERN = r"(^|/)(kernel|depthwise_kernel|weight):0$"
BACKGROUND_PATTERN = r"(^|/)background_embedding:0$"  # TextEmbeddingClassifier's one weight
MOMENTUM_FORMS = ("keras", "tf1")


@gin.configurable(denylist=["global_batch_size"])
def learning_rate_schedule(base_learning_rate: float = 0.32,
                           warmup_steps: int = 1000,
                           warmup_learning_rate: float = 0.0032,
                           schedule: str = "step",
                           decay_boundaries: Sequence[int] = (162000, 171000),
                           decay_factor: float = 0.1,
                           total_steps: int = 180000,
                           cosine_final_fraction: float = 0.0,
                           reference_batch_size: Optional[int] = None,
                           global_batch_size: Optional[int] = None):
  """The learning rate as a function of the optimiser step (the number of updates so far).

  Returns a Keras LearningRateSchedule (a float when it is constant).

  Step decay: the rate at step s is base * decay_factor ** (number of boundaries b <= s).
  Cosine: from base at the end of warm-up to base * cosine_final_fraction at total_steps.
  Paper (VILD.md): 0.32, warm-up 1000 steps from 0.0032, x0.1 at 162k and 171k, 180k steps.

  Args (besides the schedule's shape above):
    reference_batch_size: the global batch `base_learning_rate` and `warmup_learning_rate`
      are meant for (LVIS recipe: 256); both are multiplied by global_batch_size /
      reference_batch_size (the linear scaling rule). None: the rates are used as given.
    global_batch_size: the run's images per step (the trainer passes it; not a gin setting).
  """
  if reference_batch_size is not None:
    base_learning_rate, warmup_learning_rate = scaled_learning_rates(
        base_learning_rate, warmup_learning_rate, reference_batch_size, global_batch_size)
  if schedule not in SCHEDULES:
    raise ValueError(f"learning_rate_schedule.schedule: {schedule!r} is not one of "
                     f"{SCHEDULES}.")
  boundaries = [int(b) for b in decay_boundaries]
  if schedule == "step":
    if boundaries != sorted(set(boundaries)):
      raise ValueError(f"learning_rate_schedule.decay_boundaries: {boundaries} must be "
                       "strictly increasing.")
    if boundaries and not warmup_steps <= boundaries[0]:
      raise ValueError(f"learning_rate_schedule.decay_boundaries: the first boundary "
                       f"({boundaries[0]}) falls inside the warm-up ({warmup_steps} steps); "
                       "move it after the warm-up or shorten warmup_steps.")
    if boundaries and boundaries[-1] >= total_steps:
      raise ValueError(f"learning_rate_schedule.decay_boundaries: boundary {boundaries[-1]} "
                       f"is not before total_steps={total_steps}, so it would never apply.")
  if warmup_steps < 0 or warmup_steps >= total_steps:
    raise ValueError(f"learning_rate_schedule.warmup_steps: {warmup_steps} must be in "
                     f"[0, total_steps={total_steps}).")

  if schedule == "step" and boundaries:
    # Keras' PiecewiseConstantDecay switches after a boundary (step > b); ViLD's step
    # decay applies at the boundary itself (step >= b), hence b - 1.
    after_warmup = tf_keras.optimizers.schedules.PiecewiseConstantDecay(
        boundaries=[b - 1 for b in boundaries],
        values=[base_learning_rate * decay_factor ** i for i in range(len(boundaries) + 1)])
  elif schedule == "step":
    after_warmup = base_learning_rate
  else:
    after_warmup = lr_schedule.CosineDecayWithOffset(
        offset=warmup_steps, initial_learning_rate=base_learning_rate,
        decay_steps=total_steps - warmup_steps, alpha=cosine_final_fraction)
  if warmup_steps == 0:
    return after_warmup
  return lr_schedule.LinearWarmup(after_warmup, warmup_steps, warmup_learning_rate)


def scaled_learning_rates(base_learning_rate: float, warmup_learning_rate: float,
                          reference_batch_size: int, global_batch_size: Optional[int]):
  """(base, warm-up) rates scaled by global_batch_size / reference_batch_size, logged."""
  if global_batch_size is None or global_batch_size <= 0 or reference_batch_size <= 0:
    raise ValueError(
        f"learning_rate_schedule.reference_batch_size = {reference_batch_size} scales the "
        f"learning rate to the run's global batch, but that is {global_batch_size}; build the "
        "schedule with global_batch_size= (the trainer does), or unset reference_batch_size.")
  factor = global_batch_size / reference_batch_size
  logging.info("Learning rate %.6g (warm-up from %.6g) = %.6g (%.6g) x global batch %d / %d "
               "(learning_rate_schedule.reference_batch_size, the linear scaling rule).",
               base_learning_rate * factor, warmup_learning_rate * factor, base_learning_rate,
               warmup_learning_rate, global_batch_size, reference_batch_size)
  return base_learning_rate * factor, warmup_learning_rate * factor


@gin.configurable
def sgd_optimizer(learning_rate, momentum: float = 0.9, nesterov: bool = False,
                  gradient_clip_norm: float = 0.0,
                  momentum_form: str = "keras") -> tf_keras.optimizers.Optimizer:
  """Momentum SGD (paper: 0.9). `gradient_clip_norm` > 0 clips the global norm of the
  gradient after it is summed across replicas (Keras aggregates before it clips).
  `momentum_form`: 'keras' (tf_keras SGD) or 'tf1' (the official code's MomentumOptimizer
  update, TF1MomentumSGD); see the module docstring."""
  if gradient_clip_norm < 0:
    raise ValueError(f"sgd_optimizer.gradient_clip_norm: {gradient_clip_norm} must be >= 0 "
                     "(0 disables clipping).")
  if momentum_form not in MOMENTUM_FORMS:
    raise ValueError(f"sgd_optimizer.momentum_form: {momentum_form!r} is not one of "
                     f"{MOMENTUM_FORMS}.")
  if momentum_form == "tf1" and nesterov:
    raise ValueError("sgd_optimizer: momentum_form='tf1' has no Nesterov variant here; set "
                     "nesterov=False or momentum_form='keras'.")
  optimizer_class = TF1MomentumSGD if momentum_form == "tf1" else tf_keras.optimizers.SGD
  return optimizer_class(learning_rate=learning_rate, momentum=momentum, nesterov=nesterov,
                         global_clipnorm=gradient_clip_norm or None)


@tf_keras.utils.register_keras_serializable(package="vild")
class TF1MomentumSGD(tf_keras.optimizers.SGD):
  """tf_keras SGD with TF1 MomentumOptimizer's update (the official ViLD code's optimiser):

    accumulation <- momentum * accumulation + gradient
    variable     <- variable - learning_rate * accumulation

  tf_keras keeps the learning rate inside its velocity (velocity <- momentum * velocity -
  learning_rate * gradient), so the two agree at a constant rate and differ while it changes:
  during warm-up, and after each decay, where TF1's accumulated gradients are stepped at the
  new rate at once. The slot ('m', the accumulation) has tf_keras SGD's layout.
  """

  def update_step(self, gradient, variable):
    learning_rate = tf.cast(self.learning_rate, variable.dtype)
    momentum = tf.cast(self.momentum, variable.dtype)
    accumulation = self.momentums[self._index_dict[self._var_key(variable)]]
    accumulation.assign(momentum * accumulation + tf.convert_to_tensor(gradient))
    variable.assign_sub(learning_rate * accumulation)


def matching(variables: Sequence[tf.Variable], patterns: Sequence[str]) -> List[tf.Variable]:
  """The variables whose name matches any of the regexes (re.search)."""
  compiled = [re.compile(p) for p in patterns]
  return [v for v in variables if any(p.search(v.name) for p in compiled)]


@gin.configurable
def trainable_variables(model: tf_keras.Model,
                        frozen_patterns: Sequence[str] = ()) -> List[tf.Variable]:
  """The model's trainable variables minus those matching `frozen_patterns`.

  Raises if a pattern matches nothing (a typo would otherwise silently train everything).
  """
  variables = list(model.trainable_variables)
  for pattern in frozen_patterns:
    if not matching(variables, [pattern]):
      raise ValueError(f"trainable_variables.frozen_patterns: {pattern!r} matches no trainable "
                       "variable of the model; check the regex against the variable names "
                       "(e.g. 'resnet' or 'residual_block').")
  frozen = {id(v) for v in matching(variables, frozen_patterns)}
  return [v for v in variables if id(v) not in frozen]


@gin.configurable
def weight_decay_loss(variables: Sequence[tf.Variable], weight_decay: float = 4e-5,
                      pattern: str = KERNEL_PATTERN,
                      decay_background_embedding: bool = False) -> tf.Tensor:
  """weight_decay * sum(v^2) / 2 over the variables matching `pattern` (paper 4e-5), and the
  learned background embedding when `decay_background_embedding` (the official rule)."""
  decayed = matching(variables, [pattern] + ([BACKGROUND_PATTERN]
                                             if decay_background_embedding else []))
  if weight_decay == 0.0 or not decayed:
    return tf.constant(0.0)
  return weight_decay * losses_lib.sum_in_order(
      [tf.nn.l2_loss(tf.cast(v, tf.float32)) for v in decayed])
