"""The synthetic benchmark end to end at --quick size, through its CLI, and its stage cache.

At this size (a few training steps) only the mechanics can be asserted: every stage runs, the
metrics file holds every method, the supervised base-only detector scores exactly 0 on novel
categories (it has no weights for them), and a rerun reuses every stage.
"""
import json
import math
import os
import subprocess
import sys

from tests.conftest import REPO

METHODS = ("supervised_base", "supervised_all", "clip_on_crops", "vild_text", "vild_image",
           "vild_w0.5", "vild_ensemble_w0.5")


def _run(work_dir):
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
  run = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "run_synthetic_benchmark.py"),
                        "--quick", f"--work_dir={work_dir}"], env=env, cwd=REPO,
                       capture_output=True, text=True)
  assert run.returncode == 0, run.stderr[-3000:]
  with open(os.path.join(work_dir, "results", "metrics.json")) as f:
    return json.load(f)


def test_quick_benchmark_runs_every_stage_and_a_rerun_reuses_them(tmp_path):
  work_dir = str(tmp_path / "run")
  metrics = _run(work_dir)

  table = metrics["table"]
  assert set(table) == set(METHODS)
  for name, row in table.items():
    iou_types = {"bbox"} if name == "clip_on_crops" else {"bbox", "segm"}
    assert set(row) == iou_types, name
    for values in row.values():
      assert set(values) == {"AP", "AP_novel", "AP_base"}
      assert all(0 <= v <= 100 and not math.isnan(v) for v in values.values()), (name, values)
  base = table["supervised_base"]
  assert base["segm"]["AP_novel"] == 0 and base["bbox"]["AP_novel"] == 0
  assert len(metrics["targets"]) == 5 and metrics["teacher"]["zero_shot_accuracy"]["chance"]
  assert not any(metrics["cached"].values())
  # Every cosine classifier scores at the teacher's own temperature (CLIP's would be 0.01).
  temperature = metrics["teacher"]["temperature"]
  assert 0.01 <= temperature < 1
  for name in ("supervised_base", "vild_text", "vild_ensemble_w0.5"):
    with open(os.path.join(work_dir, name, "model", "config.gin")) as f:
      assert f"build_classifier.temperature = {temperature!r}" in f.read(), name
  results = os.path.join(work_dir, "results")
  for name in ("RESULTS.md", "ap_novel_vs_w.png", "detection_grid.png"):
    assert os.path.getsize(os.path.join(results, name)) > 0

  again = _run(work_dir)
  assert all(again["cached"].values())
  assert again["table"] == table and again["seconds"] == metrics["seconds"]
