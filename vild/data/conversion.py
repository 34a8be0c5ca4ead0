"""LVIS v1 / COCO instances JSON + images -> sharded ViLD TFRecords, with open-vocabulary splits.

What ViLD needs beyond a plain COCO converter:
  * base-only training data: with `base_only`, annotations of novel categories (LVIS rare, the
    17 OV-COCO novel classes; see `vild.data.category_splits`) are dropped while their images
    stay, so novel objects appear unlabelled, as in the paper. Evaluation data keeps everything.
  * LVIS federated labels: `not_exhaustive_category_ids` and `neg_category_ids` are kept.
  * LVIS/COCO image layouts: each image is found below `image_root` through its `file_name`
    (LVIS v0.5's `COCO_val2014_*.jpg` also under `val2014/`, `train2017/`, `val2017/`) or the
    last parts of its `coco_url` (LVIS v1: `val2017/...`; LVIS val images come from both COCO
    train2017 and val2017). Paths resolving outside `image_root` are refused unless allowed.

Every stored image is one TensorFlow decodes into the pixels `vild.data.pixels.to_rgb8` gives:
JPEG/PNG in RGB or grayscale are stored as read, after a decode with `tf.io.decode_image` proves
them whole; other formats and modes (16-bit, palette, alpha, CMYK...) are converted to 8-bit RGB
PNG. Nothing is dropped silently. Degenerate boxes (no area inside the image), degenerate
polygons (masks asked for, no polygon of 3 or more points), novel and out-of-split annotations
are counted per reason; missing, corrupt and refused images are listed with the reason (and the
paths tried). Everything goes to `{output_dir}/{name}.report.json`, and the run fails when more
than `max_missing_fraction` of the images are missing or refused.

A directory's shards of one name come from one conversion: its settings (annotation file
content hash, image root, split, flags, record format) are saved as `{name}.settings.json`
(`vild.utils.job_settings`); a rerun with the same settings resumes, with other settings stops
naming what differs, and `overwrite` deletes the old shards first. Shard writing is
`vild.data.shards` (parallel, resumable, atomic).
"""
import collections
import functools
import io
import json
import math
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from absl import logging
from PIL import Image
from pycocotools import mask as mask_utils

from vild.data import category_splits
from vild.data import pixels
from vild.data import shards
from vild.data import tf_example
from vild.utils import io as vild_io
from vild.utils import job_settings

# What the records hold for a given input; part of the saved settings, so a directory written
# under another version of the rules is not resumed. 2: images validated and normalised,
# degenerate polygons dropped.
RECORD_FORMAT = "vild.tfrecords/2"
# Stored as read when their pixels are in one of `pixels.TENSORFLOW_READABLE_MODES` (MPO is a
# JPEG with extra camera frames, which decoders skip).
STORED_AS_READ = {"JPEG": "jpeg", "MPO": "jpeg", "PNG": "png"}
DEFAULT_IMAGES_PER_SHARD = 256
# LVIS v0.5 names images as COCO 2014 did; COCO 2017 holds the same images as <id>.jpg.
COCO_2014_FILE_NAME = re.compile(r"COCO_(train|val)2014_(\d{12})\.(jpg|png)$")


class ConversionError(RuntimeError):
  """The input cannot be converted as asked; the message names the file, the field and the fix."""


def load_dataset(path: str) -> dict:
  """Reads an LVIS/COCO instances JSON and checks its top-level fields."""
  if not vild_io.exists(path):
    raise ConversionError(f"{path}: no such annotation file; give an LVIS v1 or COCO "
                          "instances JSON.")
  try:
    dataset = vild_io.read_json(path)
  except json.JSONDecodeError as e:
    raise ConversionError(f"{path}: not valid JSON ({e}).") from e
  missing = [k for k in ("images", "annotations", "categories") if k not in dataset]
  if missing:
    raise ConversionError(f"{path}: missing top-level fields {missing}; an LVIS/COCO "
                          "instances JSON has 'images', 'annotations' and 'categories'.")
  return dataset


