"""CLIP on cropped regions' scoring and the measurements of its investigation (diagnostics)."""
import numpy as np

from vild import vocabulary as vocabulary_lib
from vild.synthetic_benchmark import clip_on_crops
from vild.synthetic_benchmark import diagnostics


def test_objectness_turns_a_confident_background_crop_down():
  # Two crops the teacher is equally sure of; only the first is on an object.
  probabilities = np.array([[[0.9, 0.1], [0.9, 0.1]]])
  objectness = np.array([[0.8, 0.05]])
  scores = clip_on_crops.combined_scores(probabilities, objectness, 0.5)
  np.testing.assert_allclose(scores[0, :, 0], np.sqrt([0.9 * 0.8, 0.9 * 0.05]))
  np.testing.assert_allclose(clip_on_crops.combined_scores(probabilities, objectness, 0.0),
                             probabilities)


def test_square_boxes_keep_the_centre_and_the_longer_side():
  squares = clip_on_crops.square_boxes(np.array([[10.0, 20.0, 30.0, 60.0]]))
  np.testing.assert_allclose(squares, [[0.0, 20.0, 40.0, 60.0]])


def test_box_iou():
  iou = diagnostics.box_iou(np.array([[0.0, 0.0, 10.0, 10.0]]),
                            np.array([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0],
                                      [20.0, 20.0, 30.0, 30.0]]))
  np.testing.assert_allclose(iou, [[1.0, 1 / 3, 0.0]])


class FakeEmbedder:
  """Embeds a box as the one-hot of the class whose object it overlaps most (or class 0)."""

  def __init__(self, objects):
    self.objects = objects  # [(box, class)]

  def __call__(self, image, boxes):
    out = np.zeros([len(boxes), 2], np.float32)
    for i, box in enumerate(boxes):
      ious = [diagnostics.box_iou(box[None], b[None])[0, 0] for b, _ in self.objects]
      out[i, self.objects[int(np.argmax(ious))][1]] = 1.0
    return out


def test_investigate_measures_recall_accuracy_and_the_box_each_class_picks():
  vocabulary = vocabulary_lib.Vocabulary(
      names=("a", "b"), category_ids=(1, 2), synonyms=(("a",), ("b",)), frequencies=("f", "r"),
      is_novel=(False, True), source="test")
  objects = [(np.array([0.0, 0.0, 20.0, 20.0]), 0), (np.array([40.0, 40.0, 60.0, 60.0]), 1)]
  # Proposal 0 matches object a; proposal 1 overlaps b loosely (IoU 0.25) but is the only one
  # near it, and the objectness says so.
  proposals = np.array([[0.0, 0.0, 20.0, 20.0], [40.0, 40.0, 50.0, 50.0]], np.float32)
  image = {"image_id": 1, "pixels": np.zeros([64, 64, 3], np.uint8),
           "image_info": np.array([[64, 64], [64, 64], [1, 1], [0, 0]], np.float32),
           "proposals": proposals, "refined": proposals, "objectness": np.array([0.9, 0.6])}
  groundtruth = {1: (np.stack([b for b, _ in objects]), np.array([0, 1]))}
  result = diagnostics.investigate(iter([image]), groundtruth, FakeEmbedder(objects),
                                   np.eye(2, dtype=np.float32), vocabulary, 0.1, 100)
  assert result["recall_10"]["base"] == 1.0 and result["recall_10"]["novel"] == 0.0
  assert result["gt_correct"]["base"] == 1.0 and result["gt_correct"]["novel"] == 1.0
  assert result["matched_correct"]["base"] == 1.0 and np.isnan(
      result["matched_correct"]["novel"])  # no refined box on b with IoU >= 0.5
  assert result["best_iou_teacher"]["novel"] == 0.25
  assert result["recall_refined"]["count_base"] == 1
