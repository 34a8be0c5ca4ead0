"""The benchmark's report: metrics.json, RESULTS.md (ours beside the paper's), and the figures.

Everything here is read from the finished stages: the metrics each method's stage wrote (LVIS
API on the validation split, all categories), the teacher's zero-shot accuracy and the wall
time of each stage. The targets are checked on the measured numbers and reported as they
come out, pass or fail.
"""
import contextlib
import dataclasses
import datetime
import glob
import io as std_io
import json
import os
import shutil
import subprocess
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import lvis  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from PIL import ImageDraw  # noqa: E402

from vild.evaluation import detections as detections_lib  # noqa: E402
from vild.evaluation import lvis_metrics  # noqa: E402
from vild.synthetic_benchmark import methods as methods_lib  # noqa: E402
from vild.synthetic_benchmark import stages  # noqa: E402
from vild.utils import io  # noqa: E402

IOU_TYPES = ("segm", "bbox")  # mask first: the paper's metric
# The paper's LVIS v1 val table (mask AP, ResNet-50; VILD.md): row -> (AP_r, AP_c, AP_f, AP).
PAPER = {
    "Supervised-RFS (base+novel)": (12.3, 24.3, 32.4, 25.4),
    "CLIP on cropped regions": (18.9, 18.8, 16.0, 17.7),
    "ViLD-text": (10.1, 23.9, 32.5, 24.9),
    "ViLD-image": (11.2, 11.3, 11.1, 11.2),
    "ViLD (w=0.5)": (16.1, 20.0, 28.3, 22.5),
    "ViLD-ensemble (w=0.5)": (16.6, 24.6, 30.3, 25.5),
}
# What "well above", "clearly above" and "within a few points" mean, in AP points (x100).
TEXT_NOVEL_MIN = 5.0        # ViLD-text AP_novel at least this
DISTILL_NOVEL_MARGIN = 3.0  # ViLD AP_novel at least this above ViLD-text's
ENSEMBLE_BASE_GAP = 3.0     # ViLD-ensemble AP_base at most this below supervised base-only
ENSEMBLE_NOVEL_SLACK = 1.0  # ViLD-ensemble AP_novel at most this below ViLD's
GRID_SCALE = 3              # detection grid images are drawn at 3x (128 px scenes are small)
GRID_SCORE_THRESHOLD = 0.3


# ------------------------------------------------------------------------------------------
# Numbers.
def novel_names(categories: Sequence[dict]) -> Dict[int, str]:
  """{id: name} of the novel categories: LVIS frequency 'r', as the world marks them."""
  return {c["id"]: c["name"] for c in categories if c["frequency"] == "r"}


def category_counts(val_json: str) -> Dict[str, int]:
  """Categories of each LVIS frequency with at least one validation annotation: the ones the
  LVIS API averages over (others have no precision)."""
  with open(val_json, encoding="utf-8") as f:
    data = json.load(f)
  present = {a["category_id"] for a in data["annotations"]}
  counts = {"f": 0, "c": 0, "r": 0}
  for category in data["categories"]:
    if category["id"] in present:
      counts[category["frequency"]] += 1
  return counts


def novel_object_counts(world_dir: str) -> Dict[str, Dict[str, int]]:
  """{'train' | 'val': {'novel': objects of novel categories, 'all': every object}} of the
  world's scenes. Training annotations drop the novel objects, but the scenes still show them
  (train_full.json annotates every object)."""
  counts = {}
  for split, file_name in (("train", "train_full.json"), ("val", "val.json")):
    with open(os.path.join(world_dir, file_name), encoding="utf-8") as f:
      data = json.load(f)
    novel = novel_names(data["categories"])
    counts[split] = {"novel": sum(a["category_id"] in novel for a in data["annotations"]),
                     "all": len(data["annotations"])}
  return counts


def novel_and_base(metrics: Mapping[str, float], iou_type: str,
                   counts: Mapping[str, int]) -> Dict[str, float]:
  """AP, AP_novel (= APr) and AP_base (the mean over f + c categories), in points.

  LVIS's APc and APf are means over their categories, so AP_base is their mean weighted by
  how many categories each holds.
  """
  get = lambda name: 100 * float(metrics[f"{iou_type}/{name}"])  # noqa: E731
  base = (counts["f"] * get("APf") + counts["c"] * get("APc")) / (counts["f"] + counts["c"])
  return {"AP": get("AP"), "AP_novel": get("APr"), "AP_base": base}


def summarize(stage_results: Mapping[str, stages.StageResult],
              counts: Mapping[str, int]) -> Dict[str, Dict[str, Dict[str, float]]]:
  """{method name: {iou type: {AP, AP_novel, AP_base}}} of every evaluated stage."""
  table = {}
  for name, result in stage_results.items():
    metrics = result.summary.get("metrics")
    if metrics is None:
      continue
    table[name] = {t: novel_and_base(metrics, t, counts) for t in IOU_TYPES
                   if f"{t}/AP" in metrics}
  return table


