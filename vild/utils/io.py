"""File access for the whole library, through tf.io.gfile, and atomic writes.

Every path the library reads or writes may be local or any file system TensorFlow knows
(`gs://` buckets on Cloud TPU, `ram://` in tests), so file access goes through `tf.io.gfile`
here rather than `open`/`os.path`/`glob`.

Atomic writes: a job that dies never leaves a half-written file or directory under the final
name, and the next job removes what it left. Temporaries live beside their target as
`.<name>.<random>.tmp` (hidden, same file system, so the final rename is atomic on POSIX file
systems; on GCS a rename is a copy, and the object appears whole) and are created with the
process umask, so the result is as readable as any other file the user makes.
"""
import contextlib
import glob as std_glob
import io as std_io
import json
import os
import uuid
from typing import Any, List

from absl import logging
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


def _temporary_name(path: str) -> str:
  path = absolute(path).rstrip("/")
  return os.path.join(os.path.dirname(path),
                      f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")


def remove_stale_temporaries(path: str) -> None:
  """Deletes the temporaries of `path` (files or directories) that a killed job left."""
  directory, name = os.path.split(absolute(path).rstrip("/"))
  for stale in glob(os.path.join(directory, f".{std_glob.escape(name)}.*.tmp")):
    logging.info("Removing %s, left by an interrupted run.", stale)
    remove(stale)


@contextlib.contextmanager
def atomic_path(path: str):
  """Yields a temporary path beside `path`; renames it to `path` only if the block succeeds.

  Write the temporary path with tf.io.gfile (or `open_file`). On any exception the temporary
  file is removed.
  """
  tf.io.gfile.makedirs(os.path.dirname(absolute(path)))
  tmp_path = _temporary_name(path)
  try:
    yield tmp_path
    tf.io.gfile.rename(tmp_path, path, overwrite=True)
  finally:
    if tf.io.gfile.exists(tmp_path):
      tf.io.gfile.remove(tmp_path)


@contextlib.contextmanager
def atomic_directory(path: str):
  """Yields a new empty directory beside `path`; it becomes `path` only if the block succeeds.

  An existing `path` is replaced (moved aside, then deleted once the new one is in place, so
  a kill at any moment leaves the old or the new directory, plus temporaries the next call
  removes). The directory gets the process umask's permissions (not mkdtemp's 0700).
  """
  tf.io.gfile.makedirs(os.path.dirname(absolute(path).rstrip("/")))
  remove_stale_temporaries(path)
  tmp_dir = _temporary_name(path)
  tf.io.gfile.mkdir(tmp_dir)
  try:
    yield tmp_dir
    old = None
    if tf.io.gfile.exists(path):
      old = _temporary_name(path)
      tf.io.gfile.rename(path, old)
    tf.io.gfile.rename(tmp_dir, path)
    if old is not None:
      remove(old)
  finally:
    remove(tmp_dir)


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
