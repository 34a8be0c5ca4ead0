"""COCO metrics with `pycocotools` (the AP/AR family), and OV-COCO's novel/base AP50.

OV-COCO (48 base / 17 novel categories, "generalized": all 65 scored together) reports box AP50
over the novel and over the base categories. Both come from COCOeval's per-category precision
at IoU 0.5, area 'all', 100 detections.
"""
import contextlib
import copy
import io
from typing import Dict, List, Optional, Sequence, Union

from absl import logging
import numpy as np
from pycocotools import coco
from pycocotools import cocoeval

from vild.evaluation import detections as detections_lib
from vild.utils import io as vild_io

IOU_TYPES = detections_lib.IOU_TYPES
# COCOeval.stats, in order.
METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "ARmax1", "ARmax10", "ARmax100", "ARs",
           "ARm", "ARl")


def load_groundtruth(groundtruth: Union[str, dict]) -> coco.COCO:
  """A pycocotools COCO from an annotation JSON path or a dataset dict."""
  api = coco.COCO()
  api.dataset = (vild_io.read_json(groundtruth) if isinstance(groundtruth, str)  # gs:// too
                 else copy.deepcopy(groundtruth))
  with contextlib.redirect_stdout(io.StringIO()):
    api.createIndex()
  return api


def evaluate_coco(groundtruth: Union[str, dict, coco.COCO], detections: List[dict],
                  iou_types: Sequence[str] = IOU_TYPES,
                  novel_category_ids: Optional[Sequence[int]] = None,
                  image_ids: Optional[Sequence[int]] = None) -> Dict[str, float]:
  """COCO metrics of detections in the official results format.

  Args:
    groundtruth: COCO annotation JSON path, dataset dict, or pycocotools COCO.
    detections: [{'image_id', 'category_id', 'bbox' [x, y, w, h], 'score',
      'segmentation' (RLE or polygons, for 'segm')}]. For 'segm' the bbox is dropped, so
      areas (APs/m/l) are mask areas (detectron2's rule).
    iou_types: 'bbox' and/or 'segm'.
    novel_category_ids: if given, adds '<iou_type>/AP50_novel' and '<iou_type>/AP50_base'
      (OV-COCO); categories without ground truth do not count.
    image_ids: evaluate only these images (default: every image of the ground truth).

  Returns:
    {'<iou_type>/<metric>': value}.
  """
  gt = groundtruth if isinstance(groundtruth, coco.COCO) else load_groundtruth(groundtruth)
  metrics = {}
  names = METRICS + (("AP50_novel", "AP50_base") if novel_category_ids is not None else ())
  for iou_type in detections_lib.checked_iou_types(iou_types):
    if not detections:
      metrics.update(detections_lib.zero_metrics("COCO", iou_type, names))
      continue
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
      results = gt.loadRes(detections_lib.for_iou_type(
          detections, iou_type, detections_lib.image_sizes(gt.dataset)))
      evaluator = cocoeval.COCOeval(gt, results, iouType=iou_type)
      if image_ids is not None:
        evaluator.params.imgIds = sorted(int(i) for i in image_ids)
      evaluator.evaluate()
      evaluator.accumulate()
      evaluator.summarize()
    logging.info("COCO %s:\n%s", iou_type, printed.getvalue())
    metrics.update({f"{iou_type}/{m}": float(v) for m, v in zip(METRICS, evaluator.stats)})
    if novel_category_ids is not None:
      metrics.update(_novel_base_ap50(evaluator, novel_category_ids, iou_type))
  return metrics


def per_category_ap50(evaluator: cocoeval.COCOeval) -> Dict[int, float]:
  """{category id: AP50} (IoU 0.5, area 'all', the largest maxDets); -1 without ground truth."""
  precision = evaluator.eval["precision"]  # [IoU, recall, category, area, maxDets]
  iou_index = int(np.argmin(np.abs(evaluator.params.iouThrs - 0.5)))
  result = {}
  for k, category_id in enumerate(evaluator.params.catIds):
    values = precision[iou_index, :, k, 0, -1]
    values = values[values > -1]
    result[int(category_id)] = float(values.mean()) if values.size else -1.0
  return result


def _novel_base_ap50(evaluator, novel_category_ids, iou_type) -> Dict[str, float]:
  novel = set(int(c) for c in novel_category_ids)
  ap50 = per_category_ap50(evaluator)
  groups = {"novel": [v for c, v in ap50.items() if c in novel and v > -1],
            "base": [v for c, v in ap50.items() if c not in novel and v > -1]}
  return {f"{iou_type}/AP50_{name}": float(np.mean(values)) if values else -1.0
          for name, values in groups.items()}

