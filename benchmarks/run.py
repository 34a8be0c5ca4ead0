r"""Runs the benchmark rows and writes BENCHMARKS.md (generated, never edited by hand).

  python -m benchmarks.run                          # every row, default sizes (`make bench`)
  python -m benchmarks.run --rows=train_step,teacher
  python -m benchmarks.run --quick --output=/tmp/BENCHMARKS.md   # smoke run, tiny sizes

Rows: train_step (ViLD vs the stock Mask R-CNN training step), clip_on_crops (ViLD vs CLIP on
cropped regions), teacher (ViT-B/32 crops/s vs the matmul peak), detector (1203-class
inference, cosine head vs softmax), lvis_eval (LVIS evaluator seconds), train_variants (the
training step in bfloat16 and with XLA vs float32). See
docs/benchmarks.md. The file is written atomically once every requested row has finished.
"""
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads, here and in workers

from absl import app
from absl import flags
from absl import logging

from benchmarks import clip_on_crops
from benchmarks import detector_inference
from benchmarks import lvis_evaluation  # noqa
from benchmarks import report
from benchmarks import teacher_throughput
from benchmarks import training_step
from benchmarks import training_variants
from vild.utils import io

# Table order = the order.
ROWS = {
    "train_step": training_step,
    "clip_on_crops": clip_on_crops,
    "teacher": teacher_throughput,
    "detector": detector_inference,
    "lvis_eval": lvis_evaluation,
    "train_variants": training_variants,
}

flags.DEFINE_list("rows", list(ROWS), "Rows to run, in table order: " + ", ".join(ROWS))
flags.DEFINE_bool("quick", False, "Tiny sizes, one round, all workloads in this process: a "
                  "smoke run that only shows the table is produced.")
flags.DEFINE_string("output", "BENCHMARKS.md", "Where to write the table.")
FLAGS = flags.FLAGS


def row_command(name: str, quick: bool) -> str:
  return f"python -m benchmarks.run --rows={name}" + (" --quick" if quick else "")


def run_rows(names, quick: bool):
  """Runs the named rows in table order (DEFAULT or QUICK settings); returns RowResults."""
  unknown = [name for name in names if name not in ROWS]
  if unknown or not names:
    raise ValueError(f"--rows: unknown or no row(s) {unknown or names}; choose from "
                     f"{', '.join(ROWS)}.")
  results = []
  for name in [name for name in ROWS if name in names]:
    module = ROWS[name]
    logging.info("Row %s ...", name)
    start = time.perf_counter()
    result = module.run(module.QUICK if quick else module.DEFAULT, isolated=not quick)
    result.number = list(ROWS).index(name) + 1
    result.command = row_command(name, quick)
    result.seconds = time.perf_counter() - start
    logging.info("Row %s done in %.0f s.", name, result.seconds)
    results.append(result)
  return results


def main(argv):
  del argv
  start = report.MachineUse.now()
  results = run_rows(FLAGS.rows, FLAGS.quick)
  machine_use = (start, report.MachineUse.now())
  command = "python -m benchmarks.run " + " ".join(sys.argv[1:])
  io.write_text_atomic(FLAGS.output, report.render(results, command.strip(), FLAGS.quick,
                                                   machine_use))
  logging.info("Wrote %s.", FLAGS.output)


if __name__ == "__main__":
  app.run(main)
