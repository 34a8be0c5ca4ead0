"""Atomic file writes: a job that dies never leaves a half-written file under the final name."""
import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_path(path: str):
  """Yields a temporary path beside `path`; renames it to `path` only if the block succeeds.

  The temporary file lives in the same directory, so the final `os.replace` is atomic on
  POSIX file systems. On any exception the temporary file is removed.
  """
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp_path = tempfile.mkstemp(
      prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
  os.close(fd)
  try:
    yield tmp_path
    os.replace(tmp_path, path)
  finally:
    if os.path.exists(tmp_path):
      os.remove(tmp_path)


def write_text_atomic(path: str, text: str) -> None:
  with atomic_path(path) as tmp:
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(text)
