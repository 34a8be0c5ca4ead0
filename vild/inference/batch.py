"""Detection over image files: a PNG with the detections drawn and a JSON per image.

Unreadable images are skipped and reported; the others are still processed. Every file is
written under a temporary name and renamed when complete.

Output directory:
  <name>.png         the image with masks, boxes and "label score" drawn
  <name>.json        {"image", "height", "width", "method", "vocabulary": [names],
                      "detections": [see vild.inference.detections]}
  detections.json    the run: {"model", "vocabulary", "images": [{"image", "png", "json",
                      "num_detections"}], "skipped": [{"image", "error"}]}
"""
import dataclasses
import json
import os
from typing import Any, Dict, List, Sequence

import tqdm

from vild.inference import detector as detector_lib
from vild.inference import images as images_lib
from vild.inference import visualize
from vild.utils import io

INDEX_NAME = "detections.json"


@dataclasses.dataclass
class FileResult:
  image: str
  detections: detector_lib.Detections
  png: str
  json: str


@dataclasses.dataclass
class RunReport:
  results: List[FileResult] = dataclasses.field(default_factory=list)
  skipped: List[Dict[str, str]] = dataclasses.field(default_factory=list)  # image, error


def detect_files(detector: detector_lib.Detector, paths: Sequence[str], vocabulary,
                 output_dir: str, method: str = "vild", include_masks: bool = True,
                 max_drawn: int = 100, model_name: str = "") -> RunReport:
  """Runs `detector` on each image file and writes the outputs described above."""
  vocab, matrix = detector.text_embeddings(vocabulary)  # embedded once, before any image
  io.makedirs(output_dir)
  report = RunReport()
  names = _output_names(paths)
  for path in tqdm.tqdm(paths, unit="image", desc="detect"):
    try:
      image = images_lib.load_image(path)
    except images_lib.ImageError as e:
      report.skipped.append({"image": path, "error": str(e)})
      tqdm.tqdm.write(f"Skipped {e}")
      continue
    [detections] = detector.detect(image, (vocab, matrix), method=method)
    png = os.path.join(output_dir, names[path] + ".png")
    json_path = os.path.join(output_dir, names[path] + ".json")
    with io.atomic_path(png) as tmp, io.open_file(tmp, "wb") as f:
      visualize.draw_detections(image, detections, max_drawn=max_drawn).save(f, format="PNG")
    io.write_text_atomic(json_path, json.dumps(_image_record(path, detections, include_masks),
                                               indent=1) + "\n")
    report.results.append(FileResult(path, detections, png, json_path))
  io.write_text_atomic(os.path.join(output_dir, INDEX_NAME),
                       json.dumps(_index(report, vocab.names, model_name), indent=1) + "\n")
  return report


def _image_record(path: str, detections: detector_lib.Detections,
                  include_masks: bool) -> Dict[str, Any]:
  height, width = detections.image_size
  return {"image": path, "height": height, "width": width, "method": detections.method,
          "vocabulary": list(detections.vocabulary.names),
          "detections": detections.to_json(include_masks=include_masks)}


def _index(report: RunReport, names: Sequence[str], model_name: str) -> Dict[str, Any]:
  return {"model": model_name, "vocabulary": list(names),
          "images": [{"image": r.image, "png": os.path.basename(r.png),
                      "json": os.path.basename(r.json), "num_detections": len(r.detections)}
                     for r in report.results],
          "skipped": report.skipped}


def _output_names(paths: Sequence[str]) -> Dict[str, str]:
  """Output file stem per image: its file name without extension, made unique."""
  names, used = {}, set()
  for path in paths:
    stem = os.path.splitext(os.path.basename(path))[0]
    name, suffix = stem, 2
    while name in used:
      name, suffix = f"{stem}_{suffix}", suffix + 1
    used.add(name)
    names[path] = name
  return names
