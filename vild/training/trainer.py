"""The training loop: a gin-configured ViLD run on any tf.distribute strategy, resumable exactly.

  trainer = ViLDTrainer(model_dir, dataset_fn, text_embeddings, vocabulary, global_batch_size,
                        strategy)                  # gin: ViLDTrainer.* and the builders
  history = trainer.train()

In model_dir: ckpt-<step> checkpoints, train/ TensorBoard logs, config.gin (the full gin
config, from which evaluation and vild.inference rebuild the model), operative_config.gin.

Each loop of `steps_per_loop` steps is one tf.function call:
  next batch per replica -> strategy.run(train_step) -> loss terms averaged over replicas.
Between loops: the NaN/inf guard, TensorBoard summaries (every loss term, learning rate,
examples/second, the input's clipped-instance counts), a console line with ETA (and a warning
when instances beyond build_training_labels.max_num_instances were dropped), a checkpoint
every `checkpoint_interval` steps, and on SIGTERM (TPU/VM preemption) or SIGINT (Ctrl-C) a
checkpoint and a clean stop.

Guards: a rerun into an existing model_dir first compares its gin config with the run's
config.gin (vild.training.run_config: a model-changing difference stops it before anything is
touched); a checkpoint is never written with non-finite weights or optimizer slots, and a
non-finite loss names the last checkpoint written before the loss left its range
(vild.training.divergence); an input pipeline's data error (vild.data.undecodable_records)
surfaces as that DataError, naming the shard and record.

Exact resume: a checkpoint holds the model, the optimizer (momentum and step counter) and, when
one host feeds all replicas, the tf.data iterator itself (`exact_resume_input`; distributed
iterators cannot be checkpointed, so batches are read from one host iterator and handed to
the replicas). A killed run restarted with the same command continues from its last
checkpoint at the same step, optimiser state and data position.

The dataset function takes a `tf.distribute.InputContext` and returns per-replica batches
`(images, labels)` in the layout of `vild.training.train_step.forward`, so any input pipeline
works (the TFRecord one in vild.data, see vild.training.experiment; toy scenes in tests).
"""
import contextlib
import os
import signal
import time
from typing import Callable, Dict, List, Optional, Sequence, Union

from absl import logging
import gin
import numpy as np
import tensorflow as tf
import tf_keras

from vild import losses as losses_lib
from vild import text_embeddings as text_embeddings_lib
from vild import vocabulary as vocabulary_lib
from vild.data import undecodable_records
from vild.modeling import factory
from vild.modeling import learned_classifier
from vild.training import checkpoints
from vild.training import divergence
from vild.training import optimizer as optimizer_lib
from vild.training import run_config
from vild.training import strategy as strategy_lib
from vild.training import train_step as train_step_lib
from vild.utils import io
from vild.utils import progress as progress_lib

DatasetFn = Callable[[tf.distribute.InputContext], tf.data.Dataset]
CONFIG_NAME = run_config.CONFIG_NAME  # the run's full gin config (vild.inference reads it)
ConfigMismatchError = run_config.ConfigMismatchError
DataError = undecodable_records.DataError
# Signals that stop a run cleanly: finish the loop, save, raise Preempted (with exit code).
STOP_SIGNALS = {signal.SIGTERM: 143, signal.SIGINT: 130}
_DIVERGENCE_FIXES = ("Lower the learning rate (learning_rate_schedule.base_learning_rate), "
                     "enable sgd_optimizer.gradient_clip_norm, or check the input data.")


class NonFiniteLossError(RuntimeError):
  """A loss became NaN or inf; the message names the step, the terms and the last good
  checkpoint."""


class NonFiniteWeightsError(NonFiniteLossError):
  """Weights or optimizer slots became NaN or inf; they were not saved."""


class Preempted(RuntimeError):
  """The job got SIGTERM (preemption) or SIGINT (Ctrl-C); a checkpoint was written and the
  run can be resumed. `exit_code` is 143 (SIGTERM) or 130 (SIGINT)."""

  def __init__(self, message: str, exit_code: int = 143):
    super().__init__(message)
    self.exit_code = exit_code


