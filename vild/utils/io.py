"""Atomic file writes: a job that dies never leaves a half-written file under the final name."""
import contextlib
import os
import uuid


@contextlib.contextmanager
def atomic_path(path: str):
  """Yields a temporary path beside `path`; renames it to `path` only if the block succeeds.

  The temporary file lives in the same directory, so the final `os.replace` is atomic on
  POSIX file systems. On any exception the temporary file is removed. The file is created
  with the process umask (not mkstemp's 0600), so the final file is as readable as any other.
  """
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  tmp_path = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")
  os.close(os.open(tmp_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
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