def novel_category_ap(val_json: str, detection_files: Mapping[str, str],
                      iou_type: str = "segm") -> Dict[str, Dict[str, float]]:
  """{method: {novel category name: AP in points}} from each method's saved detections.

  APr averages these; per category it shows which novel concepts each method finds.
  """
  gt = lvis.LVIS(val_json)
  novel = novel_names(gt.dataset["categories"])
  table = {}
  for name, path in detection_files.items():
    with open(path, encoding="utf-8") as f:
      detections = json.load(f)
    if not detections:  # the lvis API cannot load an empty list; nothing found scores 0
      table[name] = {category: 0.0 for category in novel.values()}
      continue
    evaluator = lvis.LVISEval(gt, detections_lib.for_iou_type(detections, iou_type),
                              iou_type=iou_type)
    # Categories are matched independently: evaluating only the novel ones gives their AP
    # unchanged, in a fifth of the time.
    evaluator.params.cat_ids = sorted(novel)
    with lvis_metrics.numpy_float_alias(), contextlib.redirect_stdout(std_io.StringIO()):
      evaluator.evaluate()
      evaluator.accumulate()
    precision = evaluator.eval["precision"]  # [IoU thresholds, recalls, categories, areas]
    row = {}
    for k, category in enumerate(evaluator.params.cat_ids):
      if category in novel:
        values = precision[:, :, k, 0]
        values = values[values > -1]
        row[novel[category]] = 100 * float(values.mean()) if values.size else float("nan")
    table[name] = row
  return table


def detection_files(stage_results: Mapping[str, stages.StageResult]) -> Dict[str, str]:
  """{method name: its evaluation's detections JSON}, for the trained methods."""
  files = {}
  for name, result in stage_results.items():
    found = sorted(glob.glob(os.path.join(result.directory, "model", "eval",
                                          "detections_*.json")))
    if found:
      files[name] = found[-1]
  return files


@dataclasses.dataclass(frozen=True)
class Target:
  claim: str
  measured: str
  holds: bool


def check_targets(table, spec) -> List[Target]:
  """The issue's targets, on mask AP (box AP where a method has no masks)."""
  def ap(name, key):
    return table[name]["segm"][key]
  vild = methods_lib.vild(spec.vild_weight).name
  ensemble = methods_lib.vild_ensemble(spec.vild_weight).name
  base, text = methods_lib.SUPERVISED_BASE.name, methods_lib.VILD_TEXT.name
  box_novel = table[base]["bbox"]["AP_novel"]
  return [
      Target("Supervised base-only scores 0 on novel categories",
             f"AP_novel {ap(base, 'AP_novel'):.1f} (box {box_novel:.1f})",
             ap(base, "AP_novel") == 0 and box_novel == 0),
      Target(f"ViLD-text is well above 0 on novel (AP_novel >= {TEXT_NOVEL_MIN:g})",
             f"AP_novel {ap(text, 'AP_novel'):.1f}", ap(text, "AP_novel") >= TEXT_NOVEL_MIN),
      Target(f"ViLD is clearly above ViLD-text on novel (by >= {DISTILL_NOVEL_MARGIN:g})",
             f"{ap(vild, 'AP_novel'):.1f} vs {ap(text, 'AP_novel'):.1f}",
             ap(vild, "AP_novel") >= ap(text, "AP_novel") + DISTILL_NOVEL_MARGIN),
      Target(f"ViLD-ensemble keeps base AP within {ENSEMBLE_BASE_GAP:g} of supervised",
             f"AP_base {ap(ensemble, 'AP_base'):.1f} vs {ap(base, 'AP_base'):.1f}",
             ap(ensemble, "AP_base") >= ap(base, "AP_base") - ENSEMBLE_BASE_GAP),
      Target(f"ViLD-ensemble keeps ViLD's novel AP (within {ENSEMBLE_NOVEL_SLACK:g})",
             f"AP_novel {ap(ensemble, 'AP_novel'):.1f} vs {ap(vild, 'AP_novel'):.1f}",
             ap(ensemble, "AP_novel") >= ap(vild, "AP_novel") - ENSEMBLE_NOVEL_SLACK),
  ]


