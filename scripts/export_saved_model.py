r"""Exports a trained ViLD as a SavedModel that detects a vocabulary chosen at serving time.

  python scripts/export_saved_model.py --model=runs/vild_lvis --export_dir=exports/vild_lvis \
      [--vocabulary=lvis_clip.npy | --vocabulary="cat;dog" --teacher=checkpoints/clip-vit-b32]

Signatures (see vild.inference.serving): `serve_with_embeddings` and
`serve_bytes_with_embeddings` take uint8 images [B, H, W, 3] or encoded image bytes [B] plus
text_embeddings [C, D] and base_mask [C]; with --vocabulary, `serve` and `serve_bytes` have
that vocabulary baked in. Boxes come back in original-image pixels. The model's input size,
scoring head and NMS settings are saved in assets.extra/vild_model_spec.json.

--export_dir may not be, contain or lie inside a training run's directory (checkpoints,
config.gin), and --overwrite replaces only an earlier export (vild.inference.export).
--gin_file replaces the model directory's config.gin; --gin_param bindings apply after it.
"""
from vild.utils import cli

cli.quiet_native_logs()  # before TensorFlow loads: it reads its C++ log level once

from absl import flags  # noqa: E402

from vild import vocabulary as vocabulary_lib  # noqa: E402
from vild.inference import checkpoint  # noqa: E402
from vild.inference import export  # noqa: E402
from vild.inference import serving  # noqa: E402
from vild.inference import teacher_adapters  # noqa: E402
from vild.inference import vocabularies  # noqa: E402

flags.DEFINE_string("model", None, "Model directory (config.gin + checkpoints).")
flags.DEFINE_string("export_dir", None, "The SavedModel directory to create.")
flags.DEFINE_string("vocabulary", None, "Optional vocabulary to bake in: a .npy text-embedding "
                    "file, or names (';'-separated or a file) embedded with --teacher.")
flags.DEFINE_string("teacher", None, "CLIP checkpoint directory (embeds --vocabulary names).")
flags.DEFINE_string("base_names", None, "Categories trained with boxes (names or file); other "
                    "baked names count as novel in ViLD-ensemble scoring. Default: a baked name "
                    "is base iff it is a base category of the run's training vocabulary.")
flags.DEFINE_list("input_size", None, "Model input 'height,width' (default the config's "
                  "Parser.output_size, else 1024,1024).")
flags.DEFINE_float("score_threshold", None, "Score threshold in the graph (default: model's).")
flags.DEFINE_float("nms_iou_threshold", None, "Per-class NMS IoU (default: the model's).")
flags.DEFINE_integer("max_detections", None, "Detections per image (default: the model's).")
flags.DEFINE_enum("use_ensemble", "auto", ["auto", "true", "false"], "ViLD-ensemble models: "
                  "'false' exports text-branch-only scoring.")
flags.DEFINE_bool("overwrite", False, "Replace an earlier export in export_dir (never a "
                  "training run or any other directory).")
flags.mark_flags_as_required(["model", "export_dir"])
FLAGS = flags.FLAGS


def baked_vocabulary(embedding_dim: int, training_vocabulary):
  """(Vocabulary, [C, D]) from --vocabulary, or (None, None)."""
  if not FLAGS.vocabulary:
    return None, None
  teacher = teacher_adapters.load_teacher(FLAGS.teacher) if FLAGS.teacher else None
  teacher_adapters.check_embedding_dim(teacher, embedding_dim)
  cache = vocabularies.TextEmbeddingCache(teacher_adapters.embed_names(teacher), embedding_dim)
  vocab, matrix = vocabularies.resolve(FLAGS.vocabulary, cache, embedding_dim)
  if FLAGS.base_names:
    vocab = vocabularies.with_base_names(
        vocab, vocabulary_lib.load_vocabulary(FLAGS.base_names).names)
  elif training_vocabulary is not None:
    vocab = vocabularies.split_by_training(vocab, training_vocabulary)
  return vocab, matrix


def main(argv):
  del argv
  input_size = [int(s) for s in FLAGS.input_size] if FLAGS.input_size else None
  export.check_export_dir(FLAGS.export_dir, FLAGS.overwrite)  # before the model loads
  loaded = checkpoint.load_model(FLAGS.model, input_size=input_size, gin_files=FLAGS.gin_file,
                                 gin_bindings=FLAGS.gin_param)
  training_vocabulary = vocabularies.load_training_vocabulary(FLAGS.model)
  vocab, matrix = baked_vocabulary(loaded.model.embedding_dim, training_vocabulary)
  serving.set_detection_settings(loaded.model, FLAGS.score_threshold,
                                 FLAGS.nms_iou_threshold, FLAGS.max_detections)
  spec = export.export_saved_model(
      loaded.model, FLAGS.export_dir, loaded.input_size, text_embeddings=matrix,
      vocabulary=vocab,
      use_ensemble={"auto": None, "true": True, "false": False}[FLAGS.use_ensemble],
      overwrite=FLAGS.overwrite, training_vocabulary=training_vocabulary)
  baked = f", vocabulary of {len(vocab)} baked in" if vocab is not None else ""
  print(f"Exported {FLAGS.export_dir} (input {spec.input_size[0]}x{spec.input_size[1]}, "
        f"embedding dim {spec.embedding_dim}{baked}).")


if __name__ == "__main__":
  cli.run(main)
