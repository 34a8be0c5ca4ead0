r"""Measures the input pipeline's throughput (images per second) on TFRecords.

  python scripts/benchmark_input_pipeline.py --file_pattern='data/synthetic/tfrecords/train-*' \
      --vocabulary=data/synthetic/train.json --gin_file=configs/synthetic/input.gin

Speed depends on the machine and its load; this is a benchmark, not a test.
"""
from vild.utils import cli

cli.quiet_native_logs()  # before TensorFlow loads: it reads its C++ log level once

import time  # noqa: E402

from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from vild import vocabulary as vocabulary_lib  # noqa: E402
from vild.data import input_pipeline  # noqa: E402
from vild.utils import gin_config  # noqa: E402

flags.DEFINE_string("file_pattern", None, "TFRecord glob.")
flags.DEFINE_string("vocabulary", None, "Vocabulary file (e.g. the LVIS JSON); the base "
                    "categories are the training vocabulary.")
flags.DEFINE_bool("is_training", True, "Training (augmented) or evaluation batches.")
flags.DEFINE_integer("batch_size", 8, "Images per batch.")
flags.DEFINE_integer("num_batches", 50, "Batches timed after the warm-up batch.")
flags.mark_flags_as_required(["file_pattern", "vocabulary"])
FLAGS = flags.FLAGS


def main(argv):
  del argv
  gin_config.parse_flags()
  vocabulary = vocabulary_lib.Vocabulary.from_file(FLAGS.vocabulary)
  if FLAGS.is_training:
    vocabulary = vocabulary.subset(vocabulary.base_mask)
  dataset = input_pipeline.build_dataset(FLAGS.file_pattern, vocabulary, FLAGS.is_training,
                                         batch_size=FLAGS.batch_size, seed=0)
  batches = iter(dataset)
  next(batches)  # tracing and the first reads
  start = time.time()
  count = 0
  for _ in range(FLAGS.num_batches):
    images, _ = next(batches, (None, None))
    if images is None:
      break
    count += int(images.shape[0])
  seconds = time.time() - start
  logging.info("%d images in %.1f s: %.1f images/s (batch %d, %s).", count, seconds,
               count / seconds, FLAGS.batch_size, "training" if FLAGS.is_training else "eval")


if __name__ == "__main__":
  cli.run(main)
