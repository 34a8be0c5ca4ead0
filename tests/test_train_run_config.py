"""What a rerun into an existing model_dir may change (vild.training.run_config)."""
import os

import gin
import pytest
import tensorflow as tf

from tests.conftest import TINY_GIN
from vild.training import experiment  # noqa: F401 (registers the training configurables)
from vild.training import run_config

RUN = """
import vild.modeling.factory
import vild.training.trainer
WIDTH = 32
build_fpn.num_filters = %WIDTH
build_region_tower.num_convs = 1
build_vild_model.distillation = 'none'
learning_rate_schedule.decay_boundaries = (1800, 1900)
ViLDTrainer.train_steps = 2000
"""


def _differences(new):
  return {d.binding: d for d in run_config.differences(RUN, new)}


def test_model_changing_and_benign_differences():
  found = _differences(RUN.replace("WIDTH = 32", "WIDTH = 64")
                       .replace("'none'", "'shared'")
                       .replace("train_steps = 2000", "train_steps = 4000")
                       + "learning_rate_schedule.base_learning_rate = 0.1\n"
                       + "Parser.output_size = (512, 512)\n")
  assert set(found) == {"build_fpn.num_filters", "build_vild_model.distillation",
                        "ViLDTrainer.train_steps", "learning_rate_schedule.base_learning_rate",
                        "Parser.output_size"}
  assert found["build_fpn.num_filters"].describe() == (
      "build_fpn.num_filters: 32 (run) -> 64 (now)")  # macros expanded
  assert found["learning_rate_schedule.base_learning_rate"].run_value == 0.32  # the default
  assert found["Parser.output_size"].run_value == (1024, 1024)
  changing = {k for k, d in found.items() if d.model_changing}
  assert changing == {"build_fpn.num_filters", "build_vild_model.distillation",
                      "Parser.output_size"}


def test_same_values_written_differently_are_no_difference():
  assert not _differences(RUN.replace("(1800, 1900)", "[1800, 1900]")
                          + "build_region_tower.num_fcs = 2\n")  # 2 is the default


def test_unknown_configurables_count_as_model_changing():
  found = _differences(RUN + "some_plugin_head.depth = 3\n")
  assert found["some_plugin_head.depth"].model_changing


def test_rerun_check_needs_a_checkpoint_to_refuse(tmp_path):
  gin.parse_config_file(TINY_GIN)
  model_dir = str(tmp_path)
  assert run_config.check_rerun(model_dir) == []  # a new run
  run_config.write(model_dir, step=0, changed=False)
  gin.parse_config(["build_region_tower.num_convs = 2"])
  # No checkpoint yet: nothing to resume, the difference is only reported.
  assert [d.binding for d in run_config.check_rerun(model_dir)] == [
      "build_region_tower.num_convs"]
  tf.train.Checkpoint(step=tf.Variable(1)).write(os.path.join(model_dir, "ckpt-1"))
  with pytest.raises(run_config.ConfigMismatchError) as failure:
    run_config.check_rerun(model_dir)
  message = str(failure.value)
  assert "build_region_tower.num_convs: 1 (run) -> 2 (now)" in message
  assert "ViLDTrainer.init_checkpoint" in message and "Nothing in" in message
