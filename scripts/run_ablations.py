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

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

benchmark.define_run_flags("ABLATIONS.md, ablations.json and figures")
flags.adopt_module_key_flags(benchmark)  # --help lists them


def main(argv):
  del argv
  work_dir, results_dir, force = benchmark.configure_run(REPO)
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