def filter_annotations(dataset: dict, vocabulary, base_only: bool, include_masks: bool = True
                       ) -> Tuple[Dict[int, List[dict]], Dict]:
  """Keeps the annotations to write, per image id, and counts what was dropped and why.

  Args:
    dataset: the loaded JSON.
    vocabulary: the split's categories (`category_splits.split_vocabulary`).
    base_only: drop annotations of novel categories (training data).
    include_masks: masks will be written, so a polygon annotation needs a polygon of 3 or more
      points. Without one it is dropped (as detectron2's COCO loader does): an empty mask would
      teach the mask head that the object has no pixels, the box as a mask a rectangle.
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
    segmentation = ann.get("segmentation", [])
    if include_masks and isinstance(segmentation, list):
      polygons = valid_polygons(segmentation)
      if not polygons:
        counts["dropped_degenerate_polygon"] += 1
        continue
      counts["degenerate_polygon_parts_removed"] += len(segmentation) - len(polygons)
    counts["crowd_kept"] += int(ann.get("iscrowd", 0))
    counts["annotations_kept"] += 1
    kept[ann["image_id"]].append(ann)
  counts = {k: counts[k] for k in ("annotations_in", "annotations_kept", "dropped_novel",
                                   "dropped_not_in_split", "dropped_degenerate_box",
                                   "dropped_degenerate_polygon",
                                   "degenerate_polygon_parts_removed", "crowd_kept")}
  counts["dropped_novel_by_category"] = dict(sorted(novel_by_category.items()))
  return kept, counts


def valid_polygons(polygons: Sequence[Sequence[float]]) -> List[Sequence[float]]:
  """The polygons of 3 or more (x, y) points; the others have no area."""
  return [p for p in polygons if len(p) >= 6 and len(p) % 2 == 0]


def clipped_box(bbox: Sequence[float], height: int, width: int) -> Optional[Tuple[float, ...]]:
  """COCO [x, y, w, h] -> pixel (ymin, xmin, ymax, xmax) inside the image; None if empty."""
  x, y, w, h = (float(v) for v in bbox)
  xmin, ymin = max(x, 0.0), max(y, 0.0)
  xmax, ymax = min(x + w, float(width)), min(y + h, float(height))
  if xmax <= xmin or ymax <= ymin:
    return None
  return ymin, xmin, ymax, xmax


def image_path_candidates(image: dict) -> List[str]:
  """Where an LVIS/COCO image may be below the image root, relative to it, in the order tried.

  `file_name`; for a COCO 2014 name (LVIS v0.5: COCO_val2014_000000397133.jpg) also
  val2014/<name> and the COCO 2017 names train2017/ and val2017/000000397133.jpg; then the last
  two parts of `coco_url` (LVIS v1: val2017/000000397133.jpg) and its last part.
  """
  candidates = []
  file_name = image.get("file_name")
  if file_name:
    candidates.append(file_name)
    coco_2014 = COCO_2014_FILE_NAME.search(file_name)
    if coco_2014:
      split, number, extension = coco_2014.groups()
      candidates += [os.path.join(f"{split}2014", os.path.basename(file_name)),
                     os.path.join("train2017", f"{number}.{extension}"),
                     os.path.join("val2017", f"{number}.{extension}")]
  if image.get("coco_url"):
    parts = image["coco_url"].split("/")
    candidates += [os.path.join(*parts[-2:]), parts[-1]]
  return list(dict.fromkeys(candidates))


def resolve_image_path(image: dict, image_root: str, allow_outside_image_root: bool = False
                       ) -> Tuple[Optional[str], List[str]]:
  """(the image's file, or None when no candidate exists; the paths tried, in order).

  Raises:
    ConversionError: a candidate resolves outside `image_root` (`../../x.png`, an absolute
      path elsewhere) and `allow_outside_image_root` is False.
  """
  root = os.path.abspath(image_root)
  tried = []
  for candidate in image_path_candidates(image):
    path = os.path.normpath(os.path.join(root, candidate))
    if not allow_outside_image_root and os.path.commonpath([root, path]) != root:
      raise ConversionError(
          f"image {image.get('id')}: {candidate!r} resolves to {path}, outside the image root "
          f"{root}; fix the annotation file, or allow it (--allow_outside_image_root) if the "
          "file is meant to be read and embedded in the records.")
    tried.append(path)
    if os.path.isfile(path):
      return path, tried
  return None, tried


def segmentation_to_mask(segmentation, height: int, width: int, ann_id=None) -> np.ndarray:
  """Polygons, uncompressed or compressed RLE -> [height, width] uint8 0/1 mask."""
  if isinstance(segmentation, list):
    polygons = valid_polygons(segmentation)
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


def storable_image(encoded: bytes, path: str, height: int, width: int
                   ) -> Tuple[bytes, str, Optional[str]]:
  """(bytes to store, their format, the 'FORMAT mode' they were converted from or None).

  JPEG/PNG in RGB or grayscale are stored as read once `tf.io.decode_image`, the decoder of
  training and of the distillation tools, has decoded them whole (PIL misses some truncations).
  Anything else PIL reads becomes 8-bit RGB (`pixels.to_rgb8`) stored as PNG.

  Raises:
    ConversionError: naming the file, when it is not an image, is corrupt or truncated, has
      pixels without an 8-bit form, or differs in size from the annotation file.
  """
  with _pil_call(path, Image.open, io.BytesIO(encoded)) as image:
    if image.size != (width, height):
      raise ConversionError(f"{path}: image is {image.size[0]}x{image.size[1]} but the "
                            f"annotation file says {width}x{height}; the file does not belong "
                            "to this image.")
    converted_from = f"{image.format} {image.mode}"
    if image.format in STORED_AS_READ and image.mode in pixels.TENSORFLOW_READABLE_MODES:
      _check_tensorflow_decodes(encoded, path)
      return encoded, STORED_AS_READ[image.format], None
    _pil_call(path, image.load)
    try:
      rgb = pixels.to_rgb8(image, path)
    except pixels.UnsupportedImageError as e:
      raise ConversionError(str(e)) from e
  return encode_png(rgb), "png", converted_from


def _pil_call(path: str, fn, *args):
  """fn(*args), with PIL's many exception types for broken files as one ConversionError."""
  try:
    return fn(*args)
  except Exception as e:  # pylint: disable=broad-except
    raise ConversionError(f"{path}: unreadable image ({type(e).__name__}: {e}).") from e


def _check_tensorflow_decodes(encoded: bytes, path: str) -> None:
  try:
    tf.io.decode_image(encoded, channels=3, expand_animations=False)
  except tf.errors.InvalidArgumentError as e:
    reason = re.sub(r"\{\{.*?\}\}\s*|\s*\[Op:\w+\]", "", e.message).strip()
    raise ConversionError(f"{path}: corrupt or truncated image, TensorFlow cannot decode it "
                          f"({reason}).") from e


def image_fields(task: dict, include_masks: bool) -> Tuple[dict, Optional[str]]:
  """The `tf_example.encode_example` fields of one image task (see `convert`), and the
  'FORMAT mode' its image was converted from (None when stored as read).

  Raises:
    ConversionError: when the image file cannot be stored (see `storable_image`).
  """
  image, path, anns = task["image"], task["path"], task["annotations"]
  height, width = int(image["height"]), int(image["width"])
  encoded, image_format, converted_from = storable_image(vild_io.read_bytes(path), path, height,
                                                        width)
  boxes = [clipped_box(a["bbox"], height, width) for a in anns]
  fields = {
      "encoded_image": encoded,
      "image_format": image_format,
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
  return fields, converted_from


def missing_image(task: dict) -> dict:
  image = task["image"]
  return {"id": image["id"], "file_name": image.get("file_name") or image.get("coco_url"),
          "tried": task["tried"]}


def write_image_tasks(tasks: Sequence[dict], include_masks: bool) -> tuple:
  """Serialized records of one shard's images, and what became of the others.

  The result (saved with the shard, so a resumed run reports what the shard holds):
  missing_images, unreadable_images (corrupt or refused, with the reason), converted_images
  ({'FORMAT mode': count} of images stored as 8-bit RGB PNG), images_without_annotations.
  """
  records, missing, unreadable = [], [], []
  converted, without_annotations = collections.Counter(), 0
  for task in tasks:
    if task["path"] is None:
      missing.append(missing_image(task))
      continue
    try:
      fields, converted_from = image_fields(task, include_masks)
    except (ConversionError, OSError) as e:
      unreadable.append({"id": task["image"]["id"], "path": task["path"], "reason": str(e)})
      continue
    records.append(tf_example.encode_example(fields).SerializeToString())
    converted.update([converted_from] if converted_from else [])
    without_annotations += not task["annotations"]
  return records, {"missing_images": missing, "unreadable_images": unreadable,
                   "converted_images": dict(converted),
                   "images_without_annotations": without_annotations}


def convert(annotations_path: str, image_root: str, output_dir: str, name: str,
            split: str = "lvis_rare", base_only: bool = False, include_masks: bool = True,
            num_shards: int = 0, num_workers: int = 1, max_missing_fraction: float = 0.0,
            allow_outside_image_root: bool = False, overwrite: bool = False) -> dict:
  """Converts one annotation file; returns the report (also written to {name}.report.json).

  Args:
    annotations_path: LVIS v1/v0.5 or COCO instances JSON.
    image_root: directory the images' `file_name` / `coco_url` paths are relative to.
    output_dir: where the shards, their settings and the report go.
    name: shard prefix, e.g. 'train' -> train-00000-of-00064.tfrecord.
    split: category split, one of `category_splits.SPLITS`.
    base_only: drop novel-category annotations (for training data).
    include_masks: write PNG instance masks.
    num_shards: number of shards; 0 picks about 256 images per shard.
    num_workers: processes writing shards in parallel.
    max_missing_fraction: fail when a larger fraction of images is missing, corrupt or
      refused; below it they are skipped, counted and listed in the report.
    allow_outside_image_root: read image paths that resolve outside `image_root`.
    overwrite: delete this name's shards, settings and report first, whatever their settings.

  Raises:
    ConversionError: bad input, shards of this name written with other settings, or too many
      missing images (after writing the report).
  """
  dataset = load_dataset(annotations_path)
  vocabulary = category_splits.split_vocabulary(dataset["categories"], split,
                                                source=annotations_path)
  kept, counts = filter_annotations(dataset, vocabulary, base_only, include_masks)
  images = sorted(dataset["images"], key=lambda img: img["id"])
  tasks = []
  for img in images:
    path, tried = resolve_image_path(img, image_root, allow_outside_image_root)
    tasks.append({"image": img, "path": path, "tried": tried, "image_root": image_root,
                  "annotations": kept.get(img["id"], [])})
  num_shards = num_shards or max(1, math.ceil(len(tasks) / DEFAULT_IMAGES_PER_SHARD))
  settings = {  # what determines the records; see check_previous_conversion
      "format": RECORD_FORMAT,
      "annotations_sha256": job_settings.file_sha256(annotations_path),
      "image_root": vild_io.absolute(image_root),
      "split": split,
      "base_only": base_only,
      "include_masks": include_masks,
      "num_shards": num_shards,
      "allow_outside_image_root": allow_outside_image_root,
  }
  vild_io.makedirs(output_dir)
  if overwrite:
    remove_conversion(output_dir, name)
  else:
    check_previous_conversion(output_dir, name, settings)

  report = {
      "annotations": vild_io.absolute(annotations_path),
      "image_root": vild_io.absolute(image_root),
      "name": name,
      "settings": settings,
      "split": split,
      "base_only": base_only,
      "num_categories": len(vocabulary),
      "novel_categories": [n for n, nov in zip(vocabulary.names, vocabulary.is_novel) if nov],
      "num_images": len(images),
      **counts,
      "missing_images": [missing_image(t) for t in tasks if t["path"] is None],
  }
  report_path = _report_path(output_dir, name)
  _check_missing(report, report_path, len(report["missing_images"]), max_missing_fraction)

  job_settings.save(_settings_path(output_dir, name), settings)
  results = shards.write_shards(
      output_dir, name, shards.split_evenly(tasks, num_shards),
      functools.partial(write_image_tasks, include_masks=include_masks), num_workers)
  report.update(num_shards=num_shards, **_shards_summary(results))
  num_bad = len(report["missing_images"]) + len(report["unreadable_images"])
  _check_missing(report, report_path, num_bad, max_missing_fraction)
  report["status"] = "ok"
  vild_io.write_text_atomic(report_path, json.dumps(report, indent=1) + "\n")
  logging.info("%s: wrote %d images in %d shards to %s (%d annotations kept, %d novel dropped, "
               "%d degenerate boxes and %d degenerate polygons dropped; %d images missing, %d "
               "corrupt or refused, %d converted to 8-bit RGB); report: %s",
               name, report["num_images_written"], num_shards, output_dir,
               counts["annotations_kept"], counts["dropped_novel"],
               counts["dropped_degenerate_box"], counts["dropped_degenerate_polygon"],
               len(report["missing_images"]), len(report["unreadable_images"]),
               sum(report["converted_images"].values()), report_path)
  return report


def _shards_summary(results: Sequence[dict]) -> dict:
  """The report's account of the shards on disk, from their saved results (`write_image_tasks`)."""
  converted = collections.Counter()
  for result in results:
    converted.update(result["converted_images"])
  return {
      "num_images_written": sum(r["num_records"] for r in results),
      "missing_images": [m for r in results for m in r["missing_images"]],
      "unreadable_images": [u for r in results for u in r["unreadable_images"]],
      "converted_images": dict(sorted(converted.items())),
      "images_without_annotations": sum(r["images_without_annotations"] for r in results),
  }


def check_previous_conversion(output_dir: str, name: str, settings: dict) -> None:
  """Raises unless the shards of `name` already in `output_dir` (if any) have `settings`."""
  written = [p for p in shards.list_outputs(output_dir, name) if not p.endswith(".tmp")]
  if not written:
    return
  settings_path = _settings_path(output_dir, name)
  saved = job_settings.load(settings_path)
  if saved is None:
    raise ConversionError(
        f"{output_dir} holds '{name}' shards (e.g. {os.path.basename(written[0])}) but no "
        f"{os.path.basename(settings_path)}: they were written by an older vild or by hand, "
        "with unknown settings. Pass --overwrite to delete them and convert again, or use "
        "another --output_dir or --name.")
  changed = job_settings.differences(saved, settings)
  if saved.get("annotations_sha256") != settings["annotations_sha256"]:
    changed.append("the annotation file's content differs (the old file is named in "
                   f"{os.path.basename(_report_path(output_dir, name))})")
  if changed:
    raise ConversionError(
        f"{output_dir} holds '{name}' shards written with other settings "
        f"({'; '.join(changed)}). Rerun with the saved settings ({settings_path}) to finish "
        "that conversion, pass --overwrite to delete its shards and convert again, or use "
        "another --output_dir or --name.")


def remove_conversion(output_dir: str, name: str) -> None:
  """Deletes the shards, settings and report of `name` in `output_dir`."""
  shards.remove_outputs(output_dir, name)
  for path in (_settings_path(output_dir, name), _report_path(output_dir, name)):
    vild_io.remove(path)


def _settings_path(output_dir: str, name: str) -> str:
  return os.path.join(output_dir, f"{name}.settings.json")


def _report_path(output_dir: str, name: str) -> str:
  return os.path.join(output_dir, f"{name}.report.json")


def _check_missing(report: dict, report_path: str, num_bad: int, max_fraction: float) -> None:
  fraction = num_bad / max(report["num_images"], 1)
  if fraction <= max_fraction:
    return
  report["status"] = "failed: too many missing or unreadable images"
  vild_io.write_text_atomic(report_path, json.dumps(report, indent=1) + "\n")
  examples = "".join(
      f"\n  image {m['id']} ({m['file_name']}): not found; tried {', '.join(m['tried'])}"
      for m in report["missing_images"][:3])
  examples += "".join(f"\n  image {u['id']}: {u['reason']}"
                      for u in report.get("unreadable_images", [])[:3])
  written = ("" if "num_images_written" not in report else
             f" The shards written ({report['num_images_written']} images) are kept: a rerun "
             f"with --max_missing_fraction={math.ceil(fraction * 1000) / 1000} accepts the "
             "rest as missing without rewriting them.")
  raise ConversionError(
      f"{num_bad} of {report['num_images']} images ({fraction:.1%}) are missing or unreadable, "
      f"more than max_missing_fraction={max_fraction}; all are listed in {report_path}:"
      f"{examples}\nCheck --image_root, or raise --max_missing_fraction to convert the rest."
      f"{written}")
