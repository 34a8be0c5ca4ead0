"""Which TensorFlow CPU kernels the small-model entry points ask for (oneDNN or Eigen).

TensorFlow turns its oneDNN kernels on by itself only on CPUs with AVX-512 VNNI/BF16/AMX; on
AVX2 machines (these 2-core hosts, most laptops) it uses Eigen's. Measured on a 2-core AVX2
host (docs/synthetic_benchmark.md, "Time"): oneDNN halves a tiny ViLD's training step at 128 px,
where mask-head and region-tower convolution gradients dominate, but makes R50-FPN inference at
1024 px about 4x slower (76 against 19 CPU s per image, `python -m benchmarks.run
--rows=detector`). So `import vild` changes nothing; the entry points that only run tiny models
(the synthetic benchmark, the mechanics demo, the test suite) call `prefer_onednn()` before
TensorFlow is imported. The variable is read once, when TensorFlow loads.
"""
import os
import sys

VARIABLE = "TF_ENABLE_ONEDNN_OPTS"


def prefer_onednn() -> None:
  """Asks TensorFlow for its oneDNN CPU kernels, unless the user set TF_ENABLE_ONEDNN_OPTS.

  Raises RuntimeError if TensorFlow is already imported, since the request would be ignored.
  """
  if VARIABLE in os.environ:
    return
  if "tensorflow" in sys.modules:
    raise RuntimeError(f"vild.cpu_kernels.prefer_onednn() must run before TensorFlow is "
                       f"imported (it sets {VARIABLE}, which TensorFlow reads when it loads); "
                       "call it before importing tensorflow or any vild module that does.")
  os.environ[VARIABLE] = "1"
