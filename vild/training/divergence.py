"""Divergence: the loss's recent range, which checkpoints are good, non-finite weights.

A step's loss is *in range* when every loss term is finite and total_loss is at most
`RANGE_FACTOR` (100) times the median of the last `WINDOW` (100) in-range total losses. The
first step out of range starts an *excursion*, which ends at the next step back in range.

A checkpoint written at step s holds the weights from which step s + 1's loss is computed, so
it is *good* when that loss was still in range: with the current excursion starting at step t,
the good checkpoints are those with s <= t - 2 that were not written during an earlier
excursion. (The NaN guard used to name the newest checkpoint, whose weights had often
diverged already: 7.5e30 in issue 17.)

`checkpoint_health.json` in the model_dir records, for each checkpoint, the loss window and
excursion at its step (written just before the checkpoint itself), so a resumed run continues
the same range and a later failure can still name a good checkpoint. `non_finite_variables`
lists variables that are not finite; the trainer never saves those.
"""
import collections
import dataclasses
import json
import math
import os
import re
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from vild.utils import io

RANGE_FACTOR = 100.0
WINDOW = 100
HEALTH_NAME = "checkpoint_health.json"


@dataclasses.dataclass
class Excursion:
  """Where the loss first left its range."""
  step: int
  loss: float
  median: Optional[float]   # the median it was compared with (None: no history yet)

  def describe(self) -> str:
    if not math.isfinite(self.loss) or self.median is None:
      return f"step {self.step} (loss {self.loss:.4g})"
    return (f"step {self.step} (total_loss {self.loss:.4g} > {RANGE_FACTOR:g} x its recent "
            f"median {self.median:.4g})")


class LossRange:
  """The recent range of total_loss and the current excursion out of it."""

  def __init__(self, recent: Sequence[float] = (), excursion: Optional[Excursion] = None):
    self.recent = collections.deque(recent, maxlen=WINDOW)
    self.excursion = excursion

  def median(self) -> Optional[float]:
    return float(np.median(self.recent)) if self.recent else None

  def update(self, step: int, total_loss: float, all_finite: bool = True) -> bool:
    """Records step `step`'s loss; returns whether it was in range."""
    median = self.median()
    in_range = (all_finite and math.isfinite(total_loss) and
                (median is None or total_loss <= RANGE_FACTOR * median))
    if in_range:
      self.recent.append(total_loss)
      self.excursion = None
    elif self.excursion is None:
      self.excursion = Excursion(step, total_loss, median)
    return in_range

  def state(self) -> dict:
    return {"recent_losses": list(self.recent),
            "excursion": dataclasses.asdict(self.excursion) if self.excursion else None}

  @classmethod
  def from_state(cls, state: Optional[dict]) -> "LossRange":
    if not state:
      return cls()
    excursion = state.get("excursion")
    return cls(state.get("recent_losses", ()), Excursion(**excursion) if excursion else None)


def _step(checkpoint_path: str) -> int:
  return int(re.search(r"-(\d+)$", checkpoint_path).group(1))


class CheckpointHealth:
  """`checkpoint_health.json`: the loss range at each checkpoint's step."""

  def __init__(self, model_dir: str):
    self.path = os.path.join(model_dir, HEALTH_NAME)
    self.records: Dict[str, dict] = {}
    if tf.io.gfile.exists(self.path):
      with tf.io.gfile.GFile(self.path) as f:
        self.records = json.load(f)

  def range_at(self, step: int) -> LossRange:
    return LossRange.from_state(self.records.get(str(step)))

  def record(self, step: int, loss_range: LossRange, keep: Sequence[str]) -> None:
    """Writes the range at `step`; forgets checkpoints other than `keep` (paths) and `step`."""
    kept_steps = {str(_step(p)) for p in keep} | {str(step)}
    self.records = {s: r for s, r in self.records.items() if s in kept_steps}
    self.records[str(step)] = loss_range.state()
    io.write_text_atomic(self.path, json.dumps(self.records, indent=1) + "\n")

  def last_good(self, checkpoint_paths: Sequence[str],
                excursion: Optional[Excursion]) -> Optional[str]:
    """The newest checkpoint whose weights gave an in-range loss before `excursion`.

    Checkpoints written during an excursion are not good; those without a record (written
    before this file existed) count as good when they precede the excursion.
    """
    for path in sorted(checkpoint_paths, key=_step, reverse=True):
      step = _step(path)
      if excursion is not None and step > excursion.step - 2:
        continue
      record = self.records.get(str(step))
      if record is not None and record.get("excursion"):
        continue
      return path
    return None


def restart_advice(model_dir: str, good: Optional[str], checkpoint_paths: Sequence[str]
                   ) -> str:
  """How to continue from the good checkpoint (or that there is none)."""
  if good is None:
    return (f"No checkpoint in {model_dir} was written before the loss left its range: start "
            "again in a new (or emptied) model_dir.")
  later = sorted((p for p in checkpoint_paths if _step(p) > _step(good)), key=_step)
  if not later:
    return f"Last good checkpoint: {good}; rerun to resume from it."
  files = " ".join(f"{p}.*" for p in later)
  return (f"Last good checkpoint: {good} (the later ones were written after the loss left "
          f"its range). To resume from it, delete the later checkpoints (rm {files}) and "
          "rerun; or train into a new model_dir with "
          f"--gin_param=\"ViLDTrainer.init_checkpoint = '{good}'\" (weights only: the "
          "optimizer, step and data position start afresh).")


@tf.function
def _finite_flags(variables):
  return tf.stack([tf.reduce_all(tf.math.is_finite(v)) for v in variables])


def non_finite_variables(variables: Sequence[tf.Variable]) -> List[str]:
  """Names of the floating-point variables holding NaN or inf."""
  floats = [v for v in variables if v.dtype.is_floating]
  if not floats:
    return []
  flags = _finite_flags(floats).numpy()
  return [v.name for v, finite in zip(floats, flags) if not finite]
