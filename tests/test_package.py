"""Importing vild sets TensorFlow's CPU kernels before TensorFlow loads (vild/__init__.py)."""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = ("import vild, tensorflow; "
         "from tensorflow.python.util import _pywrap_util_port as port; "
         "print(port.IsMklEnabled())")


@pytest.mark.parametrize("setting, enabled", [(None, "True"), ("0", "False")])
def test_importing_vild_turns_on_onednn_unless_the_user_said_otherwise(setting, enabled):
  env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
  if setting is not None:
    env["TF_ENABLE_ONEDNN_OPTS"] = setting
  env["TF_CPP_MIN_LOG_LEVEL"] = "3"
  out = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=REPO, capture_output=True,
                       text=True, check=True)
  assert out.stdout.strip().splitlines()[-1] == enabled