# ------------------------------------------------------------------------------------------
# Figures.
def plot_weight_sweep(path: str, table, spec) -> None:
  """AP_novel and AP_base against the distillation weight w (ViLD-text at w = 0)."""
  weights = sorted({spec.vild_weight, *spec.weight_sweep})
  names = [methods_lib.VILD_TEXT.name] + [methods_lib.vild(w).name for w in weights]
  xs = [0.0] + weights
  figure, axes = plt.subplots(1, 2, figsize=(9, 3.6))
  for axis, iou_type, title in zip(axes, IOU_TYPES, ("mask AP", "box AP")):
    for key, style in (("AP_novel", "o-"), ("AP_base", "s--")):
      axis.plot(xs, [table[n][iou_type][key] for n in names], style, label=key)
    image = table.get(methods_lib.VILD_IMAGE.name, {}).get(iou_type)
    if image:
      axis.axhline(image["AP_novel"], color="grey", linestyle=":",
                   label="ViLD-image AP_novel")
    axis.set_xlabel("distillation weight w (0 = ViLD-text)")
    axis.set_title(title)
    axis.grid(alpha=0.3)
  axes[0].set_ylabel("AP (points)")
  axes[0].legend(fontsize=8)
  figure.tight_layout()
  with io.atomic_path(path) as tmp:
    figure.savefig(tmp, format="png", dpi=110)
  plt.close(figure)


def novel_rich_images(val_json: str, count: int) -> List[Tuple[str, List[str]]]:
  """(file name, novel names) of the `count` validation images with most novel objects."""
  with open(val_json, encoding="utf-8") as f:
    data = json.load(f)
  novel = novel_names(data["categories"])
  per_image: Dict[int, List[str]] = {}
  for ann in data["annotations"]:
    if ann["category_id"] in novel:
      per_image.setdefault(ann["image_id"], []).append(novel[ann["category_id"]])
  files = {i["id"]: i["file_name"] for i in data["images"]}
  ranked = sorted(per_image, key=lambda i: (-len(per_image[i]), i))[:count]
  return [(files[i], sorted(per_image[i])) for i in ranked]


def draw_grid(path: str, rows: Sequence[Tuple[str, Sequence[Image.Image]]]) -> None:
  """Rows of equally sized images with a title strip above each row."""
  width, height = rows[0][1][0].size
  title_height = 18
  grid = Image.new("RGB", (width * len(rows[0][1]), (height + title_height) * len(rows)),
                   (255, 255, 255))
  draw = ImageDraw.Draw(grid)
  for r, (title, images) in enumerate(rows):
    top = r * (height + title_height)
    draw.text((4, top + 3), title, fill=(0, 0, 0))
    for c, image in enumerate(images):
      grid.paste(image, (c * width, top + title_height))
  with io.atomic_path(path) as tmp:
    grid.save(tmp, format="PNG")


# ------------------------------------------------------------------------------------------
# RESULTS.md.
def _fmt(value: Optional[float]) -> str:
  return "—" if value is None else f"{value:.1f}"


def results_table(table, labels: Mapping[str, str], paper_rows: Mapping[str, Optional[str]]
                  ) -> List[str]:
  lines = [
      "| method | mask AP | mask AP_novel | mask AP_base | box AP | box AP_novel | box AP_base "
      "| paper AP_r | paper AP_c | paper AP_f | paper AP |",
      "|---|---|---|---|---|---|---|---|---|---|---|"]
  for name, label in labels.items():
    row = table[name]
    ours = [row.get(t, {}).get(k) for t in IOU_TYPES for k in ("AP", "AP_novel", "AP_base")]
    paper = PAPER.get(paper_rows.get(name) or "", (None,) * 4)
    lines.append(f"| {label} | " + " | ".join(_fmt(v) for v in ours + list(paper)) + " |")
  return lines


def novel_category_table(per_category, labels: Mapping[str, str]) -> List[str]:
  names = sorted({n for row in per_category.values() for n in row})
  lines = ["| method | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
  for name, label in labels.items():
    if name in per_category:
      lines.append(f"| {label} | " + " | ".join(_fmt(per_category[name].get(n))
                                               for n in names) + " |")
  return lines


def _git_commit() -> str:
  try:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=True, cwd=os.path.dirname(__file__)).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return "unknown"


