"""Repeat Factor Sampling (RFS; Gupta et al., LVIS, CVPR 2019) for the training input pipeline.

For each category c, f_c is the fraction of training images that contain it and
r_c = max(1, sqrt(t / f_c)); an image's repeat factor is r_I = max over its categories of r_c
(1 for an image without annotations). Each epoch an image appears floor(r_I) times plus once
more with probability frac(r_I) (stochastic rounding, seeded). The paper's t is 0.001.
"""
import collections
import math
from typing import Dict, Iterable, List, Sequence

import numpy as np
import tensorflow as tf

from vild.data import schema

DEFAULT_THRESHOLD = 0.001


def category_repeat_factors(image_category_ids: Sequence[Iterable[int]],
                            threshold: float = DEFAULT_THRESHOLD) -> Dict[int, float]:
  """r_c for every category present in `image_category_ids` (one id list per image)."""
  if not image_category_ids:
    raise ValueError("Repeat factor sampling needs at least one training image.")
  images_with = collections.Counter()
  for ids in image_category_ids:
    images_with.update(set(int(c) for c in ids))
  num_images = len(image_category_ids)
  return {c: max(1.0, math.sqrt(threshold / (n / num_images)))
          for c, n in sorted(images_with.items())}


def image_repeat_factors(image_category_ids: Sequence[Iterable[int]],
                         category_factors: Dict[int, float]) -> np.ndarray:
  """r_I for each image: the largest r_c of its categories, 1.0 without annotations."""
  return np.array([max([1.0] + [category_factors.get(int(c), 1.0) for c in ids])
                   for ids in image_category_ids], np.float32)


def read_record_category_ids(files: Sequence[str]) -> List[List[int]]:
  """The category ids of each record in `files` (reads only the class-label key)."""
  spec = {schema.OBJECT_CLASS: tf.io.VarLenFeature(tf.int64)}
  records = tf.data.TFRecordDataset(list(files), num_parallel_reads=tf.data.AUTOTUNE)
  labels = records.map(lambda r: tf.io.parse_single_example(r, spec)[schema.OBJECT_CLASS].values,
                       num_parallel_calls=tf.data.AUTOTUNE)
  return [ids.tolist() for ids in labels.as_numpy_iterator()]


def repeat_records(records: tf.data.Dataset, category_factors: Dict[int, float],
                   seed: int) -> tf.data.Dataset:
  """Repeats each record of a (repeated, possibly shuffled) stream by its r_I.

  The stream's elements are serialized records, or tuples whose last item is the serialized
  record (the input pipeline's (shard, index in shard, record)); they are repeated whole.
  The rounding draw of the k-th record in the stream is seeded by (seed, k), so the same seed
  gives the same stream and each epoch rounds afresh.
  """
  ids = tf.constant(list(category_factors) or [-1], tf.int64)
  factors = tf.constant(list(category_factors.values()) or [1.0], tf.float32)
  table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(ids, factors), 1.0)
  spec = {schema.OBJECT_CLASS: tf.io.VarLenFeature(tf.int64)}

  def copies(index, element):
    record = element[-1] if isinstance(element, tuple) else element
    classes = tf.io.parse_single_example(record, spec)[schema.OBJECT_CLASS].values
    factor = tf.reduce_max(tf.concat([[1.0], table.lookup(classes)], axis=0))
    draw = tf.random.stateless_uniform([], tf.stack([tf.cast(seed, tf.int64), index]))
    count = tf.floor(factor) + tf.cast(draw < factor - tf.floor(factor), tf.float32)
    return tf.data.Dataset.from_tensors(element).repeat(tf.cast(count, tf.int64))

  return records.enumerate().flat_map(copies)
