"""The ablations' report: ABLATIONS.md, ablations.json and the curves (M, w, teacher steps).

Every number comes from the stages of one `run_ablations` (each row over the demo's seeds),
every claim is judged by the rule of `vild.synthetic_benchmark.spread`, and the paper's
number (or its stated finding, where VILD.md gives no number) stands beside ours.
"""
import dataclasses
import json
import os
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from vild.synthetic_benchmark import diagnostics as diagnostics_lib
from vild.synthetic_benchmark import evaluation_noise
from vild.synthetic_benchmark import methods as methods_lib
from vild.synthetic_benchmark import report
from vild.synthetic_benchmark import spread
from vild.utils import io

CLIP = methods_lib.CLIP_ON_CROPS
TEXT_PLUS_CLIP = methods_lib.VILD_TEXT_PLUS_CLIP
# "Far below" and "close" of the text-without-vision finding, in AP points (the paper: AP_r
# 3.0 vs 10.1, AP_c 20.1 vs 23.9, AP_f 30.4 vs 32.5).
FAR_BELOW = 5.0
CLOSE = 5.0
NOT_RUN = "not run"
PAPER_EXTRA = {  # (AP_r, AP_c, AP_f, AP) of the paper's rows not in report.PAPER
    "ViLD-text + CLIP": (22.6, 24.8, 29.2, 26.1),
    "GloVe baseline": (3.0, 20.1, 30.4, 21.2),
}


@dataclasses.dataclass(frozen=True)
class Finding:
  """A finding's section: its rows (stage names without the seed) and its target lines."""
  key: str
  title: str
  paper: str  # what the paper reports, in words and numbers
  rows: Tuple[Tuple[str, str], ...]  # (row name, label)
  targets: Tuple[report.Target, ...]


def _ap(table, name: str, key: str, iou_type: str = "segm") -> spread.Spread:
  return table[name][iou_type][key]


