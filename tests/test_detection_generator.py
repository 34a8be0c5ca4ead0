"""Per-class NMS with RoI bookkeeping, against a plain numpy per-class NMS."""
import numpy as np
import tensorflow as tf

from vild.modeling import detection_generator


def iou(a, b):
  y0, x0 = np.maximum(a[0], b[0]), np.maximum(a[1], b[1])
  y1, x1 = np.minimum(a[2], b[2]), np.minimum(a[3], b[3])
  inter = max(0.0, y1 - y0) * max(0.0, x1 - x0)
  area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
  return inter / (area(a) + area(b) - inter)


def numpy_per_class_nms(boxes, scores, iou_threshold, max_detections):
  """boxes [N, 4], scores [N, C] -> list of (score, class_1based, roi) sorted by score."""
  kept = []
  for c in range(scores.shape[1]):
    order = np.argsort(-scores[:, c], kind="stable")
    chosen = []
    for i in order:
      if all(iou(boxes[i], boxes[j]) <= iou_threshold for j in chosen):
        chosen.append(i)
    kept += [(scores[i, c], c + 1, i) for i in chosen]
  kept.sort(key=lambda t: -t[0])
  return kept[:max_detections]


def test_matches_numpy_per_class_nms_and_returns_the_source_roi():
  rng = np.random.default_rng(3)
  num_rois, num_classes = 40, 4
  corners = rng.uniform(0, 80, size=(num_rois, 2))
  sizes = rng.uniform(8, 40, size=(num_rois, 2))
  rois = np.concatenate([corners, corners + sizes], -1).astype(np.float32)
  scores = rng.dirichlet(np.ones(num_classes), size=num_rois).astype(np.float32)
  generator = detection_generator.ViLDDetectionGenerator(
      nms_iou_threshold=0.5, max_num_detections=25)
  out = generator(tf.zeros([1, num_rois, 4]), tf.constant(scores[None]),
                  tf.constant(rois[None]), tf.constant([[128.0, 128.0]]))
  expected = numpy_per_class_nms(rois, scores, 0.5, 25)
  n = int(out["num_detections"][0])
  assert n == len(expected)
  np.testing.assert_allclose(out["detection_scores"][0, :n], [e[0] for e in expected], rtol=1e-6)
  np.testing.assert_array_equal(out["detection_classes"][0, :n], [e[1] for e in expected])
  np.testing.assert_array_equal(out["detection_roi_indices"][0, :n], [e[2] for e in expected])
  np.testing.assert_allclose(out["detection_boxes"][0, :n], rois[[e[2] for e in expected]],
                             atol=1e-4)


def test_padding_is_marked_and_gather_by_roi_zeroes_it():
  rois = tf.constant([[[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]]])
  scores = tf.constant([[[0.9, 0.0], [0.0, 0.8]]])
  generator = detection_generator.ViLDDetectionGenerator(max_num_detections=5)
  out = generator(tf.zeros([1, 2, 4]), scores, rois, tf.constant([[100.0, 100.0]]))
  assert int(out["num_detections"][0]) == 2
  np.testing.assert_array_equal(out["detection_roi_indices"][0], [0, 1, -1, -1, -1])
  np.testing.assert_array_equal(out["detection_classes"][0], [1, 2, 0, 0, 0])
  embeddings = tf.constant([[[1.0, 2.0], [3.0, 4.0]]])
  gathered = detection_generator.gather_by_roi(embeddings, out["detection_roi_indices"])
  np.testing.assert_array_equal(gathered[0], [[1, 2], [3, 4], [0, 0], [0, 0], [0, 0]])


def test_get_config_round_trip():
  generator = detection_generator.ViLDDetectionGenerator(pre_nms_top_k=77,
                                                         max_num_detections=9)
  clone = detection_generator.ViLDDetectionGenerator.from_config(generator.get_config())
  assert clone.get_config() == generator.get_config()
