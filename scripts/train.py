r"""Trains a gin-configured ViLD experiment, or resumes it from the last checkpoint in model_dir.

  python scripts/train.py --gin_file=configs/lvis/vild_r50.gin --model_dir=runs/vild_r50 \
      [--gin_param='train.global_batch_size = 64'] [--strategy=auto] [--tpu=NAME]

Strategy 'auto': TPU (--tpu, or a TPU VM), then MultiWorkerMirrored (TF_CONFIG), then Mirrored
over local GPUs, else CPU. Run the same command again after a kill, preemption or Ctrl-C to
resume (a rerun may change steps, schedule, paths and intervals, not the model: docs/train.md).
Exit codes: 0 done, 1 bad config or data (the message says what), 2 non-finite loss or weights,
130 Ctrl-C and 143 SIGTERM (a checkpoint was written; a second Ctrl-C aborts without one).
"""
from vild.utils import cli

cli.quiet_native_logs()  # before TensorFlow loads: it reads its C++ log level once

import sys  # noqa: E402

from absl import flags
from absl import logging

from vild.training import determinism
from vild.training import experiment
from vild.training import strategy as strategy_lib
from vild.training import trainer as trainer_lib
from vild.utils import gin_config

gin_config.define_flags()
flags.DEFINE_string("model_dir", None, "Run directory: checkpoints, TensorBoard, config.")
flags.DEFINE_enum("strategy", "auto", strategy_lib.STRATEGIES, "Distribution strategy.")
flags.DEFINE_string("tpu", None, "TPU name or address (default: the local TPU VM).")
flags.mark_flags_as_required(["model_dir"])
FLAGS = flags.FLAGS


def main(argv):
  del argv
  gin_config.parse_flags()
  # A model-changing rerun (trainer_lib.ConfigMismatchError), bad data (DataError) or late
  # determinism (DeterminismError) reach cli.run: a message and exit code 1, no traceback.
  try:
    determinism.set_determinism()  # before TensorFlow runs an op: it fixes thread counts
    strategy = strategy_lib.select_strategy(FLAGS.strategy, tpu=FLAGS.tpu)
    experiment.train(FLAGS.model_dir, strategy)
  except trainer_lib.NonFiniteLossError as e:
    logging.error("%s", e)
    sys.exit(2)
  except trainer_lib.Preempted as e:
    logging.warning("%s", e)
    sys.exit(e.exit_code)


if __name__ == "__main__":
  cli.run(main)
