"""The benchmark's report: metrics.json, RESULTS.md (ours beside the paper's), and the figures.

Everything here is read from the finished stages: the metrics each row's stages wrote (LVIS
API on the validation split, all categories), one per seed, the teacher's zero-shot accuracy
and the wall and CPU time of each stage. Rows are reported as mean ± sample std over their
seeds; the targets are judged on the seeds' spread by the rule of
`vild.synthetic_benchmark.spread` (yes / no / within noise) and reported as they come out.
The ablations' report (vild.synthetic_benchmark.ablations) builds on the same helpers.
"""
import contextlib
import dataclasses
import datetime
import glob
import io as std_io
import json
import os
import re
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
from vild.synthetic_benchmark import spread  # noqa: E402
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


def stage_metrics(result: stages.StageResult, counts: Mapping[str, int]
                  ) -> Dict[str, Dict[str, float]]:
  """{iou type: {AP, AP_novel, AP_base}} of one evaluated stage."""
  metrics = result.summary["metrics"]
  return {t: novel_and_base(metrics, t, counts) for t in IOU_TYPES if f"{t}/AP" in metrics}


def row_table(stage_results: Mapping[str, stages.StageResult], names: Sequence[str],
              seeds: Sequence[int], counts: Mapping[str, int]):
  """{row name: {iou type: {AP, AP_novel, AP_base: Spread over seeds}}} of each row whose
  seeded stages all ran; and {row name: [per-seed {iou type: {...}}]}."""
  table, per_seed = {}, {}
  for name in names:
    found = [stage_results.get(methods_lib.seeded(name, seed)) for seed in seeds]
    if any(r is None for r in found):
      continue
    per_seed[name] = [stage_metrics(r, counts) for r in found]
    table[name] = spread.over_seeds(per_seed[name])
  return table, per_seed


def novel_category_ap(val_json: str, detection_files: Mapping[str, str],
                      iou_type: str = "segm") -> Dict[str, Dict[str, float]]:
  """{method: {novel category name: AP in points}} from each method's saved detections.

  APr averages these; per category it shows which novel concepts each method finds.
  """
  gt = lvis.LVIS(val_json)
  table = {}
  for name, path in detection_files.items():
    with open(path, encoding="utf-8") as f:
      table[name] = novel_ap(gt, json.load(f), iou_type)
  return table


def novel_ap(gt: lvis.LVIS, detections: List[dict], iou_type: str) -> Dict[str, float]:
  """{novel category name: AP in points} of `detections` against the lvis ground truth."""
  novel = novel_names(gt.dataset["categories"])
  if not detections:  # the lvis API cannot load an empty list; nothing found scores 0
    return {category: 0.0 for category in novel.values()}
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
    values = precision[:, :, k, 0]
    values = values[values > -1]
    row[novel[category]] = 100 * float(values.mean()) if values.size else float("nan")
  return row


def detection_file(directory: str) -> Optional[str]:
  """The detections JSON of a stage's evaluation (a trained model's, or its own eval/)."""
  found = sorted(glob.glob(os.path.join(directory, "model", "eval", "detections_*.json")) +
                 glob.glob(os.path.join(directory, "eval", "detections_*.json")))
  return found[-1] if found else None


def novel_category_means(stage_results: Mapping[str, stages.StageResult],
                         names: Sequence[str], seeds: Sequence[int]
                         ) -> Dict[str, Dict[str, float]]:
  """{row name: {novel category: AP averaged over seeds}}, from each stage's summary (mask
  AP, box AP for rows without masks)."""
  table = {}
  for name in names:
    rows = [stage_results[methods_lib.seeded(name, s)].summary.get("novel_category_ap")
            for s in seeds if methods_lib.seeded(name, s) in stage_results]
    if len(rows) == len(seeds) and all(rows):
      table[name] = {c: float(np.mean([r[c] for r in rows])) for c in rows[0]}
  return table


@dataclasses.dataclass(frozen=True)
class Target:
  """A claim judged on the seeds: holds is spread.YES, spread.NO or spread.NOISE."""
  claim: str
  measured: str
  holds: str


def _vs(a: spread.Spread, b) -> str:
  other = b.describe_range() if isinstance(b, spread.Spread) else f"{b:g}"
  return f"{a.describe_range()} vs {other}"


