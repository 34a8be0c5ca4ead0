"""Interleaved timing of workloads that each live in their own process.

A workload is a module-level factory that builds its model (or teacher, or evaluator) inside a
worker process and returns {name: callable}, each callable one timed unit of work (a training
step, an inference). The parent starts every worker of a comparison, then asks them in rounds,
in rotating order, to run one call each. The machine is shared with other users, so its load
drifts; interleaving puts that drift on every side of a comparison alike, which is why the
benchmark reports ratios. Each worker reports its own peak resident memory, so the memory of
the things compared never mixes.
"""
import dataclasses
import multiprocessing
import os
import resource
import statistics
import time
import traceback
from typing import Callable, Dict, List, Optional, Sequence

from absl import logging
import gin

Calls = Dict[str, Callable[[], object]]


@dataclasses.dataclass(frozen=True)
class Workload:
  """Attributes:
    label: names the worker in logs and errors, e.g. 'stock Mask R-CNN'.
    factory: module-level function (picklable) returning {call name: callable}.
    kwargs: keyword arguments of `factory`.
    warmup: untimed calls of each callable before timing (tracing, XLA compilation).

  A callable may return a dict of small JSON-like facts (e.g. how many crops it embedded);
  the last one per call name is kept in the report.
  """
  label: str
  factory: Callable[..., Calls]
  kwargs: dict = dataclasses.field(default_factory=dict)
  warmup: int = 1


@dataclasses.dataclass
class WorkerReport:
  """What one worker measured per call name (wall and process CPU seconds) and its memory."""
  seconds: Dict[str, List[float]]
  cpu_seconds: Dict[str, List[float]]  # all threads of the worker; other users' load
                                       # inflates it far less than wall time
  # Bytes: the worker process's peak resident set (build, warm-up and timed calls), and its
  # resident set before the factory ran (Python and the workload's imports, e.g. TensorFlow).
  # None when the workload ran in the parent process.
  peak_rss: Optional[int]
  baseline_rss: Optional[int]
  facts: Dict[str, dict] = dataclasses.field(default_factory=dict)

  def median(self, name: str, cpu: bool = False) -> float:
    return statistics.median((self.cpu_seconds if cpu else self.seconds)[name])

  def best(self, name: str, cpu: bool = False) -> float:
    return min((self.cpu_seconds if cpu else self.seconds)[name])


class WorkerError(RuntimeError):
  """A worker raised, died (e.g. killed for memory) or did not answer in time."""


