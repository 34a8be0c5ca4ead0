"""Repeat Factor Sampling: factors against a hand-computed example, seeded stochastic rounding."""
import math

import numpy as np
import tensorflow as tf

from vild.data import repeat_factor
from vild.data import tf_example


def test_factors_match_a_hand_computed_example():
  # 4 images; category 1 is in 3 of them (f=0.75), categories 2 and 3 in one each (f=0.25).
  images = [[1, 2], [1], [1, 1], [3], []]
  factors = repeat_factor.category_repeat_factors(images[:4], threshold=0.5)
  assert factors[1] == 1.0  # sqrt(0.5 / 0.75) < 1
  assert math.isclose(factors[2], math.sqrt(2.0)) and math.isclose(factors[3], math.sqrt(2.0))
  np.testing.assert_allclose(repeat_factor.image_repeat_factors(images, factors),
                             [math.sqrt(2.0), 1.0, 1.0, math.sqrt(2.0), 1.0], rtol=1e-6)
  # The paper's t = 0.001 leaves categories seen in more than 0.1% of images alone.
  assert set(repeat_factor.category_repeat_factors(images).values()) == {1.0}


def _record(classes):
  return tf_example.encode_example({
      "encoded_image": b"", "image_format": "png", "source_id": 1, "height": 1, "width": 1,
      "boxes": [[0, 0, 1, 1]] * len(classes), "classes": classes, "areas": [1.0] * len(classes),
  }).SerializeToString()


def test_repeat_records_rounds_stochastically_with_a_seed(tmp_path):
  common, rare = _record([1]), _record([1, 2])
  path = str(tmp_path / "r.tfrecord")
  with tf.io.TFRecordWriter(path) as writer:
    writer.write(common)
    writer.write(rare)
  assert repeat_factor.read_record_category_ids([path]) == [[1], [1, 2]]

  epochs = 400
  def stream(seed):
    records = tf.data.Dataset.from_tensor_slices([common, rare]).repeat(epochs)
    return [r for r in repeat_factor.repeat_records(records, {1: 1.0, 2: 2.5}, seed)
            .as_numpy_iterator()]

  first = stream(3)
  assert first == stream(3)
  assert first != stream(4)
  assert first.count(common) == epochs  # r = 1: exactly once per epoch
  assert abs(first.count(rare) / epochs - 2.5) < 0.1  # r = 2.5: 2 or 3 copies, 2.5 on average
