"""Instances beyond build_training_labels.max_num_instances are counted and reported, never
dropped silently (issue 16.2): a label per image, input/ summaries, and a console warning."""
import glob
import logging
import os

import gin
import numpy as np
import tensorflow as tf

from tests import train_toy
from tests.conftest import TINY_GIN
from vild.data import targets
from vild.data import toy
from vild.training import train_step
from vild.training import trainer as trainer_lib


def test_training_labels_count_the_instances_they_drop():
  rng = np.random.default_rng(0)
  corners = rng.uniform(0, 40, size=(5, 2))
  boxes = np.concatenate([corners, corners + 20], -1).astype(np.float32)
  classes = np.arange(1, 6)
  clipped = targets.build_training_labels((64, 64), boxes, classes, max_num_instances=3)
  assert int(clipped["num_clipped_instances"]) == 2
  assert clipped["gt_classes"].numpy().tolist() == [1, 2, 3]
  kept = targets.build_training_labels((64, 64), boxes, classes, max_num_instances=8)
  assert int(kept["num_clipped_instances"]) == 0


def _event_values(directory):
  values = {}
  for path in glob.glob(os.path.join(directory, "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        values.setdefault(value.tag, []).append(float(tf.make_ndarray(value.tensor)))
  return values


def test_trainer_reports_clipped_instances(tmp_path, caplog):
  gin.parse_config_file(TINY_GIN)
  gin.parse_config(train_toy.SMALLER + ["build_training_labels.max_num_instances = 1",
                                        "learning_rate_schedule.warmup_steps = 1",
                                        "learning_rate_schedule.decay_boundaries = ()",
                                        "learning_rate_schedule.total_steps = 10"])
  scenes = [toy.toy_scene(s, train_toy.IMAGE_SIZE) for s in range(4)]
  expected_instances = sum(len(s["boxes"]) - 1 for s in scenes)
  expected_images = sum(len(s["boxes"]) > 1 for s in scenes)
  assert expected_images > 0
  trainer = trainer_lib.ViLDTrainer(
      str(tmp_path), train_toy.toy_dataset_fn(global_batch_size=2, num_scenes=4,
                                              shuffle_seed=None),
      train_toy.toy_text_embeddings(), train_toy.toy_vocabulary(), global_batch_size=2,
      train_steps=2, steps_per_loop=2)
  with caplog.at_level(logging.WARNING):
    history = trainer.train()
  assert (f"Steps 1-2: {expected_images} of 4 images had more instances than "
          "build_training_labels.max_num_instances; "
          f"{expected_instances} instances were left out") in caplog.text
  np.testing.assert_allclose(np.sum(history[train_step.CLIPPED_INSTANCES]) * 2,
                             expected_instances)
  summaries = _event_values(os.path.join(str(tmp_path), "train"))
  np.testing.assert_allclose(summaries["input/clipped_image_fraction"],
                             [expected_images / 4])
  assert "loss/clipped_image_fraction" not in summaries


def test_no_warning_when_nothing_is_clipped(tmp_path, caplog):
  gin.parse_config_file(TINY_GIN)
  gin.parse_config(train_toy.SMALLER + ["learning_rate_schedule.warmup_steps = 1",
                                        "learning_rate_schedule.decay_boundaries = ()",
                                        "learning_rate_schedule.total_steps = 10"])
  trainer = trainer_lib.ViLDTrainer(
      str(tmp_path), train_toy.toy_dataset_fn(num_scenes=4), train_toy.toy_text_embeddings(),
      train_toy.toy_vocabulary(), global_batch_size=2, train_steps=1, steps_per_loop=1)
  with caplog.at_level(logging.WARNING):
    history = trainer.train()
  assert history[train_step.CLIPPED_IMAGES] == [0.0]
  assert "max_num_instances" not in caplog.text
