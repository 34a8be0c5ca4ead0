"""File access for the whole library, through tf.io.gfile, and atomic writes.

Every path the library reads or writes may be local or any file system TensorFlow knows
(`gs://` buckets on Cloud TPU, `ram://` in tests), so file access goes through `tf.io.gfile`
here rather than `open`/`os.path`/`glob`. Writes are atomic: a job that dies never leaves a
half-written file under the final name (a temporary name beside it, renamed at the end; on GCS
the rename is a copy, and the object appears whole).
"""
import contextlib
import io as std_io
import json
import os
import uuid
from typing import Any, List

import gin
import numpy as np
import tensorflow as tf

# gin reads config files (a gs:// model_dir's config.gin) through tf.io.gfile too.
gin.config.register_file_reader(tf.io.gfile.GFile, tf.io.gfile.exists)

exists = tf.io.gfile.exists
isdir = tf.io.gfile.isdir
makedirs = tf.io.gfile.makedirs
listdir = tf.io.gfile.listdir


def absolute(path: str) -> str:
  """A local path made absolute; a URL (gs://, ram://) as given."""
  return path if "://" in path else os.path.abspath(path)


def glob(pattern: str) -> List[str]:
  """Sorted paths matching a glob pattern (any file system)."""
  return sorted(tf.io.gfile.glob(pattern))


def remove(path: str) -> None:
  """Removes a file or a directory tree; no error if it is not there."""
  if tf.io.gfile.isdir(path):
    tf.io.gfile.rmtree(path)
  elif tf.io.gfile.exists(path):
    tf.io.gfile.remove(path)


@contextlib.contextmanager
def atomic_path(path: str):
  """Yields a temporary path beside `path`; renames it to `path` only if the block succeeds.

  Write the temporary path with tf.io.gfile (or `open_file`). On any exception the temporary
  file is removed.
  """
  directory = os.path.dirname(path)
  if directory:
    tf.io.gfile.makedirs(directory)
  tmp_path = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")
  try:
    yield tmp_path
    tf.io.gfile.rename(tmp_path, path, overwrite=True)
  finally:
    if tf.io.gfile.exists(tmp_path):
      tf.io.gfile.remove(tmp_path)


def open_file(path: str, mode: str = "r"):
  """tf.io.gfile.GFile: a file object on any file system (text modes read and write UTF-8)."""
  return tf.io.gfile.GFile(path, mode)


def read_text(path: str) -> str:
  with tf.io.gfile.GFile(path, "r") as f:
    return f.read()


def read_bytes(path: str) -> bytes:
  with tf.io.gfile.GFile(path, "rb") as f:
    return f.read()


def read_json(path: str) -> Any:
  """The parsed JSON file (json.JSONDecodeError on bad JSON)."""
  return json.loads(read_text(path))


def write_text_atomic(path: str, text: str) -> None:
  with atomic_path(path) as tmp:
    with tf.io.gfile.GFile(tmp, "w") as f:
      f.write(text)


def write_bytes_atomic(path: str, data: bytes) -> None:
  with atomic_path(path) as tmp:
    with tf.io.gfile.GFile(tmp, "wb") as f:
      f.write(data)


def load_npy(path: str) -> np.ndarray:
  """A .npy array (no pickles); ValueError if the file is not one."""
  return np.load(std_io.BytesIO(read_bytes(path)), allow_pickle=False)


def save_npy_atomic(path: str, array: np.ndarray) -> None:
  buffer = std_io.BytesIO()
  np.save(buffer, array)
  write_bytes_atomic(path, buffer.getvalue())
