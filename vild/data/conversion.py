"""LVIS v1 / COCO instances JSON + images -> sharded ViLD TFRecords, with open-vocabulary splits.

What ViLD needs beyond a plain COCO converter:
  * base-only training data: with `base_only`, annotations of novel categories (LVIS rare, the
    17 OV-COCO novel classes; see `vild.data.category_splits`) are dropped while their images
    stay, so novel objects appear unlabelled, as in the paper. Evaluation data keeps everything.
  * LVIS federated labels: `not_exhaustive_category_ids` and `neg_category_ids` are kept.
  * LVIS val images live under both COCO train2017 and val2017: each image is found through its
    `file_name` or the last parts of its `coco_url`, below `image_root`.

Nothing is dropped silently. Degenerate boxes (no area inside the image), novel and out-of-split
annotations are counted per reason; missing and unreadable images are listed. Everything goes to
`{output_dir}/{name}.report.json`, and the run fails when more than `max_missing_fraction` of
the images are missing or unreadable. Shard writing is `vild.data.shards` (parallel, resumable,
atomic).
"""
import collections
import functools
import io
import json
import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from absl import logging
from PIL import Image
from pycocotools import mask as mask_utils

from vild.data import category_splits
from vild.data import shards
from vild.data import tf_example
from vild.utils import io as vild_io

IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "BMP")  # what tf.io.decode_image reads.
DEFAULT_IMAGES_PER_SHARD = 256


class ConversionError(RuntimeError):
  """The input cannot be converted as asked; the message names the file, the field and the fix."""


def load_dataset(path: str) -> dict:
  """Reads an LVIS/COCO instances JSON and checks its top-level fields."""
  if not os.path.exists(path):
    raise ConversionError(f"{path}: no such annotation file; give an LVIS v1 or COCO "
                          "instances JSON.")
  with open(path, encoding="utf-8") as f:
    try:
      dataset = json.load(f)
    except json.JSONDecodeError as e:
      raise ConversionError(f"{path}: not valid JSON ({e}).") from e
  missing = [k for k in ("images", "annotations", "categories") if k not in dataset]
  if missing:
    raise ConversionError(f"{path}: missing top-level fields {missing}; an LVIS/COCO "
                          "instances JSON has 'images', 'annotations' and 'categories'.")
  return dataset


def filter_annotations(dataset: dict, vocabulary, base_only: bool
                       ) -> Tuple[Dict[int, List[dict]], Dict]:
  """Keeps the annotations to write, per image id, and counts what was dropped and why.

  Args:
    dataset: the loaded JSON.
    vocabulary: the split's categories (`category_splits.split_vocabulary`).
    base_only: drop annotations of novel categories (training data).
  """
  used = dict(zip(vocabulary.category_ids, zip(vocabulary.names, vocabulary.is_novel)))
  sizes = {img["id"]: (img["height"], img["width"]) for img in dataset["images"]}
  kept = collections.defaultdict(list)
  counts = collections.Counter()
  novel_by_category = collections.Counter()
  for ann in dataset["annotations"]:
    counts["annotations_in"] += 1
    category = used.get(ann["category_id"])
    if category is None:
      counts["dropped_not_in_split"] += 1
      continue
    if base_only and category[1]:
      counts["dropped_novel"] += 1
      novel_by_category[category[0]] += 1
      continue
    if ann["image_id"] not in sizes:
      raise ConversionError(f"annotation {ann.get('id')}: image_id {ann['image_id']} is not in "
                            "'images'; the annotation file is inconsistent.")
    if clipped_box(ann["bbox"], *sizes[ann["image_id"]]) is None:
      counts["dropped_degenerate_box"] += 1
      continue
    counts["crowd_kept"] += int(ann.get("iscrowd", 0))
    counts["annotations_kept"] += 1
    kept[ann["image_id"]].append(ann)
  counts = {k: counts[k] for k in ("annotations_in", "annotations_kept", "dropped_novel",
                                   "dropped_not_in_split", "dropped_degenerate_box",
                                   "crowd_kept")}
  counts["dropped_novel_by_category"] = dict(sorted(novel_by_category.items()))
  return kept, counts


def clipped_box(bbox: Sequence[float], height: int, width: int) -> Optional[Tuple[float, ...]]:
  """COCO [x, y, w, h] -> pixel (ymin, xmin, ymax, xmax) inside the image; None if empty."""
  x, y, w, h = (float(v) for v in bbox)
  xmin, ymin = max(x, 0.0), max(y, 0.0)
  xmax, ymax = min(x + w, float(width)), min(y + h, float(height))
  if xmax <= xmin or ymax <= ymin:
    return None
  return ymin, xmin, ymax, xmax


