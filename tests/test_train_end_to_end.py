"""A tiny ViLD trains and evaluates from the CLI on synthetic TFRecords; under
`set_determinism.deterministic = True` a run killed with SIGKILL and started again continues
bit for bit like an uninterrupted run (next losses, weights and optimizer state), skipping the
same half-written image. The CLI refuses another model in the run's directory and stops on an
undecodable record when no skips are allowed, with messages and no traceback."""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import gin
import numpy as np
import pytest
import tensorflow as tf

from tests import train_toy
from tests.conftest import REPO
from vild import text_embeddings
from vild import vocabulary as vocabulary_lib
from vild.data import conversion
from vild.data import synthetic
from vild.inference import checkpoint as inference_checkpoint

CONFIG = os.path.join(REPO, "configs", "tiny", "synthetic_vild_text.gin")
CORRUPT_RECORD = 6  # in the training shard (read second with seed 0): a half-written JPEG


def _truncate_image(shard, index):
  """Rewrites `shard` with record `index`'s image replaced by the first half of a JPEG."""
  records = list(tf.data.TFRecordDataset(shard).as_numpy_iterator())
  example = tf.train.Example.FromString(records[index])
  feature = example.features.feature
  jpeg = tf.io.encode_jpeg(tf.io.decode_image(feature["image/encoded"].bytes_list.value[0],
                                              channels=3)).numpy()
  feature["image/encoded"].bytes_list.value[:] = [jpeg[:len(jpeg) // 2]]
  feature["image/format"].bytes_list.value[:] = [b"jpeg"]
  records[index] = example.SerializeToString()
  with tf.io.TFRecordWriter(shard) as writer:
    for record in records:
      writer.write(record)
  return feature["image/source_id"].bytes_list.value[0].decode()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
  """A small synthetic world as TFRecords (one training image half-written), 32-d text
  embeddings, and the CLI's gin bindings: (bindings, corrupt shard, its source_id)."""
  root = str(tmp_path_factory.mktemp("synthetic"))
  synthetic.generate(root, synthetic.WorldSpec(num_train_images=12, num_val_images=4,
                                               num_crops=4, image_size=64))
  records = os.path.join(root, "tfrecords")
  conversion.convert(os.path.join(root, "train.json"), os.path.join(root, "images"), records,
                     "train", base_only=True)
  conversion.convert(os.path.join(root, "val.json"), os.path.join(root, "images"), records,
                     "val")
  (shard,) = glob.glob(os.path.join(records, "train-*"))
  source_id = _truncate_image(shard, CORRUPT_RECORD)
  vocab = vocabulary_lib.Vocabulary.from_file(os.path.join(root, "train.json"))
  embeddings = os.path.join(root, "text_embeddings.npy")
  rng = np.random.default_rng(0)
  text_embeddings.save(embeddings, rng.normal(size=(len(vocab), train_toy.EMBEDDING_DIM)),
                       vocab, teacher="random")
  bindings = [
      f"training_vocabulary.text_embeddings_path = '{embeddings}'",
      f"train.train_file_pattern = '{records}/train-*'",
      f"evaluate.eval_file_pattern = '{records}/val-*'",
      f"evaluate.annotation_file = '{root}/val.json'",
      "evaluate.eval_batch_size = 2",
      "Parser.output_size = (64, 64)",
      "train.global_batch_size = 2",
      "ViLDTrainer.steps_per_loop = 1",
      "ViLDTrainer.checkpoint_interval = 2",
      "learning_rate_schedule.warmup_steps = 2",
      "learning_rate_schedule.decay_boundaries = (20,)",
      "learning_rate_schedule.total_steps = 1000",
      "set_determinism.deterministic = True",
      # One bad record in 12 comes by once an epoch: more than the 1 in 1000 allowed by default.
      "build_dataset.max_skipped_fraction = 0.01",
      # Batch-norm moving statistics of the last batch: after a few steps the default's barely
      # moved ones give boxes without area, which evaluation rightly drops (no detections).
      "normalization.momentum = 0.0",
  ] + train_toy.SMALLER
  return bindings, shard, source_id


def _cli(script, model_dir, bindings, gin_file=CONFIG, **kwargs):
  args = ([sys.executable, os.path.join(REPO, "scripts", script), f"--model_dir={model_dir}"] +
          ([f"--gin_file={gin_file}"] if gin_file else []) +
          [f"--gin_param={b}" for b in bindings])
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, **kwargs)


def _latest_step(model_dir):
  state = tf.train.get_checkpoint_state(model_dir)
  return int(state.model_checkpoint_path.rsplit("-", 1)[1]) if state else None


def _scalars(paths, tag):
  values = {}
  for path in paths:
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == tag:
          values[event.step] = float(tf.make_ndarray(value.tensor))
  return values


def test_killed_run_resumes_exactly_then_evaluates(world, tmp_path):
  world, shard, source_id = world
  killed = str(tmp_path / "killed")
  # 1. Train for "ever"; SIGKILL as soon as a checkpoint exists (possibly mid-save).
  run = _cli("train.py", killed, world + ["ViLDTrainer.train_steps = 1000"])
  deadline = time.time() + 400
  while _latest_step(killed) is None and run.poll() is None and time.time() < deadline:
    time.sleep(0.2)
  assert run.poll() is None, run.communicate()[1][-3000:]
  os.kill(run.pid, signal.SIGKILL)
  run.communicate()
  resumed_from = _latest_step(killed)
  assert resumed_from is not None and resumed_from % 2 == 0
  last = resumed_from + 2

  # 2. The same command resumes and runs two more steps, while the whole thing runs
  #    uninterrupted for comparison (in its own process: thread counts are per process).
  earlier_events = set(glob.glob(os.path.join(killed, "train", "events.*")))
  resume = _cli("train.py", killed, world + [f"ViLDTrainer.train_steps = {last}"])
  straight = str(tmp_path / "straight")
  uninterrupted = _cli("train.py", straight, world + [f"ViLDTrainer.train_steps = {last}"])
  _, errors = resume.communicate(timeout=600)
  assert resume.returncode == 0, errors[-3000:]
  assert f"Resumed from {killed}/ckpt-{resumed_from}" in errors
  assert "Deterministic training: op determinism on" in errors
  _, straight_errors = uninterrupted.communicate(timeout=600)
  assert uninterrupted.returncode == 0, straight_errors[-3000:]
  assert (f"skipped undecodable record {CORRUPT_RECORD} of {shard} (source_id {source_id}): "
          "its image (image/encoded) does not decode") in straight_errors

  new_events = set(glob.glob(os.path.join(killed, "train", "events.*"))) - earlier_events
  resumed_losses = _scalars(new_events, "loss/total_loss")
  assert sorted(resumed_losses) == [resumed_from + 1, last]
  straight_losses = _scalars(glob.glob(os.path.join(straight, "train", "events.*")),
                             "loss/total_loss")
  assert sorted(straight_losses) == list(range(1, last + 1))
  np.testing.assert_array_equal([resumed_losses[s] for s in (resumed_from + 1, last)],
                                [straight_losses[s] for s in (resumed_from + 1, last)])
  a = tf.train.load_checkpoint(os.path.join(straight, f"ckpt-{last}"))
  b = tf.train.load_checkpoint(os.path.join(killed, f"ckpt-{last}"))
  keys = [k for k in a.get_variable_to_shape_map()
          if k.startswith(("model/", "optimizer/")) and k.endswith("VARIABLE_VALUE")]
  assert any(k.startswith("optimizer/") for k in keys)  # momentum and step counter
  for key in keys:
    np.testing.assert_array_equal(a.get_tensor(key), b.get_tensor(key), err_msg=key)

  # 3. Another model into the run's directory: refused with a message, before anything.
  config_before = open(os.path.join(killed, "config.gin")).read()
  other = _cli("train.py", killed, world + ["build_vild_model.distillation = 'shared'"])
  _, errors = other.communicate(timeout=400)
  assert other.returncode == 1 and "Traceback" not in errors, errors[-3000:]
  assert "build_vild_model.distillation: 'none' (run) -> 'shared' (now)" in errors
  assert open(os.path.join(killed, "config.gin")).read() == config_before

  # 4. Evaluate the resumed run's last checkpoint from the CLI with the LVIS API, configured by
  #    the config.gin the trainer saved in the run directory.
  evaluate = _cli("evaluate.py", killed, [], gin_file=None)
  _, errors = evaluate.communicate(timeout=400)
  assert evaluate.returncode == 0, errors[-3000:]
  metrics = json.load(open(os.path.join(killed, "eval", f"metrics_{last}.json")))
  for key in ("bbox/AP", "bbox/APr", "bbox/AR@300", "segm/AP", "segm/APr", "segm/APf"):
    assert key in metrics and -1.0 <= metrics[key] <= 1.0
  results = json.load(open(os.path.join(killed, "eval", f"detections_{last}.json")))
  assert results and {"image_id", "category_id", "bbox", "score",
                      "segmentation"} <= set(results[0])

  # 5. The run directory is what vild.inference loads (config.gin + checkpoints).
  gin.clear_config()
  loaded = inference_checkpoint.load_model(killed)
  assert loaded.checkpoint_path.endswith(f"ckpt-{last}") and loaded.input_size == (64, 64)


def test_undecodable_record_stops_the_cli_with_its_name_when_no_skips_are_allowed(
    world, tmp_path):
  """The issue-17 crash ("jpeg::Uncompress failed", no shard, no record) as it is now."""
  world, shard, source_id = world
  run = _cli("train.py", str(tmp_path / "run"),
             world + ["build_dataset.max_skipped_fraction = 0.0",
                      "set_determinism.deterministic = False",
                      "ViLDTrainer.train_steps = 12"])
  _, errors = run.communicate(timeout=600)
  assert run.returncode == 1, errors[-3000:]
  assert "Traceback" not in errors, errors[-3000:]
  assert (f"Cannot decode record {CORRUPT_RECORD} of {shard} (source_id {source_id}): its "
          "image (image/encoded) does not decode") in errors
  assert "build_dataset.max_skipped_fraction > 0" in errors
