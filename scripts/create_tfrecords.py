r"""Converts an LVIS (v1, v0.5) or COCO instances JSON and its images to sharded ViLD TFRecords.

  # LVIS training data, base categories only (rare annotations dropped):
  python scripts/create_tfrecords.py --annotations=lvis_v1_train.json --image_root=coco/ \
      --output_dir=tfrecords/lvis --name=train --split=lvis_rare --base_only --num_workers=8
  # LVIS validation data, everything kept:
  python scripts/create_tfrecords.py --annotations=lvis_v1_val.json --image_root=coco/ \
      --output_dir=tfrecords/lvis --name=val --split=lvis_rare

Writes {output_dir}/{name}-NNNNN-of-NNNNN.tfrecord, {name}.settings.json and {name}.report.json
(what was dropped, converted, missing or refused). A rerun with the same settings resumes, skipping
finished shards; with other settings it stops and names the difference (--overwrite redoes
everything). See vild.data.conversion and docs/data.md.
"""
from vild.utils import cli

cli.quiet_native_logs()  # before TensorFlow loads: it reads its C++ log level once

import sys  # noqa: E402

from absl import flags

from vild.data import category_splits
from vild.data import conversion
from vild.utils import gin_config

flags.DEFINE_string("annotations", None, "LVIS v1 or COCO instances JSON.")
flags.DEFINE_string("image_root", None, "Directory the images' file_name/coco_url paths are "
                    "relative to (e.g. the folder holding train2017/ and val2017/).")
flags.DEFINE_string("output_dir", None, "Where the shards and the report go.")
flags.DEFINE_string("name", "train", "Shard prefix.")
flags.DEFINE_enum("split", "lvis_rare", category_splits.SPLITS, "Category split: which "
                  "categories are used and which are novel.")
flags.DEFINE_bool("base_only", False, "Drop novel-category annotations (training data).")
flags.DEFINE_bool("include_masks", True, "Write PNG instance masks.")
flags.DEFINE_integer("num_shards", 0, "Number of shards; 0 = about 256 images per shard.")
flags.DEFINE_integer("num_workers", 1, "Processes writing shards in parallel.")
flags.DEFINE_float("max_missing_fraction", 0.0, "Fail when a larger fraction of the images is "
                   "missing, corrupt or refused; below it they are skipped and listed in the "
                   "report.")
flags.DEFINE_bool("allow_outside_image_root", False, "Read image paths of the annotation file "
                  "that resolve outside --image_root ('../x.jpg', absolute paths).")
flags.DEFINE_bool("overwrite", False, "Delete this --name's shards, settings and report in "
                  "--output_dir first (needed when they were written with other settings).")
flags.mark_flags_as_required(["annotations", "image_root", "output_dir"])
FLAGS = flags.FLAGS


def main(argv):
  del argv
  gin_config.parse_flags()
  try:
    conversion.convert(FLAGS.annotations, FLAGS.image_root, FLAGS.output_dir, FLAGS.name,
                       split=FLAGS.split, base_only=FLAGS.base_only,
                       include_masks=FLAGS.include_masks, num_shards=FLAGS.num_shards,
                       num_workers=FLAGS.num_workers,
                       max_missing_fraction=FLAGS.max_missing_fraction,
                       allow_outside_image_root=FLAGS.allow_outside_image_root,
                       overwrite=FLAGS.overwrite)
  except (conversion.ConversionError, ValueError) as e:
    # Bad data, not bad flags: the message alone (absl's UsageError would print the usage first).
    sys.exit(f"create_tfrecords.py: {e}")


if __name__ == "__main__":
  cli.run(main)