def resolve_image_path(image: dict, image_root: str) -> Optional[str]:
  """The file of an LVIS/COCO image below `image_root`, or None when no candidate exists.

  Candidates, in order: `file_name`; the last two parts of `coco_url` (e.g.
  train2017/000000000139.jpg); its last part.
  """
  candidates = []
  if image.get("file_name"):
    candidates.append(image["file_name"])
  if image.get("coco_url"):
    parts = image["coco_url"].split("/")
    candidates += [os.path.join(*parts[-2:]), parts[-1]]
  for candidate in candidates:
    path = os.path.join(image_root, candidate)
    if os.path.isfile(path):
      return path
  return None


def segmentation_to_mask(segmentation, height: int, width: int, ann_id=None) -> np.ndarray:
  """Polygons, uncompressed or compressed RLE -> [height, width] uint8 0/1 mask."""
  if isinstance(segmentation, list):
    polygons = [p for p in segmentation if len(p) >= 6]  # fewer than 3 points have no area.
    if not polygons:
      return np.zeros([height, width], np.uint8)
    rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
  elif isinstance(segmentation, dict) and "counts" in segmentation:
    if list(segmentation.get("size", [])) != [height, width]:
      raise ConversionError(
          f"annotation {ann_id}: RLE size {segmentation.get('size')} differs from the image size "
          f"[{height}, {width}]; fix the annotation file.")
    rle = segmentation
    if isinstance(segmentation["counts"], list):
      rle = mask_utils.frPyObjects(segmentation, height, width)
  else:
    raise ConversionError(f"annotation {ann_id}: 'segmentation' is neither a polygon list nor "
                          "an RLE dict; fix the annotation file or convert without masks.")
  return mask_utils.decode(rle).astype(np.uint8)


