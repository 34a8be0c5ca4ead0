"""The synthetic benchmark end to end at --quick size, through its CLIs, and its stage cache.

At this size (a few training steps) only the mechanics can be asserted: every stage runs for
every seed, the metrics file holds every row with a spread over the seeds, the supervised
base-only detector scores exactly 0 on novel categories (it has no weights for them), a rerun
reuses every stage, and the ablations (scripts/run_ablations.py --quick) reuse the demo's
stages and judge every finding. Both share one work dir, as `make demo` and `make ablations`.
"""
import json
import math
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.pipeline  # minutes: collected first (tests/conftest.py)

DEMO_ROWS = ("supervised_base", "clip_on_crops", "vild_text", "vild_w0.5", "vild_ensemble_w0.5")
SEEDS = (0, 1)  # configs/synthetic/quick.gin
FINDINGS = {"text_plus_clip", "text_without_vision", "distillation_loss", "prompt_ensemble",
            "crop_context", "num_proposals", "teacher_strength", "distillation_weight",
            "clip_on_crops", "paper_rows"}


def _run(script, work_dir, *flags):
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
  run = subprocess.run([sys.executable, os.path.join(REPO, "scripts", script), "--quick",
                        f"--work_dir={work_dir}", *flags], env=env, cwd=REPO,
                       capture_output=True, text=True)
  assert run.returncode == 0, run.stderr[-3000:]
  # Worker processes are as quiet as the script: no ~1 KB grappler cost-model warnings.
  assert "op_level_cost_estimator" not in run.stderr, run.stderr[-3000:]
  return run


def _load(path):
  with open(path) as f:
    return json.load(f)


def _check_spreads(row, iou_types, seeds=SEEDS):
  assert set(row) == iou_types
  for values in row.values():
    assert set(values) == {"AP", "AP_novel", "AP_base"}
    for stats in values.values():
      assert len(stats["values"]) == len(seeds)
      assert stats["min"] <= stats["mean"] <= stats["max"] and stats["std"] >= 0
      assert all(0 <= v <= 100 and not math.isnan(v) for v in stats["values"])


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
  work_dir = str(tmp_path_factory.mktemp("synthetic_quick"))
  _run("run_synthetic_benchmark.py", work_dir)
  return work_dir, _load(os.path.join(work_dir, "results", "metrics.json"))


def test_quick_demo_runs_every_row_for_every_seed(demo):
  work_dir, metrics = demo
  assert metrics["seeds"] == list(SEEDS)
  table = metrics["table"]
  assert set(table) == set(DEMO_ROWS)
  for name, row in table.items():
    _check_spreads(row, {"bbox", "segm"})
  base = table["supervised_base"]
  assert base["segm"]["AP_novel"]["max"] == 0 and base["bbox"]["AP_novel"]["max"] == 0
  assert len(metrics["targets"]) == 5
  assert all(t["holds"] in ("yes", "no", "within noise") for t in metrics["targets"])
  assert metrics["teacher"]["zero_shot_accuracy"]["chance"]
  assert not any(metrics["cached"].values())
  assert all(metrics["cpu_seconds"][name] > 0 for name in metrics["cpu_seconds"])
  # Every cosine classifier scores at the teacher's own temperature (CLIP's would be 0.01),
  # and each seed trains with its own train.seed.
  temperature = metrics["teacher"]["temperature"]
  assert 0.01 <= temperature < 1
  for seed in SEEDS:
    for name in ("supervised_base", "vild_text", "vild_ensemble_w0.5"):
      with open(os.path.join(work_dir, f"{name}_seed{seed}", "model", "config.gin")) as f:
        config = f.read()
      assert f"build_classifier.temperature = {temperature!r}" in config, name
      assert f"train.seed = {seed}" in config, name
  results = os.path.join(work_dir, "results")
  for name in ("RESULTS.md", "methods.png", "detection_grid.png"):
    assert os.path.getsize(os.path.join(results, name)) > 0
  with open(os.path.join(results, "RESULTS.md")) as f:
    text = f.read()
  assert "build_classifier.kind = 'learned'" in text and "seed 1" in text


def test_quick_ablations_reuse_the_demo_and_judge_every_finding(demo):
  work_dir, first = demo
  # One seed: the mechanics of every row, in a few minutes.
  run = _run("run_ablations.py", work_dir, "--gin_param=BenchmarkSpec.seeds = (0,)")
  metrics = _load(os.path.join(work_dir, "results", "ablations.json"))
  assert metrics["seeds"] == [0]
  # The demo's stages were reused, not trained again.
  for name in ("supervised_base", "vild_text", "vild_w0.5", "clip_on_crops"):
    assert metrics["cached"][f"{name}_seed0"], name
  assert "Stage vild_text_glove_seed0: queued (new)" in run.stderr
  assert set(metrics["targets"]) == FINDINGS
  for targets in metrics["targets"].values():
    assert all(t["holds"] in ("yes", "no", "within noise") for t in targets)
  table = metrics["table"]
  for name in ("vild_text_clip", "vild_text_glove", "vild_w0.5_l2", "vild_text_single_template",
               "vild_w0.5_crops1x", "vild_w0.5_m4", "vild_w0.5_teacher10", "vild_w2",
               "supervised_all", "vild_image", "clip_on_crops_p5", "clip_on_crops_square"):
    _check_spreads(table[name], {"bbox", "segm"}, seeds=(0,))
  _check_spreads(table["clip_on_crops_before"], {"bbox"}, seeds=(0,))  # the old row: no masks
  assert len(metrics["diagnostics"]) == 1 and metrics["evaluation_noise"]
  with open(os.path.join(work_dir, "vild_w0.5_l2_seed0", "model", "config.gin")) as f:
    assert "ViLDLoss.distill_loss_type = 'l2'" in f.read()
  assert set(metrics["teachers"]) == {"teacher", "teacher_steps10"}
  results = os.path.join(work_dir, "results")
  for name in ("ABLATIONS.md", "num_proposals.png", "distillation_weight.png",
               "teacher_strength.png"):
    assert os.path.getsize(os.path.join(results, name)) > 0, name

  # A rerun of the demo reuses every stage but the one forced, and that one (one thread, op
  # determinism) reproduces its metrics exactly.
  _run("run_synthetic_benchmark.py", work_dir, "--force=vild_text_seed1")
  again = _load(os.path.join(work_dir, "results", "metrics.json"))
  assert {name for name, cached in again["cached"].items() if not cached} == {
      "vild_text_seed1"}
  assert again["table"] == first["table"]