def above(claim: str, a: spread.Spread, b, margin: float = 0.0) -> Target:
  """Target "a - b > margin" (b a Spread or a number), judged by `spread.judge`."""
  return Target(claim, _vs(a, b), spread.judge(a, b, margin))


def check_targets(table, spec) -> List[Target]:
  """The demo's targets, on mask AP, judged on the seeds' spread (`spread` module)."""
  def ap(name, key, iou_type="segm"):
    return table[name][iou_type][key]
  vild = methods_lib.vild(spec.vild_weight).name
  ensemble = methods_lib.vild_ensemble(spec.vild_weight).name
  base, text = methods_lib.SUPERVISED_BASE.name, methods_lib.VILD_TEXT.name
  zero = max(ap(base, "AP_novel").max, ap(base, "AP_novel", "bbox").max) == 0
  return [
      Target("Supervised base-only scores 0 on novel categories (every seed)",
             f"AP_novel max {ap(base, 'AP_novel').max:.1f} "
             f"(box {ap(base, 'AP_novel', 'bbox').max:.1f})", spread.YES if zero else spread.NO),
      Target(f"ViLD-text is well above 0 on novel (AP_novel >= {TEXT_NOVEL_MIN:g})",
             ap(text, "AP_novel").describe_range(),
             spread.judge_at_least(ap(text, "AP_novel"), TEXT_NOVEL_MIN)),
      above(f"ViLD is clearly above ViLD-text on novel (by > {DISTILL_NOVEL_MARGIN:g})",
            ap(vild, "AP_novel"), ap(text, "AP_novel"), DISTILL_NOVEL_MARGIN),
      above(f"ViLD-ensemble keeps base AP within {ENSEMBLE_BASE_GAP:g} of supervised",
            ap(ensemble, "AP_base"), ap(base, "AP_base"), -ENSEMBLE_BASE_GAP),
      above(f"ViLD-ensemble keeps ViLD's novel AP (within {ENSEMBLE_NOVEL_SLACK:g})",
            ap(ensemble, "AP_novel"), ap(vild, "AP_novel"), -ENSEMBLE_NOVEL_SLACK),
  ]


# ------------------------------------------------------------------------------------------
# Figures.
def _save(figure, path: str) -> None:
  figure.tight_layout()
  with io.atomic_path(path) as tmp:
    figure.savefig(tmp, format="png", dpi=110)
  plt.close(figure)


def plot_rows(path: str, table, labels: Mapping[str, str], iou_type: str = "segm",
              title: str = "mask AP") -> None:
  """AP_novel and AP_base of each row: bars at the mean, error bars min-max, seeds as dots."""
  names = [n for n in labels if iou_type in table.get(n, {})]
  figure, axis = plt.subplots(figsize=(max(5.0, 1.3 * len(names) + 2), 3.8))
  width = 0.38
  for offset, key, colour in ((-width / 2, "AP_novel", "tab:red"),
                              (width / 2, "AP_base", "tab:blue")):
    xs = np.arange(len(names)) + offset
    values = [table[n][iou_type][key] for n in names]
    axis.bar(xs, [v.mean for v in values], width, color=colour, alpha=0.55, label=key,
             yerr=[[v.mean - v.min for v in values], [v.max - v.mean for v in values]],
             capsize=3)
    for x, v in zip(xs, values):
      axis.plot([x] * v.n, v.values, "k.", markersize=4)
  axis.set_xticks(np.arange(len(names)))
  axis.set_xticklabels([labels[n] for n in names], rotation=20, ha="right", fontsize=8)
  axis.set_ylabel(f"{title} (points)")
  axis.set_title(f"{title}: mean over seeds, bars min-max, dots each seed", fontsize=9)
  axis.grid(axis="y", alpha=0.3)
  axis.legend(fontsize=8)
  _save(figure, path)


