"""Model outputs -> the official results format; dataset ground truth -> an LVIS/COCO dataset.

Results format (the same for LVIS and COCO), one dict per detection:
  {'image_id': int, 'category_id': dataset id, 'bbox': [x, y, w, h] in original-image pixels,
   'score': float, 'segmentation': {'size': [h, w], 'counts': str} (RLE, with masks)}

Where ViLD differs from Mask R-CNN: class k (1-based) is an index into the evaluation
vocabulary, so the dataset id is `vocabulary.category_ids[k - 1]`; swapping the vocabulary
(transfer evaluation) swaps the ids with it. Boxes go back to the original image with the
input pipeline's `image_info` ([[original h, w], [scaled h, w], [scale y, x], [offset y, x]]);
masks are pasted with official.vision's `paste_instance_masks` and RLE-encoded by pycocotools.
"""
import copy
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from absl import logging

import numpy as np
from pycocotools import mask as mask_api

from official.vision.evaluation import coco_utils
from official.vision.ops import box_ops
from official.vision.ops import mask_ops
from vild import vocabulary as vocabulary_lib


def original_boxes(boxes: np.ndarray, image_info: np.ndarray) -> np.ndarray:
  """[K, 4] yxyx boxes in the model input -> the original image's pixels, clipped to it.

  The NumPy twin of vild.inference.serving.to_original_pixels (which stays in the graph for
  SavedModel export); image_info is one image's [4, 2] input_pipeline layout."""
  scale = np.tile(image_info[2], 2)
  offset = np.tile(image_info[3], 2)
  height, width = image_info[0]
  boxes = (boxes + offset) / scale
  return np.clip(boxes, 0.0, [height, width, height, width])


def encode_masks(masks: np.ndarray, boxes_xywh: np.ndarray, height: int,
                 width: int) -> List[dict]:
  """[K, h, w] box-relative mask probabilities -> K RLEs of the pasted, thresholded masks."""
  if not len(masks):
    return []
  pasted = mask_ops.paste_instance_masks(masks, boxes_xywh, height, width)  # [K, H, W] uint8
  rles = []
  for mask in pasted:
    rle = mask_api.encode(np.asfortranarray(mask))
    rle["counts"] = rle["counts"].decode("ascii")  # JSON-safe.
    rles.append(rle)
  return rles


def detections_to_results(outputs: Mapping[str, np.ndarray], image_info: np.ndarray,
                          source_ids: np.ndarray,
                          vocabulary: vocabulary_lib.Vocabulary) -> List[dict]:
  """A batch of model outputs in the official results format.

  Args:
    outputs: numpy detection_boxes [B, K, 4], detection_scores [B, K], detection_classes
      [B, K] (1-based vocabulary indices), num_detections [B], and optionally
      detection_masks [B, K, h, w].
    image_info: [B, 4, 2] from the input pipeline.
    source_ids: [B] dataset image ids.
    vocabulary: the vocabulary the model scored (maps class k to its dataset id).

  Returns:
    One dict per detection (see the module docstring).
  """
  category_ids = np.asarray(vocabulary.category_ids)
  results = []
  for b, image_id in enumerate(np.asarray(source_ids)):
    n = int(outputs["num_detections"][b])
    classes = outputs["detection_classes"][b, :n].astype(np.int64)
    if n and (classes.min() < 1 or classes.max() > len(category_ids)):
      raise ValueError(f"image {image_id}: detection classes span {classes.min()}.."
                       f"{classes.max()} but the vocabulary ({vocabulary.source}) has "
                       f"{len(category_ids)} categories; evaluate with the vocabulary the "
                       "model was given.")
    boxes = box_ops.yxyx_to_xywh(
        original_boxes(outputs["detection_boxes"][b, :n], image_info[b]))
    height, width = (int(x) for x in image_info[b, 0])
    masks = (encode_masks(outputs["detection_masks"][b, :n], boxes, height, width)
             if "detection_masks" in outputs else None)
    for k in range(n):
      result = {"image_id": int(image_id), "category_id": int(category_ids[classes[k] - 1]),
                "bbox": [float(x) for x in boxes[k]],
                "score": float(outputs["detection_scores"][b, k])}
      if masks is not None:
        result["segmentation"] = masks[k]
      results.append(result)
  return results


def groundtruth_dataset(groundtruths: Mapping[str, List[np.ndarray]],
                        vocabulary: vocabulary_lib.Vocabulary) -> dict:
  """An LVIS/COCO-style dataset dict from the eval pipeline's ground truth.

  Args:
    groundtruths: lists (one entry per batch) of the eval labels' 'groundtruths' arrays:
      source_id, height, width, num_detections, boxes [B, K, 4] yxyx original pixels,
      classes [B, K] dataset ids, and optionally areas, is_crowds, masks [B, K, s, s]
      (box-cropped, as official.vision's Mask R-CNN parser gives them), and the LVIS image
      fields neg_category_ids / not_exhaustive_category_ids [B, N] (-1 padded). Without the
      LVIS fields an image counts as exhaustively annotated (every absent category negative).
    vocabulary: the evaluation vocabulary (categories, names, LVIS frequencies).

  Returns:
    {'images', 'annotations', 'categories'}. Masks rebuilt from box crops are approximate;
    give the dataset's annotation JSON for official mask numbers.
  """
  plain = {k: v for k, v in groundtruths.items() if k != "masks"}
  dataset = coco_utils.convert_groundtruths_to_coco_dataset(plain)
  dataset["categories"] = [
      {"id": int(i), "name": n, "synonyms": list(s), **({"frequency": f} if f else {})}
      for i, n, f, s in zip(vocabulary.category_ids, vocabulary.names, vocabulary.frequencies,
                            vocabulary.synonyms)]
  if "masks" in groundtruths:
    _add_masks(dataset, groundtruths)
  _add_lvis_image_fields(dataset, groundtruths, vocabulary)
  return dataset


