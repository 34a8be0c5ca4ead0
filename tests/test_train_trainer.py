"""The trainer loop: summaries, checkpoints, Ctrl-C and preemption, the NaN guard, init reports."""
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


def _poisoned(dataset_fn, signal_batch, nan_batch, signum):
  """Batch `signal_batch` sends `signum` when read; batches from `nan_batch` on are NaN."""
  def send_signal():
    signal.raise_signal(signum)
    return np.int64(0)

  def poison(index, batch):
    images, labels = batch
    sent = tf.cond(tf.equal(index, signal_batch),
                   lambda: tf.py_function(send_signal, [], tf.int64),
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


def test_ctrl_c_saves_and_stops_then_resumes_and_stops_on_nan(tmp_path):
  """Ctrl-C (issue 17 item 7) ends the loop with a checkpoint instead of a traceback."""
  gin.parse_config_file(TINY_GIN)
  gin.parse_config(SHORT_SCHEDULE + train_toy.SMALLER)
  model_dir = str(tmp_path / "run")
  vocab, embeddings = train_toy.toy_vocabulary(), train_toy.toy_text_embeddings()
  trainer = trainer_lib.ViLDTrainer(
      model_dir, _poisoned(train_toy.toy_dataset_fn(), signal_batch=2, nan_batch=4,
                           signum=signal.SIGINT),
      embeddings, vocab, global_batch_size=2, train_steps=10, steps_per_loop=1,
      checkpoint_interval=2, max_checkpoints=2, mask_novel_logits=True)
  assert not any("text_embeddings" in v.name for v in trainer.model.variables)

  before = signal.getsignal(signal.SIGINT)  # SIG_IGN under nohup, default_int_handler else
  with pytest.raises(trainer_lib.Preempted, match="SIGINT at step 3") as stopped:
    trainer.train()
  assert stopped.value.exit_code == 130
  assert tf.train.latest_checkpoint(model_dir).endswith("ckpt-3")
  assert signal.getsignal(signal.SIGINT) is before  # The caller's handler restored.

  with pytest.raises(trainer_lib.NonFiniteLossError) as failure:
    trainer.train()
  message = str(failure.value)
  assert "at step 5" in message and "gradient_norm nan" in message and "text_loss" in message
  # ckpt-4's weights computed step 5's loss, so the good one is ckpt-3 (written on Ctrl-C).
  assert f"Last good checkpoint: {model_dir}/ckpt-3" in message
  assert f"rm {model_dir}/ckpt-4.*" in message
  assert sorted(os.path.basename(p) for p in glob.glob(os.path.join(model_dir, "ckpt-*.index"))
                ) == ["ckpt-3.index", "ckpt-4.index"]  # max_checkpoints=2.

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


@pytest.mark.parametrize("signum, exit_code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_stop_signals_set_a_flag_and_a_second_ctrl_c_aborts_hard(signum, exit_code):
  trainer = trainer_lib.ViLDTrainer.__new__(trainer_lib.ViLDTrainer)  # only the handlers
  trainer._stop_signal = None  # pylint: disable=protected-access
  before = signal.getsignal(signum)
  with trainer._stop_signals_save_and_stop():  # pylint: disable=protected-access
    signal.raise_signal(signum)  # handled: no exception, no exit
    assert trainer._stop_signal == signum  # pylint: disable=protected-access
    assert trainer_lib.STOP_SIGNALS[signum] == exit_code
    if signum == signal.SIGINT:  # the next Ctrl-C kills at once, even inside a TF call
      assert signal.getsignal(signal.SIGINT) is signal.SIG_DFL
  assert signal.getsignal(signum) is before


def test_batch_size_must_match_the_pipeline(tmp_path):
  gin.parse_config_file(TINY_GIN)
  with pytest.raises(ValueError, match="yields batches of 2 images but"):
    trainer_lib.ViLDTrainer(str(tmp_path), train_toy.toy_dataset_fn(global_batch_size=2),
                        train_toy.toy_text_embeddings(), train_toy.toy_vocabulary(),
                        global_batch_size=4)


def test_distilling_model_needs_region_embeddings_of_its_dimension(tmp_path):
  gin.parse_config_file(TINY_GIN)
  gin.parse_config(["build_vild_model.distillation = 'shared'"])
  text = train_toy.toy_text_embeddings()
  with pytest.raises(ValueError, match="yields no distill_features; set Parser.distill_feature"):
    trainer_lib.ViLDTrainer(str(tmp_path / "a"), train_toy.toy_dataset_fn(),
                            text, train_toy.toy_vocabulary(), global_batch_size=2)
  gin.parse_config([f"build_vild_model.embedding_dim = {2 * train_toy.EMBEDDING_DIM}"])
  with pytest.raises(ValueError, match=f"have D = {train_toy.EMBEDDING_DIM} .*embedding_dim"
                                       f" = {2 * train_toy.EMBEDDING_DIM}"):
    trainer_lib.ViLDTrainer(str(tmp_path / "b"), train_toy.toy_dataset_fn(num_distill_rois=4),
                            np.concatenate([text, text], axis=1), train_toy.toy_vocabulary(),
                            global_batch_size=2)


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
