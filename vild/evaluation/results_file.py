"""Evaluating a results file: detections in the official LVIS/COCO results format against an
annotation file, with the same metric code as the evaluator (lvis_metrics, coco_metrics).

  metrics = evaluate_results_file("detections.json", "lvis_v1_val.json")   # metric from the file

A results file is a JSON list of {'image_id', 'category_id', 'score', 'bbox' [x, y, w, h]
and/or 'segmentation'}; masks may be compressed RLE, uncompressed RLE or polygons. 'segm' AP
drops the bbox, so APs/APm/APl are split by MASK area (detectron2's convention; LVISEval or
COCOeval on a file that keeps bbox split by box area instead, so their APs/m/l differ).
"""
import json
from typing import Dict, List, Optional, Sequence, Tuple

from vild.data import category_splits
from vild.evaluation import coco_metrics
from vild.evaluation import detections as detections_lib
from vild.evaluation import lvis_metrics
from vild.utils import io

METRICS = ("auto", "lvis", "coco")
REQUIRED_FIELDS = ("image_id", "category_id", "score")


class ResultsFileError(ValueError):
  """A results or annotation file that cannot be evaluated; names the file, field and fix."""


def _read_json(path: str, what: str):
  if not io.exists(path):
    raise ResultsFileError(f"{path}: no such {what}.")
  try:
    return io.read_json(path)
  except json.JSONDecodeError as e:
    raise ResultsFileError(f"{path}: not valid JSON ({e}).") from e


def load_results(path: str, groundtruth: dict) -> Tuple[List[dict], Tuple[str, ...]]:
  """(detections, iou types they support) of a results file, checked against the ground truth.

  'bbox' is evaluable when every detection has a bbox, 'segm' when every one has a
  segmentation (a mix names the first detection without one).
  """
  detections = _read_json(path, "results file")
  if not isinstance(detections, list):
    raise ResultsFileError(f"{path}: a results file is a JSON list of detections, got a "
                           f"{type(detections).__name__}; (a COCO annotation file is not one).")
  image_ids = {int(i["id"]) for i in groundtruth["images"]}
  category_ids = {int(c["id"]) for c in groundtruth["categories"]}
  for index, d in enumerate(detections):
    where = f"{path}: detection {index}"
    if not isinstance(d, dict):
      raise ResultsFileError(f"{where} is not a JSON object.")
    missing = [k for k in REQUIRED_FIELDS if k not in d]
    if missing:
      raise ResultsFileError(f"{where} has no {missing}; each detection needs "
                             f"{list(REQUIRED_FIELDS)} plus 'bbox' and/or 'segmentation'.")
    if int(d["image_id"]) not in image_ids:
      raise ResultsFileError(f"{where}: image_id {d['image_id']} is not an image of the "
                             "annotation file; evaluate against the split the detections are of.")
    if int(d["category_id"]) not in category_ids:
      raise ResultsFileError(f"{where}: category_id {d['category_id']} is not a category of "
                             "the annotation file (ids are dataset ids, not 0-based indices).")
    if "bbox" in d and (not isinstance(d["bbox"], list) or len(d["bbox"]) != 4):
      raise ResultsFileError(f"{where}: bbox {d['bbox']} must be [x, y, width, height].")
  iou_types = tuple(t for t, key in (("bbox", "bbox"), ("segm", "segmentation"))
                    if detections and all(key in d for d in detections))
  if detections and not iou_types:
    raise ResultsFileError(f"{path}: no detection type is complete; every detection needs a "
                           "'bbox' (box AP) or every one a 'segmentation' (mask AP).")
  return detections, iou_types


def evaluate_results_file(results_path: str, annotation_file: str, metric: str = "auto",
                          iou_types: Optional[Sequence[str]] = None,
                          split: str = "none") -> Dict[str, float]:
  """Official metrics of a results file.

  Args:
    results_path: the detections (official results format; masks as RLE or polygons).
    annotation_file: the split's LVIS or COCO annotation JSON.
    metric: 'lvis', 'coco', or 'auto' (LVIS when the categories carry a 'frequency').
    iou_types: 'bbox' and/or 'segm'; default every type the detections have.
    split: with 'coco', 'ov_coco' adds AP50 over the 17 novel and 48 base categories.

  Returns:
    {'<iou_type>/<metric>': value}.
  """
  if metric not in METRICS:
    raise ResultsFileError(f"metric {metric!r} is not one of {METRICS}.")
  groundtruth = _read_json(annotation_file, "annotation file")
  if not isinstance(groundtruth, dict) or not {"images", "categories"} <= set(groundtruth):
    raise ResultsFileError(f"{annotation_file}: an annotation file is an LVIS/COCO JSON object "
                           "with 'images', 'annotations' and 'categories'.")
  detections, available = load_results(results_path, groundtruth)
  iou_types = tuple(iou_types or available)
  unavailable = [t for t in detections_lib.checked_iou_types(iou_types) if t not in available]
  if detections and unavailable:
    raise ResultsFileError(f"{results_path}: {unavailable} asked for, but not every detection "
                           f"has its field; evaluable here: {list(available)}.")
  if metric == "auto":
    metric = "lvis" if any("frequency" in c for c in groundtruth["categories"]) else "coco"
  if metric == "lvis":
    return lvis_metrics.evaluate_lvis(groundtruth, detections, iou_types)
  novel_ids = None
  if split != "none":
    vocabulary = category_splits.split_vocabulary(groundtruth["categories"], split,
                                                  source=annotation_file)
    novel_ids = [i for i, novel in zip(vocabulary.category_ids, vocabulary.is_novel) if novel]
  return coco_metrics.evaluate_coco(groundtruth, detections, iou_types,
                                    novel_category_ids=novel_ids)
