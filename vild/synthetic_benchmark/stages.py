"""Cached pipeline stages: a long job as a chain of steps that each run once.

A stage is a function `fn(stage_dir) -> summary` (a JSON-able dict) that writes everything it
makes into its own directory `work_dir/<name>/`. `StageRunner.run` computes it, or reuses it:

  key     = hash(stage name, its config, the output ids of the stages it reads)
  DONE.json (written atomically, last) = {key, output_id, seconds, cpu_seconds, summary,
                                          finished}

A stage is reused when its DONE.json holds the same key. Otherwise (first run, changed config,
recomputed input, or `force`) its directory is emptied and the function runs again; a job
killed half-way leaves no DONE.json, so the next run redoes that stage. Each completion gets a
new `output_id`, so recomputing a stage (with --force) also recomputes everything downstream,
while an unchanged chain is reused whole.

`StageRunner.run_all` runs independent stages (`Job`s) in `workers` processes at once, each a
fresh process set up by `worker_setup` (one TensorFlow thread, op determinism): a small model's
training step keeps about one core busy however many threads it has, so on 2 cores two
single-thread trainings finish in about the time of one (docs/synthetic_benchmark.md, "Time").
"""
from concurrent import futures
import contextlib
import dataclasses
import datetime
import fcntl
import hashlib
import json
import multiprocessing
import os
import shutil
import time
import uuid
from typing import Callable, Collection, List, Optional, Sequence, Tuple, Union

from absl import logging

from vild.utils import io

DONE_FILE = "DONE.json"
LOCK_FILE = "RUNNING.lock"


@dataclasses.dataclass(frozen=True)
class StageResult:
  """A finished stage.

  Attributes:
    name: the stage's name (its directory under the work dir).
    directory: where its outputs are.
    output_id: identifies this computation of the stage; downstream keys include it.
    summary: what the stage function returned.
    seconds: wall time of the computation (of the original one when reused).
    cached: True when this run reused it.
    cpu_seconds: CPU time of the computation, all threads of this process (of the original
      one when reused). On a shared machine it is the stable figure: other jobs stretch the
      wall time, not the CPU time.
    config: the stage's config (what its key hashes).
  """
  name: str
  directory: str
  output_id: str
  summary: dict
  seconds: float
  cached: bool
  cpu_seconds: float = float("nan")
  config: object = None


@dataclasses.dataclass(frozen=True)
class Job:
  """A stage for `StageRunner.run_all`: `fn(directory, *args)`. For a run in worker
  processes, `fn` must be a module-level function and `args` picklable."""
  name: str
  config: object
  fn: Callable
  args: tuple = ()
  inputs: Sequence[StageResult] = ()


