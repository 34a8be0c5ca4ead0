"""What a benchmark row found, and BENCHMARKS.md rendered from the rows.

A row holds one or more comparisons; each comparison is two figures measured in the same run,
their ratio, and optionally a target on that ratio. Absolute numbers and breakdowns go in the
row's details, for context.
"""
import dataclasses
import datetime
import os
import platform
import resource
import time
from typing import List, Optional, Sequence, Tuple

from benchmarks import harness


@dataclasses.dataclass(frozen=True)
class Figure:
  label: str    # what was measured, e.g. 'ViLD (shared)'
  value: float
  unit: str     # e.g. 'CPU s/step'

  def __str__(self) -> str:
    return f"{self.label}: {format_number(self.value)} {self.unit}"


@dataclasses.dataclass(frozen=True)
class Target:
  """A bound on the ratio A / B: at most `limit` (upper=True) or at least `limit`."""
  limit: float
  upper: bool = True

  def met(self, ratio: float) -> bool:
    return ratio <= self.limit if self.upper else ratio >= self.limit

  def __str__(self) -> str:
    return f"{'≤' if self.upper else '≥'} {format_number(self.limit)}"


@dataclasses.dataclass(frozen=True)
class Comparison:
  what: str
  a: Figure
  b: Figure
  target: Optional[Target] = None

  @property
  def ratio(self) -> float:
    return self.a.value / self.b.value if self.b.value else float("nan")

  @property
  def verdict(self) -> str:
    if self.target is None:
      return ""
    return f"{self.target}: {'met' if self.target.met(self.ratio) else 'NOT met'}"


@dataclasses.dataclass(frozen=True)
class Side:
  """One side of a comparison: a call of a worker's report, under a short label."""
  label: str
  measured: harness.WorkerReport
  call: str


def time_and_memory(what: str, a: Side, b: Side, cpu_target: Optional[Target] = None,
                    wall_rate_unit: Optional[str] = None) -> List[Comparison]:
  """CPU-time, wall-time and (when each ran in its own process) peak-memory comparisons.

  Times are medians over the rounds. `wall_rate_unit` (e.g. 'images/s') shows wall time as
  calls per second instead of seconds per call.
  """
  def wall(side: Side) -> Figure:
    seconds = side.measured.median(side.call)
    if wall_rate_unit:
      return Figure(side.label, 1.0 / seconds, wall_rate_unit)
    return Figure(side.label, seconds, "s")

  comparisons = [
      Comparison(f"{what}, CPU time", *(Figure(side.label, side.measured.median(
          side.call, cpu=True), "CPU s") for side in (a, b)), cpu_target),
      Comparison(f"{what}, wall {'rate' if wall_rate_unit else 'time'}", wall(a), wall(b)),
  ]
  if a.measured is not b.measured and a.measured.peak_rss and b.measured.peak_rss:
    comparisons.append(Comparison(f"{what}, peak memory", *(Figure(
        side.label, side.measured.peak_rss / 2**30, "GiB") for side in (a, b))))
  return comparisons


@dataclasses.dataclass
class RowResult:
  title: str
  setup: str                       # sizes and settings, one paragraph
  comparisons: List[Comparison]
  details: List[str] = dataclasses.field(default_factory=list)  # markdown bullet texts
  # Filled in by benchmarks.run:
  number: int = 0
  command: str = ""
  seconds: float = 0.0             # wall time the row took


def format_number(value: float) -> str:
  if value != value:  # NaN
    return "n/a"
  magnitude = abs(value)
  if magnitude >= 100:
    return f"{value:,.0f}"
  if magnitude >= 10:
    return f"{value:.1f}"
  if magnitude >= 0.1:
    return f"{value:.2f}"
  return f"{value:.3g}"


def gibibytes(num_bytes: Optional[int]) -> str:
  return "n/a (in-process run)" if num_bytes is None else f"{num_bytes / 2**30:.2f} GiB"


