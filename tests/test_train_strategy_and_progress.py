"""Strategy choice from flags and environment, precision policy, progress and ETA text."""
import json

import pytest
import tf_keras

from vild.training import strategy as strategy_lib
from vild.utils import progress


@pytest.fixture
def clean_env(monkeypatch):
  for name in ("TF_CONFIG", "TPU_NAME", "TPU_ACCELERATOR_TYPE"):
    monkeypatch.delenv(name, raising=False)
  monkeypatch.setattr(strategy_lib.glob, "glob", lambda pattern: [])
  return monkeypatch


def test_auto_picks_tpu_then_cluster_then_gpu_then_cpu(clean_env):
  assert strategy_lib.resolve_name("auto") == "default"  # this machine: no TPU, no GPU
  assert strategy_lib.resolve_name("auto", tpu="my-tpu") == "tpu"
  clean_env.setenv("TF_CONFIG", json.dumps(
      {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}))
  assert strategy_lib.resolve_name("auto") == "multi_worker_mirrored"
  clean_env.setenv("TPU_NAME", "local")
  assert strategy_lib.resolve_name("auto") == "tpu"
  assert strategy_lib.resolve_name("mirrored") == "mirrored"
  with pytest.raises(ValueError, match="not one of"):
    strategy_lib.resolve_name("horovod")


def test_default_strategy_is_one_host_chief(clean_env):
  strategy = strategy_lib.select_strategy("auto")
  assert strategy.num_replicas_in_sync == 1
  assert strategy_lib.num_input_hosts(strategy) == 1 and strategy_lib.is_chief(strategy)
  # 'auto' precision depends on this CPU (tests/test_train_precision.py).
  expected = strategy_lib.auto_precision(strategy)[0]
  assert strategy_lib.set_precision(strategy) == expected
  assert tf_keras.mixed_precision.global_policy().name == expected
  with pytest.raises(ValueError, match="found no GPU"):
    strategy_lib.select_strategy("mirrored")


def test_progress_reports_rate_and_eta():
  now = [100.0]
  p = progress.Progress(total=1000, done=0, clock=lambda: now[0])
  assert p.eta() == "?"
  p.update(100)  # the first update starts the clock (tracing excluded)
  now[0] += 10.0
  p.update(200)
  assert p.rate == pytest.approx(10.0)
  assert p.eta() == "00:01:20"
  assert p.describe() == "step 200/1000 | 10.00 step/s | ETA 00:01:20"
  assert progress.format_duration(2 * 86400 + 3 * 3600 + 61) == "2d 03:01:01"
