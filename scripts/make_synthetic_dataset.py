r"""Makes the synthetic open-vocabulary world (vild.data.synthetic) in LVIS format.

  python scripts/make_synthetic_dataset.py --output_dir=data/synthetic
  # then convert it like real LVIS (base-only training data, fully annotated validation data):
  python scripts/create_tfrecords.py --annotations=data/synthetic/train.json \
      --image_root=data/synthetic/images --output_dir=data/synthetic/tfrecords --name=train \
      --split=lvis_rare --base_only
  python scripts/create_tfrecords.py --annotations=data/synthetic/val.json \
      --image_root=data/synthetic/images --output_dir=data/synthetic/tfrecords --name=val \
      --split=lvis_rare

Other WorldSpec fields (colours, shapes, object_size, ...) can be set with --gin_param,
e.g. --gin_param='WorldSpec.object_size = (20, 60)'.
"""
from vild.utils import cli

cli.quiet_native_logs()  # before TensorFlow loads: it reads its C++ log level once

import time  # noqa: E402

from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from vild.data import synthetic  # noqa: E402
from vild.utils import gin_config  # noqa: E402

flags.DEFINE_string("output_dir", None, "Where the world is written.")
flags.DEFINE_integer("seed", 0, "Everything is a function of the seed.")
flags.DEFINE_integer("num_train_images", 300, "Training scenes (base categories annotated).")
flags.DEFINE_integer("num_val_images", 100, "Validation scenes (all categories annotated).")
flags.DEFINE_integer("num_crops", 4000, "Captioned single-object crops of all categories.")
flags.DEFINE_integer("image_size", 128, "Scene side in pixels.")
flags.DEFINE_integer("crop_size", 32, "Crop side in pixels.")
flags.DEFINE_integer("num_novel", 8, "Novel (rare) colour-shape combinations.")
flags.mark_flag_as_required("output_dir")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  gin_config.parse_flags()
  spec = synthetic.WorldSpec(
      seed=FLAGS.seed, num_train_images=FLAGS.num_train_images,
      num_val_images=FLAGS.num_val_images, num_crops=FLAGS.num_crops,
      image_size=FLAGS.image_size, crop_size=FLAGS.crop_size, num_novel=FLAGS.num_novel)
  start = time.time()
  world = synthetic.generate(FLAGS.output_dir, spec)
  logging.info("Wrote %d categories (novel: %s), %d train / %d val annotations and %d captioned "
               "crops to %s in %.1f s.", len(world["categories"]), ", ".join(world["novel"]),
               world["num_train_annotations"], world["num_val_annotations"], world["num_crops"],
               FLAGS.output_dir, time.time() - start)


if __name__ == "__main__":
  cli.run(main)
