"""Model outputs -> the official results format: coordinates, class ids, masks, errors."""
import numpy as np
import pytest
from pycocotools import mask as mask_api

from vild import vocabulary as vocabulary_lib
from vild.evaluation import detections


def _outputs(boxes, classes, scores, masks=None):
  out = {"detection_boxes": np.asarray([boxes], np.float32),
         "detection_classes": np.asarray([classes]), "detection_scores": np.asarray([scores]),
         "num_detections": np.asarray([len(boxes) - 1])}  # The last row is padding.
  if masks is not None:
    out["detection_masks"] = np.asarray([masks], np.float32)
  return out


VOCAB = vocabulary_lib.Vocabulary.from_categories(
    [{"id": 7, "name": "cat"}, {"id": 42, "name": "dog"}])
# Original 100 x 200, scaled by 0.5 to 50 x 100 for the model.
IMAGE_INFO = np.array([[[100, 200], [50, 100], [0.5, 0.5], [0, 0]]], np.float32)


def test_boxes_return_to_the_original_image_and_classes_to_dataset_ids():
  out = _outputs([[5, 10, 25, 30], [0, 0, 60, 120], [0, 0, 0, 0]], [2, 1, 0], [0.9, 0.4, 0.0],
                 masks=np.ones([3, 4, 4]))
  results = detections.detections_to_results(out, IMAGE_INFO, np.array([11]), VOCAB)
  assert [r["category_id"] for r in results] == [42, 7]
  assert results[0]["bbox"] == pytest.approx([20.0, 10.0, 40.0, 40.0])  # x, y, w, h
  assert results[1]["bbox"] == pytest.approx([0.0, 0.0, 200.0, 100.0])  # clipped to the image
  assert results[0]["image_id"] == 11 and results[0]["score"] == pytest.approx(0.9)
  rle = results[0]["segmentation"]
  assert rle["size"] == [100, 200] and isinstance(rle["counts"], str)
  area = mask_api.area({"size": rle["size"], "counts": rle["counts"].encode()})
  assert 0.8 * 40 * 40 < area <= 42 * 42


def test_classes_outside_the_vocabulary_are_an_error():
  out = _outputs([[5, 10, 25, 30], [0, 0, 0, 0]], [3, 0], [0.9, 0.0])
  with pytest.raises(ValueError, match="vocabulary .* has 2 categories"):
    detections.detections_to_results(out, IMAGE_INFO, np.array([1]), VOCAB)


def test_offsets_of_a_cropped_input_are_undone():
  info = np.array([[[100, 100], [100, 100], [2.0, 2.0], [30, 40]]], np.float32)
  boxes = detections.original_boxes(np.array([[0, 0, 20, 20]], np.float32), info[0])
  np.testing.assert_allclose(boxes, [[15, 20, 25, 30]])
