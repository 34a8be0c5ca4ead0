"""The settings a job's outputs were written with, saved as JSON beside them and checked on rerun.

A directory of resumable shards must come from one configuration: a rerun with other settings
would otherwise mix the records of two configurations without a word. Each job saves a flat dict
of what determines its output (input identities, e.g. `file_sha256` of an input, options, a
format version) and compares a rerun's dict with the saved one; what it does on a difference
(stop, redo) is the job's business. Used by the dataset converter (`vild.data.conversion`) and
the distillation-data jobs (`vild.distillation_data.shard_jobs`).
"""
import hashlib
import json
from typing import Dict, List, Optional

from vild.utils import io

_CHUNK = 1 << 20


def file_sha256(path: str) -> str:
  """'sha256:<hex>' of a file's content: identifies an input wherever it is mounted."""
  digest = hashlib.sha256()
  with io.open_file(path, "rb") as f:
    for chunk in iter(lambda: f.read(_CHUNK), b""):
      digest.update(chunk)
  return f"sha256:{digest.hexdigest()}"


def load(path: str) -> Optional[Dict]:
  """The saved settings, or None when there are none."""
  if not io.exists(path):
    return None
  return io.read_json(path)


def save(path: str, settings: Dict) -> None:
  io.write_text_atomic(path, json.dumps(settings, indent=1, sort_keys=True) + "\n")


def differences(saved: Dict, settings: Dict) -> List[str]:
  """'key: saved X, now Y' for every key whose value differs (absent keys count as None)."""
  settings = json.loads(json.dumps(settings))  # tuples -> lists, as they come back from disk
  return [f"{key}: saved {saved.get(key)!r}, now {settings.get(key)!r}"
          for key in sorted(set(saved) | set(settings)) if saved.get(key) != settings.get(key)]
