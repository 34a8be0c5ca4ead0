r"""Pre-trains a small CLIP from scratch on a synthetic world's captioned crops (its teacher).

  python scripts/pretrain_teacher.py --world_dir=data/synthetic --output_dir=data/teacher \
      [--gin_param='PretrainingSpec.steps = 2000'] [--gin_param='teacher_config.embed_dim = 64']

Writes a Hugging Face CLIP directory (load it with vild.teacher.clip_teacher.load_clip_teacher
or pass it as --checkpoint_dir to scripts/compute_text_embeddings.py) and pretraining.json with
the loss curve and the zero-shot accuracy on held-out crops of base and novel categories.
"""
from vild.utils import cli

cli.quiet_native_logs()  # before TensorFlow loads: it reads its C++ log level once

from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from vild.teacher import pretraining  # noqa: E402
from vild.utils import gin_config  # noqa: E402

flags.DEFINE_string("world_dir", None, "A world made by scripts/make_synthetic_dataset.py.")
flags.DEFINE_string("output_dir", None, "Where the teacher checkpoint directory is written.")
flags.mark_flags_as_required(["world_dir", "output_dir"])
FLAGS = flags.FLAGS


def main(argv):
  del argv
  gin_config.parse_flags()
  report = pretraining.pretrain_teacher(FLAGS.world_dir, FLAGS.output_dir,
                                        pretraining.PretrainingSpec())
  accuracy = report["zero_shot_accuracy"]
  logging.info("Wrote the teacher to %s in %.0f s: zero-shot accuracy base %.3f, novel %.3f "
               "(chance %.3f).", FLAGS.output_dir, report["seconds"], accuracy["base"],
               accuracy["novel"], accuracy["chance"])


if __name__ == "__main__":
  cli.run(main)
