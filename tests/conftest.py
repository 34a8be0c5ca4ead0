"""Shared test set-up: quiet TensorFlow, absl flags parsed, a clean gin config per test, and the
slowest modules (marked `pipeline`) collected first."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from vild import cpu_kernels  # noqa: E402

# Tests build tiny models, where oneDNN halves a step on AVX2 CPUs (vild/cpu_kernels.py).
cpu_kernels.prefer_onednn()

import gin  # noqa: E402
import pytest  # noqa: E402
from absl import flags  # noqa: E402

# absl would otherwise reject pytest's own command-line options.
flags.FLAGS.mark_as_parsed()

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_GIN = os.path.join(REPO, "configs", "tiny", "vild_tiny.gin")


def pytest_collection_modifyitems(items):
  """Moves the modules marked `pipeline` (minutes each) to the front, in their usual order.

  `make test` hands whole modules to two workers in collection order (pytest-xdist,
  --dist loadfile --no-loadscope-reorder): started first, the longest modules run beside the
  many short ones instead of leaving one worker alone with them at the end.
  """
  items.sort(key=lambda item: item.get_closest_marker("pipeline") is None)


@pytest.fixture(autouse=True)
def clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


@pytest.fixture(autouse=True)
def float32_policy():
  """Each test starts in float32: set_precision('auto') picks bfloat16 on some CPUs, and the
  Keras dtype policy is global to the process."""
  import tf_keras  # pylint: disable=g-import-not-at-top
  tf_keras.mixed_precision.set_global_policy("float32")
  yield
  tf_keras.mixed_precision.set_global_policy("float32")


@pytest.fixture
def tiny_gin():
  """Parses the tiny model config; returns a function that adds more bindings."""
  gin.parse_config_file(TINY_GIN)

  def bind(*bindings):
    gin.parse_config(list(bindings))
  return bind