def render_markdown(spec, table, targets: Sequence[Target],
                    stage_results: Mapping[str, stages.StageResult],
                    labels: Mapping[str, str], paper_rows: Mapping[str, Optional[str]],
                    counts: Mapping[str, int], command: str,
                    per_category: Mapping[str, Mapping[str, float]]) -> str:
  teacher = stage_results["teacher"].summary
  world = stage_results["world"].summary
  objects = novel_object_counts(stage_results["world"].directory)
  accuracy = teacher["zero_shot_accuracy"]
  total = sum(r.seconds for r in stage_results.values())
  lines = [
      "# ViLD on the synthetic open-vocabulary world",
      "",
      f"Generated by `{command}` (commit {_git_commit()}, "
      f"{datetime.datetime.now().isoformat(timespec='minutes')}). Every number below comes "
      "from that run; the paper's numbers are LVIS v1 val, mask AP, ResNet-50 (VILD.md).",
      "",
      "## Setting",
      "",
      f"- World: {counts['f'] + counts['c']} base and {counts['r']} novel categories with "
      f"validation annotations; novel: {', '.join(world['novel'])}. Training boxes of base "
      f"categories only ({world['num_train_annotations']} annotations); the training scenes "
      f"also show {objects['train']['novel']} novel objects, unannotated, among "
      f"{objects['train']['all']}. Validation fully annotated "
      f"({world['num_val_annotations']} annotations, {objects['val']['novel']} of them novel).",
      f"- Teacher: a tiny CLIP trained from scratch on {teacher['num_train_crops']} captioned "
      "crops of all categories. Zero-shot accuracy on "
      f"{teacher['num_held_out_crops']} held-out crops with prompt-ensembled class "
      f"embeddings: base {100 * accuracy['base']:.1f}%, novel {100 * accuracy['novel']:.1f}% "
      f"(chance {100 * accuracy['chance']:.1f}%). Its learned temperature "
      f"{teacher['temperature']:.3f} (CLIP's: 0.01) is every cosine classifier's below"
      f"{' (BenchmarkSpec.temperature overrides it: ' + str(spec.temperature) + ')' if spec.temperature else ''}.",
      f"- Detectors: every method trains `{spec.detector_gin}` "
      f"{'with ' + ', '.join(spec.detector_bindings) + ' ' if spec.detector_bindings else ''}"
      "(the same budget); distillation from "
      f"{spec.num_proposals} proposals per training image of the supervised base-only "
      "detector. Evaluation: the `lvis` API on the validation split over all categories; "
      "AP_novel = APr, AP_base = mean AP over frequent + common categories.",
      "",
      "## Results",
      "",
      *results_table(table, labels, paper_rows),
      "",
      "CLIP on cropped regions predicts boxes only (no mask head), so it has no mask AP.",
      "",
      "Mask AP of each novel category (AP_novel is their mean):",
      "",
      *novel_category_table(per_category, labels),
      "",
      "## Targets",
      "",
      "| target | measured | holds |",
      "|---|---|---|",
      *[f"| {t.claim} | {t.measured} | {'yes' if t.holds else '**no**'} |" for t in targets],
      "",
      "## Figures",
      "",
      "![AP_novel against w](ap_novel_vs_w.png)",
      "",
      "![Detections on validation scenes with novel objects](detection_grid.png)",
      "",
      "## Wall time",
      "",
      "| stage | seconds | |",
      "|---|---|---|",
      *[f"| {name} | {r.seconds:.0f} | {'reused from an earlier run' if r.cached else ''} |"
        for name, r in stage_results.items()],
      f"| **total** | **{total:.0f}** ({total / 60:.1f} min) | |",
      "",
  ]
  return "\n".join(lines)


def write_report(results_dir: str, spec, stage_results: Mapping[str, stages.StageResult],
                 paths: Mapping[str, str], grid_path: str,
                 command: str = "python scripts/run_synthetic_benchmark.py") -> dict:
  """Writes metrics.json, RESULTS.md, ap_novel_vs_w.png and a copy of the detection grid."""
  os.makedirs(results_dir, exist_ok=True)
  counts = category_counts(paths["val_json"])
  table = summarize(stage_results, counts)
  methods = spec.methods()
  labels = {methods_lib.SUPERVISED_BASE.name: methods_lib.SUPERVISED_BASE.label,
            methods_lib.ORACLE.name: methods_lib.ORACLE.label,
            methods_lib.CLIP_ON_CROPS: "CLIP on cropped regions"}
  labels.update({m.name: m.label for m in methods[2:]})
  paper_rows = {m.name: m.paper_row for m in methods}
  paper_rows[methods_lib.CLIP_ON_CROPS] = "CLIP on cropped regions"
  targets = check_targets(table, spec)
  per_category = novel_category_ap(paths["val_json"], detection_files(stage_results))
  metrics = {
      "table": table, "category_counts": counts, "novel_category_ap": per_category,
      "targets": [dataclasses.asdict(t) for t in targets],
      "teacher": stage_results["teacher"].summary,
      "seconds": {name: r.seconds for name, r in stage_results.items()},
      "cached": {name: r.cached for name, r in stage_results.items()},
  }
  io.write_text_atomic(os.path.join(results_dir, "metrics.json"),
                       json.dumps(metrics, indent=1) + "\n")
  plot_weight_sweep(os.path.join(results_dir, "ap_novel_vs_w.png"), table, spec)
  with io.atomic_path(os.path.join(results_dir, "detection_grid.png")) as tmp:
    shutil.copyfile(grid_path, tmp)
  io.write_text_atomic(os.path.join(results_dir, "RESULTS.md"), render_markdown(
      spec, table, targets, stage_results, labels, paper_rows, counts, command, per_category))
  return metrics
