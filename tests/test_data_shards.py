"""Shard writing: workers die with a killed parent; the outputs of one name, and only those."""
import os
import signal
import subprocess
import sys
import time

import pytest

from vild.data import shards

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The parent: two shards of slow items written by two spawned workers. Each item appends to a
# per-worker heartbeat file, so the test sees which workers run and whether they still write.
DRIVER = """
import functools, os, sys, time
from vild.data import shards

def main(out):
  items = [[i for i in range(200)] for _ in range(2)]
  shards.write_shards(out, "slow", items,
                      functools.partial(shards_heartbeat, out), num_workers=2)

def shards_heartbeat(out, items):
  for _ in items:
    with open(os.path.join(out, f"heartbeat.{os.getpid()}"), "a") as f:
      f.write("x")
    time.sleep(0.1)
  return [], {}

if __name__ == "__main__":
  main(sys.argv[1])
"""


def _alive(pid: int) -> bool:
  """Running (not gone and not a zombie waiting for a reaper)."""
  try:
    with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
      return f.read().rsplit(")", 1)[1].split()[0] != "Z"
  except FileNotFoundError:
    return False


def _heartbeats(directory):
  return {int(n.split(".")[1]): os.path.getsize(os.path.join(directory, n))
          for n in os.listdir(directory) if n.startswith("heartbeat.")}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_with_a_killed_parent(tmp_path):
  out = tmp_path / "out"
  out.mkdir()
  driver = tmp_path / "driver.py"
  driver.write_text(DRIVER)
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
  parent = subprocess.Popen([sys.executable, str(driver), str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  workers = {}
  try:
    deadline = time.monotonic() + 180
    while len(workers) < 2 and time.monotonic() < deadline and parent.poll() is None:
      time.sleep(0.2)
      workers = _heartbeats(out)
    assert len(workers) == 2, "the two workers never started writing"
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 3
    while any(map(_alive, workers)) and time.monotonic() < deadline:
      time.sleep(0.05)
    assert not [pid for pid in workers if _alive(pid)], "workers outlived their parent"
    written = _heartbeats(out)
    time.sleep(0.5)
    assert _heartbeats(out) == written  # nobody writes any more
  finally:
    for pid in workers:  # on failure, do not leave the orphans running
      if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    if parent.poll() is None:
      parent.kill()


def test_list_and_remove_outputs_touch_one_name_only(tmp_path):
  for name in ("train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord",
               "train-00000-of-00001.tfrecord", ".train-00001-of-00002.tfrecord.ab12.tmp",
               "train-full-00000-of-00001.tfrecord", "train.report.json", "val-00000-of-00001"
               ".tfrecord"):
    (tmp_path / name).write_bytes(b"")
  (tmp_path / "train.shards").mkdir()
  (tmp_path / "train.shards" / "00000.json").write_text("{}")
  listed = [os.path.relpath(p, tmp_path) for p in shards.list_outputs(str(tmp_path), "train")]
  assert listed == [".train-00001-of-00002.tfrecord.ab12.tmp",
                    "train-00000-of-00001.tfrecord", "train-00000-of-00002.tfrecord",
                    "train-00001-of-00002.tfrecord", "train.shards/00000.json"]
  shards.remove_outputs(str(tmp_path), "train")
  assert sorted(os.listdir(tmp_path)) == ["train-full-00000-of-00001.tfrecord",
                                          "train.report.json", "val-00000-of-00001.tfrecord"]
