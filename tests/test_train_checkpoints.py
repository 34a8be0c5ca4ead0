"""Checkpoint keys, initialisation with its report, and skipping incomplete checkpoints."""
import json
import os

import gin
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import TINY_GIN
from vild.modeling import factory
from vild.training import checkpoints


def _model(seed):
  gin.parse_config_file(TINY_GIN)
  tf.random.set_seed(seed)
  model = factory.build_vild_model(image_size=(64, 64))
  gin.clear_config()
  return model


@pytest.fixture(scope="module")
def models():
  return _model(1), _model(2)


def _equal(a, b):
  return all(np.array_equal(x.numpy(), y.numpy()) for x, y in zip(a.variables, b.variables))


def test_variable_keys_are_the_keys_tensorflow_writes(models, tmp_path):
  root = tf.train.Checkpoint(model=models[0])
  written = {name for name, _ in tf.train.list_variables(root.write(str(tmp_path / "c")))}
  keys = checkpoints.variable_keys(root)
  assert set(keys) == written - {"_CHECKPOINTABLE_OBJECT_GRAPH"}
  assert len(keys) == len(models[0].variables)


def test_init_whole_model_restores_everything(models, tmp_path):
  source, target = models
  path = tf.train.Checkpoint(model=source).write(str(tmp_path / "ckpt-5"))
  assert not _equal(source, target)
  report = checkpoints.init_from_checkpoint(target, path)
  assert len(report.restored) == len(target.variables)
  assert not report.not_restored and not report.shape_mismatch and not report.unused
  assert _equal(source, target)
  report.save(str(tmp_path / "report.json"))
  assert json.load(open(tmp_path / "report.json"))["checkpoint"] == path


def test_init_backbone_only_from_a_whole_or_a_backbone_checkpoint(models, tmp_path):
  source = models[0]
  whole = tf.train.Checkpoint(model=source).write(str(tmp_path / "whole"))
  backbone_only = tf.train.Checkpoint(backbone=source.backbone).write(str(tmp_path / "bb"))
  for seed, path in ((3, whole), (4, backbone_only)):
    target = _model(seed)
    report = checkpoints.init_from_checkpoint(target, path, parts=["backbone"])
    assert len(report.restored) == len(target.backbone.variables)
    assert not report.not_restored
    assert _equal(source.backbone, target.backbone)
    assert not np.array_equal(source.rpn_head.variables[0].numpy(),
                              target.rpn_head.variables[0].numpy())


def test_init_reports_what_it_could_not_restore(models, tmp_path):
  source, target = models
  path = tf.train.Checkpoint(backbone=source.backbone).write(str(tmp_path / "bb"))
  report = checkpoints.init_from_checkpoint(target, path)  # Whole model from a backbone.
  assert len(report.restored) == len(target.backbone.variables)
  assert len(report.not_restored) == len(target.variables) - len(target.backbone.variables)
  assert any(key.startswith("model/rpn_head/") for key in report.not_restored)
  with pytest.raises(ValueError, match="not parts of this model"):
    checkpoints.init_from_checkpoint(target, path, parts=["backbone", "teacher"])
  with pytest.raises(ValueError, match="no such checkpoint"):
    checkpoints.init_from_checkpoint(target, str(tmp_path / "missing"))


def test_restore_latest_skips_incomplete_checkpoints(tmp_path):
  step = tf.Variable(0, dtype=tf.int64)
  checkpoint = tf.train.Checkpoint(step=step)
  manager = tf.train.CheckpointManager(checkpoint, str(tmp_path), max_to_keep=3)
  for value in (2, 4):
    step.assign(value)
    manager.save(checkpoint_number=value)
  # A save killed half-way: data files of step 6 exist, the state file never named them.
  (tmp_path / "ckpt-6.data-00000-of-00001").write_bytes(b"partial")
  (tmp_path / "ckpt-6_temp").mkdir()
  # And a listed checkpoint whose files are gone (e.g. deleted by hand).
  os.remove(tmp_path / "ckpt-4.index")
  step.assign(0)
  resumed = tf.train.CheckpointManager(checkpoint, str(tmp_path), max_to_keep=3)
  assert checkpoints.restore_latest(checkpoint, resumed) == str(tmp_path / "ckpt-2")
  assert int(step.numpy()) == 2
