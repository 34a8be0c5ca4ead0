"""RoI sampling whose randomness comes from per-image seeds, so training is reproducible.

`official.vision`'s ROISampler subsamples foreground/background RoIs with `tf.random.shuffle`,
a stateful op whose kernel state TensorFlow cannot checkpoint: a resumed run then samples
differently from an uninterrupted one, and a batch split over replicas samples differently from
the same batch on one device. Here the matching stays official (IoU, matcher, target gather, via
the official sampler with `skip_subsampling=True`); only the balanced subsample is drawn with
stateless ops from a seed per image, which the input pipeline supplies (`sampling_seeds`, derived
from the example, not from the step or the device). Without seeds the official sampler runs.
"""
from typing import Any, Dict, Optional

import tensorflow as tf
import tf_keras

from official.vision.modeling.layers import roi_sampler as official_roi_sampler


@tf_keras.utils.register_keras_serializable(package="vild")
class SeededROISampler(tf_keras.layers.Layer):
  """Call: `sampler(proposals, gt_boxes, gt_classes, sampling_seeds=None)`.

  Returns (rois [B, K, 4], matched_gt_boxes [B, K, 4], matched_gt_classes [B, K],
  matched_gt_indices [B, K]) exactly like the official ROISampler. `sampling_seeds` is
  [B, 2] int (one stateless seed per image) or None for the official random sampler.
  """

  def __init__(self, num_sampled_rois: int = 512, foreground_fraction: float = 0.25,
               foreground_iou_threshold: float = 0.5, **kwargs):
    super().__init__(**kwargs)
    self._config = dict(num_sampled_rois=num_sampled_rois,
                        foreground_fraction=foreground_fraction,
                        foreground_iou_threshold=foreground_iou_threshold)
    common = dict(mix_gt_boxes=True, num_sampled_rois=num_sampled_rois,
                  foreground_fraction=foreground_fraction,
                  foreground_iou_threshold=foreground_iou_threshold,
                  background_iou_high_threshold=foreground_iou_threshold,
                  background_iou_low_threshold=0.0)
    self._random_sampler = official_roi_sampler.ROISampler(**common)
    self._matcher = official_roi_sampler.ROISampler(skip_subsampling=True, **common)

  def call(self, proposals, gt_boxes, gt_classes, sampling_seeds: Optional[tf.Tensor] = None):
    if sampling_seeds is None:
      return self._random_sampler(proposals, gt_boxes, gt_classes)
    # Every candidate (proposals + ground truth) with its match; class 0 = background.
    boxes, matched_boxes, matched_classes, matched_indices = self._matcher(
        proposals, gt_boxes, gt_classes)
    valid = tf.reduce_max(boxes, axis=-1) >= 0.0  # padded boxes are negative
    positive = tf.logical_and(valid, matched_classes > 0)
    negative = tf.logical_and(valid, matched_classes == 0)
    noise = tf.map_fn(  # [B, N] in [0, 1): one stateless stream per image
        lambda seed: tf.random.stateless_uniform(tf.shape(boxes)[1:2], seed=seed),
        tf.cast(sampling_seeds, tf.int32), fn_output_signature=tf.float32)
    indices = balanced_sample(positive, negative, noise, self._config["num_sampled_rois"],
                              self._config["foreground_fraction"])
    take = lambda t: tf.gather(t, indices, batch_dims=1)  # noqa: E731
    return take(boxes), take(matched_boxes), take(matched_classes), take(matched_indices)

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), **self._config}


def balanced_sample(positive: tf.Tensor, negative: tf.Tensor, noise: tf.Tensor,
                    num_samples: int, foreground_fraction: float) -> tf.Tensor:
  """Indices [B, K]: up to K * fraction random positives, the rest random negatives.

  The same rule as the official balanced sampler, with the random order given by `noise`
  [B, N]. If there are too few candidates, the remaining slots take other boxes (lowest
  priority), which the losses treat as background, as the official sampler does.
  """
  max_positives = int(num_samples * foreground_fraction)
  num_positives = tf.minimum(tf.reduce_sum(tf.cast(positive, tf.int32), axis=1), max_positives)
  # Rank positives by noise; keep the first num_positives of each image.
  positive_rank = tf.argsort(tf.argsort(tf.where(positive, -noise, 1.0), axis=1), axis=1)
  chosen_positive = tf.logical_and(positive, positive_rank < num_positives[:, tf.newaxis])
  priority = tf.where(chosen_positive, 2.0 + noise, tf.where(negative, 1.0 + noise, noise - 1.0))
  return tf.math.top_k(priority, k=num_samples, sorted=True).indices