def plot_curves(path: str, xs: Sequence[float], series: Mapping[str, Sequence[spread.Spread]],
                xlabel: str, title: str, log_x: bool = False) -> None:
  """One line per series through the means at `xs`, error bars min-max, seeds as dots."""
  figure, axis = plt.subplots(figsize=(5.2, 3.6))
  for (label, values), style in zip(series.items(), ("o-", "s--", "^-.", "d:")):
    means = [v.mean for v in values]
    axis.errorbar(xs, means, yerr=[[v.mean - v.min for v in values],
                                   [v.max - v.mean for v in values]],
                  fmt=style, capsize=3, label=label)
    for x, v in zip(xs, values):
      axis.plot([x] * v.n, v.values, "k.", markersize=3)
  if log_x:
    axis.set_xscale("log", base=2)
  axis.set_xticks(list(xs))
  axis.set_xticklabels([f"{x:g}" for x in xs])
  axis.set_xlabel(xlabel)
  axis.set_ylabel("AP (points)")
  axis.set_title(title, fontsize=9)
  axis.grid(alpha=0.3)
  axis.legend(fontsize=8)
  _save(figure, path)


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
RULE = ("Each row trains once per seed; a cell is the mean ± sample std over the seeds. A "
        "target holds (yes) when every seed of one side beats every seed of the other by its "
        "margin (the min–max intervals clear the line: with 3 seeds each an exact one-sided "
        "permutation test at p = 0.05), fails (no) when no pair of seeds bears it out, and "
        "is within noise otherwise (vild/synthetic_benchmark/spread.py).")


def _cell(value: Optional[spread.Spread]) -> str:
  return "—" if value is None else value.describe()


def _paper_cells(paper_row: Optional[str]) -> List[str]:
  return [("—" if v is None else f"{v:.1f}") for v in PAPER.get(paper_row or "", (None,) * 4)]


def results_table(table, labels: Mapping[str, str], paper_rows: Mapping[str, Optional[str]]
                  ) -> List[str]:
  lines = [
      "| method | mask AP | mask AP_novel | mask AP_base | box AP | box AP_novel | box AP_base "
      "| paper AP_r | paper AP_c | paper AP_f | paper AP |",
      "|---|---|---|---|---|---|---|---|---|---|---|"]
  for name, label in labels.items():
    if name not in table:
      continue
    row = table[name]
    ours = [row.get(t, {}).get(k) for t in IOU_TYPES for k in ("AP", "AP_novel", "AP_base")]
    lines.append(f"| {label} | " + " | ".join(
        [_cell(v) for v in ours] + _paper_cells(paper_rows.get(name))) + " |")
  return lines


def per_seed_table(table, labels: Mapping[str, str], seeds: Sequence[int],
                   iou_type: str = "segm", key: str = "AP_novel") -> List[str]:
  lines = ["| method | " + " | ".join(f"seed {s}" for s in seeds) + " |",
           "|---|" + "---|" * len(seeds)]
  for name, label in labels.items():
    if iou_type in table.get(name, {}):
      values = table[name][iou_type][key].values
      lines.append(f"| {label} | " + " | ".join(f"{v:.1f}" for v in values) + " |")
  return lines


def novel_category_table(per_category, labels: Mapping[str, str]) -> List[str]:
  names = sorted({n for row in per_category.values() for n in row})
  lines = ["| method | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
  for name, label in labels.items():
    if name in per_category:
      lines.append(f"| {label} | " + " | ".join(f"{per_category[name].get(n, float('nan')):.1f}"
                                               for n in names) + " |")
  return lines


def target_table(targets: Sequence[Target]) -> List[str]:
  return ["| target | measured: mean [min–max] over seeds | holds |", "|---|---|---|",
          *[f"| {t.claim} | {t.measured} | "
            f"{t.holds if t.holds == spread.YES else '**' + t.holds + '**'} |"
            for t in targets]]


def time_lines(stage_results: Mapping[str, stages.StageResult], spec,
               run_seconds: Optional[float] = None) -> List[str]:
  """The run's wall time and the wall and CPU seconds of each stage."""
  wall = sum(r.seconds for r in stage_results.values())
  cpu = sum(r.cpu_seconds for r in stage_results.values())
  lines = []
  if run_seconds is not None:
    determinism = " with op determinism" if spec.deterministic else ""
    lines += [f"This run took {run_seconds / 60:.1f} min of wall time; detector trainings and "
              f"evaluations ran {spec.parallel_jobs} at a time in worker processes of "
              f"{spec.threads} TensorFlow thread(s){determinism}, so stage times add up to "
              "more. Wall time depends on what else the machine runs; CPU seconds (all "
              "threads of the stage's process) much less.", ""]
  return lines + [
      "| stage | wall s | CPU s | |", "|---|---|---|---|",
      *[f"| {name} | {r.seconds:.0f} | {r.cpu_seconds:.0f} | "
        f"{'reused from an earlier run' if r.cached else ''} |"
        for name, r in stage_results.items()],
      f"| **sum** | **{wall:.0f}** ({wall / 60:.1f} min) | **{cpu:.0f}** | |"]


def detector_binding(stage_results: Mapping[str, stages.StageResult], name: str,
                     seeds: Sequence[int], binding: str) -> Optional[str]:
  """The value `binding` (e.g. 'build_classifier.kind') has in the config row `name` trained
  with (its first seed's stage), as gin wrote it; None when the config does not bind it."""
  result = stage_results.get(methods_lib.seeded(name, seeds[0]))
  config = (result.config or {}).get("detector", "") if result else ""
  found = re.search(rf"^{re.escape(binding)} = (.+)$", config, re.MULTILINE)
  return found.group(1).strip("'\"") if found else None


def _git_commit() -> str:
  try:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=True, cwd=os.path.dirname(__file__)).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return "unknown"


