r"""Adds the teacher's region embeddings (ViLD-image targets) to TFRecords with proposals.

  # The synthetic world, after scripts/generate_proposals.py:
  python scripts/compute_region_embeddings.py --checkpoint_dir=clip-b32 \
      --input_pattern='data/synthetic/proposals/train-*.tfrecord' \
      --output_dir=data/synthetic/distill
  # LVIS on 16 machines: machine i runs the same command with --shard_index=i --num_shards=16
  python scripts/compute_region_embeddings.py --checkpoint_dir=clip-b32 --jit_compile \
      --input_pattern='tfrecords/lvis_proposals/train-*.tfrecord' \
      --output_dir=tfrecords/lvis_distill --shard_index=0 --num_shards=16

For each proposal: normalize(CLIP(crop 1x) + CLIP(crop 1.5x)), crops clipped to the image. Each
input shard is written again under its own name in --output_dir with image/roi/feature (M x D)
set, every other field kept, plus region_embeddings.json (the teacher identified by the sha256
of its weights and config, D, scales: a rerun with another teacher, even at the same path,
stops). Finished shards are skipped on a rerun. The progress bar shows images/s, crops/s and the
ETA. At LVIS scale, see also scripts/compute_region_embeddings_beam.py. --gin_file and
--gin_param bind vild's gin configurables before the run (e.g. 'RegionEmbedder.progress = True').
"""
from vild.utils import cli

cli.quiet_native_logs()  # before TensorFlow loads: it reads its C++ log level once

from absl import flags  # noqa: E402

from vild.distillation_data import region_embeddings  # noqa: E402
from vild.teacher import crops  # noqa: E402
from vild.utils import gin_config  # noqa: E402

flags.DEFINE_string("input_pattern", None, "Glob of TFRecord shards with proposals "
                    "(scripts/generate_proposals.py output).")
flags.DEFINE_string("output_dir", None, "Where the output shards go (not the input folder).")
flags.DEFINE_string("checkpoint_dir", None, "Local Hugging Face CLIP checkpoint directory.")
flags.DEFINE_list("scales", [str(s) for s in crops.VILD_SCALES], "Crop scales around each "
                  "proposal (ViLD: 1.0,1.5).")
flags.DEFINE_integer("batch_size", 64, "Crops per teacher forward pass, across images.")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the image tower.")
flags.DEFINE_integer("shard_index", 0, "This machine's index, 0 <= shard_index < num_shards.")
flags.DEFINE_integer("num_shards", 1, "Machines splitting the input shards.")
flags.mark_flags_as_required(["input_pattern", "output_dir", "checkpoint_dir"])
FLAGS = flags.FLAGS


def main(argv):
  del argv
  gin_config.parse_flags()
  result = region_embeddings.compute_region_embeddings(
      FLAGS.input_pattern, FLAGS.output_dir, checkpoint_dir=FLAGS.checkpoint_dir,
      scales=[float(s) for s in FLAGS.scales], batch_size=FLAGS.batch_size,
      jit_compile=FLAGS.jit_compile, shard_index=FLAGS.shard_index,
      num_shards=FLAGS.num_shards)
  print(f"region embeddings: wrote {len(result['written'])} shards, skipped "
        f"{len(result['skipped'])} already written, in {FLAGS.output_dir}")


if __name__ == "__main__":
  cli.run(main)
