"""The trainer loop: summaries, checkpoints, preemption (SIGTERM), the NaN guard, init reports."""
import glob
import os
import signal

import gin
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tests import train_toy
from tests.conftest import TINY_GIN
from vild.training import trainer as trainer_lib

SHORT_SCHEDULE = [
    "learning_rate_schedule.base_learning_rate = 0.01",
    "learning_rate_schedule.warmup_steps = 2",
    "learning_rate_schedule.decay_boundaries = (50,)",
    "learning_rate_schedule.total_steps = 100",
]


def _poisoned(dataset_fn, sigterm_batch, nan_batch):
  """Batch `sigterm_batch` sends SIGTERM when read; batches from `nan_batch` on are NaN."""
  def send_sigterm():
    signal.raise_signal(signal.SIGTERM)
    return np.int64(0)

  def poison(index, batch):
    images, labels = batch
    sent = tf.cond(tf.equal(index, sigterm_batch),
                   lambda: tf.py_function(send_sigterm, [], tf.int64),
                   lambda: tf.constant(0, tf.int64))
    with tf.control_dependencies([sent]):
      images = tf.where(index >= nan_batch, images * np.nan, images)
    return images, labels

  def fn(context):
    options = tf.data.Options()
    options.experimental_optimization.inject_prefetch = False  # Read each batch on demand.
    options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.WARN
    return dataset_fn(context).enumerate().map(poison).with_options(options)
  return fn


def _event_tags(directory):
  tags = set()
  for path in glob.glob(os.path.join(directory, "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      tags.update(value.tag for value in event.summary.value)
  return tags


def test_run_preempts_resumes_and_stops_on_nan(tmp_path):
  gin.parse_config_file(TINY_GIN)
  gin.parse_config(SHORT_SCHEDULE + train_toy.SMALLER)
  model_dir = str(tmp_path / "run")
  vocab, embeddings = train_toy.toy_vocabulary(), train_toy.toy_text_embeddings()
  trainer = trainer_lib.ViLDTrainer(
      model_dir, _poisoned(train_toy.toy_dataset_fn(), sigterm_batch=2, nan_batch=4),
      embeddings, vocab, global_batch_size=2, train_steps=10, steps_per_loop=1,
      checkpoint_interval=2, max_checkpoints=1, mask_novel_logits=True)
  assert not any("text_embeddings" in v.name for v in trainer.model.variables)

  with pytest.raises(trainer_lib.Preempted, match="SIGTERM at step 3"):
    trainer.train()
  assert tf.train.latest_checkpoint(model_dir).endswith("ckpt-3")
  assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # Handler removed again.

  with pytest.raises(trainer_lib.NonFiniteLossError) as failure:
    trainer.train()
  message = str(failure.value)
  assert "at step 5" in message and "gradient_norm nan" in message
  assert "ckpt-4" in message and "text_loss" in message
  assert [os.path.basename(p) for p in glob.glob(os.path.join(model_dir, "ckpt-*.index"))] == [
      "ckpt-4.index"]  # max_checkpoints=1.

  tags = _event_tags(os.path.join(model_dir, "train"))
  for tag in ("loss/total_loss", "loss/text_loss", "loss/rpn_score_loss", "loss/box_loss",
              "loss/mask_loss", "loss/weight_decay_loss", "learning_rate",
              "examples_per_second"):
    assert tag in tags
  operative = open(os.path.join(model_dir, "operative_config.gin")).read()
  assert "learning_rate_schedule.base_learning_rate = 0.01" in operative
  assert "weight_decay_loss.weight_decay = 4e-05" in operative

  # A new run initialised from this one restores every variable and says so.
  restarted = trainer_lib.ViLDTrainer(
      str(tmp_path / "finetune"), train_toy.toy_dataset_fn(), embeddings, vocab,
      global_batch_size=2, train_steps=10, init_checkpoint=model_dir)
  assert restarted.step == 0
  report = open(tmp_path / "finetune" / "init_report.json").read()
  assert '"not_restored": []' in report and "ckpt-4" in report


def test_batch_size_must_match_the_pipeline(tmp_path):
  gin.parse_config_file(TINY_GIN)
  with pytest.raises(ValueError, match="yields batches of 2 images but"):
    trainer_lib.ViLDTrainer(str(tmp_path), train_toy.toy_dataset_fn(global_batch_size=2),
                        train_toy.toy_text_embeddings(), train_toy.toy_vocabulary(),
                        global_batch_size=4)


def test_bfloat16_mixed_precision_trains(tmp_path):
  """The TPU default policy: variables float32, compute bfloat16, losses float32."""
  gin.parse_config_file(TINY_GIN)
  gin.parse_config(SHORT_SCHEDULE + train_toy.SMALLER + ["build_vild_model.include_mask = False"])
  tf_keras.mixed_precision.set_global_policy("mixed_bfloat16")
  try:
    trainer = trainer_lib.ViLDTrainer(
        str(tmp_path), train_toy.toy_dataset_fn(), train_toy.toy_text_embeddings(),
        train_toy.toy_vocabulary(), global_batch_size=2, train_steps=1)
    history = trainer.train()
  finally:
    tf_keras.mixed_precision.set_global_policy("float32")
  assert np.isfinite(history["total_loss"]).all()
  assert trainer.model.trainable_variables[0].dtype == tf.float32
