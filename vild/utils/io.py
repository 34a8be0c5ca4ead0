"""Atomic writes: a job that dies never leaves a half-written file or directory under the final
name, and the next job removes what it left.

Temporaries live beside their target as `.<name>.<random>.tmp` (hidden, same file system, so
the final rename is atomic on POSIX file systems) and are created with the process umask, so
the result is as readable as any other file the user makes.
"""
import contextlib
import glob
import os
import shutil
import uuid

from absl import logging


def _temporary_name(path: str) -> str:
  directory = os.path.dirname(os.path.abspath(path))
  return os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")


def remove_stale_temporaries(path: str) -> None:
  """Deletes the temporaries of `path` (files or directories) that a killed job left."""
  directory, name = os.path.split(os.path.abspath(path))
  for stale in glob.glob(os.path.join(directory, f".{glob.escape(name)}.*.tmp")):
    logging.info("Removing %s, left by an interrupted run.", stale)
    if os.path.isdir(stale) and not os.path.islink(stale):
      shutil.rmtree(stale)
    else:
      os.remove(stale)


@contextlib.contextmanager
def atomic_path(path: str):
  """Yields a temporary path beside `path`; renames it to `path` only if the block succeeds.

  On any exception the temporary file is removed. The file is created with the process umask
  (not mkstemp's 0600).
  """
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp_path = _temporary_name(path)
  os.close(os.open(tmp_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
  try:
    yield tmp_path
    os.replace(tmp_path, path)
  finally:
    if os.path.exists(tmp_path):
      os.remove(tmp_path)


@contextlib.contextmanager
def atomic_directory(path: str):
  """Yields a new empty directory beside `path`; it becomes `path` only if the block succeeds.

  An existing `path` is replaced (moved aside, then deleted once the new one is in place, so
  a kill at any moment leaves the old or the new directory, plus temporaries the next call
  removes). The directory gets the process umask's permissions (not mkdtemp's 0700).
  """
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  remove_stale_temporaries(path)
  tmp_dir = _temporary_name(path)
  os.mkdir(tmp_dir)  # mode 0o777 & ~umask
  try:
    yield tmp_dir
    old = None
    if os.path.lexists(path):
      old = _temporary_name(path)
      os.replace(path, old)
    os.replace(tmp_dir, path)
    if old is not None:
      shutil.rmtree(old) if os.path.isdir(old) else os.remove(old)
  finally:
    if os.path.exists(tmp_dir):
      shutil.rmtree(tmp_dir)


def write_text_atomic(path: str, text: str) -> None:
  with atomic_path(path) as tmp:
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(text)
