r"""The whole ViLD pipeline on the synthetic open-vocabulary world (what `make demo` runs).

  python scripts/run_synthetic_benchmark.py            # default: results/synthetic/RESULTS.md
  python scripts/run_synthetic_benchmark.py --quick    # tiny sizes, a few minutes
  python scripts/run_synthetic_benchmark.py --force=teacher,vild_text_seed1   # redo stages
  python scripts/run_synthetic_benchmark.py --force=all

Stages (world, records, teacher, text embeddings; per seed the base-only detector, its
proposals and region embeddings, CLIP on cropped regions and each method) run in order under
--work_dir, one directory each; a rerun reuses every stage whose config and inputs are
unchanged (vild.synthetic_benchmark.stages). The ablations (scripts/run_ablations.py) reuse
this run's stages. Configured with gin: configs/synthetic/benchmark.gin (--quick:
configs/synthetic/quick.gin).
"""
import os
import shlex
import sys
import time

from vild import cpu_kernels
from vild.utils import cli

cpu_kernels.prefer_onednn()  # every model here is tiny: oneDNN halves its step on AVX2 CPUs
cli.quiet_native_logs()  # before TensorFlow loads: it reads its C++ log level once

from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from vild.synthetic_benchmark import synthetic  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

synthetic.define_run_flags("RESULTS.md, metrics.json and figures")
flags.adopt_module_key_flags(synthetic)  # --help lists them


def main(argv):
  del argv
  work_dir, results_dir, force = synthetic.configure_run(REPO)
  start = time.time()
  command = " ".join(["python scripts/run_synthetic_benchmark.py"] +
                     [shlex.quote(a) for a in sys.argv[1:]])
  metrics = synthetic.run_benchmark(work_dir, results_dir, force=force, command=command)
  for target in metrics["targets"]:
    logging.info("%-70s %-28s %s", target["claim"], target["measured"],
                 target["holds"])
  logging.info("Wrote %s in %.1f min.", os.path.join(results_dir, "RESULTS.md"),
               (time.time() - start) / 60)


if __name__ == "__main__":
  cli.run(main)