def findings(table, spec, ablation, rows: Mapping[str, Sequence[methods_lib.Row]],
             clip_labels: Mapping[str, str]) -> List[Finding]:
  """Every finding's rows and targets, judged on `table` (mask AP unless a claim says box);
  a claim whose rows did not run says so (AblationSpec.trained)."""
  text, vild = methods_lib.VILD_TEXT.name, methods_lib.vild(spec.vild_weight).name
  named = {r.name: r.label for group in rows.values() for r in group}
  named.update({r.name: r.label for r in spec.rows()})
  named.update({CLIP: "CLIP on cropped regions", TEXT_PLUS_CLIP: "ViLD-text + CLIP"})
  named.update({f"{CLIP}_{k}": f"CLIP on crops, {v}" for k, v in clip_labels.items()})
  pick = lambda *names: tuple((n, named[n]) for n in names if n in table)  # noqa: E731

  def claim(words, a, b, margin=0.0, key="AP_novel", iou_type="segm"):
    """Target "a - b > margin" on `key`."""
    if a not in table or b not in table:
      return report.Target(words, "not run (yet, or not in AblationSpec.trained)", NOT_RUN)
    return report.above(words, _ap(table, a, key, iou_type), _ap(table, b, key, iou_type),
                        margin)

  glove, l2 = f"{text}_glove", f"{vild}_l2"
  single, crops1x = f"{text}_single_template", f"{vild}_crops1x"
  counts = sorted({spec.num_proposals, *ablation.num_proposals})
  m_names = [f"{vild}_m{m}" if m != spec.num_proposals else vild for m in counts]
  steps = sorted(ablation.teacher_steps)
  t_names = [f"{vild}_teacher{n}" for n in steps] + [vild]
  weights = sorted({spec.vild_weight, *ablation.weights})
  w_names = [methods_lib.vild(w).name for w in weights]
  return [
      Finding("text_plus_clip", "1. ViLD-text + CLIP",
              "the best AP_r of the paper's table: 22.6, against ViLD-text 10.1 and CLIP on "
              "cropped regions 18.9", pick(CLIP, text, TEXT_PLUS_CLIP),
              (claim("ViLD-text + CLIP above ViLD-text on novel", TEXT_PLUS_CLIP, text),
               claim("ViLD-text + CLIP above CLIP on cropped regions on novel",
                     TEXT_PLUS_CLIP, CLIP))),
      Finding("text_without_vision", "2. Text embeddings without vision (GloVe)",
              "GloVe baseline AP_r 3.0, AP_c 20.1, AP_f 30.4 against ViLD-text's 10.1, 23.9, "
              "32.5: far below on novel, close on base", pick(text, glove),
              (claim(f"CLIP text embeddings above GloVe on novel (by > {FAR_BELOW:g})",
                     text, glove, FAR_BELOW),
               claim(f"GloVe close to CLIP text on base (within {CLOSE:g})", glove, text,
                     -CLOSE, key="AP_base"))),
      Finding("distillation_loss", "3. L1 vs L2 distillation",
              "L1 is better than L2 (VILD.md; the same w)", pick(vild, l2),
              (claim("L1 above L2 on novel", vild, l2),)),
      Finding("prompt_ensemble", "4. Prompt ensembling",
              "the 63-template ensemble (with synonyms and 'This is') over a single template",
              pick(text, single, CLIP, f"{CLIP}_single_template"),
              (claim("63 templates above one for ViLD-text on novel", text, single),)),
      Finding("crop_context", "5. Crop context: 1x + 1.5x vs 1x",
              "Eq. 1: the 1.5x crop adds context; targets are normalize(v(1x) + v(1.5x))",
              pick(vild, crops1x, CLIP, f"{CLIP}_crops1x", f"{CLIP}_crops1.5x"),
              (claim("1x + 1.5x crops above 1x only for ViLD on novel", vild, crops1x),)),
      Finding("num_proposals", "6. Number of distilled proposals M",
              "M = 300 proposals per 1024 px LVIS image (our scenes: 2-5 objects per 128 px "
              "image)", pick(*m_names),
              (claim(f"M = {spec.num_proposals} above M = {counts[0]} on novel", vild,
                     m_names[0]),)),
      Finding("teacher_strength", "7. Teacher strength",
              "stronger teachers raise AP_r: ViLD-ensemble 16.6 (ViT-B/32), 21.7 (ViT-L/14), "
              "26.3 (ALIGN)", pick(*t_names, *[f"{CLIP}_teacher{n}" for n in steps], CLIP),
              (claim(f"the default teacher's ViLD above the {steps[0]}-step teacher's on "
                     "novel", vild, t_names[0]),)),
      Finding("distillation_weight", "w. Distillation weight",
              "R50 ViLD w = 0.5: AP_r 16.1, AP_c 20.0, AP_f 28.3; larger w raises AP_r and "
              "lowers AP_c/AP_f", pick(text, *w_names),
              (claim(f"w = {weights[-1]:g} above w = {spec.vild_weight:g} on novel",
                     w_names[-1], vild),
               claim(f"w = {weights[-1]:g} below w = {spec.vild_weight:g} on base", vild,
                     w_names[-1], key="AP_base"))),
      Finding("clip_on_crops", "8. CLIP on cropped regions against ViLD-text on novel",
              "CLIP on cropped regions AP_r 18.9 above ViLD-text's 10.1",
              pick(text, CLIP, *[f"{CLIP}_{k}" for k in clip_labels]),
              (claim("CLIP on cropped regions above ViLD-text on novel (mask AP)", CLIP, text),
               claim("CLIP on cropped regions above ViLD-text on novel (box AP)", CLIP, text,
                     iou_type="bbox"))),
      Finding("paper_rows", "The paper's other rows",
              "Supervised-RFS (base+novel) AP_r 12.3; ViLD-image 11.2",
              pick(methods_lib.SUPERVISED_BASE.name, methods_lib.ORACLE.name,
                   methods_lib.VILD_IMAGE.name, text, vild), ()),
  ]


# ------------------------------------------------------------------------------------------
def _paper(paper_rows: Mapping[str, Optional[str]], name: str) -> List[str]:
  row = paper_rows.get(name)
  values = report.PAPER.get(row or "") or PAPER_EXTRA.get(row or "")
  return [("—" if values is None else f"{v:.1f}") for v in (values or (None,) * 4)]


