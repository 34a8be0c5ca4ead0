"""The synthetic benchmark report's numbers against direct calls of the lvis API."""
import json

import lvis
import numpy as np

from vild.evaluation import lvis_metrics
from vild.synthetic_benchmark import evaluation_noise
from vild.synthetic_benchmark import report

FREQUENCIES = {1: "f", 2: "c", 3: "r", 4: "f", 5: "r"}  # categories 3 and 5 are novel


def _split(rng, num_images=6):
  """An LVIS-format ground truth and noisy detections of it: jittered, partly mislabelled,
  with false positives, so every category's AP is strictly between 0 and 100."""
  images, annotations, detections = [], [], []
  for image_id in range(1, num_images + 1):
    images.append({"id": image_id, "height": 128, "width": 128, "neg_category_ids": [],
                   "not_exhaustive_category_ids": []})
    for _ in range(5):
      x, y = rng.uniform(0, 90, size=2)
      w, h = rng.uniform(12, 36, size=2)
      category = int(rng.integers(1, 6))
      annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                          "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
      shift = rng.normal(0, 4, size=2)
      label = category if rng.random() < 0.7 else int(rng.integers(1, 6))
      detections.append({"image_id": image_id, "category_id": label,
                         "bbox": [x + shift[0], y + shift[1], w, h], "score": rng.random()})
      detections.append({"image_id": image_id, "category_id": int(rng.integers(1, 6)),
                         "bbox": [*rng.uniform(0, 90, size=2), w, h], "score": rng.random()})
  categories = [{"id": c, "name": f"category {c}", "frequency": f}
                for c, f in FREQUENCIES.items()]
  return {"images": images, "annotations": annotations, "categories": categories}, detections


def test_novel_category_ap_equals_the_full_lvis_evaluation_per_category(tmp_path):
  gt, detections = _split(np.random.default_rng(0))
  gt_path, detections_path = str(tmp_path / "val.json"), str(tmp_path / "detections.json")
  for path, content in ((gt_path, gt), (detections_path, detections)):
    with open(path, "w", encoding="utf-8") as f:
      json.dump(content, f)

  table = report.novel_category_ap(gt_path, {"method": detections_path}, iou_type="bbox")

  full = lvis.LVISEval(lvis.LVIS(gt_path), detections, iou_type="bbox")
  with lvis_metrics.numpy_float_alias():
    full.run()
  precision = full.eval["precision"]
  expected = {}
  for k, category in enumerate(full.params.cat_ids):
    if FREQUENCIES[category] == "r":
      values = precision[:, :, k, 0]
      expected[f"category {category}"] = 100 * float(values[values > -1].mean())
  assert set(table["method"]) == {"category 3", "category 5"}
  assert table["method"] == expected
  assert all(0 < ap < 100 for ap in expected.values())
  # AP_novel is their mean, as the lvis API's APr.
  assert np.isclose(np.mean(list(expected.values())), 100 * full.get_results()["APr"])


def test_bootstrap_resamples_images_with_their_annotations_and_detections(tmp_path):
  gt, detections = _split(np.random.default_rng(1), num_images=8)
  resampled, results = evaluation_noise.resample(gt, detections, np.random.default_rng(0))
  assert [i["id"] for i in resampled["images"]] == list(range(1, 9))
  assert len({a["id"] for a in resampled["annotations"]}) == len(resampled["annotations"])
  # Each drawn image brings its 5 annotations and 10 detections along.
  assert len(resampled["annotations"]) == 5 * 8 and len(results) == 10 * 8
  gt_path, detections_path = str(tmp_path / "val.json"), str(tmp_path / "detections.json")
  for path, content in ((gt_path, gt), (detections_path, detections)):
    with open(path, "w", encoding="utf-8") as f:
      json.dump(content, f)
  noise = evaluation_noise.bootstrap_novel_ap(gt_path, detections_path, "bbox", resamples=5)
  full = report.novel_category_ap(gt_path, {"m": detections_path}, "bbox")["m"]
  assert np.isclose(noise["ap_novel"], np.mean(list(full.values())))
  assert noise["bootstrap_std"] > 0 and noise["resamples"] == 5
