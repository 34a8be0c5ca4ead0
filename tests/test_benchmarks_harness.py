"""The benchmark harness: workers in their own processes, interleaved rounds, clear failures."""
import time

import pytest

from benchmarks import harness
from benchmarks import report


def busy_calls(seconds: float, megabytes: int = 0):
  """A workload whose one call spins for `seconds` and reports how often it ran."""
  ballast = b"\x01" * (megabytes * 2**20)  # written, so resident: in this worker's peak
  runs = []

  def spin():
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
      pass
    runs.append(len(ballast))
    return {"runs": len(runs)}
  return {"spin": spin}


def broken_calls():
  raise RuntimeError("no such model: 'R-9000'")


def test_workers_in_their_own_processes_report_times_and_their_own_memory():
  workloads = [harness.Workload("small", busy_calls, dict(seconds=0.02)),
               harness.Workload("large", busy_calls, dict(seconds=0.02, megabytes=200))]
  reports = harness.run_interleaved(workloads, rounds=3, timeout=120)
  for label in ("small", "large"):
    assert len(reports[label].seconds["spin"]) == 3
    assert reports[label].median("spin") >= 0.02
    assert 0 < reports[label].best("spin", cpu=True) <= reports[label].median("spin") + 0.05
    assert reports[label].facts["spin"] == {"runs": 4}  # warm-up + 3 rounds
  grown = reports["large"].peak_rss - reports["small"].peak_rss
  assert grown > 150 * 2**20, "the 200 MB ballast is in one worker's peak, not the other's"


def test_in_process_run_has_the_same_timings_and_no_memory_figure():
  reports = harness.run_interleaved([harness.Workload("local", busy_calls, dict(seconds=0.01))],
                                    rounds=2, isolated=False)
  assert len(reports["local"].cpu_seconds["spin"]) == 2
  assert reports["local"].peak_rss is None
  assert report.gibibytes(reports["local"].peak_rss).startswith("n/a")


def test_a_failing_worker_names_the_workload_and_shows_its_error():
  with pytest.raises(harness.WorkerError, match=r"(?s)broken model.*R-9000"):
    harness.run_interleaved([harness.Workload("broken model", broken_calls)], rounds=1,
                            timeout=120)


def test_labels_must_be_unique():
  with pytest.raises(ValueError, match="unique"):
    harness.run_interleaved([harness.Workload("a", busy_calls, dict(seconds=0)),
                             harness.Workload("a", busy_calls, dict(seconds=0))], rounds=1)


def test_targets_and_ratios_render_with_a_verdict():
  comparison = report.Comparison("x / y", report.Figure("x", 3.0, "s"),
                                 report.Figure("y", 2.0, "s"), report.Target(1.15))
  assert comparison.ratio == 1.5
  assert comparison.verdict == "≤ 1.15: NOT met"
  assert report.Target(0.6, upper=False).met(0.61)


def test_sharing_fact_counts_only_other_processes_cpu_time(monkeypatch):
  monkeypatch.setattr(report.os, "cpu_count", lambda: 2)
  start = report.MachineUse(load=(1.0, 2.0, 3.0), wall=0.0, busy=100.0, own=10.0)
  # 60 s on 2 cores = 120 CPU s of capacity; the machine was busy 90 s, 30 of them ours.
  end = report.MachineUse(load=(4.0, 5.0, 6.0), wall=60.0, busy=190.0, own=40.0)
  fact = report.sharing_fact(start, end)
  assert "1.00 / 2.00 / 3.00 at the start, 4.00 / 5.00 / 6.00 at the end" in fact
  assert "used 50% of the machine's CPU time" in fact
  assert "(1.0 CPU minutes of 2.0)" in fact


def test_vit_b32_flops_per_crop_match_the_published_count():
  from benchmarks import teacher_throughput  # pylint: disable=g-import-not-at-top
  from vild.teacher import clip_config  # pylint: disable=g-import-not-at-top
  config = clip_config.preset("vit_b32")
  flops = teacher_throughput.image_tower_flops(config.vision, config.embed_dim)
  assert 8.6e9 < flops < 9.0e9  # ViT-B/32 at 224²: about 4.4 G multiply-adds