def _instances(groundtruths):
  """(batch, image, instance) in the order convert_groundtruths_to_coco_dataset emits them."""
  for i, nums in enumerate(groundtruths["num_detections"]):
    for j, num in enumerate(nums):
      for k in range(min(int(num), groundtruths["classes"][i].shape[1])):
        yield i, j, k


def _add_masks(dataset: dict, groundtruths) -> None:
  for ann, (i, j, k) in zip(dataset["annotations"], _instances(groundtruths)):
    height = int(groundtruths["height"][i][j])
    width = int(groundtruths["width"][i][j])
    mask = groundtruths["masks"][i][j, k][np.newaxis]
    ann["segmentation"] = encode_masks(mask, np.asarray([ann["bbox"]]), height, width)[0]


def _add_lvis_image_fields(dataset: dict, groundtruths, vocabulary) -> None:
  present: Dict[int, set] = {}
  for ann in dataset["annotations"]:
    present.setdefault(ann["image_id"], set()).add(ann["category_id"])
  fields = {}
  for key in ("neg_category_ids", "not_exhaustive_category_ids"):
    if key in groundtruths:
      ids = np.concatenate(groundtruths["source_id"])
      values = np.concatenate(groundtruths[key])
      fields[key] = {int(i): [int(c) for c in row if c >= 0] for i, row in zip(ids, values)}
  for image in dataset["images"]:
    image_id = image["id"]
    absent = [c for c in vocabulary.category_ids if c not in present.get(image_id, set())]
    image["neg_category_ids"] = fields.get("neg_category_ids", {}).get(image_id, absent)
    image["not_exhaustive_category_ids"] = fields.get(
        "not_exhaustive_category_ids", {}).get(image_id, [])


IOU_TYPES = ("bbox", "segm")


def checked_iou_types(iou_types: Sequence[str]) -> Tuple[str, ...]:
  unknown = [t for t in iou_types if t not in IOU_TYPES]
  if unknown:
    raise ValueError(f"iou_types {unknown} are not among {IOU_TYPES}.")
  return tuple(iou_types)


def zero_metrics(api: str, iou_type: str, names: Sequence[str]) -> Dict[str, float]:
  """The metrics of an empty detection list (the APIs cannot load one)."""
  logging.warning("%s %s: no detections; every metric is 0.", api, iou_type)
  return {f"{iou_type}/{name}": 0.0 for name in names}


def for_iou_type(detections: List[dict], iou_type: str,
                 image_sizes: Optional[Mapping[int, Tuple[int, int]]] = None) -> List[dict]:
  """A copy the evaluation API may modify; for 'segm' without 'bbox', so that areas (and the
  small/medium/large split) come from the masks, as detectron2 does (LVISEval and COCOeval on
  a results file that keeps 'bbox' take box areas instead), and with every mask as compressed
  RLE (polygons and uncompressed RLE are encoded at their image's size from `image_sizes`,
  {image_id: (height, width)}: the APIs take only compressed RLE for results)."""
  if iou_type != "segm":
    return copy.deepcopy(detections)
  if detections and "segmentation" not in detections[0]:
    raise ValueError("segm evaluation needs 'segmentation' in the detections; evaluate a model "
                     "with a mask head or iou_types=('bbox',).")
  results = []
  for d in detections:
    result = {k: copy.deepcopy(v) for k, v in d.items() if k != "bbox"}
    if image_sizes is not None:
      height, width = image_sizes[d["image_id"]]
      result["segmentation"] = compressed_rle(d["segmentation"], height, width)
    results.append(result)
  return results


def image_sizes(dataset: dict) -> Dict[int, Tuple[int, int]]:
  """{image id: (height, width)} of an LVIS/COCO dataset dict."""
  return {int(i["id"]): (int(i["height"]), int(i["width"])) for i in dataset["images"]}


def compressed_rle(segmentation, height: int, width: int) -> dict:
  """A mask in any COCO form (polygons [[x0, y0, x1, y1, ...], ...], uncompressed RLE with a
  list of counts, or compressed RLE) as compressed RLE with str counts (JSON-safe)."""
  if isinstance(segmentation, list):  # polygons: one object may have several parts
    if not segmentation or not all(isinstance(p, list) and len(p) >= 6 for p in segmentation):
      raise ValueError(f"polygon segmentation {str(segmentation)[:80]} must be a list of "
                       "[x0, y0, x1, y1, x2, y2, ...] lists of at least 3 points.")
    rle = mask_api.merge(mask_api.frPyObjects(segmentation, height, width))
  elif isinstance(segmentation, dict) and "counts" in segmentation:
    if isinstance(segmentation["counts"], list):  # uncompressed RLE
      rle = mask_api.frPyObjects(segmentation, height, width)
    else:
      rle = {"size": list(segmentation["size"]), "counts": segmentation["counts"]}
  else:
    raise ValueError(f"segmentation {str(segmentation)[:80]} is neither polygons nor RLE "
                     "({'size': [h, w], 'counts': ...}).")
  if isinstance(rle["counts"], bytes):
    rle["counts"] = rle["counts"].decode("ascii")
  return {"size": [int(x) for x in rle["size"]], "counts": rle["counts"]}
