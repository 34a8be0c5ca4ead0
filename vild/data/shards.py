"""Sharded, parallel, resumable TFRecord writing: `{name}-%05d-of-%05d.tfrecord`.

A shard exists under its final name only when it is complete: it is written to a hidden
temporary name and renamed at the end, after its result (counts, problems) has been saved to
`{name}.shards/NNNNN.json`. A re-run therefore skips every shard that exists, reuses its saved
result, and redoes the rest; a killed run leaves at most hidden temporaries, which the next run
removes. Shards are written by a pool of processes (spawned, not forked: TensorFlow is not
fork-safe) with a progress bar counting items, with rate and ETA. A worker dies with the process
that started it, even when that one is killed with SIGKILL (`_die_with_parent`), so no worker
goes on writing into a directory nobody is converting any more.

Which settings the shards were written with is the caller's business (the converter keeps them
in `vild.utils.job_settings`); `list_outputs` and `remove_outputs` give it the files of a name.
"""
import ctypes
import functools
import glob
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
from typing import Callable, Dict, List, Sequence

import tensorflow as tf
import tqdm
from absl import logging

from vild.utils import io

# write_items(items) -> (serialized records, result dict); must be a picklable top-level
# function (or a functools.partial of one) so spawned workers can run it.
WriteItems = Callable[[Sequence], tuple]


def shard_path(output_dir: str, name: str, index: int, num_shards: int) -> str:
  return os.path.join(output_dir, f"{name}-{index:05d}-of-{num_shards:05d}.tfrecord")


def result_path(output_dir: str, name: str, index: int) -> str:
  return os.path.join(output_dir, f"{name}.shards", f"{index:05d}.json")


def list_outputs(output_dir: str, name: str) -> List[str]:
  """Every shard, saved result and temporary of `name` in `output_dir`, whatever its count."""
  directory, digits = glob.escape(output_dir), "[0-9]" * 5
  shard = f"{glob.escape(name)}-{digits}-of-{digits}.tfrecord"
  return sorted(io.glob(os.path.join(directory, shard)) +
                io.glob(os.path.join(directory, f".{shard}.*.tmp")) +
                io.glob(os.path.join(directory, f"{glob.escape(name)}.shards", "*")))


def remove_outputs(output_dir: str, name: str) -> None:
  """Deletes every shard, saved result and temporary of `name` (other names are left alone)."""
  for path in list_outputs(output_dir, name):
    io.remove(path)
  io.remove(os.path.join(output_dir, f"{name}.shards"))


def split_evenly(items: Sequence, num_shards: int) -> List[list]:
  """Contiguous chunks whose sizes differ by at most one (some may be empty)."""
  size, extra = divmod(len(items), num_shards)
  chunks, start = [], 0
  for i in range(num_shards):
    end = start + size + (1 if i < extra else 0)
    chunks.append(list(items[start:end]))
    start = end
  return chunks


def write_shards(output_dir: str, name: str, shards: Sequence[Sequence],
                 write_items: WriteItems, num_workers: int = 1) -> List[Dict]:
  """Writes one TFRecord per entry of `shards`; returns the per-shard result dicts, in order.

  Each result dict holds what `write_items` returned plus 'num_records' and 'path'.
  """
  io.makedirs(os.path.join(output_dir, f"{name}.shards"))
  _remove_stale_temporaries(output_dir, name)
  num_shards = len(shards)
  results: Dict[int, Dict] = {}
  pending = []
  for index, items in enumerate(shards):
    path = shard_path(output_dir, name, index, num_shards)
    saved = result_path(output_dir, name, index)
    if io.exists(path) and io.exists(saved):
      results[index] = io.read_json(saved)
    else:
      pending.append((index, path, saved, list(items)))
  if len(pending) < num_shards:
    logging.info("%s: %d of %d shards already written; writing the other %d.", name,
                 num_shards - len(pending), num_shards, len(pending))
  job = functools.partial(_write_one_shard, write_items)
  total = sum(len(p[3]) for p in pending)
  with tqdm.tqdm(total=total, desc=f"{name} ({len(pending)} shards)", unit="img",
                 smoothing=0.1) as progress:
    for index, result in _map_unordered(job, pending, num_workers):
      results[index] = result
      progress.update(result["num_items"])
  return [results[i] for i in range(num_shards)]


def _write_one_shard(write_items: WriteItems, task) -> tuple:
  index, path, saved, items = task
  records, result = write_items(items)
  result = dict(result, num_records=len(records), num_items=len(items),
                path=os.path.basename(path))
  with io.atomic_path(path) as tmp:
    with tf.io.TFRecordWriter(tmp) as writer:
      for record in records:
        writer.write(record)
    # The result is saved before the rename: a shard under its final name always has one.
    io.write_text_atomic(saved, json.dumps(result, indent=1) + "\n")
  return index, result


def _map_unordered(job, tasks, num_workers: int):
  if num_workers <= 1 or len(tasks) <= 1:
    yield from map(job, tasks)
    return
  context = multiprocessing.get_context("spawn")
  with context.Pool(min(num_workers, len(tasks)), initializer=_die_with_parent,
                    initargs=(os.getpid(),)) as pool:
    yield from pool.imap_unordered(job, tasks)


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent(parent_pid: int) -> None:
  """Pool initializer: the worker is killed as soon as the process that spawned it dies.

  On Linux the kernel does it (prctl PR_SET_PDEATHSIG: SIGKILL when the parent thread exits,
  and the pool starts its workers from the caller's thread); elsewhere a thread polls the parent
  id. Either way, a parent that died before this ran is caught by the first check.
  """
  if not (sys.platform.startswith("linux") and _set_parent_death_signal()):
    threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), daemon=True).start()
  if os.getppid() != parent_pid:
    os._exit(1)  # pylint: disable=protected-access


def _set_parent_death_signal() -> bool:
  libc = ctypes.CDLL(None, use_errno=True)
  if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
    return True
  logging.warning("prctl(PR_SET_PDEATHSIG) failed (errno %d); polling for the parent instead.",
                  ctypes.get_errno())
  return False


def _exit_when_orphaned(parent_pid: int, interval: float = 0.2) -> None:
  while os.getppid() == parent_pid:
    time.sleep(interval)
  os._exit(1)  # pylint: disable=protected-access


def _remove_stale_temporaries(output_dir: str, name: str) -> None:
  """Deletes hidden temporaries a killed run left (io.atomic_path names them .<file>.*.tmp)."""
  for stale in list_outputs(output_dir, name):
    if stale.endswith(".tmp"):
      logging.info("Removing %s, left by an interrupted run.", stale)
      io.remove(stale)
