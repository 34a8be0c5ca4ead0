"""Atomic writes leave files as readable as ordinary ones, and nothing behind on failure."""
import os
import stat

import pytest

from vild.utils import io


def test_atomic_file_gets_umask_permissions_and_failures_leave_nothing(tmp_path):
  umask = os.umask(0o022)
  try:
    path = str(tmp_path / "shard.tfrecord")
    io.write_text_atomic(path, "done")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    with pytest.raises(RuntimeError):
      with io.atomic_path(str(tmp_path / "other")) as tmp:
        open(tmp, "w").write("half")
        raise RuntimeError("killed")
    assert sorted(os.listdir(tmp_path)) == ["shard.tfrecord"]
  finally:
    os.umask(umask)
