"""Progress of a long job: rate and ETA for console lines ("step 1200/180000 ... ETA 2d 03:10:05")."""
import time
from typing import Optional


def format_duration(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  days, seconds = divmod(seconds, 86400)
  hours, seconds = divmod(seconds, 3600)
  minutes, seconds = divmod(seconds, 60)
  clock = f"{hours:02d}:{minutes:02d}:{seconds:02d}"
  return f"{days}d {clock}" if days else clock


class Progress:
  """Counts units of work (steps, images) towards `total` and estimates the time left.

  The rate is measured from the first `update` on, so one-off start-up costs (tracing,
  compilation) do not distort the estimate.
  """

  def __init__(self, total: Optional[int], done: int = 0, clock=time.monotonic):
    self.total = total
    self._clock = clock
    self._start_done = done
    self._start_time = None
    self.done = done

  def update(self, done: int) -> None:
    if self._start_time is None:
      self._start_time = self._clock()
      self._start_done = done
    self.done = done

  @property
  def rate(self) -> Optional[float]:
    """Units per second since the first update, or None before there is a measurement."""
    if self._start_time is None:
      return None
    elapsed = self._clock() - self._start_time
    counted = self.done - self._start_done
    return counted / elapsed if elapsed > 0 and counted > 0 else None

  def eta(self) -> str:
    rate = self.rate
    if self.total is None or rate is None:
      return "?"
    return format_duration((self.total - self.done) / rate)

  def describe(self, unit: str = "step") -> str:
    total = f"/{self.total}" if self.total else ""
    rate = self.rate
    rate_text = f"{rate:.2f} {unit}/s" if rate is not None else f"? {unit}/s"
    return f"{unit} {self.done}{total} | {rate_text} | ETA {self.eta()}"