def current_rss() -> int:
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss() -> int:
  """This process's own peak resident set: /proc's VmHWM where there is one.

  Not getrusage's ru_maxrss: Linux carries it across fork + exec, so a worker spawned by a large
  process (a test session holding models) would report at least its parent's size."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) * 1024  # kB
  except OSError:
    pass
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def configure_gin(files: Sequence[str], bindings: Sequence[str]) -> None:
  """Replaces the gin config: workloads of a quick run share one process."""
  gin.clear_config()
  gin.parse_config_files_and_bindings(list(files), list(bindings), finalize_config=False)


class _Runner:
  """Builds a workload, warms it up, then runs its calls on request."""

  def __init__(self, workload: Workload):
    self.baseline_rss = current_rss()  # the workload's module (and TensorFlow) is imported
    self.calls = workload.factory(**workload.kwargs)
    for _ in range(workload.warmup):
      for call in self.calls.values():
        call()

  def run(self, name: str):
    """(wall seconds, process CPU seconds, facts dict or None) of one call."""
    start, start_cpu = time.perf_counter(), time.process_time()
    result = self.calls[name]()
    wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    return wall, cpu, result if isinstance(result, dict) else None


def _serve(conn, workload: Workload) -> None:
  """The worker process: build, warm up, then run calls on request until told to stop."""
  try:
    runner = _Runner(workload)
    conn.send(("ok", sorted(runner.calls)))
    while True:
      command, name = conn.recv()
      if command == "stop":
        conn.send(("ok", (peak_rss(), runner.baseline_rss)))
        return
      conn.send(("ok", runner.run(name)))
  except BaseException:  # pylint: disable=broad-except
    conn.send(("error", traceback.format_exc()))


class _ProcessWorker:
  """The parent's handle on one worker process."""

  def __init__(self, workload: Workload, timeout: float):
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no shared TF state
    self.workload = workload
    self.timeout = timeout
    self.conn, child_conn = context.Pipe()
    self.process = context.Process(target=_serve, args=(child_conn, workload), daemon=True,
                                   name=f"bench:{workload.label}")
    self.process.start()
    child_conn.close()

  def names(self) -> List[str]:
    return self._answer()

  def run(self, name: str):
    self.conn.send(("run", name))
    return self._answer()

  def stop(self):
    """(peak RSS, baseline RSS) of the worker process."""
    self.conn.send(("stop", None))
    return self._answer()

  def _answer(self):
    if not self.conn.poll(self.timeout):
      raise WorkerError(f"{self.workload.label}: no answer within {self.timeout:.0f} s; "
                        "raise --timeout or use smaller sizes.")
    try:
      kind, payload = self.conn.recv()
    except EOFError:
      self.process.join(5)
      raise WorkerError(
          f"{self.workload.label}: the worker died (exit code {self.process.exitcode}; -9 "
          "usually means it was killed for memory). Use a smaller image or batch.") from None
    if kind == "error":
      raise WorkerError(f"{self.workload.label} failed in its worker:\n{payload}")
    return payload

  def close(self):
    if self.process.is_alive():
      self.process.terminate()
    self.process.join(10)


class _InProcessWorker:
  """Runs the workload in this process (quick smoke runs): no isolation, no memory figure."""

  def __init__(self, workload: Workload, timeout: float):
    del timeout
    self.workload = workload
    self._runner = _Runner(workload)

  def names(self) -> List[str]:
    return sorted(self._runner.calls)

  def run(self, name: str):
    return self._runner.run(name)

  def stop(self):
    return None, None

  def close(self):
    pass


def run_interleaved(workloads: Sequence[Workload], rounds: int, timeout: float = 1800.0,
                    isolated: bool = True) -> Dict[str, WorkerReport]:
  """Times every call of every workload `rounds` times, interleaved; keyed by label.

  Round r runs the (workload, call) pairs in a rotated order, so no pair always runs right
  after the same other pair. `isolated=False` runs the workloads in this process (quick
  smoke runs): no per-workload memory figure then.
  """
  labels = [w.label for w in workloads]
  if len(set(labels)) != len(labels):
    raise ValueError(f"workload labels must be unique, got {labels}.")
  worker_type = _ProcessWorker if isolated else _InProcessWorker
  workers = []
  try:
    for workload in workloads:  # processes start at once and build in parallel
      workers.append(worker_type(workload, timeout))
    pairs = []
    for worker in workers:
      names = worker.names()
      logging.info("  %s ready (%s)", worker.workload.label, ", ".join(names))
      pairs += [(worker, name) for name in names]
    seconds = {label: {} for label in labels}
    cpu_seconds = {label: {} for label in labels}
    facts = {label: {} for label in labels}
    for r in range(rounds):
      shift = r % len(pairs)
      for worker, name in pairs[shift:] + pairs[:shift]:
        wall, cpu, call_facts = worker.run(name)
        label = worker.workload.label
        seconds[label].setdefault(name, []).append(wall)
        cpu_seconds[label].setdefault(name, []).append(cpu)
        if call_facts is not None:
          facts[label][name] = call_facts
      logging.info("  round %d/%d: %s", r + 1, rounds, ", ".join(
          f"{label}/{name} {times[-1]:.2f} s" for label, calls in seconds.items()
          for name, times in calls.items()))
    reports = {}
    for worker in workers:
      peak, baseline = worker.stop()
      label = worker.workload.label
      reports[label] = WorkerReport(seconds[label], cpu_seconds[label], peak, baseline,
                                    facts[label])
    return reports
  finally:
    for worker in workers:
      worker.close()
