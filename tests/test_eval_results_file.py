"""Evaluating a results file against an annotation file: RLE and polygon masks, the mask-area
rule of segm APs/m/l, and the command's errors (issue 18.6)."""
import copy
import json

import lvis
import numpy as np
import pytest
from pycocotools import mask as mask_api

from tests import inference_helpers
from vild.evaluation import detections as detections_lib
from vild.evaluation import lvis_metrics
from vild.evaluation import results_file

# Two 64 x 64 images; polygons as real LVIS/COCO annotations have them. The 'L' is a small
# object by mask area (< 32^2) but a medium one by box area (> 32^2).
SQUARE = [[8, 8, 30, 8, 30, 30, 8, 30]]
L_SHAPE = [[4, 4, 12, 4, 12, 52, 52, 52, 52, 60, 4, 60]]
TRIANGLE = [[34, 10, 60, 10, 47, 40]]


def _area(polygons, size=64):
  return float(mask_api.area(mask_api.merge(mask_api.frPyObjects(polygons, size, size))))


def _bbox(polygons):
  xs, ys = np.array(polygons[0][0::2]), np.array(polygons[0][1::2])
  return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min()),
          float(ys.max() - ys.min())]


def _annotation(ann_id, image_id, category_id, polygons):
  return {"id": ann_id, "image_id": image_id, "category_id": category_id, "iscrowd": 0,
          "segmentation": polygons, "area": _area(polygons), "bbox": _bbox(polygons)}


@pytest.fixture
def groundtruth():
  categories = [{"id": 1, "name": "square", "frequency": "f", "synonyms": ["square"]},
                {"id": 2, "name": "ell", "frequency": "r", "synonyms": ["ell"]},
                {"id": 3, "name": "triangle", "frequency": "c", "synonyms": ["triangle"]}]
  images = [{"id": i, "height": 64, "width": 64, "neg_category_ids": negative,
             "not_exhaustive_category_ids": []} for i, negative in ((1, [2]), (2, [1, 3]))]
  annotations = [_annotation(1, 1, 1, SQUARE), _annotation(2, 1, 3, TRIANGLE),
                 _annotation(3, 2, 2, L_SHAPE)]
  return {"images": images, "annotations": annotations, "categories": categories}


def _detections(groundtruth):
  """Each object found once with its own polygon, plus a wrong-class false positive."""
  found = [{"image_id": a["image_id"], "category_id": a["category_id"], "score": 0.9,
            "bbox": a["bbox"], "segmentation": a["segmentation"]}
           for a in groundtruth["annotations"]]
  found.append({"image_id": 2, "category_id": 1, "score": 0.95, "bbox": _bbox(L_SHAPE),
                "segmentation": L_SHAPE})
  return found


def _as_rle(detections):
  out = copy.deepcopy(detections)
  for d in out:
    d["segmentation"] = detections_lib.compressed_rle(d["segmentation"], 64, 64)
  return out


def test_polygon_masks_evaluate_like_their_rle(groundtruth):
  detections = _detections(groundtruth)
  by_polygon = lvis_metrics.evaluate_lvis(groundtruth, detections)
  by_rle = lvis_metrics.evaluate_lvis(groundtruth, _as_rle(detections))
  assert by_polygon == by_rle
  assert by_polygon["segm/AP"] == pytest.approx(by_polygon["bbox/AP"])
  assert 0.3 < by_polygon["segm/AP"] < 1.0  # the false positive costs the ell's AP


def test_segm_sizes_are_mask_areas_unlike_lvis_eval_on_a_file_with_boxes(groundtruth):
  detections = _as_rle(_detections(groundtruth))
  ours = lvis_metrics.evaluate_lvis(groundtruth, detections, iou_types=("segm",))
  direct = lvis.LVISEval(lvis_metrics.load_groundtruth(groundtruth), copy.deepcopy(detections),
                         "segm")  # a file that keeps bbox: detection areas are box areas
  with lvis_metrics.numpy_float_alias():
    direct.run()
  direct = direct.get_results()
  assert direct["AP"] == pytest.approx(ours["segm/AP"])  # the same matches overall
  # The false 'square' on the ell is small by its mask (it costs the square's APs: 0.5) but
  # medium by its box, where LVISEval leaves it out of APs (1.0).
  assert ours["segm/APs"] < direct["APs"]


def test_results_file_command_with_polygons_and_its_errors(groundtruth, tmp_path):
  annotations, results = tmp_path / "val.json", tmp_path / "dets.json"
  annotations.write_text(json.dumps(groundtruth))
  results.write_text(json.dumps(_detections(groundtruth)))
  output = tmp_path / "metrics.json"
  run = inference_helpers.run_python(["scripts/evaluate_results.py", f"--results={results}",
                                      f"--annotations={annotations}", f"--output={output}"])
  metrics = json.loads(output.read_text())
  assert metrics == pytest.approx(lvis_metrics.evaluate_lvis(groundtruth,
                                                             _detections(groundtruth)))
  assert "segm/APr" in run.stdout
  coco = results_file.evaluate_results_file(str(results), str(annotations), metric="coco")
  assert coco["segm/AP"] > 0 and "segm/ARmax100" in coco

  bad = _detections(groundtruth)
  bad[2]["category_id"] = 0
  results.write_text(json.dumps(bad))
  run = inference_helpers.run_python(["scripts/evaluate_results.py", f"--results={results}",
                                      f"--annotations={annotations}"], expect_success=False)
  assert run.returncode != 0 and "Traceback" not in run.stderr
  assert "detection 2: category_id 0 is not a category of the annotation file" in run.stderr
  with pytest.raises(results_file.ResultsFileError, match=r"\['segm'\] asked for"):
    boxes_only = [{k: v for k, v in d.items() if k != "segmentation"}
                  for d in _detections(groundtruth)]
    results.write_text(json.dumps(boxes_only))
    results_file.evaluate_results_file(str(results), str(annotations), iou_types=["segm"])
