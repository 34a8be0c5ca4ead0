"""A diverging run never saves non-finite weights and names a checkpoint from before the
divergence; a rerun into its model_dir with another model is refused before anything is
touched; following the advice (delete the later checkpoints, lower the learning rate, rerun)
resumes from the named checkpoint (issue 17 items 6 and 8). One story, so the model is traced
only twice."""
import glob
import hashlib
import logging
import os
import re

import gin
import numpy as np
import pytest
import tensorflow as tf

from tests import train_toy
from tests.conftest import TINY_GIN
from vild.training import divergence
from vild.training import trainer as trainer_lib

# 0.01 for four updates, then 300: the loss explodes a few steps later.
DIVERGING = [
    "learning_rate_schedule.base_learning_rate = 0.01",
    "learning_rate_schedule.warmup_steps = 0",
    "learning_rate_schedule.decay_boundaries = (5,)",
    "learning_rate_schedule.decay_factor = 30000.0",
    "learning_rate_schedule.total_steps = 100",
]


def _trainer(model_dir, train_steps):
  return trainer_lib.ViLDTrainer(
      model_dir, train_toy.toy_dataset_fn(), train_toy.toy_text_embeddings(),
      train_toy.toy_vocabulary(), global_batch_size=2, train_steps=train_steps,
      steps_per_loop=1, checkpoint_interval=2, max_checkpoints=10)


def _step(path):
  return int(path.rsplit("-", 1)[1])


def _checkpoints(model_dir):
  return sorted((p[:-len(".index")] for p in glob.glob(os.path.join(model_dir, "ckpt-*.index"))),
                key=_step)


def _largest_value(path):
  reader = tf.train.load_checkpoint(path)
  values = [reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
            if k.startswith(("model/", "optimizer/")) and k.endswith("VARIABLE_VALUE")]
  return max(float(np.max(np.abs(v))) for v in values if v.dtype.kind == "f" and v.size)


def _snapshot(directory):
  files = {}
  for root, _, names in os.walk(directory):
    for name in names:
      path = os.path.join(root, name)
      files[os.path.relpath(path, directory)] = hashlib.sha256(
          open(path, "rb").read()).hexdigest()
  return files


def test_diverged_run_names_a_good_checkpoint_and_reruns_are_checked(tmp_path, caplog):
  gin.parse_config_file(TINY_GIN)
  gin.parse_config(train_toy.SMALLER + DIVERGING)
  model_dir = str(tmp_path / "run")

  # 1. The run diverges: stopped, nothing non-finite on disk, a good checkpoint named.
  with pytest.raises(trainer_lib.NonFiniteLossError) as failure:
    _trainer(model_dir, train_steps=40).train()
  message = str(failure.value)
  saved = _checkpoints(model_dir)
  for path in saved:
    assert np.isfinite(_largest_value(path)), path
  left_at = int(re.search(r"left its recent range at step (\d+)", message).group(1))
  good = re.search(r"Last good checkpoint: (\S+) ", message).group(1)
  assert _step(good) <= left_at - 2, message  # its weights gave an in-range loss
  assert _largest_value(good) < 1e4, message  # the old guard named one holding ~1e30
  later = [p for p in saved if _step(p) > _step(good)]
  assert later and f"rm {' '.join(p + '.*' for p in later)}" in message
  assert "ViLDTrainer.init_checkpoint" in message

  # 2. Another architecture into this model_dir: refused, naming the binding; untouched.
  before = _snapshot(model_dir)
  gin.parse_config(["build_region_tower.num_convs = 2"])
  with pytest.raises(trainer_lib.ConfigMismatchError,
                     match=r"build_region_tower.num_convs: 1 \(run\) -> 2 \(now\)"):
    _trainer(model_dir, train_steps=40)
  assert _snapshot(model_dir) == before
  gin.parse_config(["build_region_tower.num_convs = 1"])

  # 3. The advice: delete the later checkpoints, lower the learning rate, rerun. The changed
  #    bindings are allowed and logged, and the run's previous config is kept.
  for path in later:
    for name in glob.glob(path + ".*"):
      os.remove(name)
  gin.parse_config(["learning_rate_schedule.decay_factor = 0.1"])
  with caplog.at_level(logging.WARNING):
    resumed = _trainer(model_dir, train_steps=_step(good) + 2)
  assert resumed.step == _step(good)
  assert "learning_rate_schedule.decay_factor: 30000.0 (run) -> 0.1 (now)" in caplog.text
  previous = open(os.path.join(model_dir, f"config.before_step_{_step(good)}.gin")).read()
  assert "learning_rate_schedule.decay_factor = 30000.0" in previous
  assert "decay_factor = 0.1" in open(os.path.join(model_dir, "config.gin")).read()
  history = resumed.train()
  assert np.isfinite(history["total_loss"]).all() and max(history["total_loss"]) < 1e3


def test_loss_range_and_last_good_checkpoint(tmp_path):
  loss_range = divergence.LossRange()
  for step, loss in enumerate([5.0, 4.0, 6.0, 300.0, 4.5], start=1):
    assert loss_range.update(step, loss)  # 300 < 100 x median 5: a spike, still in range
  assert not loss_range.update(6, 1e4) and loss_range.excursion.step == 6
  assert not loss_range.update(7, float("nan"))
  assert loss_range.excursion.step == 6 and "100 x its recent median 5" in (
      loss_range.excursion.describe())
  assert loss_range.update(8, 5.0) and loss_range.excursion is None

  health = divergence.CheckpointHealth(str(tmp_path))
  paths = [str(tmp_path / f"ckpt-{s}") for s in (2, 4, 6)]
  health.record(2, divergence.LossRange([5.0]), keep=[])
  health.record(4, divergence.LossRange([5.0], divergence.Excursion(3, 1e4, 5.0)), keep=paths)
  health.record(6, divergence.LossRange([5.0]), keep=paths)
  reloaded = divergence.CheckpointHealth(str(tmp_path))
  assert reloaded.range_at(4).excursion.step == 3
  excursion = divergence.Excursion(7, 1e5, 5.0)
  # ckpt-6 gave step 7's loss (out of range); ckpt-4 was written during an earlier excursion.
  assert reloaded.last_good(paths, excursion) == paths[0]
  assert reloaded.last_good(paths, divergence.Excursion(3, 1e5, 5.0)) is None
  # Checkpoints from before the record existed count when they precede the excursion.
  assert reloaded.last_good([str(tmp_path / "ckpt-1")], excursion).endswith("ckpt-1")