def encode_png(mask: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(mask).save(buffer, format="PNG")
  return buffer.getvalue()


def image_fields(task: dict, include_masks: bool) -> dict:
  """The `tf_example.encode_example` fields of one image task (see `convert`).

  Raises:
    ConversionError: when the image file cannot be read or does not match the JSON.
  """
  image, path, anns = task["image"], task["path"], task["annotations"]
  height, width = int(image["height"]), int(image["width"])
  with open(path, "rb") as f:
    encoded = f.read()
  try:
    with Image.open(io.BytesIO(encoded)) as decoded:
      image_format, size = decoded.format, decoded.size
      decoded.verify()
  except Exception as e:  # PIL raises many types for broken files. pylint: disable=broad-except
    raise ConversionError(f"{path}: unreadable image ({type(e).__name__}: {e})") from e
  if image_format not in IMAGE_FORMATS:
    raise ConversionError(f"{path}: format {image_format} cannot be decoded by TensorFlow; "
                          f"use one of {IMAGE_FORMATS}.")
  if size != (width, height):
    raise ConversionError(f"{path}: image is {size[0]}x{size[1]} but the JSON says "
                          f"{width}x{height}; the file does not belong to this annotation.")
  boxes = [clipped_box(a["bbox"], height, width) for a in anns]
  fields = {
      "encoded_image": encoded,
      "image_format": image_format.lower(),
      "source_id": image["id"],
      "height": height,
      "width": width,
      "filename": os.path.relpath(path, task["image_root"]),
      "boxes": np.array(boxes, np.float32).reshape(-1, 4) / [height, width, height, width],
      "classes": [a["category_id"] for a in anns],
      "areas": [a.get("area", 0.0) for a in anns],
      "is_crowd": [a.get("iscrowd", 0) for a in anns],
      "not_exhaustive_category_ids": image.get("not_exhaustive_category_ids", []),
      "neg_category_ids": image.get("neg_category_ids", []),
  }
  if include_masks:
    fields["masks_png"] = [
        encode_png(segmentation_to_mask(a.get("segmentation", []), height, width, a.get("id")))
        for a in anns]
  return fields


def write_image_tasks(tasks: Sequence[dict], include_masks: bool) -> tuple:
  """Serialized records of one shard's images, and the images that could not be read."""
  records, unreadable = [], []
  for task in tasks:
    if task["path"] is None:  # Counted as missing before the shards were written.
      continue
    try:
      fields = image_fields(task, include_masks)
    except (ConversionError, OSError) as e:
      unreadable.append({"id": task["image"]["id"], "path": task["path"], "reason": str(e)})
      continue
    records.append(tf_example.encode_example(fields).SerializeToString())
  return records, {"unreadable_images": unreadable}


def convert(annotations_path: str, image_root: str, output_dir: str, name: str,
            split: str = "lvis_rare", base_only: bool = False, include_masks: bool = True,
            num_shards: int = 0, num_workers: int = 1,
            max_missing_fraction: float = 0.0) -> dict:
  """Converts one annotation file; returns the report (also written to {name}.report.json).

  Args:
    annotations_path: LVIS v1 or COCO instances JSON.
    image_root: directory the images' `file_name` / `coco_url` paths are relative to.
    output_dir: where the shards and the report go.
    name: shard prefix, e.g. 'train' -> train-00000-of-00064.tfrecord.
    split: category split, one of `category_splits.SPLITS`.
    base_only: drop novel-category annotations (for training data).
    include_masks: write PNG instance masks.
    num_shards: number of shards; 0 picks about 256 images per shard.
    num_workers: processes writing shards in parallel.
    max_missing_fraction: fail when a larger fraction of images is missing or unreadable.

  Raises:
    ConversionError: bad input, or too many missing images (after writing the report).
  """
  dataset = load_dataset(annotations_path)
  vocabulary = category_splits.split_vocabulary(dataset["categories"], split,
                                                source=annotations_path)
  kept, counts = filter_annotations(dataset, vocabulary, base_only)
  images = sorted(dataset["images"], key=lambda img: img["id"])
  tasks = [{"image": img, "path": resolve_image_path(img, image_root), "image_root": image_root,
            "annotations": kept.get(img["id"], [])} for img in images]
  missing = [{"id": t["image"]["id"], "reason": "no file found below the image root",
              "file_name": t["image"].get("file_name") or t["image"].get("coco_url")}
             for t in tasks if t["path"] is None]
  report = {
      "annotations": os.path.abspath(annotations_path),
      "image_root": os.path.abspath(image_root),
      "name": name,
      "split": split,
      "base_only": base_only,
      "num_categories": len(vocabulary),
      "novel_categories": [n for n, nov in zip(vocabulary.names, vocabulary.is_novel) if nov],
      "num_images": len(images),
      **counts,
      "missing_images": missing,
  }
  report_path = os.path.join(output_dir, f"{name}.report.json")
  os.makedirs(output_dir, exist_ok=True)
  _check_missing(report, report_path, len(missing), max_missing_fraction)

  num_shards = num_shards or max(1, math.ceil(len(tasks) / DEFAULT_IMAGES_PER_SHARD))
  results = shards.write_shards(
      output_dir, name, shards.split_evenly(tasks, num_shards),
      functools.partial(write_image_tasks, include_masks=include_masks), num_workers)
  unreadable = [u for r in results for u in r["unreadable_images"]]
  report.update(
      num_shards=num_shards,
      num_images_written=sum(r["num_records"] for r in results),
      unreadable_images=unreadable,
      images_without_annotations=sum(1 for t in tasks if t["path"] and not t["annotations"]))
  _check_missing(report, report_path, len(missing) + len(unreadable), max_missing_fraction)
  report["status"] = "ok"
  vild_io.write_text_atomic(report_path, json.dumps(report, indent=1) + "\n")
  logging.info("%s: wrote %d images in %d shards to %s (%d annotations kept, %d novel dropped, "
               "%d degenerate dropped, %d images missing, %d unreadable); report: %s",
               name, report["num_images_written"], num_shards, output_dir,
               counts["annotations_kept"], counts["dropped_novel"],
               counts["dropped_degenerate_box"], len(missing), len(unreadable), report_path)
  return report


def _check_missing(report: dict, report_path: str, num_bad: int, max_fraction: float) -> None:
  fraction = num_bad / max(report["num_images"], 1)
  if fraction <= max_fraction:
    return
  report["status"] = "failed: too many missing or unreadable images"
  vild_io.write_text_atomic(report_path, json.dumps(report, indent=1) + "\n")
  raise ConversionError(
      f"{num_bad} of {report['num_images']} images ({fraction:.1%}) are missing or unreadable, "
      f"more than max_missing_fraction={max_fraction}; they are listed in {report_path}. Check "
      "the image root, or raise max_missing_fraction to convert the rest.")
