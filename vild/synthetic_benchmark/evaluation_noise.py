"""How much AP_novel moves with the validation sample alone: a bootstrap over its images.

The spread of a row over seeds mixes two things: training runs differ, and a finite
validation set scores each run with sampling noise. Resampling the validation images with
replacement (each copy under a new image id) and scoring the same detections again
measures the second: its standard deviation is what more validation scenes (or more novel
instances per scene) would shrink, and what no number of seeds removes.
"""
import json
from typing import Dict, List

import numpy as np

from vild.evaluation import lvis_metrics
from vild.synthetic_benchmark import report

STAGE = "evaluation_noise"  # the ablations' stage of this bootstrap


def resample(dataset: dict, detections: List[dict], rng: np.random.Generator):
  """(ground truth dict, detections) on images drawn with replacement, renumbered 1..N."""
  images = dataset["images"]
  annotations, results, drawn = [], [], []
  by_image = {}
  for d in detections:
    by_image.setdefault(d["image_id"], []).append(d)
  anns_by_image = {}
  for a in dataset["annotations"]:
    anns_by_image.setdefault(a["image_id"], []).append(a)
  for new_id, index in enumerate(rng.integers(0, len(images), len(images)), start=1):
    image = images[index]
    drawn.append(dict(image, id=new_id))
    annotations += [dict(a, id=len(annotations) + k + 1, image_id=new_id)
                    for k, a in enumerate(anns_by_image.get(image["id"], []))]
    results += [dict(d, image_id=new_id) for d in by_image.get(image["id"], [])]
  return dict(dataset, images=drawn, annotations=annotations), results


def bootstrap_novel_ap(val_json: str, detections_path: str, iou_type: str = "segm",
                       resamples: int = 20, seed: int = 0) -> Dict[str, float]:
  """AP_novel on the full validation set and its std over `resamples` bootstrap samples."""
  with open(val_json, encoding="utf-8") as f:
    dataset = json.load(f)
  with open(detections_path, encoding="utf-8") as f:
    detections = json.load(f)
  full = report.novel_ap(lvis_metrics.load_groundtruth(dataset), detections, iou_type)
  rng = np.random.default_rng(seed)
  values = []
  for _ in range(resamples):
    gt, results = resample(dataset, detections, rng)
    per_category = report.novel_ap(lvis_metrics.load_groundtruth(gt), results, iou_type)
    values.append(float(np.nanmean(list(per_category.values()))))
  return {"ap_novel": float(np.nanmean(list(full.values()))),
          "bootstrap_std": float(np.std(values, ddof=1)), "resamples": resamples}
