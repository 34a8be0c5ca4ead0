"""Cached pipeline stages: reuse, config changes, --force and its downstream, killed stages,
and independent stages run in worker processes."""
import multiprocessing
import os

import pytest

from vild.synthetic_benchmark import stages


class Counter:
  """A stage function that counts its calls and writes a file."""

  def __init__(self, text="x", fail=False):
    self.calls = 0
    self.text = text
    self.fail = fail

  def __call__(self, directory):
    self.calls += 1
    with open(os.path.join(directory, "out.txt"), "w") as f:
      f.write(self.text)
    if self.fail:
      raise RuntimeError("killed")
    return {"text": self.text}


def _chain(work_dir, force=False, config=1):
  runner = stages.StageRunner(str(work_dir), force)
  first, second = Counter(), Counter()
  a = runner.run("a", {"n": config}, first)
  b = runner.run("b", {}, second, [a])
  return runner, first, second, a, b


def test_second_run_reuses_every_stage_with_its_summary_and_time(tmp_path):
  _, _, _, a1, b1 = _chain(tmp_path)
  assert not a1.cached and not b1.cached
  _, first, second, a2, b2 = _chain(tmp_path)
  assert first.calls == second.calls == 0
  assert a2.cached and b2.cached
  assert (a2.output_id, a2.summary, a2.seconds) == (a1.output_id, a1.summary, a1.seconds)
  assert b2.output_id == b1.output_id


def test_changed_config_recomputes_the_stage_and_what_reads_it(tmp_path):
  _chain(tmp_path)
  _, first, second, _, _ = _chain(tmp_path, config=2)
  assert first.calls == 1 and second.calls == 1


def test_force_by_name_recomputes_that_stage_and_downstream_only(tmp_path):
  runner = stages.StageRunner(str(tmp_path))
  a = runner.run("a", {}, Counter())
  runner.run("b", {}, Counter(), [a])
  runner.run("c", {}, Counter())  # independent of a
  runner = stages.StageRunner(str(tmp_path), force=["a"])
  counters = [Counter(), Counter(), Counter()]
  a = runner.run("a", {}, counters[0])
  runner.run("b", {}, counters[1], [a])
  runner.run("c", {}, counters[2])
  assert [c.calls for c in counters] == [1, 1, 0]
  runner = stages.StageRunner(str(tmp_path), force=True)
  counter = Counter()
  runner.run("c", {}, counter)
  assert counter.calls == 1


def test_a_stage_that_dies_leaves_no_done_marker_and_runs_again(tmp_path):
  runner = stages.StageRunner(str(tmp_path))
  with pytest.raises(RuntimeError, match="killed"):
    runner.run("a", {}, Counter(fail=True))
  assert stages.read_done(str(tmp_path / "a")) is None
  counter = Counter(text="fresh")
  result = runner.run("a", {}, counter)
  assert counter.calls == 1 and not result.cached
  with open(tmp_path / "a" / "out.txt") as f:
    assert f.read() == "fresh"


def test_recomputing_empties_the_stage_directory_first(tmp_path):
  runner = stages.StageRunner(str(tmp_path))
  runner.run("a", {"n": 1}, Counter())
  (tmp_path / "a" / "stale.txt").write_text("old")
  runner.run("a", {"n": 2}, Counter())
  assert not (tmp_path / "a" / "stale.txt").exists()


def write_pid(directory, text):
  """A stage function for worker processes (module level: picklable)."""
  with open(os.path.join(directory, "out.txt"), "w") as f:
    f.write(text)
  return {"text": text, "pid": os.getpid()}


def fail(directory):
  raise RuntimeError(f"stage in {directory} failed")


def mark_setup(value):
  os.environ["VILD_TEST_SETUP"] = value


def setup_value(directory):
  return {"setup": os.environ.get("VILD_TEST_SETUP")}


@pytest.mark.parametrize("workers", [0, 2])
def test_run_all_computes_jobs_in_workers_and_a_rerun_reuses_them(tmp_path, workers):
  runner = stages.StageRunner(str(tmp_path))
  a = runner.run("a", {}, Counter())
  jobs = [stages.Job(name, {"n": i}, write_pid, (name,), [a])
          for i, name in enumerate(("b", "c", "d"))]
  results = runner.run_all(jobs, workers=workers)
  assert [r.name for r in results] == ["b", "c", "d"]
  assert all(not r.cached and r.summary["text"] == r.name for r in results)
  pids = {r.summary["pid"] for r in results}
  assert (pids == {os.getpid()}) if workers == 0 else (os.getpid() not in pids)
  for r in results:
    assert stages.read_done(r.directory)["key"] == stages.stage_key(r.name, r.config, [a])
    assert r.cpu_seconds >= 0 and r.seconds >= 0
  again = stages.StageRunner(str(tmp_path)).run_all(jobs, workers=workers)
  assert all(r.cached for r in again)
  assert [r.output_id for r in again] == [r.output_id for r in results]


def test_run_all_runs_the_setup_in_each_worker_and_raises_a_failing_job(tmp_path):
  runner = stages.StageRunner(str(tmp_path))
  results = runner.run_all([stages.Job("a", {}, setup_value), stages.Job("b", {}, setup_value)],
                           workers=2, worker_setup=mark_setup, setup_args=("on",))
  assert [r.summary["setup"] for r in results] == ["on", "on"]
  with pytest.raises(RuntimeError, match="failed"):
    runner.run_all([stages.Job("c", {}, fail), stages.Job("d", {}, write_pid, ("d",))],
                   workers=2)
  assert stages.read_done(str(tmp_path / "c")) is None


def hold_lock(work_dir, ready, release):
  with stages.work_dir_lock(work_dir):
    ready.set()
    release.wait(30)


def test_a_work_dir_holds_one_run_at_a_time(tmp_path):
  context = multiprocessing.get_context("spawn")
  ready, release = context.Event(), context.Event()
  holder = context.Process(target=hold_lock, args=(str(tmp_path), ready, release))
  holder.start()
  try:
    assert ready.wait(600)  # a spawned child imports TensorFlow: slow on a loaded machine
    with pytest.raises(RuntimeError, match=f"in use by another run \\(process {holder.pid}\\)"):
      with stages.work_dir_lock(str(tmp_path)):
        pass
  finally:
    release.set()
    holder.join(600)
  with stages.work_dir_lock(str(tmp_path)):  # free again once the holder is gone
    pass
