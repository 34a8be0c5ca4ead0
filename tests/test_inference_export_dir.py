"""Where an export may go: never into, around or inside a training run (whatever --overwrite
says), over an earlier export only with --overwrite; a killed export's temporary is removed by
the next one; the export gets normal permissions; the CLI's output is quiet."""
import os
import stat
import subprocess
import sys

import pytest

from tests import inference_helpers as helpers
from tests.conftest import REPO
from vild.inference import export
from vild.utils import io


def fake_run(directory):
  """A training run's files: TF's checkpoint state, a checkpoint, the trainer's config."""
  os.makedirs(directory, exist_ok=True)
  for name in ("checkpoint", "ckpt-3.index", "ckpt-3.data-00000-of-00001", "config.gin"):
    with open(os.path.join(directory, name), "w", encoding="utf-8") as f:
      f.write("x")
  return str(directory)


def fake_export(directory):
  os.makedirs(os.path.join(directory, "assets.extra"), exist_ok=True)
  os.makedirs(os.path.join(directory, "variables"), exist_ok=True)
  for name in ("saved_model.pb", export.SPEC_PATH, "variables/variables.index",
               "variables/variables.data-00000-of-00001"):
    with open(os.path.join(directory, name), "w", encoding="utf-8") as f:
      f.write("x")
  return str(directory)


def test_an_export_never_replaces_touches_or_nests_in_a_training_run(tmp_path):
  run = fake_run(tmp_path / "runs" / "t")
  for export_dir in (run, os.path.join(run, "export"), str(tmp_path / "runs")):
    for overwrite in (False, True):
      with pytest.raises(export.ExportError, match="training run|not a vild export"):
        export.check_export_dir(export_dir, overwrite)
  old = fake_export(tmp_path / "exports" / "old")
  fake_run(os.path.join(old, "nested_run"))  # a run someone put inside an old export
  with pytest.raises(export.ExportError, match="contains .*nested_run, a training run"):
    export.check_export_dir(old, overwrite=True)

  (tmp_path / "notes").mkdir()
  (tmp_path / "notes" / "todo.txt").write_text("keep me")
  with pytest.raises(export.ExportError, match="not a vild export"):
    export.check_export_dir(str(tmp_path / "notes"), overwrite=True)
  (tmp_path / "file").write_text("x")
  with pytest.raises(export.ExportError, match="not a directory"):
    export.check_export_dir(str(tmp_path / "file"), overwrite=True)

  earlier = fake_export(tmp_path / "exports" / "earlier")  # its variables/ is no run
  with pytest.raises(export.ExportError, match="--overwrite"):
    export.check_export_dir(earlier)
  export.check_export_dir(earlier, overwrite=True)
  export.check_export_dir(str(tmp_path / "exports" / "new"))
  (tmp_path / "empty").mkdir()
  export.check_export_dir(str(tmp_path / "empty"))


def test_atomic_directory_removes_what_a_killed_job_left_and_follows_the_umask(tmp_path):
  target = tmp_path / "export"
  stale = tmp_path / ".export.0123456789ab.tmp"  # a killed job's temporary
  (stale / "variables").mkdir(parents=True)
  previous = os.umask(0o027)
  try:
    with io.atomic_directory(str(target)) as tmp:
      (tmp_path / tmp / "saved_model.pb").write_text("new")
  finally:
    os.umask(previous)
  assert sorted(os.listdir(tmp_path)) == ["export"]
  assert stat.S_IMODE(os.stat(target).st_mode) == 0o750
  with io.atomic_directory(str(target)) as tmp:  # replaces the old one whole
    (tmp_path / tmp / "other.pb").write_text("newer")
  assert os.listdir(target) == ["other.pb"] and sorted(os.listdir(tmp_path)) == ["export"]
  with pytest.raises(RuntimeError):
    with io.atomic_directory(str(target)):
      raise RuntimeError("killed")
  assert os.listdir(target) == ["other.pb"] and sorted(os.listdir(tmp_path)) == ["export"]


def test_export_cli_refuses_the_model_directory_even_with_overwrite(tmp_path_factory, tmp_path):
  run = str(tmp_path / "run")
  helpers.run_python(["-c", "import shutil, sys; shutil.copytree(sys.argv[1], sys.argv[2])",
                      helpers.trained_model_dir(tmp_path_factory), run])
  before = sorted(os.listdir(run))
  result = helpers.run_python(["scripts/export_saved_model.py", f"--model={run}",
                               f"--export_dir={run}", "--overwrite"], expect_success=False)
  assert result.returncode == 1
  assert "a training run's directory" in result.stderr and "Traceback" not in result.stderr
  assert sorted(os.listdir(run)) == before


def test_export_cli_cleans_a_killed_exports_temporary_with_normal_permissions_and_quietly(
    tmp_path_factory, tmp_path):
  stale = tmp_path / ".vild_export.0123456789ab.tmp"  # what a killed export left
  (stale / "variables").mkdir(parents=True)
  export_dir = tmp_path / "vild_export"
  env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "VILD_VERBOSE")}
  result = subprocess.run(  # as a user runs it: no log level set
      [sys.executable, "scripts/export_saved_model.py",
       f"--model={helpers.trained_model_dir(tmp_path_factory)}", f"--export_dir={export_dir}",
       "--input_size=128,128"], env=dict(env, PYTHONPATH=REPO), cwd=REPO, capture_output=True,
      text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert sorted(os.listdir(tmp_path)) == ["vild_export"]
  umask = os.umask(0)
  os.umask(umask)
  assert stat.S_IMODE(os.stat(export_dir).st_mode) == 0o777 & ~umask
  assert export.load_saved_model(str(export_dir)).spec.input_size == (128, 128)
  # Quiet by default: no CUDA probe, no ~370 SavedModel input renames, no library INFO.
  for noise in ("cuInit", "will be renamed to unknown", "fpn.py", "oneDNN"):
    assert noise not in result.stderr, noise
  assert f"Exported {export_dir}" in result.stdout
