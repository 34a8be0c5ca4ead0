"""Which CPU kernels TensorFlow gets: `import vild` leaves TensorFlow's default, the tiny-model
entry points ask for oneDNN before TensorFlow loads, and a user's setting wins (vild/cpu_kernels.py)."""
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO
from vild import cpu_kernels

ENABLED = ("import tensorflow; from tensorflow.python.util import _pywrap_util_port as port; "
           "print(port.IsMklEnabled())")


def _onednn_enabled(setup, setting=None):
  env = {k: v for k, v in os.environ.items() if k != cpu_kernels.VARIABLE}
  if setting is not None:
    env[cpu_kernels.VARIABLE] = setting
  env["TF_CPP_MIN_LOG_LEVEL"] = "3"
  out = subprocess.run([sys.executable, "-c", f"{setup}; {ENABLED}"], env=env, cwd=REPO,
                       capture_output=True, text=True, check=True)
  return out.stdout.strip().splitlines()[-1] == "True"


def test_importing_vild_leaves_tensorflows_default():
  assert _onednn_enabled("import vild") == _onednn_enabled("pass")


@pytest.mark.parametrize("setting, enabled", [(None, True), ("0", False), ("1", True)])
def test_prefer_onednn_turns_it_on_unless_the_user_said_otherwise(setting, enabled):
  setup = "from vild import cpu_kernels; cpu_kernels.prefer_onednn()"
  assert _onednn_enabled(setup, setting) is enabled


def test_prefer_onednn_after_tensorflow_loaded_is_an_error(monkeypatch):
  import tensorflow  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  monkeypatch.delenv(cpu_kernels.VARIABLE, raising=False)
  with pytest.raises(RuntimeError, match="before TensorFlow is imported"):
    cpu_kernels.prefer_onednn()