def header(title: str, command: str) -> List[str]:
  return [f"# {title}", "",
          f"Generated by `{command}` (commit {_git_commit()}, "
          f"{datetime.datetime.now().isoformat(timespec='minutes')}). Every number below comes "
          "from that run; the paper's numbers are LVIS v1 val, mask AP, ResNet-50 (VILD.md).",
          ""]


def teacher_line(teacher: Mapping, temperature_override: Optional[float]) -> str:
  accuracy = teacher["zero_shot_accuracy"]
  steps = teacher.get("spec", {}).get("steps")
  return (
      f"Teacher: a tiny CLIP trained from scratch{f' ({steps} steps)' if steps else ''} on "
      f"{teacher['num_train_crops']} captioned crops of all categories. Zero-shot accuracy on "
      f"{teacher['num_held_out_crops']} held-out crops with prompt-ensembled class "
      f"embeddings: base {100 * accuracy['base']:.1f}%, novel {100 * accuracy['novel']:.1f}% "
      f"(chance {100 * accuracy['chance']:.1f}%). Its learned temperature "
      f"{teacher['temperature']:.3f} (CLIP's: 0.01) is every cosine classifier's below"
      + (f" (BenchmarkSpec.temperature overrides it: {temperature_override})"
         if temperature_override else "") + ".")


