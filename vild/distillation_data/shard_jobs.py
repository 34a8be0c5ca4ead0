"""Record-to-record jobs over TFRecord shards: split across machines, resumable, atomic.

Each distillation-data step reads a dataset's shards and writes, for every input shard, an
output shard of the same file name in another directory: the same records, in the same order,
with fields added. Machines split the work by shard: with `shard_index` i of `num_shards` n a
machine takes input shards i, i + n, i + 2n, ... (sorted by name), so n machines started with
the same command and their own index cover the dataset once.

An output shard exists under its final name only when it is complete (written to a hidden
temporary beside it, then renamed: `vild.utils.io.atomic_path`). A rerun skips every output
shard that exists and redoes the others; a killed run leaves only hidden temporaries, which the
next run over that shard removes. `check_settings` keeps a rerun from mixing the shards of two
different configurations in one directory.
"""
import os
import re
import time
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Union

import tensorflow as tf
import tqdm
from absl import logging

from vild.data import tf_example
from vild.utils import io
from vild.utils import job_settings

# (records of one input shard, the shard's path for messages) -> one output record per input
# record, in order.
RecordTransform = Callable[[Iterable[bytes], str], Iterator[bytes]]


class ShardJobError(ValueError):
  """Input, output or settings of a shard job do not fit; the message says what to do."""


def record_name(source: str, index: int, example: tf.train.Example) -> str:
  """'<shard>: record <index> (image/source_id <id>)': a record as messages name it."""
  return f"{source}: record {index} (image/source_id {tf_example.source_id(example)})"


def op_error_text(error: tf.errors.OpError) -> str:
  """A TensorFlow error's own message (e.g. 'jpeg::Uncompress failed. Invalid JPEG data or
  crop window.'), without graph-execution headers, stack lines, node lists or op names."""
  text = re.sub(r"\{\{function_node [^}]*\}\}|\[\[.*?\]\]|\[Op:[^\]]*\]", "", error.message)
  lines = [line.strip() for line in text.splitlines()]
  lines = [line for line in lines if line and not line.startswith(
      ("Graph execution error", "Detected at node", "File \""))]
  return lines[-1] if lines else error.message


def list_shards(file_pattern: Union[str, List[str]]) -> List[str]:
  """Sorted files matching the glob(s); an error naming the pattern when there are none."""
  patterns = [file_pattern] if isinstance(file_pattern, str) else list(file_pattern)
  files = sorted({f for p in patterns for f in tf.io.gfile.glob(p)})
  if not files:
    raise ShardJobError(f"input pattern {file_pattern!r} matches no TFRecord files; check the "
                        "path (make records with scripts/create_tfrecords.py).")
  return files


def assigned_shards(files: List[str], shard_index: int, num_shards: int) -> List[str]:
  """This machine's share: files[shard_index::num_shards]."""
  if num_shards < 1 or not 0 <= shard_index < num_shards:
    raise ShardJobError(f"--shard_index={shard_index} --num_shards={num_shards}: need "
                        "num_shards >= 1 and 0 <= shard_index < num_shards.")
  return files[shard_index::num_shards]


def count_records(path: str) -> int:
  try:
    return int(tf.data.TFRecordDataset(path).reduce(0, lambda count, _: count + 1))
  except tf.errors.DataLossError as e:
    raise ShardJobError(f"{path}: not a TFRecord file, or a corrupted one; narrow the input "
                        "pattern to the shards (e.g. 'dir/train-*.tfrecord').") from e


def check_settings(output_dir: str, name: str, settings: Dict) -> None:
  """Saves a job's settings as `{output_dir}/{name}.json`, or checks them against the saved ones.

  Every shard of a directory must come from one configuration (one detector, one teacher);
  a rerun with other settings would silently mix them (`vild.utils.job_settings`).
  """
  path = os.path.join(output_dir, f"{name}.json")
  saved = job_settings.load(path)
  if saved is None:
    job_settings.save(path, settings)
    return
  changed = job_settings.differences(saved, settings)
  if changed:
    raise ShardJobError(
        f"{path}: the shards in {output_dir} were written with other settings "
        f"({'; '.join(changed)}). Sources are identified by content (sha256 of their weights "
        "and config), so another detector or teacher differs even at the same path and "
        "checkpoint name. Use a new output directory, or rerun with the saved settings to "
        "finish the job.")


def run(file_pattern: Union[str, List[str]], output_dir: str, transform: RecordTransform,
        shard_index: int = 0, num_shards: int = 1, description: str = "records",
        postfix: Optional[Callable[[], Dict[str, str]]] = None) -> Dict[str, List[str]]:
  """Writes `transform`ed copies of this machine's input shards into `output_dir`.

  Args:
    file_pattern: glob(s) of the input TFRecord shards.
    output_dir: where output shards go, under their input file names (not the input folder).
    transform: see `RecordTransform`.
    shard_index, num_shards: this machine's share (see the module docstring).
    description: the progress bar's label.
    postfix: extra progress fields (e.g. crops/s), called after each record.

  Returns:
    {'written': [...], 'skipped': [...]} output shard paths.
  """
  files = list_shards(file_pattern)
  for path in files:
    if _same_directory(os.path.dirname(path), output_dir):
      raise ShardJobError(f"output_dir {output_dir} holds the input shards ({path}); write to "
                          "another directory.")
  io.makedirs(output_dir)
  mine = assigned_shards(files, shard_index, num_shards)
  outputs = {path: os.path.join(output_dir, os.path.basename(path)) for path in mine}
  pending = [p for p in mine if not io.exists(outputs[p])]
  skipped = [outputs[p] for p in mine if p not in pending]
  logging.info("%s: shard %d of %d takes %d of %d input shards; %d already written, %d to do.",
               description, shard_index, num_shards, len(mine), len(files), len(skipped),
               len(pending))
  total = sum(count_records(p) for p in pending)
  with tqdm.tqdm(total=total, desc=description, unit="img", smoothing=0.05) as progress:
    for path in pending:
      start = time.monotonic()
      num_records = _write_shard(path, outputs[path], transform, progress, postfix)
      rates = "".join(f", {k} {v}" for k, v in (postfix() if postfix else {}).items())
      logging.info("Wrote %s: %d records in %.1f s%s.", outputs[path], num_records,
                   time.monotonic() - start, rates)
  return {"written": [outputs[p] for p in pending], "skipped": skipped}


def _write_shard(input_path: str, output_path: str, transform: RecordTransform,
                 progress: tqdm.tqdm, postfix) -> int:
  io.remove_stale_temporaries(output_path)
  counts = {"in": 0, "out": 0}

  def records():
    for record in tf.data.TFRecordDataset(input_path).as_numpy_iterator():
      counts["in"] += 1
      yield record

  with io.atomic_path(output_path) as tmp:
    with tf.io.TFRecordWriter(tmp) as writer:
      for record in transform(records(), input_path):
        writer.write(record)
        counts["out"] += 1
        progress.update(1)
        if postfix:
          progress.set_postfix(postfix(), refresh=False)
    if counts["in"] != counts["out"]:  # a broken transform must not leave a short shard
      raise ShardJobError(f"{input_path}: {counts['in']} records read but {counts['out']} "
                          "written; a record transform must return one record per record.")
  return counts["out"]



def _same_directory(a: str, b: str) -> bool:
  """Local paths resolved (symlinks, '..'); URLs (gs://) compared as written."""
  if "://" in a or "://" in b:
    return a.rstrip("/") == b.rstrip("/")
  return os.path.realpath(a) == os.path.realpath(b)
