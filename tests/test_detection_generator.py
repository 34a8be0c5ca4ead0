"""Per-class NMS with RoI bookkeeping, against a plain numpy per-class NMS."""
import numpy as np
import pytest
import tensorflow as tf

from vild.modeling import detection_generator
from vild.utils import tpu_contract


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


# --------------------------------------------------------------------------------------------
# Exact per-class NMS on adversarial boxes: pairs whose IoU is within 1e-4 of the threshold, on
# a large image with LVIS's 1203 classes. One NMS with class offsets added to float32 pixel
# coordinates rounded them to 1/8 px there, which flipped decisions for hundreds of classes.
IMAGE = 2048.0


def near_threshold_pairs(rng, num_pairs=30, threshold=0.5):
  """[2 * num_pairs, 4] float32 boxes: pairs (2i, 2i+1) of IoU in threshold +- [2e-6, 1e-4],
  each pair far from the others and inside the image; and the [N, N] float64 IoU of the float32
  coordinates."""
  boxes = []
  for i in range(num_pairs):
    y, x = 340.0 * (i // 5) + rng.uniform(5, 20), 400.0 * (i % 5) + rng.uniform(5, 20)
    h, w = rng.uniform(100, 300, size=2)
    target = threshold + rng.choice([-1, 1]) * rng.uniform(2e-6, 1e-4)
    shift = w * (1 - target) / (1 + target)  # IoU of a box and its copy shifted by `shift`
    boxes += [[y, x, y + h, x + w], [y, x + shift, y + h, x + shift + w]]
  boxes = np.asarray(boxes, np.float32)
  assert boxes.max() < IMAGE
  ious = pairwise_iou(boxes.astype(np.float64))
  pair_ious = ious[np.arange(0, len(boxes), 2), np.arange(1, len(boxes), 2)]
  assert np.all((np.abs(pair_ious - threshold) > 1e-6) & (np.abs(pair_ious - threshold) < 1e-4))
  return boxes, ious


def pairwise_iou(boxes):
  y0 = np.maximum(boxes[:, None, 0], boxes[None, :, 0])
  x0 = np.maximum(boxes[:, None, 1], boxes[None, :, 1])
  y1 = np.minimum(boxes[:, None, 2], boxes[None, :, 2])
  x1 = np.minimum(boxes[:, None, 3], boxes[None, :, 3])
  inter = np.maximum(y1 - y0, 0) * np.maximum(x1 - x0, 0)
  area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
  return inter / (area[:, None] + area[None, :] - inter)


def reference_detections(ious, scores, rule, top_k, threshold, max_detections):
  """Plain per-class greedy NMS (suppress at IoU >= threshold) with either candidate rule.

  Returns [(score, class 0-based, roi)] best first."""
  num_rois, num_classes = scores.shape
  if rule == "overall":
    flat = np.argsort(-scores.ravel(), kind="stable")[:top_k]
    candidates = [flat[flat % num_classes == c] // num_classes for c in range(num_classes)]
  else:
    candidates = [np.argsort(-scores[:, c], kind="stable")[:top_k] for c in range(num_classes)]
  kept = []
  for c, rois in enumerate(candidates):
    chosen = []
    for i in rois:  # best first
      if not chosen or ious[i, chosen].max() < threshold:
        chosen.append(i)
    kept += [(scores[i, c], c, i) for i in chosen]
  kept.sort(key=lambda t: -t[0])
  return kept[:max_detections]


@pytest.mark.parametrize("rule,top_k", [("overall", 10000), ("per_class", 40)])
def test_per_class_nms_is_exact_at_the_iou_threshold(rule, top_k):
  rng = np.random.default_rng(16)
  rois, ious = near_threshold_pairs(rng)
  num_classes = 1203
  # Distinct scores (no ties, whose order neither rule defines).
  scores = ((rng.permutation(len(rois) * num_classes) + 1.0) / (len(rois) * num_classes + 1.0)
            ).reshape(len(rois), num_classes).astype(np.float32)
  max_detections = 3000
  generator = detection_generator.ViLDDetectionGenerator(
      pre_nms_rule=rule, pre_nms_top_k=top_k, nms_iou_threshold=0.5,
      max_num_detections=max_detections)
  out = generator(tf.zeros([1, len(rois), 4]), tf.constant(scores[None]),
                  tf.constant(rois[None]), tf.constant([[IMAGE, IMAGE]]))
  expected = reference_detections(ious, scores, rule, top_k, 0.5, max_detections)
  n = int(out["num_detections"][0])
  got = list(zip(out["detection_classes"][0, :n].numpy() - 1,
                 out["detection_roi_indices"][0, :n].numpy()))
  want = [(c, i) for _, c, i in expected]
  assert n == len(want)
  wrong_classes = {c for (c, i), w in zip(got, want) if (c, i) != w}
  assert got == want, f"{len(wrong_classes)} classes differ from per-class NMS"


@pytest.mark.parametrize("rule,top_k", [("overall", 200), ("per_class", 10)])
def test_meets_the_tpu_contract_with_the_eager_result(rule, top_k):
  """Both rules compile with XLA, every shape static (vild.utils.tpu_contract)."""
  rng = np.random.default_rng(20)
  rois, _ = near_threshold_pairs(rng, num_pairs=10)
  scores = rng.dirichlet(np.ones(40), size=(1, len(rois))).astype(np.float32)
  generator = detection_generator.ViLDDetectionGenerator(
      pre_nms_rule=rule, pre_nms_top_k=top_k, max_num_detections=30)
  args = (tf.zeros([1, len(rois), 4]), tf.constant(scores), tf.constant(rois[None]),
          tf.constant([[IMAGE, IMAGE]]))
  compiled = tpu_contract.check_compiles(generator, args, name=f"{rule} NMS")(*args)
  eager = generator(*args)
  for key in ("num_detections", "detection_roi_indices", "detection_classes"):
    np.testing.assert_array_equal(compiled[key], eager[key])
