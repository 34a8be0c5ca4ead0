"""Cached pipeline stages: a long job as a chain of steps that each run once.

A stage is a function `fn(stage_dir) -> summary` (a JSON-able dict) that writes everything it
makes into its own directory `work_dir/<name>/`. `StageRunner.run` computes it, or reuses it:

  key     = hash(stage name, its config, the output ids of the stages it reads)
  DONE.json (written atomically, last) = {key, output_id, seconds, summary, finished}

A stage is reused when its DONE.json holds the same key. Otherwise (first run, changed config,
recomputed input, or `force`) its directory is emptied and the function runs again; a job
killed half-way leaves no DONE.json, so the next run redoes that stage. Each completion gets a
new `output_id`, so recomputing a stage (with --force) also recomputes everything downstream,
while an unchanged chain is reused whole.
"""
import dataclasses
import datetime
import hashlib
import json
import os
import shutil
import time
import uuid
from typing import Callable, Collection, Optional, Sequence, Union

from absl import logging

from vild.utils import io

DONE_FILE = "DONE.json"


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
  """
  name: str
  directory: str
  output_id: str
  summary: dict
  seconds: float
  cached: bool


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

  def _forced(self, name: str) -> bool:
    return self.force is True or (not isinstance(self.force, bool) and name in self.force)

  def run(self, name: str, config, fn: Callable[[str], Optional[dict]],
          inputs: Sequence[StageResult] = ()) -> StageResult:
    """The stage's result, computed by `fn(directory)` unless a finished one has its key."""
    directory = os.path.join(self.work_dir, name)
    key = stage_key(name, config, inputs)
    done = read_done(directory)
    if done is not None and done["key"] == key and not self._forced(name):
      logging.info("Stage %s: reusing %s (computed in %.0f s on %s).", name, directory,
                   done["seconds"], done["finished"])
      result = StageResult(name, directory, done["output_id"], done["summary"],
                           done["seconds"], cached=True)
    else:
      reason = ("forced" if self._forced(name) else "new" if done is None
                else "config or inputs changed")
      logging.info("Stage %s: computing (%s) in %s.", name, reason, directory)
      if os.path.exists(directory):
        shutil.rmtree(directory)
      os.makedirs(directory)
      start = time.time()
      summary = fn(directory) or {}
      seconds = time.time() - start
      result = StageResult(name, directory, uuid.uuid4().hex[:16], summary, seconds,
                           cached=False)
      io.write_text_atomic(os.path.join(directory, DONE_FILE), json.dumps({
          "key": key, "output_id": result.output_id, "seconds": seconds,
          "summary": summary, "config": config,
          "inputs": {i.name: i.output_id for i in inputs},
          "finished": datetime.datetime.now().isoformat(timespec="seconds"),
      }, indent=1, default=str) + "\n")
      logging.info("Stage %s: done in %.1f s.", name, seconds)
    self.results[name] = result
    return result


def read_done(directory: str) -> Optional[dict]:
  """The DONE.json of a stage directory, or None if the stage never finished."""
  path = os.path.join(directory, DONE_FILE)
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)
