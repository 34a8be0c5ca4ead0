r"""Trains a gin-configured ViLD experiment, or resumes it from the last checkpoint in model_dir.

  python scripts/train.py --gin_file=configs/lvis/vild_r50.gin --model_dir=runs/vild_r50 \
      [--gin_param='train.global_batch_size = 64'] [--strategy=auto] [--tpu=NAME]

Strategy 'auto': TPU (--tpu, or a TPU VM), then MultiWorkerMirrored (TF_CONFIG), then Mirrored
over local GPUs, else CPU. Run the same command again after a kill or preemption to resume.
Exit codes: 0 done, 2 non-finite loss, 143 preempted (checkpoint written).
"""
from vild.utils import cli

cli.quiet_native_logs()  # before TensorFlow loads: it reads its C++ log level once

import sys  # noqa: E402

from absl import flags
from absl import logging

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
  strategy = strategy_lib.select_strategy(FLAGS.strategy, tpu=FLAGS.tpu)
  try:
    experiment.train(FLAGS.model_dir, strategy)
  except trainer_lib.NonFiniteLossError as e:
    logging.error("%s", e)
    sys.exit(2)
  except trainer_lib.Preempted as e:
    logging.warning("%s", e)
    sys.exit(143)


if __name__ == "__main__":
  cli.run(main)
