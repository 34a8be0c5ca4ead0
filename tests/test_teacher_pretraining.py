"""Teacher pre-training: the contrastive loss, the held-out split, augmentation, a short run."""
import json
import os

import gin
import numpy as np
import pytest
import tensorflow as tf

from vild.data import synthetic
from vild.teacher import clip_teacher
from vild.teacher import pretraining


def test_contrastive_loss_is_clips_symmetric_cross_entropy():
  logits = tf.constant([[2.0, 0.5, -1.0], [0.0, 1.0, 0.3], [0.2, -0.4, 3.0]])
  expected_rows = -np.log(np.exp(np.diag(logits)) / np.exp(logits).sum(1))
  expected_cols = -np.log(np.exp(np.diag(logits)) / np.exp(logits).sum(0))
  loss = pretraining.contrastive_loss(logits, tf.eye(3))
  np.testing.assert_allclose(float(loss), (expected_rows.mean() + expected_cols.mean()) / 2,
                             rtol=1e-6)


def test_contrastive_loss_spreads_the_target_over_several_positives():
  logits = tf.zeros([3, 3])
  positives = tf.constant([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
  # Uniform logits: cross-entropy to any target distribution is log(3).
  np.testing.assert_allclose(float(pretraining.contrastive_loss(logits, positives)),
                             np.log(3), rtol=1e-6)
  # Logits that put all mass on the positives beat logits that put it on one of them.
  spread = tf.constant([[9.0, 9.0, 0.0], [9.0, 9.0, 0.0], [0.0, 0.0, 9.0]])
  peaked = tf.constant([[9.0, 0.0, 0.0], [0.0, 9.0, 0.0], [0.0, 0.0, 9.0]])
  assert float(pretraining.contrastive_loss(spread, positives)) < float(
      pretraining.contrastive_loss(peaked, positives))


def test_held_out_split_takes_the_same_count_of_every_category():
  ids = np.repeat([3, 5, 9], [6, 4, 8])
  train, held = pretraining.split_held_out(ids, 2, seed=0)
  assert sorted(np.concatenate([train, held]).tolist()) == list(range(len(ids)))
  assert np.bincount(ids[held], minlength=10)[[3, 5, 9]].tolist() == [2, 2, 2]
  with pytest.raises(ValueError, match="held_out_per_category"):
    pretraining.split_held_out(ids, 4, seed=0)


def test_augmentation_keeps_shape_and_hue():
  image = np.zeros([2, 16, 16, 3], np.float32)
  image[..., 0] = 200.0  # pure red
  out = pretraining.augment_crops(tf.constant(image), tf.constant([1, 2])).numpy()
  assert out.shape == image.shape
  assert (out[..., 1:] == 0).all() and (out[..., 0] > 150).all()


def test_short_pretraining_lowers_the_loss_and_saves_a_loadable_teacher(tmp_path):
  world = str(tmp_path / "world")
  synthetic.generate(world, synthetic.WorldSpec(num_train_images=2, num_val_images=1,
                                                 num_crops=180, image_size=64,
                                                 object_size=(12, 28), crop_size=16))
  out = str(tmp_path / "teacher")
  spec = pretraining.PretrainingSpec(steps=40, batch_size=64, warmup_steps=5,
                                     held_out_per_category=1)
  config = dict(image_size=16, patch_size=8, vision_width=32, text_width=32, heads=2,
                embed_dim=16)
  for key, value in config.items():
    gin.bind_parameter(f"teacher_config.{key}", value)
  report = pretraining.pretrain_teacher(world, out, spec)
  assert report["loss_last"] < report["loss_first"]
  assert report["num_held_out_crops"] == 31  # 30 categories and background
  assert set(report["max_class_cosine"]) == {"objects", "background"}
  accuracy = report["zero_shot_accuracy"]
  assert set(accuracy) == {"all", "base", "novel", "chance"} and accuracy["chance"] == 1 / 30
  with open(os.path.join(out, pretraining.REPORT_FILE)) as f:
    assert json.load(f)["zero_shot_accuracy"] == accuracy
  teacher = clip_teacher.load_clip_teacher(out)
  assert teacher.embedding_dim == 16 and teacher.image_size == 16
  text = teacher.encode_text(["a red star."])
  np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, rtol=1e-5)


def test_the_same_seed_trains_the_same_teacher_and_another_seed_another():
  rng = np.random.default_rng(0)
  crops = rng.integers(0, 256, size=(24, 16, 16, 3), dtype=np.uint8)
  tokens = rng.integers(1, 100, size=(24, 8)).astype(np.int32)
  categories = np.arange(24) % 6
  config = pretraining.teacher_config(embed_dim=8, image_size=16, patch_size=8,
                                      vision_width=16, vision_layers=1, text_width=16,
                                      text_layers=1, heads=2, context_length=8)

  def weights(seed):
    spec = pretraining.PretrainingSpec(steps=3, batch_size=8, warmup_steps=1, seed=seed)
    model, losses = pretraining.train_clip(crops, tokens, categories, config, spec)
    return [v.numpy() for v in model.trainable_variables], losses

  (first, first_losses), (again, again_losses) = weights(0), weights(0)
  assert first_losses == again_losses  # initialisation included (tf_keras seeds it)
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a, b)
  other, _ = weights(1)
  assert any(not np.array_equal(a, b) for a, b in zip(first, other))
