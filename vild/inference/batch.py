"""Detection over image files: a PNG with the detections drawn and a JSON per image.

Unreadable images are skipped and reported; the others are still processed. Every file is
written under a temporary name and renamed when complete.

Output directory:
  <name>.png         the image with masks, boxes and "label score" drawn
  <name>.json        {"image", "height", "width", "method", "vocabulary": [names],
                      "detections": [see vild.inference.detections]}
  detections.json    the run: {"model", "vocabulary", "images": [{"image", "png", "json",
                      "num_detections"}], "skipped": [{"image", "error"}]}

<name> is the image's file name without its extension, made unique within the run (`_2`,
`_3`, ... appended): no two outputs of a run share a path, even on a case-insensitive file
system, for images with the same name in different folders, for an image named
`detections.*`, and no output replaces one of the input images.
"""
import dataclasses
import json
import os
import unicodedata
from typing import Any, Dict, List, Sequence

import tqdm

from vild.inference import detector as detector_lib
from vild.inference import images as images_lib
from vild.inference import visualize
from vild.utils import io

INDEX_NAME = "detections.json"
OUTPUT_EXTENSIONS = (".png", ".json")


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
  unique = {}  # an image named twice (e.g. by a folder and a glob) is processed once
  for path in paths:
    unique.setdefault(os.path.realpath(path), path)
  paths = list(unique.values())
  names = output_names(paths, output_dir)
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


def output_names(paths: Sequence[str], output_dir: str) -> Dict[str, str]:
  """Output file stem per image path (see the module docstring)."""
  def key(path: str) -> str:  # casefolded: a case-insensitive file system sees one file
    return os.path.realpath(path).casefold()

  index_stem = os.path.splitext(INDEX_NAME)[0]
  inputs = {key(p) for p in paths}

  def free(name: str) -> bool:
    outputs = (os.path.join(output_dir, name + ext) for ext in OUTPUT_EXTENSIONS)
    return (name.casefold() not in used and name.casefold() != index_stem and
            not any(key(o) in inputs for o in outputs))

  names, used = {}, set()
  for path in paths:
    stem = os.path.splitext(os.path.basename(path))[0]
    name, suffix = stem, 2
    while not free(name):
      name, suffix = f"{stem}_{suffix}", suffix + 1
    used.add(name.casefold())
    names[path] = name
  return names


def _fit(text: str, width: int, keep_end: bool = False) -> str:
  """`text` in at most `width` characters, an ellipsis where it was cut."""
  text = unicodedata.normalize("NFC", text)  # combining accents take no column
  if len(text) <= width:
    return text
  return "…" + text[-(width - 1):] if keep_end else text[:width - 1] + "…"


def summary_table(report: RunReport, rows: int, image_width: int = 32,
                  label_width: int = 24) -> str:
  """The top `rows` detections per image, one per line; long file names keep their end."""
  lines = [f"{'image':<{image_width}} {'label':<{label_width}} {'score':>6}  box [x, y, w, h]"]
  for result in report.results:
    image = _fit(result.image, image_width, keep_end=True)
    shown = result.detections.to_json(include_masks=False)[:rows]
    if not shown:
      lines.append(f"{image:<{image_width}} (no detections)")
    for item in shown:
      box = ", ".join(f"{v:.0f}" for v in item["bbox"])
      lines.append(f"{image:<{image_width}} {_fit(item['label'], label_width):<{label_width}} "
                   f"{item['score']:6.3f}  [{box}]")
  for skipped in report.skipped:
    lines.append(f"{_fit(skipped['image'], image_width, keep_end=True):<{image_width}} "
                 f"SKIPPED: {skipped['error']}")
  return "\n".join(lines)
