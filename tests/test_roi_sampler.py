"""Seeded RoI sampling: the official matching, a balanced subsample drawn from per-image seeds."""
import numpy as np
import tensorflow as tf

from vild.modeling import roi_sampler


def scene(seed, num_proposals=60, num_gt=3):
  rng = np.random.default_rng(seed)
  corners = rng.uniform(0, 90, size=(num_proposals + num_gt, 2))
  boxes = np.concatenate([corners, corners + rng.uniform(10, 30, size=corners.shape)], -1)
  proposals, gt = boxes[:num_proposals], boxes[num_proposals:]
  proposals[:20] = gt[rng.integers(0, num_gt, 20)] + rng.normal(0, 1.5, size=(20, 4))
  gt_boxes = np.concatenate([gt, -np.ones((2, 4))])  # -1 padded
  gt_classes = np.array([1, 2, 3, -1, -1])
  return (tf.constant(proposals[None], tf.float32), tf.constant(gt_boxes[None], tf.float32),
          tf.constant(gt_classes[None], tf.int32))


def test_sample_respects_the_foreground_fraction_and_is_seed_deterministic():
  sampler = roi_sampler.SeededROISampler(num_sampled_rois=32, foreground_fraction=0.25)
  proposals, gt_boxes, gt_classes = scene(0)
  seeds = tf.constant([[7, 0]])
  rois, _, classes, indices = sampler(proposals, gt_boxes, gt_classes, sampling_seeds=seeds)
  assert rois.shape == (1, 32, 4)
  num_fg = int(tf.reduce_sum(tf.cast(classes > 0, tf.int32)))
  assert 0 < num_fg <= 8
  np.testing.assert_array_equal(tf.gather(gt_classes[0], tf.maximum(indices[0], 0)).numpy()[
      classes[0].numpy() > 0], classes[0].numpy()[classes[0].numpy() > 0])
  again = sampler(proposals, gt_boxes, gt_classes, sampling_seeds=seeds)
  np.testing.assert_array_equal(rois, again[0])
  other = sampler(proposals, gt_boxes, gt_classes, sampling_seeds=tf.constant([[8, 0]]))
  assert not np.array_equal(rois, other[0])


def test_an_image_samples_the_same_alone_or_in_a_batch():
  sampler = roi_sampler.SeededROISampler(num_sampled_rois=32)
  a, b = scene(1), scene(2)
  batch = [tf.concat([x, y], 0) for x, y in zip(a, b)]
  seeds = tf.constant([[11, 0], [12, 0]])
  together = sampler(*batch, sampling_seeds=seeds)
  alone_a = sampler(*a, sampling_seeds=seeds[:1])
  alone_b = sampler(*b, sampling_seeds=seeds[1:])
  for t, x, y in zip(together, alone_a, alone_b):
    np.testing.assert_array_equal(t, tf.concat([x, y], 0))


def test_balanced_sample_fills_with_negatives_then_leftovers():
  positive = tf.constant([[True, True, True, False, False, False]])
  negative = tf.constant([[False, False, False, True, False, False]])
  noise = tf.constant([[0.1, 0.9, 0.5, 0.3, 0.2, 0.8]])
  indices = roi_sampler.balanced_sample(positive, negative, noise, num_samples=4,
                                        foreground_fraction=0.5).numpy()[0]
  # two positives by noise (1, 2), then the only negative (3), then the best leftover (5).
  np.testing.assert_array_equal(indices, [1, 2, 3, 5])


def test_without_seeds_the_official_random_sampler_runs():
  sampler = roi_sampler.SeededROISampler(num_sampled_rois=16)
  rois, _, classes, _ = sampler(*scene(3))
  assert rois.shape == (1, 16, 4) and classes.shape == (1, 16)
