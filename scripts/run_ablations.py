r"""The paper's findings beyond the main table on the synthetic world (what `make ablations` runs).

  python scripts/run_ablations.py            # after `make demo`: results/synthetic/ABLATIONS.md
  python scripts/run_ablations.py --quick    # tiny sizes (after or without the demo's --quick)
  python scripts/run_ablations.py --force=clip_on_crops_square_seed0   # redo named stages

Every row (ViLD-text + CLIP, GloVe text embeddings, L2 distillation, one prompt template, 1x
crops, M, teacher strength, w, the CLIP-on-crops investigation, the oracle and ViLD-image)
runs with the demo's seeds in the demo's work dir, so the stages `make demo` made are reused
(vild.synthetic_benchmark.ablations). Configured with gin: configs/synthetic/benchmark.gin
(--quick: configs/synthetic/quick.gin), AblationSpec.* for the swept values.
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

from vild.synthetic_benchmark import ablations  # noqa: E402
from vild.synthetic_benchmark import synthetic as benchmark  # noqa: E402
from vild.utils import gin_config  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

flags.DEFINE_bool("quick", False, "Tiny world, teacher and schedule (configs/synthetic/quick.gin); "
                  "checks the mechanics, not the findings.")
flags.DEFINE_string("work_dir", None, "Stage directories, shared with the demo; default "
                    "runs/synthetic (runs/synthetic_quick with --quick).")
flags.DEFINE_string("results_dir", None, "ABLATIONS.md, ablations.json and figures; default "
                    "results/synthetic (<work_dir>/results with --quick).")
flags.DEFINE_list("force", [], "Stages to recompute ('all' for every stage); the stages "
                  "after them follow.")
gin_config.define_flags()  # --gin_file (default configs/synthetic/benchmark.gin, quick.gin
# with --quick), --gin_param (e.g. 'AblationSpec.num_proposals = (8, 128)')
FLAGS = flags.FLAGS


def main(argv):
  del argv
  work_dir, results_dir = benchmark.configure_run(REPO, FLAGS.quick, FLAGS.work_dir,
                                                  FLAGS.results_dir, FLAGS.gin_file,
                                                  FLAGS.gin_param)
  force = True if "all" in FLAGS.force else FLAGS.force
  start = time.time()
  command = " ".join(["python scripts/run_ablations.py"] + [shlex.quote(a) for a in sys.argv[1:]])
  metrics = ablations.run_ablations(work_dir, results_dir, force=force, command=command)
  for key, targets in metrics["targets"].items():
    for target in targets:
      logging.info("%-22s %-62s %-32s %s", key, target["claim"], target["measured"],
                   target["holds"])
  logging.info("Wrote %s in %.1f min.", os.path.join(results_dir, "ABLATIONS.md"),
               (time.time() - start) / 60)


if __name__ == "__main__":
  cli.run(main)
