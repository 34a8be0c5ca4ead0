r"""Computes a vocabulary's text embeddings (the ViLD classifier) with a CLIP teacher.

  # LVIS v1 (1203 categories, synonyms ensembled, 63 templates, "This is ..." prompts):
  python scripts/compute_text_embeddings.py --vocabulary=lvis_v1_val.json \
      --checkpoint_dir=clip-vit-base-patch32/ --output=embeddings/lvis_vitb32.npy
  # A few names typed in:
  python scripts/compute_text_embeddings.py --vocabulary="cat;traffic_light;cow/ox" \
      --checkpoint_dir=clip-vit-base-patch32/ --output=embeddings/mine.npy

Writes OUTPUT (.npy, float32 [C, D], rows L2-normalised, vocabulary order, no background row)
and OUTPUT with .json (vocabulary, teacher, templates, dim, date). --checkpoint_dir is a local
Hugging Face CLIP directory (config.json, model.safetensors, vocab.json, merges.txt).
"""
from vild.utils import cli

cli.quiet_native_logs()  # before TensorFlow loads: it reads its C++ log level once

from absl import flags  # noqa: E402

from vild import vocabulary as vocabulary_lib  # noqa: E402
from vild.teacher import clip_teacher  # noqa: E402
from vild.teacher import prompts  # noqa: E402
from vild.teacher import vocabulary_embeddings  # noqa: E402
from vild.utils import gin_config  # noqa: E402

flags.DEFINE_string("vocabulary", None, "LVIS/COCO JSON (its categories), a vocabulary JSON, "
                    "a text file with one name per line, or names separated by ';'.")
flags.DEFINE_string("checkpoint_dir", None, "Local Hugging Face CLIP checkpoint directory.")
flags.DEFINE_string("output", None, "Output .npy path; the sidecar .json goes beside it.")
flags.DEFINE_enum("templates", "vild", sorted(prompts.TEMPLATE_SETS),
                  "'vild': the 63 ViLD templates; 'single': 'a photo of {article} {}.'.")
flags.DEFINE_bool("this_is", True, "Prefix 'This is ' to prompts starting with a/the (ViLD).")
flags.DEFINE_bool("synonyms", True, "Ensemble the prompts of every synonym (LVIS).")
flags.DEFINE_integer("batch_size", 256, "Prompts per teacher forward pass.")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the text tower.")
flags.mark_flags_as_required(["vocabulary", "checkpoint_dir", "output"])
FLAGS = flags.FLAGS


def main(argv):
  del argv
  gin_config.parse_flags()
  vocabulary = vocabulary_lib.load_vocabulary(FLAGS.vocabulary)
  teacher = clip_teacher.load_clip_teacher(FLAGS.checkpoint_dir, batch_size=FLAGS.batch_size,
                                           jit_compile=FLAGS.jit_compile)
  vocabulary_embeddings.write_text_embeddings(
      FLAGS.output, teacher, vocabulary, template_set=FLAGS.templates,
      this_is=FLAGS.this_is, use_synonyms=FLAGS.synonyms, batch_size=FLAGS.batch_size)
  print(f"wrote {FLAGS.output}: {vocabulary.describe()}, dim {teacher.embedding_dim}, "
        f"teacher {teacher.name}")


if __name__ == "__main__":
  cli.run(main)
