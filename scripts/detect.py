r"""Detects anything by name in images with a trained ViLD: a PNG and a JSON per image.

  python scripts/detect.py --model=runs/vild_lvis --teacher=checkpoints/clip-vit-b32 \
      --image='photos/*.jpg' --vocabulary="cat;red umbrella;koala" --output_dir=out/

--model is a trainer's model directory (config.gin + checkpoints) or an export of
scripts/export_saved_model.py. --vocabulary is names separated by ';', a names file (one per
line), a vocabulary or LVIS/COCO JSON, or a .npy text-embedding file (then no --teacher is
needed). Unreadable images are skipped and listed; the rest are still processed. Output files
(never two at one path, never over an input image): see vild.inference.batch. For a model
directory, --gin_file replaces its config.gin and --gin_param bindings apply after it.
"""
from vild.utils import cli

cli.quiet_native_logs()  # before TensorFlow loads: it reads its C++ log level once

import sys  # noqa: E402

from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from vild import vocabulary as vocabulary_lib  # noqa: E402
from vild.inference import batch  # noqa: E402
from vild.inference import detector as detector_lib  # noqa: E402
from vild.inference import images as images_lib  # noqa: E402
from vild.inference import teacher_adapters  # noqa: E402
from vild.inference import vocabularies  # noqa: E402

flags.DEFINE_multi_string("image", None, "Image file, glob pattern or directory (repeatable).")
flags.DEFINE_string("vocabulary", None,
                    "Names separated by ';', or a names/vocabulary/.npy file.")
flags.DEFINE_string("model", None, "Model directory (config.gin + checkpoints) or SavedModel.")
flags.DEFINE_string("teacher", None, "CLIP checkpoint directory (embeds the vocabulary names).")
flags.DEFINE_string("output_dir", None, "Where the PNGs and JSONs go.")
flags.DEFINE_string("base_names", None, "Categories the model was trained on with boxes (names "
                    "or file); other names count as novel in ViLD-ensemble scoring. Default: a "
                    "name is base iff it is a base category of the model's training vocabulary.")
flags.DEFINE_string("novel_names", None, "Names (or file) that count as novel in ViLD-ensemble "
                    "scoring whatever the rule above says.")
flags.DEFINE_float("score_threshold", 0.3, "Keep detections scoring above this.")
flags.DEFINE_integer("max_detections", None, "At most this many per image (default: model's).")
flags.DEFINE_float("nms_iou_threshold", None, "Per-class NMS IoU (default: the model's).")
flags.DEFINE_enum("use_ensemble", "auto", ["auto", "true", "false"], "ViLD-ensemble models: "
                  "'false' scores with the text branch only.")
flags.DEFINE_enum("method", "vild", ["vild", "clip_on_crops"], "'clip_on_crops': classify "
                  "proposal crops with the teacher (the paper's R-CNN-style baseline).")
flags.DEFINE_list("input_size", None, "Model input 'height,width' (checkpoints only; default "
                  "the config's Parser.output_size, else 1024,1024).")
flags.DEFINE_bool("json_masks", True, "Write masks as COCO RLE in the JSON.")
flags.DEFINE_integer("table_rows", 5, "Detections per image in the printed table.")
flags.mark_flags_as_required(["image", "vocabulary", "model", "output_dir"])
FLAGS = flags.FLAGS


def build_detector() -> detector_lib.Detector:
  base_names, novel_names = (vocabulary_lib.load_vocabulary(names).names if names else None
                             for names in (FLAGS.base_names, FLAGS.novel_names))
  input_size = [int(s) for s in FLAGS.input_size] if FLAGS.input_size else None
  use_ensemble = {"auto": None, "true": True, "false": False}[FLAGS.use_ensemble]
  teacher = teacher_adapters.load_teacher(FLAGS.teacher) if FLAGS.teacher else None
  gin = ({"gin_files": FLAGS.gin_file, "gin_bindings": FLAGS.gin_param}
         if FLAGS.gin_file or FLAGS.gin_param else {})
  return detector_lib.Detector.load(
      FLAGS.model, teacher=teacher, input_size=input_size, score_threshold=FLAGS.score_threshold,
      max_detections=FLAGS.max_detections, nms_iou_threshold=FLAGS.nms_iou_threshold,
      use_ensemble=use_ensemble, base_names=base_names, novel_names=novel_names, **gin)


def main(argv):
  del argv
  paths = [p for spec in FLAGS.image for p in images_lib.find_images(spec)]
  if not FLAGS.vocabulary.endswith(".npy"):  # names: check them before loading the model
    vocabulary_lib.load_vocabulary(FLAGS.vocabulary)
  detector = build_detector()
  vocab, _ = detector.text_embeddings(FLAGS.vocabulary)  # fails before any image
  logging.info("%d images, vocabulary %s.", len(paths), FLAGS.vocabulary)
  if detector.spec.uses_ensemble:
    print(vocabularies.describe_split(*detector.base_novel_split(vocab)))
  report = batch.detect_files(detector, paths, FLAGS.vocabulary, FLAGS.output_dir,
                              method=FLAGS.method, include_masks=FLAGS.json_masks,
                              model_name=FLAGS.model)
  print("\n" + batch.summary_table(report, FLAGS.table_rows))
  print(f"\n{len(report.results)} images processed, {len(report.skipped)} skipped; outputs in "
        f"{FLAGS.output_dir}")
  if not report.results:
    sys.exit(1)


if __name__ == "__main__":
  cli.run(main)
