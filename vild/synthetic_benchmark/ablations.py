"""The paper's findings beyond the main table, each measured over seeds (`make ablations`).

  gin.parse_config_file("configs/synthetic/benchmark.gin")
  metrics = run_ablations("runs/synthetic", "results/synthetic")

Runs in the demo's work dir, so every stage the demo made (world, teacher, the base-only
detectors, ViLD-text, ViLD, their distillation data) is reused; each row below trains the
demo's detector config and budget, with the demo's seeds, and changes one thing:

  1. ViLD-text + CLIP        ViLD-text's scores fused with the teacher's crop scores
  2. text without vision     ViLD-text on GloVe vectors of the captions (word_vectors)
  3. L2 distillation         ViLD with ViLDLoss.distill_loss_type = 'l2'
  4. one prompt template     ViLD-text on text embeddings of "a photo of a {}."
  5. 1x crops only           ViLD distilled from 1x crops instead of 1x + 1.5x
  6. M                       ViLD distilled from M proposals per image (AblationSpec)
  7. teacher strength        ViLD distilled from weaker teachers (fewer pre-training steps)
  w. distillation weight     ViLD at more w (the paper: larger w, higher AP_r, lower AP_c/f)
  8. CLIP on crops vs ViLD-text on novel: CLIP on crops with one part of the paper's
     pipeline changed at a time (proposals, score, crops, box regression), and the
     measurements of `diagnostics`
  and the demo's other paper rows: supervised base+novel (the oracle) and ViLD-image; and
  how much of the spread over seeds is evaluation noise (a bootstrap over validation images).

The report (ABLATIONS.md, ablations.json and the curves) is written by `ablation_report`.
"""
import dataclasses
import json
import os
import time
from typing import Dict, List, Optional, Sequence, Tuple, Union

import gin

from vild import text_embeddings as text_embeddings_lib
from vild.synthetic_benchmark import ablation_report
from vild.synthetic_benchmark import clip_on_crops
from vild.synthetic_benchmark import diagnostics
from vild.synthetic_benchmark import evaluation_noise
from vild.synthetic_benchmark import methods as methods_lib
from vild.synthetic_benchmark import report
from vild.synthetic_benchmark import stages
from vild.synthetic_benchmark import synthetic as benchmark
from vild.teacher import clip_teacher
from vild.teacher import crops
from vild.utils import io

DIAGNOSTICS_FILE = "diagnostics.json"


# The findings with trained rows, in report order (`variant_rows`).
TRAINED_FINDINGS = ("paper_rows", "text_without_vision", "distillation_loss", "prompt_ensemble",
                    "crop_context", "num_proposals", "teacher_strength", "distillation_weight")


@gin.configurable
@dataclasses.dataclass(frozen=True)
class AblationSpec:
  """The values the ablations sweep (each besides the demo's own).

  Attributes:
    weights: more distillation weights w of ViLD (the demo's is BenchmarkSpec.vild_weight).
    num_proposals: more M, distilled proposals per training image.
    teacher_steps: pre-training steps of weaker teachers (the demo's: PretrainingSpec.steps).
    clip_proposals: more numbers of proposals for CLIP on cropped regions.
    bootstrap_resamples: resamples of the validation images for the evaluation noise.
    trained: the findings whose detector rows train (`variant_rows` keys); the others are
      reported as not run. The CLIP-on-crops investigation, ViLD-text + CLIP and the
      evaluation noise train nothing and always run.
  """
  weights: Tuple[float, ...] = (2.0,)
  num_proposals: Tuple[int, ...] = (8, 64)
  teacher_steps: Tuple[int, ...] = (375, 750)
  clip_proposals: Tuple[int, ...] = (10, 30)
  bootstrap_resamples: int = 20
  trained: Tuple[str, ...] = TRAINED_FINDINGS

  def __post_init__(self):
    unknown = set(self.trained) - set(TRAINED_FINDINGS)
    if unknown:
      raise ValueError(f"AblationSpec.trained: unknown findings {sorted(unknown)}; choose "
                       f"from {TRAINED_FINDINGS}.")
    for name in ("weights", "num_proposals", "teacher_steps"):
      if not getattr(self, name):
        raise ValueError(f"AblationSpec.{name} needs at least one value: its finding compares "
                         "the demo's setting against them.")
    if self.bootstrap_resamples < 2:
      raise ValueError(f"AblationSpec.bootstrap_resamples must be at least 2, got "
                       f"{self.bootstrap_resamples}.")


