"""Conventions where our code and the official ViLD code agree or differ by design, pinned so
a change is noticed (docs/fidelity.md): box coding, the foreground IoU rule, initialisers."""
import gin
import numpy as np
import tensorflow as tf
import tf_keras

from tests.conftest import TINY_GIN
from official.vision.ops import box_ops
from vild.modeling import factory
from vild.modeling import learned_classifier
from vild.modeling import region_tower
from vild.modeling import roi_sampler
from vild.modeling import vild_model


def test_box_coding_is_the_official_center_size_code_with_weights_10_10_5_5():
  rois = np.array([[[10.0, 20.0, 50.0, 100.0]]], np.float32)
  boxes = np.array([[[12.0, 18.0, 60.0, 90.0]]], np.float32)
  encoded = box_ops.encode_boxes(boxes, rois, weights=vild_model.BOX_REGRESSION_WEIGHTS)
  h, w = rois[..., 2] - rois[..., 0], rois[..., 3] - rois[..., 1]  # no +1
  cy, cx = rois[..., 0] + h / 2, rois[..., 1] + w / 2
  bh, bw = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
  by, bx = boxes[..., 0] + bh / 2, boxes[..., 1] + bw / 2
  expected = np.stack([10 * (by - cy) / h, 10 * (bx - cx) / w, 5 * np.log(bh / h),
                       5 * np.log(bw / w)], -1)
  np.testing.assert_allclose(encoded, expected, rtol=1e-5)
  # Decoding clips the log-size deltas at log(1000 / 16), as the official box_utils does.
  huge = box_ops.decode_boxes(tf.constant([[[0.0, 0.0, 100.0, 100.0]]]), rois,
                              weights=vild_model.BOX_REGRESSION_WEIGHTS)
  np.testing.assert_allclose(huge[..., 2] - huge[..., 0], h * 1000 / 16, rtol=1e-4)


def test_a_roi_at_iou_exactly_one_half_is_foreground():
  """official.vision's matcher (ours): IoU >= 0.5 is foreground. The TPU code's sampler takes
  IoU > 0.5 as foreground and leaves exactly 0.5 unsampled."""
  sampler = roi_sampler.SeededROISampler(num_sampled_rois=3, foreground_fraction=1.0)
  gt_boxes = tf.constant([[[0.0, 0.0, 10.0, 10.0]]])
  proposals = tf.constant([[[0.0, 0.0, 10.0, 20.0], [0.0, 0.0, 10.0, 20.01]]])  # IoU .5, <.5
  rois, _, classes, _ = sampler(proposals, gt_boxes, tf.constant([[3]]),
                                sampling_seeds=tf.constant([[1, 2]]))
  by_width = {round(float(r[3] - r[1]), 2): int(c) for r, c in zip(rois[0], classes[0])}
  assert by_width[20.0] == 3 and by_width[20.01] == 0


def _initializer(layer_initializer):
  config = tf_keras.initializers.serialize(layer_initializer)
  return config["class_name"], config["config"]


def test_initialisers():
  tower = region_tower.RegionTower(embedding_dim=8, num_convs=1, num_fcs=1)
  conv, fc = tower._convs[0], tower._fcs[0]
  assert _initializer(conv.kernel_initializer) == ("VarianceScaling", dict(
      scale=2.0, mode="fan_out", distribution="untruncated_normal", seed=None))
  assert _initializer(fc.kernel_initializer) == ("VarianceScaling", dict(
      scale=1 / 3.0, mode="fan_out", distribution="uniform", seed=None))
  assert not conv.use_bias and not fc.use_bias  # batch norm follows (official: biases too)
  assert _initializer(tower.projection.kernel_initializer)[0] == "GlorotUniform"
  linear = learned_classifier.LinearClassifier(5, 8)
  linear.build([None, None, 16])
  assert _initializer(linear.class_weights.kernel_initializer) == (
      "RandomNormal", dict(mean=0.0, stddev=0.01, seed=None))
  gin.parse_config_file(TINY_GIN)
  model = factory.build_vild_model()
  assert _initializer(model.box_predictor.kernel_initializer) == (
      "RandomNormal", dict(mean=0.0, stddev=0.001, seed=None))
  model.classifier.build(None)
  assert abs(float(np.std(model.classifier.background_embedding.numpy())) - 0.01) < 0.005
