"""Row: the training step in bfloat16 and under XLA, each against the float32 graph step.

The choices behind `set_precision.policy = 'auto'` and `ViLDTrainer.jit_compile = 'auto'`
(vild.training.strategy) on this machine's CPU: one training step of ViLD (shared tower, M
distill RoIs) and of the stock Mask R-CNN (benchmarks/stock_maskrcnn.py), each as three
workers: float32 in graph mode (the baseline), mixed_bfloat16 in graph mode, and float32
compiled with XLA (`tf.function(jit_compile=True)`). The three variants of one model run
interleaved, each in its own process (its peak memory is its own); the models run one after
the other, so at most three workers hold memory at once.

Whether bfloat16 helps depends on the CPU: with AVX512_BF16 or AMX and TensorFlow's oneDNN
kernels it computes natively; elsewhere it is emulated (the details name what this CPU has).
"""
import dataclasses
from typing import Dict, Tuple

from absl import app
from absl import flags

import benchmarks
from benchmarks import harness
from benchmarks import report
from benchmarks import training_step
from vild.training import strategy as strategy_lib

VARIANTS = {  # name -> step_calls arguments
    "float32": dict(policy="float32", jit_compile=False),
    "bfloat16": dict(policy="mixed_bfloat16", jit_compile=False),
    "XLA": dict(policy="float32", jit_compile=True),
}
BASELINE = "float32"


@dataclasses.dataclass(frozen=True)
class Settings:
  image_size: int = 640
  batch_size: int = 1
  num_classes: int = 866  # LVIS base categories: the training vocabulary
  num_distill_rois: int = 300
  models: Tuple[str, ...] = ("shared", "stock")
  variants: Tuple[str, ...] = ("float32", "bfloat16", "XLA")
  rounds: int = 2
  gin_files: Tuple[str, ...] = ()
  gin_bindings: Tuple[str, ...] = ()


DEFAULT = Settings()
QUICK = Settings(image_size=128, num_classes=20, num_distill_rois=16, rounds=1,
                 models=("shared",), gin_files=(benchmarks.TINY_GIN,), gin_bindings=(
                     "build_backbone.depth = 10", "build_roi_sampler.num_sampled_rois = 32"))

# The synthetic benchmark's detector (configs/synthetic/detector.gin, where it pins float32);
# `python -m benchmarks.training_variants --settings=synthetic` prints its comparisons.
SYNTHETIC = Settings(image_size=128, batch_size=8, num_classes=30, num_distill_rois=32,
                     models=("shared", "none"), variants=("float32", "bfloat16"), rounds=5,
                     gin_files=("configs/synthetic/detector.gin",))
PRESETS = {"default": DEFAULT, "quick": QUICK, "synthetic": SYNTHETIC}


def label(model: str, variant: str) -> str:
  return f"{training_step.LABELS[model]}, {variant}"


def measure(settings: Settings, model: str, isolated: bool) -> Dict[str, harness.WorkerReport]:
  """{variant: report} of one model's variants, interleaved."""
  common = dict(model_kind=model, image_size=settings.image_size,
                batch_size=settings.batch_size, num_classes=settings.num_classes,
                num_distill_rois=settings.num_distill_rois, gin_files=settings.gin_files,
                gin_bindings=settings.gin_bindings)
  workloads = [harness.Workload(label(model, variant), training_step.step_calls,
                                dict(common, **VARIANTS[variant]))
               for variant in settings.variants]
  reports = harness.run_interleaved(workloads, settings.rounds, isolated=isolated)
  return {variant: reports[label(model, variant)] for variant in settings.variants}


def run(settings: Settings, isolated: bool = True) -> report.RowResult:
  comparisons, details = [], []
  for model in settings.models:
    reports = measure(settings, model, isolated)
    baseline = report.Side(label(model, BASELINE), reports[BASELINE], "step")
    for variant, measured in reports.items():
      details.append(
          f"{label(model, variant)}: {measured.median('step', cpu=True):.2f} CPU s/step, "
          f"{measured.median('step'):.2f} s/step wall (medians of "
          f"{len(measured.seconds['step'])}), peak RSS {report.gibibytes(measured.peak_rss)}")
      if variant != BASELINE:
        comparisons += report.time_and_memory(
            f"training step, {training_step.LABELS[model]}: {variant} / float32",
            report.Side(label(model, variant), measured, "step"), baseline)
  policy, why = strategy_lib.auto_precision(strategy_lib.select_strategy("default"))
  details.append(f"This machine: set_precision.policy = 'auto' picks {policy}: {why}; "
                 "ViLDTrainer.jit_compile = 'auto' leaves XLA off on CPUs.")
  setup = (f"{training_step.describe_model(settings.gin_files)}, {settings.image_size}x"
           f"{settings.image_size}, batch {settings.batch_size}, {settings.num_classes} "
           f"training classes, M = {settings.num_distill_rois} distill RoIs for ViLD, SGD "
           "momentum 0.9. Variants: float32 graph (baseline), mixed_bfloat16 graph (bfloat16 "
           "compute, float32 variables, losses and cosine logits), float32 with XLA "
           "(jit_compile=True; its compilation is in the untimed warm-up step). Each variant "
           f"in its own process, {settings.rounds} interleaved round(s) after one warm-up "
           "step; the models one after the other.")
  return report.RowResult(title="Training step: bfloat16 and XLA against float32",
                          setup=setup, comparisons=comparisons, details=details)


def main(argv):
  del argv
  result = run(PRESETS[flags.FLAGS.settings])
  print(result.setup)
  for comparison in result.comparisons:
    print(f"{comparison.what}: {comparison.a} vs {comparison.b}: "
          f"{report.format_number(comparison.ratio)}")
  for detail in result.details:
    print(f"- {detail}")


if __name__ == "__main__":
  flags.DEFINE_enum("settings", "default", list(PRESETS), "Which settings to run.")
  app.run(main)