def machine_facts() -> List[str]:
  """CPU model, cores, memory, Python and library versions (imported lazily)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  model = platform.processor() or "unknown"
  memory = "unknown"
  try:
    with open("/proc/cpuinfo") as f:
      model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    with open("/proc/meminfo") as f:
      kib = int(next(line.split()[1] for line in f if line.startswith("MemTotal")))
    memory = f"{kib / 2**20:.1f} GiB"
  except (OSError, StopIteration):
    pass
  return [f"CPU: {model}, {os.cpu_count()} cores visible; memory {memory}",
          f"Python {platform.python_version()}, TensorFlow {tf.__version__}, "
          f"NumPy {np.__version__}, {platform.system()} {platform.release()}"]


def machine_busy_seconds() -> float:
  """CPU seconds every process on the machine has spent busy since boot (/proc/stat)."""
  with open("/proc/stat") as f:
    fields = [int(value) for value in f.readline().split()[1:]]
  idle = fields[3] + fields[4]  # idle, iowait
  return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # guest time is in user already


def own_cpu_seconds() -> float:
  """CPU seconds of this process and its finished (waited-for) workers."""
  own = resource.getrusage(resource.RUSAGE_SELF)
  workers = resource.getrusage(resource.RUSAGE_CHILDREN)
  return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime


@dataclasses.dataclass(frozen=True)
class MachineUse:
  """How busy the machine was around a run: load averages and CPU seconds at both ends."""
  load: Tuple[float, float, float]
  wall: float
  busy: float
  own: float

  @classmethod
  def now(cls) -> "MachineUse":
    return cls(os.getloadavg(), time.time(), machine_busy_seconds(), own_cpu_seconds())


def sharing_fact(start: MachineUse, end: MachineUse) -> str:
  """Load averages at both ends, and the share of the machine's CPU that other processes
  than this benchmark used during the run: what competed with the measurements."""
  show = lambda load: " / ".join(f"{value:.2f}" for value in load)  # noqa: E731
  capacity = (end.wall - start.wall) * os.cpu_count()
  others = max(0.0, (end.busy - start.busy) - (end.own - start.own))
  return (f"Load average (1 / 5 / 15 min) {show(start.load)} at the start, {show(end.load)} "
          f"at the end, on {os.cpu_count()} cores. Processes other than this benchmark used "
          f"{100 * others / capacity:.0f}% of the machine's CPU time during the run "
          f"({others / 60:.1f} CPU minutes of {capacity / 60:.1f}).")


def render(rows: Sequence[RowResult], command: str, quick: bool,
           machine_use: Optional[Tuple[MachineUse, MachineUse]] = None) -> str:
  """The whole BENCHMARKS.md."""
  lines = [
      "# Benchmarks",
      "",
      f"Generated by `{command}` on {datetime.date.today().isoformat()}; do not edit by hand "
      "(docs/benchmarks.md says what each row measures).",
      "",
  ]
  if quick:
    lines += ["**Quick smoke run (`--quick`): tiny sizes, numbers meaningless.**", ""]
  lines += [f"- {fact}" for fact in machine_facts()]
  if machine_use:
    lines.append(f"- {sharing_fact(*machine_use)}")
  lines += [
      "- The machine is shared with other users, so absolute times are noisy; every ratio "
      "compares two things measured in the same run, interleaved.",
      "",
      "| # | compared | A | B | A / B | target | reproduce |",
      "|---|---|---|---|---|---|---|",
  ]
  for row in rows:
    for comparison in row.comparisons:
      lines.append(
          f"| {row.number} | {comparison.what} | {comparison.a} | {comparison.b} | "
          f"{format_number(comparison.ratio)} | {comparison.verdict} | `{row.command}` |")
  for row in rows:
    lines += ["", f"## {row.number}. {row.title}", "", row.setup, ""]
    lines += [f"- {detail}" for detail in row.details]
    lines.append(f"- Row time: {row.seconds:.0f} s. Reproduce: `{row.command}`")
  return "\n".join(lines) + "\n"
