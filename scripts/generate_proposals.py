r"""Adds a trained detector's class-agnostic proposals (top M per image) to TFRecords.

  # The synthetic world: the detector trained on base categories in runs/base
  python scripts/generate_proposals.py --model_dir=runs/base \
      --input_pattern='data/synthetic/tfrecords/train-*.tfrecord' \
      --output_dir=data/synthetic/proposals --num_proposals=32
  # LVIS on 8 machines: machine i runs the same command with --shard_index=i --num_shards=8
  python scripts/generate_proposals.py --model_dir=runs/lvis_base --gin_file=configs/... \
      --input_pattern='tfrecords/lvis/train-*.tfrecord' --output_dir=tfrecords/lvis_proposals \
      --shard_index=0 --num_shards=8

Writes each input shard again under its own name in --output_dir, every record with
image/roi/bbox/{ymin,xmin,ymax,xmax} (normalised), image/roi/bbox/score and an empty
image/roi/feature added (scripts/compute_region_embeddings.py fills it), plus proposals.json
(the settings, the detector identified by the sha256 of its weights and config: a rerun with
another detector stops). Finished shards are skipped on a rerun. A record whose image does not
decode is written without proposals and named (shard, record, image/source_id); training skips
it. --gin_file replaces model_dir/config.gin; --gin_param bindings apply after it (e.g.
'build_roi_generator.test_num_proposals = 2000'). See vild.distillation_data.proposals.
"""
from vild.utils import cli

cli.quiet_native_logs()  # before TensorFlow loads: it reads its C++ log level once

from absl import flags  # noqa: E402

from vild.distillation_data import proposals  # noqa: E402

flags.DEFINE_string("input_pattern", None, "Glob of the input TFRecord shards.")
flags.DEFINE_string("output_dir", None, "Where the output shards go (not the input folder).")
flags.DEFINE_string("model_dir", None, "The detector's training directory (checkpoints, and "
                    "config.gin unless --gin_file is given).")
flags.DEFINE_string("checkpoint", None, "A checkpoint prefix; default the latest in model_dir.")
flags.DEFINE_list("image_size", None, "Model input height,width; default the config's "
                  "Parser.output_size.")
flags.DEFINE_integer("num_proposals", 300, "M, proposals kept per image (paper: 300).")
flags.DEFINE_float("nms_iou_threshold", 0.7, "Class-agnostic NMS across FPN levels before the "
                   "top M; 0 turns it off.")
flags.DEFINE_float("min_score", 0.0, "Drop proposals with a lower RPN score.")
flags.DEFINE_integer("batch_size", 8, "Images per detector call.")
flags.DEFINE_integer("shard_index", 0, "This machine's index, 0 <= shard_index < num_shards.")
flags.DEFINE_integer("num_shards", 1, "Machines splitting the input shards.")
flags.mark_flags_as_required(["input_pattern", "output_dir", "model_dir"])
FLAGS = flags.FLAGS


def main(argv):
  del argv
  result = proposals.generate_proposals(
      FLAGS.input_pattern, FLAGS.output_dir, FLAGS.model_dir, gin_files=FLAGS.gin_file,
      gin_bindings=FLAGS.gin_param, checkpoint=FLAGS.checkpoint,
      image_size=FLAGS.image_size and [int(s) for s in FLAGS.image_size],
      num_proposals=FLAGS.num_proposals, nms_iou_threshold=FLAGS.nms_iou_threshold,
      min_score=FLAGS.min_score, batch_size=FLAGS.batch_size,
      shard_index=FLAGS.shard_index, num_shards=FLAGS.num_shards)
  print(f"proposals: wrote {len(result['written'])} shards, skipped {len(result['skipped'])} "
        f"already written, in {FLAGS.output_dir}")
  if result["undecodable"]:
    print(f"{len(result['undecodable'])} records whose image does not decode were written "
          "without proposals (training skips them):\n  " + "\n  ".join(result["undecodable"]))


if __name__ == "__main__":
  cli.run(main)
