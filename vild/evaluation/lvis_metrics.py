"""LVIS metrics with the official `lvis` API (box and mask AP, AP50, AP75, APs/m/l, APr/c/f, AR@300).

lvis 0.5.3 (its last release) calls `np.float`, which numpy >= 1.24 removed; `numpy_float_alias`
puts the alias back only while LVISEval runs, so nothing else sees it.
"""
import contextlib
import copy
import io
import logging as std_logging
from typing import Dict, List, Optional, Sequence, Union

from absl import logging
import numpy as np

import lvis

from vild.evaluation import detections as detections_lib
from vild.utils import io as vild_io

IOU_TYPES = detections_lib.IOU_TYPES
# Keys of LVISEval.results; AR@300 is the official max_dets.
METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf", "AR@300")


@contextlib.contextmanager
def numpy_float_alias():
  """Sets `np.float = float` for the block (lvis 0.5.3 needs it) and restores numpy after."""
  had_alias = "float" in np.__dict__
  previous = np.__dict__.get("float")
  np.float = float  # pylint: disable=attribute-error
  try:
    yield
  finally:
    if had_alias:
      np.float = previous
    else:
      del np.float


class _LVISFromDict(lvis.LVIS):
  """An lvis.LVIS over an in-memory dataset dict (the API only reads files)."""

  def __init__(self, dataset: dict):  # pylint: disable=super-init-not-called
    self.logger = std_logging.getLogger("lvis")
    self.dataset = dataset
    self._create_index()


def load_groundtruth(groundtruth: Union[str, dict]) -> lvis.LVIS:
  """An lvis.LVIS from an annotation JSON path or a dataset dict (a dict is copied: LVISEval
  turns the ground truth's polygons into RLE in place)."""
  if isinstance(groundtruth, str):  # read through tf.io.gfile: gs:// works too
    return _LVISFromDict(vild_io.read_json(groundtruth))
  return _LVISFromDict(copy.deepcopy(groundtruth))


def evaluate_lvis(groundtruth: Union[str, dict, lvis.LVIS], detections: List[dict],
                  iou_types: Sequence[str] = IOU_TYPES,
                  image_ids: Optional[Sequence[int]] = None) -> Dict[str, float]:
  """LVIS metrics of detections in the official results format.

  Args:
    groundtruth: LVIS annotation JSON path, dataset dict, or lvis.LVIS.
    detections: [{'image_id', 'category_id', 'bbox' [x, y, w, h], 'score',
      'segmentation' (RLE or polygons, for 'segm')}], at most 300 per image counted. For
      'segm' the bbox is dropped, so areas (APs/m/l) are mask areas (detectron2's rule).
    iou_types: 'bbox' and/or 'segm'.
    image_ids: evaluate only these images (default: every image of the ground truth).

  Returns:
    {'<iou_type>/<metric>': value} for the METRICS (and the API's other AR keys).
  """
  gt = groundtruth if isinstance(groundtruth, lvis.LVIS) else load_groundtruth(groundtruth)
  metrics = {}
  for iou_type in detections_lib.checked_iou_types(iou_types):
    if not detections:
      metrics.update(detections_lib.zero_metrics("LVIS", iou_type, METRICS))
      continue
    results = detections_lib.for_iou_type(detections, iou_type,
                                           detections_lib.image_sizes(gt.dataset))
    evaluator = lvis.LVISEval(gt, results, iou_type=iou_type)
    if image_ids is not None:
      evaluator.params.img_ids = sorted(int(i) for i in image_ids)
    printed = io.StringIO()
    with numpy_float_alias(), contextlib.redirect_stdout(printed):
      evaluator.run()
      evaluator.print_results()
    logging.info("LVIS %s:\n%s", iou_type, printed.getvalue())
    metrics.update({f"{iou_type}/{k}": float(v) for k, v in evaluator.get_results().items()})
  return metrics

