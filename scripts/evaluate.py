r"""Evaluates a ViLD checkpoint (or each new checkpoint of a run) with the LVIS or COCO API.

  python scripts/evaluate.py --model_dir=runs/vild_r50 \
      [--checkpoint=latest|watch|runs/vild_r50/ckpt-180000] [--output_dir=runs/vild_r50/eval]
  (without --gin_file the run's own <model_dir>/config.gin is used)
  # Transfer: the same weights on COCO's vocabulary.
  python scripts/evaluate.py --gin_file=configs/lvis/vild_r50.gin --model_dir=runs/vild_r50 \
      --gin_file=configs/transfer/coco.gin --output_dir=runs/vild_r50/eval_coco

Writes detections_<step>.json (official results format), metrics_<step>.json and TensorBoard
scalars to the output directory. --strategy (as in scripts/train.py) runs inference per replica
on the run's accelerators (TPU, GPUs); the host gathers the detections for the LVIS/COCO API.
"""
from vild.utils import cli

cli.quiet_native_logs()  # before TensorFlow loads: it reads its C++ log level once

import os  # noqa: E402

from absl import flags

from vild.evaluation import experiment
from vild.training import strategy as strategy_lib
from vild.training import trainer
from vild.utils import gin_config

gin_config.define_flags()
flags.DEFINE_string("model_dir", None, "The training run's directory.")
flags.DEFINE_string("checkpoint", "latest", "A checkpoint path, 'latest', or 'watch' (each new "
                    "checkpoint until the run's last step).")
flags.DEFINE_string("output_dir", None, "Where results go (default <model_dir>/eval).")
flags.DEFINE_enum("strategy", "auto", strategy_lib.STRATEGIES, "Distribution strategy.")
flags.DEFINE_string("tpu", None, "TPU name or address (default: the local TPU VM).")
flags.mark_flags_as_required(["model_dir"])
FLAGS = flags.FLAGS


def main(argv):
  del argv
  if FLAGS.gin_file:
    gin_config.parse_flags()
  else:  # The run's own config, as the trainer saved it.
    gin_config.parse([os.path.join(FLAGS.model_dir, trainer.CONFIG_NAME)], FLAGS.gin_param)
  strategy = strategy_lib.select_strategy(FLAGS.strategy, tpu=FLAGS.tpu)
  experiment.evaluate(FLAGS.model_dir, checkpoint=FLAGS.checkpoint, output_dir=FLAGS.output_dir,
                      strategy=strategy)


if __name__ == "__main__":
  cli.run(main)