@gin.configurable(denylist=["model_dir", "dataset_fn", "text_embeddings", "vocabulary",
                            "global_batch_size", "strategy", "seed"])
class ViLDTrainer:
  """A ViLD training run in `model_dir`.

  Args:
    model_dir: checkpoints (ckpt-<step>), TensorBoard logs (train/) and the operative gin.
    dataset_fn: InputContext -> tf.data.Dataset of per-replica batches (see module doc).
    text_embeddings: [C, D] text embeddings of the training vocabulary (frozen data).
    vocabulary: the training vocabulary (gt_classes index it; its novel flags feed
      mask_novel_logits).
    global_batch_size: images per step over all replicas (paper 256).
    strategy: a tf.distribute strategy (vild.training.strategy.select_strategy); default
      TensorFlow's default strategy.
    train_steps: total optimiser steps (paper 180000).
    steps_per_loop: steps per tf.function call; summaries and the console line per loop.
    checkpoint_interval: save every this many steps (and at the end).
    max_checkpoints: how many checkpoints to keep.
    mask_novel_logits: zero the novel classes' logits in the ViLD-text loss (the official
      "mask rare").
    init_checkpoint: a checkpoint to initialise from when model_dir has none.
    init_parts: parts of the model to initialise (model.checkpoint_items names), None = all.
    exact_resume_input: checkpoint the input iterator (one input host only).
    jit_compile: XLA-compile the replica step: 'auto' (GPUs; TPUStrategy compiles it
      anyway; not on CPUs, where it is slower), True or False.
    seed: seed of Python, NumPy and TensorFlow.
  """

  def __init__(self,
               model_dir: str,
               dataset_fn: DatasetFn,
               text_embeddings: np.ndarray,
               vocabulary: vocabulary_lib.Vocabulary,
               global_batch_size: int,
               strategy: Optional[tf.distribute.Strategy] = None,
               train_steps: int = 180000,
               steps_per_loop: int = 100,
               checkpoint_interval: int = 1000,
               max_checkpoints: int = 5,
               mask_novel_logits: bool = False,
               init_checkpoint: Optional[str] = None,
               init_parts: Optional[Sequence[str]] = None,
               exact_resume_input: bool = True,
               jit_compile: Union[str, bool] = "auto",
               seed: int = 0):
    for name, value in (("train_steps", train_steps), ("steps_per_loop", steps_per_loop),
                        ("checkpoint_interval", checkpoint_interval),
                        ("max_checkpoints", max_checkpoints)):
      if value <= 0:
        raise ValueError(f"ViLDTrainer.{name} must be positive, got {value}.")
    # Before anything touches model_dir: may this config resume the run in it?
    config_changes = run_config.check_rerun(model_dir)
    self.model_dir = model_dir
    self._strategy = strategy or tf.distribute.get_strategy()
    self._train_steps = train_steps
    self._steps_per_loop = steps_per_loop
    self._checkpoint_interval = checkpoint_interval
    self._global_batch_size = global_batch_size
    self._is_chief = strategy_lib.is_chief(self._strategy)
    self.jit_compile = strategy_lib.resolve_jit_compile(self._strategy, jit_compile)
    # What strategy.run calls per replica: XLA-compiled on its own where asked.
    self._step_fn = (tf.function(self._replica_step, jit_compile=True, autograph=False)
                     if self.jit_compile else self._replica_step)
    tf_keras.utils.set_random_seed(seed)
    tf.io.gfile.makedirs(model_dir)

    num_replicas = self._strategy.num_replicas_in_sync
    self._host_input = exact_resume_input and strategy_lib.num_input_hosts(self._strategy) == 1
    if exact_resume_input and not self._host_input:
      logging.warning("Several input hosts: the input position is not checkpointed; a resumed "
                      "run restarts its data stream.")
    dataset, image_size = self._make_dataset(dataset_fn, global_batch_size, num_replicas)
    self._set_vocabulary(text_embeddings, vocabulary, mask_novel_logits)
    with self._strategy.scope():
      self._build(image_size)
      self._iterator = iter(dataset)
    logging.info("Training %d of %d variables; global batch %d = %d replicas x %d.",
                 len(self._variables), len(self.model.trainable_variables), global_batch_size,
                 num_replicas, global_batch_size // num_replicas)
    self._restore_or_init(max_checkpoints, init_checkpoint, init_parts)
    if self._is_chief:  # What evaluation and inference rebuild the model from.
      run_config.write(model_dir, self.step, changed=bool(config_changes))
    self._summary_writer = (tf.summary.create_file_writer(os.path.join(model_dir, "train"))
                            if self._is_chief else tf.summary.create_noop_writer())
    self._term_names: List[str] = []
    self._stop_signal: Optional[int] = None

  # ------------------------------------------------------------------------------------------
  # Set-up.
  def _make_dataset(self, dataset_fn, global_batch_size, num_replicas):
    if global_batch_size % num_replicas:
      raise ValueError(f"ViLDTrainer.global_batch_size={global_batch_size} is not divisible by "
                       f"the {num_replicas} replicas.")
    num_hosts = 1 if self._host_input else strategy_lib.num_input_hosts(self._strategy)
    context = tf.distribute.InputContext(num_hosts, 0, num_replicas)
    dataset = dataset_fn(context)
    images_spec, self._labels_spec = dataset.element_spec[:2]
    per_replica = global_batch_size // num_replicas
    if images_spec.shape[0] != per_replica:
      raise ValueError(
          f"The dataset yields batches of {images_spec.shape[0]} images but "
          f"ViLDTrainer.global_batch_size={global_batch_size} over {num_replicas} replicas needs "
          f"{per_replica} per replica (with drop_remainder=True); make the input pipeline "
          "use InputContext.get_per_replica_batch_size(global batch size).")
    if self._host_input:
      return dataset, tuple(images_spec.shape[1:3])
    return (self._strategy.distribute_datasets_from_function(dataset_fn),
            tuple(images_spec.shape[1:3]))

  def _check_distillation_labels(self):
    """A distilling model needs records with teacher embeddings of its own dimension."""
    if self.model.distillation == "none":
      return
    features = self._labels_spec.get("distill_features")
    if features is None:
      raise ValueError(
          f"The model distills (build_vild_model.distillation = '{self.model.distillation}') "
          "but the input pipeline yields no distill_features; set Parser.distill_feature_dim "
          "and train on records with region embeddings (scripts/compute_region_embeddings.py).")
    if features.shape[-1] != self.model.embedding_dim:
      raise ValueError(
          f"The records' region embeddings have D = {features.shape[-1]} "
          f"(Parser.distill_feature_dim) but build_vild_model.embedding_dim = "
          f"{self.model.embedding_dim}; both must be the teacher's embedding size.")

  def _set_vocabulary(self, text_embeddings, vocabulary, mask_novel_logits):
    matrix = text_embeddings_lib.validate(text_embeddings, vocabulary.source,
                                          num_classes=len(vocabulary))
    # A constant inside the step: static shape for TPU, and never a trained variable.
    self._text_embeddings = tf.constant(text_embeddings_lib.l2_normalize(matrix))
    self._text_embeddings_source = vocabulary.source  # the file, for messages
    self._class_mask = tf.constant(vocabulary.base_mask) if mask_novel_logits else None
    logging.info("Training vocabulary: %s%s", vocabulary.describe(),
                 " (novel logits masked)" if mask_novel_logits else "")

  def _build(self, image_size):
    """Model, optimizer (slots created now, so a restore fills them) and trained variables."""
    self.model = factory.build_vild_model()
    factory.build_variables(self.model, image_size)
    text_embeddings_lib.validate(self._text_embeddings.numpy(), self._text_embeddings_source,
                                 embedding_dim=self.model.embedding_dim)
    self._check_distillation_labels()
    num_classes = int(self._text_embeddings.shape[0])
    if isinstance(self.model.classifier, learned_classifier.LearnedClassifier) and (
        self.model.classifier.num_classes != num_classes):
      raise ValueError(
          f"build_classifier.num_learned_classes = {self.model.classifier.num_classes} but the "
          f"training vocabulary has {num_classes} categories; set it to {num_classes}.")
    self._schedule = optimizer_lib.learning_rate_schedule(
        global_batch_size=self._global_batch_size)
    self.optimizer = strategy_lib.with_loss_scaling(
        optimizer_lib.sgd_optimizer(self._schedule))
    self._variables = optimizer_lib.trainable_variables(self.model)
    self.optimizer.build(self._variables)
    self._loss_fn = losses_lib.ViLDLoss()

  def _restore_or_init(self, max_checkpoints, init_checkpoint, init_parts):
    """Resumes from model_dir's last checkpoint, else initialises from `init_checkpoint`."""
    tracked = dict(model=self.model, optimizer=self.optimizer)
    if self._host_input:
      tracked["data"] = self._iterator
    self._checkpoint = tf.train.Checkpoint(**tracked)
    self._manager = tf.train.CheckpointManager(
        self._checkpoint, self._checkpoint_dir(), max_to_keep=max_checkpoints)
    restored = checkpoints.restore_latest(self._checkpoint, self._manager)
    # The loss range continues where the restored checkpoint left it.
    self._health = divergence.CheckpointHealth(self.model_dir)
    self._loss_range = self._health.range_at(self.step)
    if restored and self._loss_range.excursion:
      logging.warning("Resuming from %s, written while the loss was out of its recent range "
                      "(since %s). %s", restored, self._loss_range.excursion.describe(),
                      self._restart_advice(self._loss_range.excursion))
    if restored is None and init_checkpoint:
      report = checkpoints.init_from_checkpoint(self.model, init_checkpoint, init_parts)
      if self._is_chief:
        report.save(os.path.join(self.model_dir, "init_report.json"))

  def _checkpoint_dir(self) -> str:
    if self._is_chief:
      return self.model_dir
    # Every worker must take part in a distributed save; only the chief's copy is kept.
    resolver = self._strategy.cluster_resolver
    return os.path.join(self.model_dir, f".worker_{resolver.task_type}_{resolver.task_id}")

  # ------------------------------------------------------------------------------------------
  # The compiled part.
  @tf.autograph.experimental.do_not_convert  # plain Python; see _train_loop
  def _replica_step(self, images, labels):
    return train_step_lib.train_step(
        self.model, self.optimizer, self._loss_fn, images, labels,
        text_embeddings=self._text_embeddings, class_mask=self._class_mask,
        trainable_variables=self._variables,
        weight_decay_fn=optimizer_lib.weight_decay_loss)

  @tf.autograph.experimental.do_not_convert  # plain Python; see _train_loop
  def _next_batch(self, iterator):
    if not self._host_input:
      return next(iterator)
    # Consecutive per-replica batches of the host iterator, one per replica, as
    # distribute_datasets_from_function would hand them out.
    batches = [next(iterator) for _ in range(self._strategy.num_replicas_in_sync)]
    return self._strategy.experimental_distribute_values_from_function(
        lambda context: batches[context.replica_id_in_sync_group])

  @tf.function
  def _train_loop(self, iterator, num_steps):
    """Runs `num_steps` steps; returns [num_steps, num_terms] replica-averaged loss terms.

    Only this loop needs AutoGraph. The methods it calls are marked do_not_convert: they have no
    tensor-dependent control flow, and AutoGraph's cached conversion of bound methods was seen to
    call them with `self` twice after many other functions had been traced in one process.
    """
    history = tf.TensorArray(tf.float32, size=num_steps)
    for i in tf.range(num_steps):
      images, labels = self._next_batch(iterator)
      terms = self._strategy.run(self._step_fn, args=(images, labels))
      history = history.write(i, self._replica_mean(terms))
    return history.stack()

  @tf.autograph.experimental.do_not_convert  # plain Python; see _train_loop
  def _replica_mean(self, terms) -> tf.Tensor:
    """[num_terms] loss terms averaged over replicas, in the order of `_term_names`."""
    self._term_names = sorted(terms)  # Set while tracing; Python-side bookkeeping only.
    return tf.stack([self._strategy.reduce(tf.distribute.ReduceOp.MEAN, terms[name], axis=None)
                     for name in self._term_names])

  # ------------------------------------------------------------------------------------------
  @property
  def step(self) -> int:
    return int(self.optimizer.iterations.numpy())

  def learning_rate(self, step: int) -> float:
    """The rate of the update that takes the optimizer from `step` to `step + 1`."""
    return float(self._schedule(step)) if callable(self._schedule) else float(self._schedule)

  def train(self) -> Dict[str, List[float]]:
    """Trains to `train_steps`; returns this call's per-step loss terms and 'step'."""
    step = self.step
    self._stop_signal = None
    history: Dict[str, List[float]] = {"step": []}
    progress = progress_lib.Progress(self._train_steps, step)
    logging.info("Training from step %d to %d in %s.", step, self._train_steps, self.model_dir)
    with self._stop_signals_save_and_stop():
      while step < self._train_steps:
        num_steps = min(self._steps_per_loop, self._train_steps - step,
                        self._checkpoint_interval - step % self._checkpoint_interval)
        start = time.monotonic()
        rows = self._run_loop(num_steps)
        elapsed = time.monotonic() - start
        self._check_loss_range(rows, step)
        if not history["step"] and self._is_chief:  # Every configurable has run by now.
          io.write_text_atomic(os.path.join(self.model_dir, "operative_config.gin"),
                               gin.operative_config_str())
        for offset, row in enumerate(rows):
          history["step"].append(step + offset + 1)
          for name, value in zip(self._term_names, row):
            history.setdefault(name, []).append(float(value))
        step += num_steps
        self._write_summaries(rows, step, num_steps / max(elapsed, 1e-9))
        self._warn_if_instances_clipped(rows, step - num_steps + 1, step)
        progress.update(step)
        logging.info("%s | %s | lr %.5g", progress.describe(), self._describe(rows[-1]),
                     self.learning_rate(step - 1))
        stopping = self._stop_signal is not None
        if stopping or step % self._checkpoint_interval == 0 or step == self._train_steps:
          path = self._save(step)
        if stopping:
          name = signal.Signals(self._stop_signal).name
          raise Preempted(f"{name} at step {step}: saved {path}; rerun the same command to "
                          "resume.", exit_code=STOP_SIGNALS[self._stop_signal])
    self._summary_writer.flush()
    return history

  def _run_loop(self, num_steps: int) -> np.ndarray:
    """[num_steps, num_terms] loss terms of one loop; raises the input's DataError as such."""
    try:
      return self._train_loop(self._iterator, tf.constant(num_steps)).numpy()
    except tf.errors.InvalidArgumentError as e:
      error = undecodable_records.data_error(e)
      if error is None:
        raise
      raise error from None  # The message names shard and record; the graph trace would not.

  def _save(self, step: int) -> str:
    """Saves a checkpoint (with its loss-range record); never one holding NaN or inf."""
    bad = divergence.non_finite_variables(
        list(self.model.variables) + list(self.optimizer.variables))
    if bad:
      raise NonFiniteWeightsError(
          f"After step {step}, {len(bad)} weights or optimizer slots hold NaN or inf (e.g. "
          f"{', '.join(bad[:3])}); they were not saved. {self._divergence_report()}")
    if self._is_chief:
      self._health.record(step, self._loss_range, keep=self._manager.checkpoints)
    try:
      return self._manager.save(checkpoint_number=step)
    except tf.errors.FailedPreconditionError as e:
      if "stateful" not in str(e):
        raise
      raise ValueError(
          f"Cannot checkpoint the input pipeline: it holds a stateful op ({e.message.strip()}). "
          "Make its randomness stateless (tf.random.stateless_* seeded from the element "
          "index), or set the dataset's options().experimental_external_state_policy to "
          "WARN to checkpoint it without that state, or set "
          "ViLDTrainer.exact_resume_input=False.") from e

  def _describe(self, row) -> str:
    return " ".join(f"{name} {value:.4f}" for name, value in zip(self._term_names, row)
                    if name not in train_step_lib.INPUT_STATS)

  def _warn_if_instances_clipped(self, rows: np.ndarray, first_step: int, last_step: int):
    """A console line when the input pipeline dropped instances in this loop's batches."""
    if train_step_lib.CLIPPED_IMAGES not in self._term_names:
      return
    totals = {name: int(round(rows[:, self._term_names.index(name)].sum() *
                              self._global_batch_size))
              for name in train_step_lib.INPUT_STATS}
    if totals[train_step_lib.CLIPPED_IMAGES]:
      logging.warning(
          "Steps %d-%d: %d of %d images had more instances than "
          "build_training_labels.max_num_instances; %d instances were left out of their "
          "targets (their objects train as background). The official recipe keeps 300.",
          first_step, last_step, totals[train_step_lib.CLIPPED_IMAGES],
          len(rows) * self._global_batch_size, totals[train_step_lib.CLIPPED_INSTANCES])

  def _check_loss_range(self, rows: np.ndarray, first_step: int) -> None:
    """Tracks the loss's range (vild.training.divergence); stops on a non-finite term."""
    total = self._term_names.index("total_loss")
    for offset, row in enumerate(rows):
      finite = bool(np.isfinite(row).all())
      self._loss_range.update(first_step + offset + 1, float(row[total]), finite)
      if not finite:
        raise NonFiniteLossError(
            f"Loss or gradient is not finite at step {first_step + offset + 1}: "
            f"{self._describe(row)}. {self._divergence_report()}")

  def _divergence_report(self) -> str:
    """Where the loss left its range, the last good checkpoint, how to resume from it."""
    excursion = self._loss_range.excursion
    report = []
    if excursion is not None:
      report.append(f"The loss left its recent range at {excursion.describe()}.")
    else:  # The weights diverged while the loss still looked normal.
      excursion = divergence.Excursion(self.step + 1, float("nan"), None)
    report += [self._restart_advice(excursion), _DIVERGENCE_FIXES]
    return " ".join(report)

  def _restart_advice(self, excursion: divergence.Excursion) -> str:
    good = self._health.last_good(self._manager.checkpoints, excursion)
    return divergence.restart_advice(self.model_dir, good, self._manager.checkpoints)

  def _write_summaries(self, rows: np.ndarray, step: int, steps_per_second: float) -> None:
    with self._summary_writer.as_default(step=step):
      for name, values in zip(self._term_names, rows.T):
        group = "input" if name in train_step_lib.INPUT_STATS else "loss"
        tf.summary.scalar(f"{group}/{name}", float(values.mean()))
      tf.summary.scalar("learning_rate", self.learning_rate(step - 1))
      tf.summary.scalar("steps_per_second", steps_per_second)
      tf.summary.scalar("examples_per_second", steps_per_second * self._global_batch_size)

  @contextlib.contextmanager
  def _stop_signals_save_and_stop(self):
    """On SIGTERM (a preempted TPU VM or spot VM) or SIGINT (Ctrl-C): finish the loop, save,
    stop. After a first SIGINT, a second one kills the process at once (no save)."""
    def handler(signum, frame):
      del frame
      self._stop_signal = signum
      if signum == signal.SIGINT:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        logging.warning("Ctrl-C: saving a checkpoint after the current loop, then stopping; "
                        "press Ctrl-C again to abort at once without saving.")
      else:
        logging.warning("SIGTERM: saving a checkpoint after the current loop.")
    try:
      previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    except ValueError:  # Not the main thread: leave signals to the caller.
      yield
      return
    try:
      yield
    finally:
      for s, handler_before in previous.items():
        signal.signal(s, handler_before)