def finding_table(table, finding: Finding, paper_rows) -> List[str]:
  lines = ["| row | mask AP_novel | mask AP_base | mask AP | box AP_novel | box AP_base "
           "| paper AP_r | paper AP_c | paper AP_f | paper AP |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  for name, label in finding.rows:
    row = table[name]
    cells = [row.get("segm", {}).get(k) for k in ("AP_novel", "AP_base", "AP")]
    cells += [row.get("bbox", {}).get(k) for k in ("AP_novel", "AP_base")]
    lines.append(f"| {label} | " + " | ".join(
        [("—" if c is None else c.describe()) for c in cells] + _paper(paper_rows, name))
        + " |")
  return lines


def diagnostics_lines(per_seed: Sequence[dict], teacher: Mapping) -> List[str]:
  """The diagnostics of CLIP on crops, mean over seeds, base and novel."""
  if not per_seed:
    return []
  mean = lambda key, part, what: float(sum(  # noqa: E731
      d[part][key][what] for d in per_seed) / len(per_seed))
  validation = lambda key, what: mean(key, "validation", what)  # noqa: E731
  accuracy = teacher["zero_shot_accuracy"]
  pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
  lines = ["| measured on validation objects (mean over seeds) | base | novel |",
           "|---|---|---|"]
  for k in diagnostics_lib.RECALL_AT:
    lines.append(f"| an RPN proposal among the top {k} with IoU >= 0.5 | "
                 f"{pct(validation(f'recall_{k}', 'base'))} | "
                 f"{pct(validation(f'recall_{k}', 'novel'))} |")
  lines += [
      f"| a refined box (class-agnostic box head) with IoU >= 0.5 | "
      f"{pct(validation('recall_refined', 'base'))} | "
      f"{pct(validation('recall_refined', 'novel'))} |",
      f"| teacher top-1 on held-out captioned crops | {pct(accuracy['base'])} | "
      f"{pct(accuracy['novel'])} |",
      f"| teacher top-1 on 1x + 1.5x crops of the objects' own boxes | "
      f"{pct(validation('gt_correct', 'base'))} | {pct(validation('gt_correct', 'novel'))} |",
      f"| ... the same crops resampled by area averaging instead of bilinear taps | "
      f"{pct(validation('gt_correct_area', 'base'))} | "
      f"{pct(validation('gt_correct_area', 'novel'))} |",
      f"| teacher top-1 on 1x + 1.5x crops of the best-matching refined box | "
      f"{pct(validation('matched_correct', 'base'))} | "
      f"{pct(validation('matched_correct', 'novel'))} |",
      f"| IoU of the box its class scores highest: teacher probability alone | "
      f"{validation('best_iou_teacher', 'base'):.2f} | "
      f"{validation('best_iou_teacher', 'novel'):.2f} |",
      f"| ... teacher probability x objectness (geometric mean) | "
      f"{validation('best_iou_combined', 'base'):.2f} | "
      f"{validation('best_iou_combined', 'novel'):.2f} |",
  ]
  distill = [d["distillation_targets"] for d in per_seed]
  on_object = sum(d["proposals_on_an_object"] for d in distill) / len(distill)
  distill_accuracy = lambda what: sum(  # noqa: E731
      d["teacher_accuracy"][what] for d in distill) / len(distill)
  lines += [
      "",
      f"Distillation data (the training proposals ViLD-image learns from): "
      f"{pct(on_object)} of them have IoU >= 0.5 with an object of the training scenes; "
      f"on those the teacher's top-1 is right for {pct(distill_accuracy('base'))} of base "
      f"and {pct(distill_accuracy('novel'))} of novel objects.",
  ]
  return lines


def write_report(results_dir: str, pipeline, ablation, rows, clip_variants,
                 command: str = "python scripts/run_ablations.py",
                 run_seconds: Optional[float] = None) -> dict:
  """Writes ABLATIONS.md, ablations.json and the curves; returns the JSON's content."""
  os.makedirs(results_dir, exist_ok=True)
  spec, results = pipeline.spec, pipeline.results
  val_json = os.path.join(results["world"].directory, "val.json")
  counts = report.category_counts(val_json)
  clip_labels = {k: label for k, (label, _, _) in clip_variants.items()}
  names = ([r.name for r in spec.rows()] + [r.name for g in rows.values() for r in g] +
           [CLIP, TEXT_PLUS_CLIP] + [f"{CLIP}_{k}" for k in clip_labels])
  table, per_seed = report.row_table(results, names, spec.seeds, counts)
  paper_rows = {r.name: r.paper_row for r in spec.rows()}
  paper_rows.update({r.name: r.paper_row for g in rows.values() for r in g})
  paper_rows.update({CLIP: "CLIP on cropped regions", TEXT_PLUS_CLIP: "ViLD-text + CLIP",
                     f"{methods_lib.VILD_TEXT.name}_glove": "GloVe baseline"})
  sections = findings(table, spec, ablation, rows, clip_labels)
  found = [methods_lib.seeded(diagnostics_lib.STAGE, s) for s in spec.seeds]
  seeds_diagnostics = [results[name].summary for name in found if name in results]
  teachers = {name: r.summary for name, r in results.items() if name.startswith("teacher")}
  texts = {name: r.summary for name, r in results.items()
           if name.startswith("text_embeddings")}
  figures = plot_curves(results_dir, table, spec, ablation, teachers)

  kinds = {name: report.detector_binding(results, name, spec.seeds, "build_classifier.kind")
           for name in (methods_lib.SUPERVISED_BASE.name, methods_lib.ORACLE.name)}
  kinds = {name: kind for name, kind in kinds.items() if kind}
  supervised = ", ".join(f"{name}: `build_classifier.kind = '{kind}'`"
                         f"{report.LEARNED_CLASSIFIERS.get(kind, '')}"
                         for name, kind in kinds.items())
  lines = [*report.header("ViLD's findings on the synthetic world: ablations", command),
           f"Seeds {', '.join(map(str, spec.seeds))}; every row trains "
           f"`{spec.detector_gin}` with the demo's budget and changes one thing "
           f"(RESULTS.md describes the world, the teacher and the demo's rows). Supervised "
           f"rows: {supervised or 'not run'}. " + report.RULE, "",
           "## Targets", "",
           "| finding | the paper | claim | measured: mean [min–max] over seeds | holds |",
           "|---|---|---|---|---|"]
  for finding in sections:
    for target in finding.targets:
      holds = (target.holds if target.holds in (spread.YES, NOT_RUN)
               else f"**{target.holds}**")
      lines.append(f"| {finding.title} | {finding.paper} | {target.claim} | "
                   f"{target.measured} | {holds} |")
  lines.append("")
  for finding in sections:
    lines += [f"## {finding.title}", "", f"The paper: {finding.paper}.", "",
              *finding_table(table, finding, paper_rows), ""]
    if finding.key == "text_without_vision":
      lines += [_separation_line(texts), ""]
    if finding.key == "teacher_strength":
      lines += _teacher_lines(teachers) + [""]
    if finding.key == "clip_on_crops":
      lines += diagnostics_lines(seeds_diagnostics, results["teacher"].summary) + [""]
    if finding.key in figures:
      lines += [f"![{finding.title}]({figures[finding.key]})", ""]
  noise = results.get(evaluation_noise.STAGE)
  if noise is not None:
    lines += ["## Evaluation noise", "",
              *noise_lines(noise.summary, table, spec, report.demo_labels(spec)), ""]
  lines += ["## Time", "", *report.time_lines(results, spec, run_seconds), ""]
  metrics = {
      "seeds": list(spec.seeds), "table": spread.to_json(table), "per_seed": per_seed,
      "targets": {f.key: [dataclasses.asdict(t) for t in f.targets] for f in sections},
      "teachers": teachers, "text_embeddings": texts, "diagnostics": seeds_diagnostics,
      "seconds": {name: r.seconds for name, r in results.items()},
      "cpu_seconds": {name: r.cpu_seconds for name, r in results.items()},
      "cached": {name: r.cached for name, r in results.items()},
      "run_seconds": run_seconds,
      "evaluation_noise": noise.summary if noise is not None else None,
  }
  io.write_text_atomic(os.path.join(results_dir, "ablations.json"),
                       json.dumps(metrics, indent=1) + "\n")
  io.write_text_atomic(os.path.join(results_dir, "ABLATIONS.md"), "\n".join(lines))
  return metrics


def noise_lines(noise: Mapping[str, Mapping], table, spec, labels: Mapping[str, str]
                ) -> List[str]:
  """Bootstrap std of each demo row's mask AP_novel (first seed) beside its std over seeds."""
  lines = [f"Mask AP_novel of each demo row's seed {spec.seeds[0]} scored on "
           f"{next(iter(noise.values()))['resamples']} bootstrap resamples of the validation "
           "images: the part of the spread that comes from the validation sample, which more "
           "seeds cannot remove and more validation instances would.", "",
           "| row | AP_novel | std over bootstrap resamples | std over seeds |",
           "|---|---|---|---|"]
  for stage, values in noise.items():
    name = stage[:stage.rindex("_seed")]
    seeds = table.get(name, {}).get("segm", {}).get("AP_novel")
    over_seeds = f"{seeds.std:.1f}" if seeds else "—"
    lines.append(f"| {labels.get(name, name)} | {values['ap_novel']:.1f} | "
                 f"{values['bootstrap_std']:.1f} | {over_seeds} |")
  return lines


def _separation_line(texts: Mapping[str, Mapping]) -> str:
  parts = [f"{name}: mean cosine {s['mean_base_cosine']:.2f}, highest {s['max_base_cosine']:.2f}"
           for name, s in texts.items() if "mean_base_cosine" in s]
  return ("How far apart each text embedding puts two base categories: " + "; ".join(parts)
          + ".")


def _teacher_lines(teachers: Mapping[str, Mapping]) -> List[str]:
  lines = ["| teacher | pre-training steps | zero-shot base | zero-shot novel | temperature |",
           "|---|---|---|---|---|"]
  for name, summary in sorted(teachers.items(), key=lambda kv: kv[1]["spec"]["steps"]):
    accuracy = summary["zero_shot_accuracy"]
    lines.append(f"| {name} | {summary['spec']['steps']} | {100 * accuracy['base']:.1f}% | "
                 f"{100 * accuracy['novel']:.1f}% | {summary['temperature']:.3f} |")
  return lines


def plot_curves(results_dir: str, table, spec, ablation, teachers) -> Dict[str, str]:
  """AP_novel and AP_base against M, w and the teacher's steps; {finding key: file name}."""
  vild = methods_lib.vild(spec.vild_weight).name
  figures = {}

  def curve(key, xs, names, xlabel, title, log_x=False):
    if not all(n in table for n in names):
      return
    series = {f"mask {k}": [table[n]["segm"][k] for n in names]
              for k in ("AP_novel", "AP_base")}
    report.plot_curves(os.path.join(results_dir, f"{key}.png"), xs, series, xlabel, title,
                       log_x)
    figures[key] = f"{key}.png"

  counts = sorted({spec.num_proposals, *ablation.num_proposals})
  curve("num_proposals", counts,
        [f"{vild}_m{m}" if m != spec.num_proposals else vild for m in counts],
        "M, distilled proposals per training image", f"ViLD (w={spec.vild_weight:g})",
        log_x=True)
  weights = sorted({spec.vild_weight, *ablation.weights})
  curve("distillation_weight", [0.0] + weights,
        [methods_lib.VILD_TEXT.name] + [methods_lib.vild(w).name for w in weights],
        "distillation weight w (0 = ViLD-text)", "ViLD against w")
  default_steps = teachers.get("teacher", {}).get("spec", {}).get("steps")
  if default_steps:
    steps = sorted(ablation.teacher_steps) + [default_steps]
    curve("teacher_strength", steps,
          [f"{vild}_teacher{n}" for n in steps[:-1]] + [vild],
          "teacher pre-training steps", f"ViLD (w={spec.vild_weight:g}) against its teacher")
  return figures