# ------------------------------------------------------------------------------------------
# Rows.
def variant_rows(spec: benchmark.BenchmarkSpec, ablation: AblationSpec
                 ) -> Dict[str, List[methods_lib.Row]]:
  """{finding: its trained rows besides the demo's}, in report order (AblationSpec.trained)."""
  text, vild = methods_lib.VILD_TEXT, methods_lib.vild(spec.vild_weight)
  row, variant = methods_lib.Row, methods_lib.Variant
  rows = {
      "paper_rows": [row(methods_lib.ORACLE), row(methods_lib.VILD_IMAGE)],
      "text_without_vision": [row(text, variant("glove", "GloVe text embeddings",
                                                text_encoder="glove"))],
      "distillation_loss": [row(vild, variant("l2", "L2 distillation", bindings=(
          "ViLDLoss.distill_loss_type = 'l2'",)))],
      "prompt_ensemble": [row(text, variant("single_template", "one prompt template",
                                            templates="single"))],
      "crop_context": [row(vild, variant("crops1x", "1x crops only", crop_scales=(1.0,)))],
      "num_proposals": [row(vild, variant(f"m{m}", f"M = {m}", num_proposals=m))
                        for m in ablation.num_proposals],
      "teacher_strength": [row(vild, variant(f"teacher{n}", f"teacher of {n} steps",
                                             teacher_steps=n))
                           for n in ablation.teacher_steps],
      "distillation_weight": [row(methods_lib.vild(w)) for w in ablation.weights],
  }
  return {key: rows[key] for key in TRAINED_FINDINGS if key in ablation.trained}


def clip_variants(ablation: AblationSpec) -> Dict[str, Tuple[str, clip_on_crops.ClipOnCropsSpec,
                                                           methods_lib.Variant]]:
  """{stage suffix: (label, ClipOnCropsSpec, Variant)}: CLIP on crops with one part changed
  from the default (`ClipOnCropsSpec()`, the demo's row) at a time."""
  default = clip_on_crops.ClipOnCropsSpec()
  change = lambda **kw: dataclasses.replace(default, **kw)  # noqa: E731
  plain = methods_lib.DEFAULT
  variants = {
      "teacher_score": ("teacher probability alone (no objectness)",
                        change(objectness_weight=0.0), plain),
      "unrefined": ("raw proposals (no box regression)",
                    change(regress_boxes=False), plain),
      "before": ("raw proposals, teacher probability alone, no masks (the previous row)",
                 change(objectness_weight=0.0, regress_boxes=False, masks=False), plain),
      "crops1x": ("1x crops only", change(crop_scales=(1.0,)), plain),
      "crops1.5x": ("1.5x crops only", change(crop_scales=(1.5,)), plain),
      "square": ("square crops (aspect kept)", change(square_crops=True), plain),
      "single_template": ("one prompt template", default,
                          methods_lib.Variant(templates="single")),
  }
  for count in ablation.clip_proposals:
    variants[f"p{count}"] = (f"top {count} proposals", change(num_proposals=count), plain)
  for steps in ablation.teacher_steps:
    variants[f"teacher{steps}"] = (f"teacher of {steps} steps", default,
                                   methods_lib.Variant(teacher_steps=steps))
  return variants


# ------------------------------------------------------------------------------------------
# A stage of its own.
def run_diagnostics(directory: str, base_dir: str, teacher_dir: str, paths: Dict[str, str],
                    temperature: float, distill_pattern: str, train_full_json: str) -> dict:
  """`diagnostics` for one base-only detector, the teacher and its text embeddings."""
  matrix, vocabulary = text_embeddings_lib.load(paths["text_embeddings"])
  clip_spec = clip_on_crops.ClipOnCropsSpec()
  teacher = clip_teacher.load_clip_teacher(teacher_dir)
  with benchmark.clip_on_crops_evaluation(base_dir, teacher, clip_spec, paths,
                                          temperature) as (evaluator, dataset):
    embedder = crops.RegionEmbedder(teacher, scales=clip_spec.crop_scales, batch_size=256)
    validation = diagnostics.investigate(
        diagnostics.validation_images(evaluator, dataset),
        diagnostics.groundtruth_boxes(paths["val_json"], vocabulary), embedder, matrix,
        vocabulary, temperature, clip_spec.num_proposals, teacher=teacher)
  targets = diagnostics.distillation_targets(distill_pattern, train_full_json, matrix,
                                             vocabulary)
  result = {"validation": validation, "distillation_targets": targets}
  io.write_text_atomic(os.path.join(directory, DIAGNOSTICS_FILE),
                       json.dumps(result, indent=1) + "\n")
  return result


