"""The seeded RPN anchor labeler: official.vision's sampling rule, reproducible by seed."""
import numpy as np
import tensorflow as tf

from vild import anchors
from vild.data import targets

SPEC = anchors.AnchorSpec(min_level=3, max_level=5, anchor_size=4.0)
BOXES = tf.constant([[10.0, 10.0, 50.0, 60.0], [60.0, 30.0, 120.0, 90.0]])
CLASSES = tf.constant([1, 2])


def _scores(seed=None, batch=64):
  labels = targets.build_training_labels((128, 128), BOXES, CLASSES, anchor_spec=SPEC,
                                         rpn_batch_size_per_im=batch, seed=seed)
  return np.concatenate([v.numpy().ravel() for v in labels["rpn_score_targets"].values()])


def test_seeded_sampling_counts_match_the_official_sampler():
  official, seeded = _scores(), _scores(tf.constant([1, 2], tf.int64))
  for value in (1, 0, -1):  # positives, negatives, ignored
    assert (official == value).sum() == (seeded == value).sum()
  assert 0 < (seeded == 1).sum() <= 32 and (seeded >= 0).sum() == 64


def test_seeded_sampling_is_reproducible_and_depends_on_the_seed():
  a = _scores(tf.constant([1, 2], tf.int64))
  np.testing.assert_array_equal(a, _scores(tf.constant([1, 2], tf.int64)))
  assert not np.array_equal(a, _scores(tf.constant([1, 3], tf.int64)))
