"""Row: seconds the LVIS evaluator takes on a detections file, against COCOeval on the same.

For context: evaluation is part of every experiment's wall time. The library's evaluators are
timed (vild.evaluation: the `lvis` API with its numpy shim, and pycocotools' COCOeval) on the
same ground truth and detections, box and mask AP. By default both files are generated here:
an LVIS-format ground truth with 1203 categories and 300 detections per image, as the
paper's inference keeps. `Settings.annotations` / `detections` point at real files instead.
"""
import dataclasses
import json
import os
import tempfile
from typing import List, Optional, Tuple

import numpy as np
from pycocotools import mask as mask_api

from benchmarks import harness
from benchmarks import report
from vild.evaluation import coco_metrics
from vild.evaluation import lvis_metrics


def box_rle(box_xywh, height: int, width: int) -> dict:
  """A box-shaped mask as COCO RLE with a JSON-ready string."""
  x, y, w, h = box_xywh
  rle = mask_api.frPyObjects([[x, y, x + w, y, x + w, y + h, x, y + h]], height, width)[0]
  return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def synthetic_lvis(num_images: int, num_categories: int, detections_per_image: int,
                   objects_per_image: int = 8, image_size: int = 640, seed: int = 0
                   ) -> Tuple[dict, List[dict]]:
  """(LVIS-format ground truth, detections in the results format) with box-shaped masks.

  Detections are noisy copies of the image's objects (right and wrong classes) plus random
  boxes, so the evaluator matches some and not others, as with a real detector.
  """
  rng = np.random.default_rng(seed)
  frequency = ("f", "c", "r")
  categories = [{"id": c, "name": f"category_{c}", "frequency": frequency[c % 3],
                 "image_count": 1, "instance_count": 1} for c in range(1, num_categories + 1)]
  images, annotations, detections = [], [], []

  def random_box():
    x, y = rng.uniform(0, image_size * 0.7, 2)
    w, h = rng.uniform(image_size * 0.03, image_size * 0.3, 2)
    return [float(x), float(y), float(min(w, image_size - x)), float(min(h, image_size - y))]

  for image_id in range(1, num_images + 1):
    classes = rng.choice(num_categories, objects_per_image, replace=False) + 1
    absent = np.setdiff1d(np.arange(1, num_categories + 1), classes)
    images.append({"id": image_id, "height": image_size, "width": image_size,
                   "neg_category_ids": rng.choice(absent, 20, replace=False).tolist(),
                   "not_exhaustive_category_ids": []})
    objects = []
    for category in classes:
      box = random_box()
      objects.append((box, int(category)))
      x, y, w, h = box
      annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                          "category_id": int(category), "bbox": box, "area": w * h,
                          "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]],
                          "iscrowd": 0})
    for k in range(detections_per_image):
      if k < 4 * len(objects):
        (x, y, w, h), category = objects[k % len(objects)]
        box = [x + rng.normal(0, w * 0.1), y + rng.normal(0, h * 0.1), w, h]
        if k >= len(objects):
          category = int(rng.integers(1, num_categories + 1))
      else:
        box, category = random_box(), int(rng.integers(1, num_categories + 1))
      box = [max(0.0, box[0]), max(0.0, box[1]), box[2], box[3]]
      detections.append({"image_id": image_id, "category_id": category, "bbox": box,
                         "score": float(rng.uniform()),
                         "segmentation": box_rle(box, image_size, image_size)})
  ground_truth = {"images": images, "annotations": annotations, "categories": categories,
                  "info": {}, "licenses": []}
  return ground_truth, detections


def evaluator_calls(annotations: str, detections: str, iou_types: Tuple[str, ...]
                    ) -> harness.Calls:
  """Worker factory: {'lvis', 'coco'}: each evaluator on the files, loading included."""
  with open(detections) as f:
    results = json.load(f)
  return {
      "lvis": lambda: lvis_metrics.evaluate_lvis(annotations, results, iou_types),
      "coco": lambda: coco_metrics.evaluate_coco(annotations, results, iou_types),
  }


@dataclasses.dataclass(frozen=True)
class Settings:
  num_images: int = 100
  num_categories: int = 1203
  detections_per_image: int = 300
  iou_types: Tuple[str, ...] = ("bbox", "segm")
  annotations: Optional[str] = None  # real LVIS annotation and detections files
  detections: Optional[str] = None
  rounds: int = 1


DEFAULT = Settings()
QUICK = Settings(num_images=3, num_categories=30, detections_per_image=20)


def run(settings: Settings, isolated: bool = True) -> report.RowResult:
  with tempfile.TemporaryDirectory() as scratch:
    annotations, detections = settings.annotations, settings.detections
    if annotations is None or detections is None:
      annotations = os.path.join(scratch, "lvis_annotations.json")
      detections = os.path.join(scratch, "detections.json")
      ground_truth, results = synthetic_lvis(settings.num_images, settings.num_categories,
                                             settings.detections_per_image)
      for path, content in ((annotations, ground_truth), (detections, results)):
        with open(path, "w") as f:
          json.dump(content, f)
      source = (f"generated: {settings.num_images} images, {settings.num_categories} "
                f"categories, {settings.detections_per_image} detections per image")
    else:
      source = f"{annotations} and {detections}"
    label = "LVIS and COCO evaluators"
    measured = harness.run_interleaved([harness.Workload(label, evaluator_calls, dict(
        annotations=annotations, detections=detections, iou_types=settings.iou_types),
        warmup=0)], settings.rounds, isolated=isolated)[label]
  iou_types = " and ".join(settings.iou_types)
  comparisons = [report.Comparison(
      f"evaluation ({iou_types}): LVIS evaluator / COCOeval, same files",
      report.Figure("LVIS", measured.median("lvis"), "s"),
      report.Figure("COCOeval", measured.median("coco"), "s"))]
  details = [f"CPU seconds: LVIS {measured.median('lvis', cpu=True):.1f}, COCOeval "
             f"{measured.median('coco', cpu=True):.1f} (loading the files included)."]
  setup = (f"Ground truth and detections {source}; vild.evaluation.lvis_metrics."
           "evaluate_lvis against vild.evaluation.coco_metrics.evaluate_coco, "
           f"{iou_types}, in one worker process, {settings.rounds} round(s).")
  return report.RowResult(title="Evaluation time", setup=setup, comparisons=comparisons,
                          details=details)
