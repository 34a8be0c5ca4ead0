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
from vild.utils import gin_config  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

flags.DEFINE_bool("quick", False, "Tiny world, teacher and schedule (configs/synthetic/quick.gin); "
                  "checks the mechanics, not the findings.")
flags.DEFINE_string("work_dir", None, "Stage directories; default runs/synthetic "
                    "(runs/synthetic_quick with --quick).")
flags.DEFINE_string("results_dir", None, "RESULTS.md, metrics.json and figures; default "
                    "results/synthetic (<work_dir>/results with --quick).")
flags.DEFINE_list("force", [], "Stages to recompute ('all' for every stage); the stages "
                  "after them follow.")
gin_config.define_flags()  # --gin_file (default configs/synthetic/benchmark.gin, quick.gin
# with --quick), --gin_param (e.g. 'BenchmarkSpec.seeds = (0, 1, 2, 3, 4)')
FLAGS = flags.FLAGS


def main(argv):
  del argv
  work_dir, results_dir = synthetic.configure_run(REPO, FLAGS.quick, FLAGS.work_dir,
                                                  FLAGS.results_dir, FLAGS.gin_file,
                                                  FLAGS.gin_param)
  force = True if "all" in FLAGS.force else FLAGS.force
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