def render_markdown(spec, pipeline, table, targets: Sequence[Target],
                    labels: Mapping[str, str], paper_rows: Mapping[str, Optional[str]],
                    counts: Mapping[str, int], command: str,
                    per_category: Mapping[str, Mapping[str, float]],
                    run_seconds: Optional[float] = None) -> str:
  results = pipeline.results
  world = results["world"].summary
  objects = novel_object_counts(results["world"].directory)
  text = results["text_embeddings"].summary
  kind = detector_binding(results, methods_lib.SUPERVISED_BASE.name, spec.seeds,
                          "build_classifier.kind") or "?"
  precision = detector_binding(results, methods_lib.SUPERVISED_BASE.name, spec.seeds,
                               "set_precision.policy") or "the library default ('auto')"
  lines = [
      *header("ViLD on the synthetic open-vocabulary world", command),
      "## Setting",
      "",
      f"- World: {counts['f'] + counts['c']} base and {counts['r']} novel categories with "
      f"validation annotations; novel: {', '.join(world['novel'])}. Training boxes of base "
      f"categories only ({world['num_train_annotations']} annotations); the training scenes "
      f"also show {objects['train']['novel']} novel objects, unannotated, among "
      f"{objects['train']['all']}. Validation fully annotated "
      f"({world['num_val_annotations']} annotations, {objects['val']['novel']} of them novel).",
      f"- {teacher_line(results['teacher'].summary, spec.temperature)} Its text embeddings "
      f"of the base categories: mean cosine {text['mean_base_cosine']:.2f} between two "
      f"categories, highest {text['max_base_cosine']:.2f}.",
      f"- Detectors: every row trains `{spec.detector_gin}` "
      f"{'with ' + ', '.join(spec.detector_bindings) + ' ' if spec.detector_bindings else ''}"
      f"(the same budget), once per seed ({', '.join(map(str, spec.seeds))}: `train.seed`). "
      f"Supervised rows classify with `build_classifier.kind = '{kind}'`"
      f"{LEARNED_CLASSIFIERS.get(kind, '')}; the other rows with the teacher's text "
      f"embeddings. Each seed's supervised base-only detector gives that seed's proposals: "
      f"{spec.num_proposals} per training image for distillation, and those of CLIP on "
      "cropped regions. World and teacher are shared by all seeds. Evaluation: the `lvis` "
      "API on the validation split over all categories; AP_novel = APr, AP_base = mean AP "
      "over frequent + common categories.",
      f"- Precision: the detectors train with `set_precision.policy = {precision}`.",
      "",
      "## Results",
      "",
      RULE,
      "",
      *results_table(table, labels, paper_rows),
      "",
      "Mask AP_novel of each seed:",
      "",
      *per_seed_table(table, labels, spec.seeds),
      "",
      "Mask AP of each novel category (mean over seeds; AP_novel is their mean):",
      "",
      *novel_category_table(per_category, labels),
      "",
      "## Targets",
      "",
      *target_table(targets),
      "",
      "## Figures",
      "",
      "![AP_novel and AP_base of each row](methods.png)",
      "",
      "![Detections on validation scenes with novel objects](detection_grid.png)",
      "",
      "## Time",
      "",
      *time_lines(results, spec, run_seconds),
      "",
  ]
  return "\n".join(lines)


# What each supervised classifier is, for the report (build_classifier.kind).
LEARNED_CLASSIFIERS = {
    "learned": " (cosine / temperature against learned class embeddings: ViLD-text's form "
               "with learned rows)",
    "linear": " (a linear layer)",
}


def demo_labels(spec) -> Dict[str, str]:
  rows = spec.rows()
  labels = {rows[0].name: rows[0].label, methods_lib.CLIP_ON_CROPS: "CLIP on cropped regions"}
  labels.update({r.name: r.label for r in rows[1:]})
  return labels


def write_report(results_dir: str, spec, pipeline, grid_path: str,
                 command: str = "python scripts/run_synthetic_benchmark.py",
                 run_seconds: Optional[float] = None) -> dict:
  """Writes metrics.json, RESULTS.md, methods.png and a copy of the detection grid."""
  os.makedirs(results_dir, exist_ok=True)
  results = pipeline.results
  val_json = os.path.join(results["world"].directory, "val.json")
  counts = category_counts(val_json)
  labels = demo_labels(spec)
  table, per_seed = row_table(results, list(labels), spec.seeds, counts)
  paper_rows = {r.name: r.paper_row for r in spec.rows()}
  paper_rows[methods_lib.CLIP_ON_CROPS] = "CLIP on cropped regions"
  targets = check_targets(table, spec)
  per_category = novel_category_means(results, list(labels), spec.seeds)
  metrics = {
      "seeds": list(spec.seeds), "table": spread.to_json(table), "per_seed": per_seed,
      "category_counts": counts, "novel_category_ap": per_category,
      "targets": [dataclasses.asdict(t) for t in targets],
      "teacher": results["teacher"].summary,
      "text_embeddings": results["text_embeddings"].summary,
      "seconds": {name: r.seconds for name, r in results.items()},
      "cpu_seconds": {name: r.cpu_seconds for name, r in results.items()},
      "cached": {name: r.cached for name, r in results.items()},
      "run_seconds": run_seconds,
  }
  io.write_text_atomic(os.path.join(results_dir, "metrics.json"),
                       json.dumps(metrics, indent=1) + "\n")
  plot_rows(os.path.join(results_dir, "methods.png"), table, labels)
  with io.atomic_path(os.path.join(results_dir, "detection_grid.png")) as tmp:
    shutil.copyfile(grid_path, tmp)
  io.write_text_atomic(os.path.join(results_dir, "RESULTS.md"), render_markdown(
      spec, pipeline, table, targets, labels, paper_rows, counts, command, per_category,
      run_seconds))
  return metrics