def stage_key(name: str, config, inputs: Sequence[StageResult]) -> str:
  """A hash of the stage name, its JSON-able config and its inputs' output ids."""
  text = json.dumps({"name": name, "config": config,
                     "inputs": {i.name: i.output_id for i in inputs}},
                    sort_keys=True, default=str)
  return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class StageRunner:
  """Runs stages under `work_dir`, reusing finished ones.

  Args:
    work_dir: one sub-directory per stage.
    force: True to recompute every stage, or the names of the stages to recompute.
  """

  def __init__(self, work_dir: str, force: Union[bool, Collection[str]] = False):
    self.work_dir = work_dir
    self.force = force
    self.results = {}  # name -> StageResult, in run order
    self._start = time.time()

  def _forced(self, name: str) -> bool:
    return self.force is True or (not isinstance(self.force, bool) and name in self.force)

  def run(self, name: str, config, fn: Callable[[str], Optional[dict]],
          inputs: Sequence[StageResult] = ()) -> StageResult:
    """The stage's result, computed by `fn(directory)` unless a finished one has its key."""
    key, result = self._reusable(name, config, inputs)
    if result is None:
      directory = self._prepare(name)
      summary, seconds, cpu_seconds = timed_call(fn, directory)
      result = self._finish(name, key, config, inputs, summary, seconds, cpu_seconds)
    return result

  def run_all(self, jobs: Sequence[Job], workers: int = 1,
              worker_setup: Optional[Callable] = None, setup_args: tuple = ()
              ) -> List[StageResult]:
    """Results of independent `jobs`, the unfinished ones computed in up to `workers` fresh
    processes at once (`worker_setup(*setup_args)` runs first in each); 0 workers: here, in
    order. A failing job raises once the others have finished or been cancelled."""
    pending: List[Tuple[Job, str]] = []
    for job in jobs:
      key, result = self._reusable(job.name, job.config, job.inputs,
                                   "computing" if workers <= 0 else "queued")
      if result is None:
        pending.append((job, key))
    if workers <= 0:
      for job, key in pending:
        summary, seconds, cpu_seconds = timed_call(job.fn, self._prepare(job.name),
                                                   *job.args)
        self._finish(job.name, key, job.config, job.inputs, summary, seconds, cpu_seconds)
    elif pending:
      context = multiprocessing.get_context("spawn")
      with futures.ProcessPoolExecutor(min(workers, len(pending)), mp_context=context,
                                       initializer=worker_setup, initargs=setup_args,
                                       max_tasks_per_child=1) as pool:
        running = {pool.submit(timed_call, job.fn, self._prepare(job.name), *job.args):
                   (job, key) for job, key in pending}
        for done in futures.as_completed(running):
          job, key = running[done]
          summary, seconds, cpu_seconds = done.result()
          self._finish(job.name, key, job.config, job.inputs, summary, seconds, cpu_seconds)
    return [self.results[job.name] for job in jobs]

  def _reusable(self, name, config, inputs, verb: str = "computing"
                ) -> Tuple[str, Optional[StageResult]]:
    """(the stage's key, its finished result when one with that key can be reused)."""
    directory = os.path.join(self.work_dir, name)
    key = stage_key(name, config, inputs)
    done = read_done(directory)
    if done is None or done["key"] != key or self._forced(name):
      reason = ("forced" if self._forced(name) else "new" if done is None
                else "config or inputs changed")
      logging.info("[%s] Stage %s: %s (%s) in %s.", self._elapsed(), name, verb, reason,
                   directory)
      return key, None
    logging.info("[%s] Stage %s: reusing %s (computed in %.0f s on %s).", self._elapsed(),
                 name, directory, done["seconds"], done["finished"])
    result = StageResult(name, directory, done["output_id"], done["summary"],
                         done["seconds"], cached=True,
                         cpu_seconds=done.get("cpu_seconds", float("nan")),
                         config=done.get("config"))
    self.results[name] = result
    return key, result

  def _prepare(self, name: str) -> str:
    """An empty directory for the stage (whatever an unfinished run left is removed)."""
    directory = os.path.join(self.work_dir, name)
    if os.path.exists(directory):
      shutil.rmtree(directory)
    os.makedirs(directory)
    return directory

  def _finish(self, name, key, config, inputs, summary, seconds, cpu_seconds) -> StageResult:
    """Records a computed stage: DONE.json (atomically, last) and the result."""
    directory = os.path.join(self.work_dir, name)
    result = StageResult(name, directory, uuid.uuid4().hex[:16], summary or {}, seconds,
                         cached=False, cpu_seconds=cpu_seconds, config=config)
    io.write_text_atomic(os.path.join(directory, DONE_FILE), json.dumps({
        "key": key, "output_id": result.output_id, "seconds": seconds,
        "cpu_seconds": cpu_seconds, "summary": result.summary, "config": config,
        "inputs": {i.name: i.output_id for i in inputs},
        "finished": datetime.datetime.now().isoformat(timespec="seconds"),
    }, indent=1, default=str) + "\n")
    self.results[name] = result
    logging.info("[%s] Stage %s: done in %.1f s (%.1f CPU s).", self._elapsed(), name,
                 seconds, cpu_seconds)
    return result

  def _elapsed(self) -> str:
    """Run time so far and stages finished, for the progress lines."""
    minutes = (time.time() - self._start) / 60
    return f"{minutes:5.1f} min, {len(self.results)} stages done"


@contextlib.contextmanager
def work_dir_lock(work_dir: str):
  """Holds `work_dir` for one run: a second run on it would empty the stage directories the
  first is writing. The lock (flock on LOCK_FILE, which names the holder's pid) goes with the
  process, so a killed run leaves nothing to clean up."""
  os.makedirs(work_dir, exist_ok=True)
  path = os.path.join(work_dir, LOCK_FILE)
  with open(path, "a+", encoding="utf-8") as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      raise RuntimeError(f"{work_dir} is in use by another run (process {f.read().strip()}); "
                         "wait for it to finish or give another --work_dir.") from None
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def read_done(directory: str) -> Optional[dict]:
  """The DONE.json of a stage directory, or None if the stage never finished."""
  path = os.path.join(directory, DONE_FILE)
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def timed_call(fn: Callable, directory: str, *args) -> Tuple[dict, float, float]:
  """(fn(directory, *args) or {}, wall seconds, CPU seconds of this process)."""
  start, cpu_start = time.time(), time.process_time()
  summary = fn(directory, *args) or {}
  return summary, time.time() - start, time.process_time() - cpu_start