def diagnostics_job(pipeline: benchmark.Pipeline, seed: int):
  base, teacher = pipeline.base_detector(seed), pipeline.teacher()
  text = pipeline.text_embeddings()
  distill, records = pipeline.region_embeddings(seed), pipeline.records()
  paths = dict(pipeline.paths(),
               text_embeddings=os.path.join(text.directory, benchmark.TEXT_EMBEDDINGS))
  return stages.Job(
      methods_lib.seeded(diagnostics.STAGE, seed),
      {"clip_on_crops": dataclasses.asdict(clip_on_crops.ClipOnCropsSpec())}, run_diagnostics,
      (base.directory, teacher.directory, paths, pipeline.temperature(),
       benchmark.record_pattern(distill.directory, "train"),
       os.path.join(pipeline.world().directory, "train_full.json")),
      [base, teacher, text, distill, records])


def run_evaluation_noise(directory: str, val_json: str, detection_files: Dict[str, str],
                         resamples: int) -> dict:
  """{row: bootstrap of its mask AP_novel over validation images} (evaluation_noise)."""
  del directory
  return {name: evaluation_noise.bootstrap_novel_ap(val_json, path, "segm", resamples)
          for name, path in detection_files.items()}


def evaluation_noise_job(pipeline: benchmark.Pipeline, resamples: int) -> stages.Job:
  """The bootstrap of each demo row's first seed (CLIP on crops included)."""
  seed = pipeline.spec.seeds[0]
  results = [pipeline.detector(row, seed) for row in pipeline.spec.rows()]
  results.append(pipeline.run_jobs([pipeline.clip_on_crops_job(seed)])[0])
  files = {r.name: report.detection_file(r.directory) for r in results}
  return stages.Job(evaluation_noise.STAGE, {"resamples": resamples}, run_evaluation_noise,
                    (pipeline.paths()["val_json"], files, resamples), results)


# ------------------------------------------------------------------------------------------
def run_ablations(work_dir: str, results_dir: Optional[str] = None,
                  force: Union[bool, Sequence[str]] = False,
                  spec: Optional[benchmark.BenchmarkSpec] = None,
                  ablation: Optional[AblationSpec] = None,
                  command: str = "python scripts/run_ablations.py") -> dict:
  """Runs (or reuses) every ablation stage under `work_dir`; writes the report.

  The demo's rows first (reused when `make demo` has run), then the weaker teachers (in
  parallel), then the jobs that train nothing (CLIP on crops' variants and diagnostics,
  ViLD-text + CLIP, the evaluation noise) and a first report, then every ablation row for
  every seed and the full report. Returns the metrics of ablations.json.
  """
  start = time.time()
  pipeline = benchmark.Pipeline(work_dir, spec, force)
  spec, ablation = pipeline.spec, ablation or AblationSpec()
  with stages.work_dir_lock(pipeline.work_dir):
    benchmark.run_demo_rows(pipeline)
    pipeline.run_jobs([pipeline.teacher_job(steps) for steps in ablation.teacher_steps])
    results_dir = results_dir or os.path.join(pipeline.work_dir, "results")
    rows = variant_rows(spec, ablation)

    def report():
      return ablation_report.write_report(results_dir, pipeline, ablation, rows,
                                          clip_variants(ablation), command=command,
                                          run_seconds=time.time() - start)

    # What trains nothing first, and a report of it: the CLIP-on-crops investigation is there
    # in minutes; then every trained row.
    cheap = [pipeline.vild_text_plus_clip_job(seed) for seed in spec.seeds]
    cheap += [diagnostics_job(pipeline, seed) for seed in spec.seeds]
    cheap.append(evaluation_noise_job(pipeline, ablation.bootstrap_resamples))
    cheap += [pipeline.clip_on_crops_job(seed, clip_spec, variant, name=name)
              for name, (_, clip_spec, variant) in clip_variants(ablation).items()
              for seed in spec.seeds]
    pipeline.run_jobs(cheap)
    report()
    pipeline.run_jobs([pipeline.detector_job(row, seed) for group in rows.values()
                       for row in group for seed in spec.seeds])
    return report()
