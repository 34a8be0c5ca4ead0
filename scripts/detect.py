r"""Detects anything by name in images with a trained ViLD: a PNG and a JSON per image.

  python scripts/detect.py --model=runs/vild_lvis --teacher=checkpoints/clip-vit-b32 \
      --image='photos/*.jpg' --vocabulary="cat;red umbrella;koala" --output_dir=out/

--model is a trainer's model directory (config.gin + checkpoints) or an export of
scripts/export_saved_model.py. --vocabulary is names separated by ';', a names file (one per
line), a vocabulary or LVIS/COCO JSON, or a .npy text-embedding file (then no --teacher is
needed). Unreadable images are skipped and listed; the rest are still processed. Output files:
see vild.inference.batch.
"""
import sys

from absl import app
from absl import flags
from absl import logging

from vild import text_embeddings
from vild import vocabulary as vocabulary_lib
from vild.inference import batch
from vild.inference import checkpoint
from vild.inference import detector as detector_lib
from vild.inference import export
from vild.inference import images as images_lib
from vild.inference import teacher_adapters
from vild.inference import vocabularies

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
  return detector_lib.Detector.load(
      FLAGS.model, teacher=teacher, input_size=input_size, score_threshold=FLAGS.score_threshold,
      max_detections=FLAGS.max_detections, nms_iou_threshold=FLAGS.nms_iou_threshold,
      use_ensemble=use_ensemble, base_names=base_names, novel_names=novel_names)


def print_table(report: batch.RunReport, rows: int) -> None:
  print(f"\n{'image':<28} {'label':<24} {'score':>6}  box [x, y, w, h]")
  for result in report.results:
    shown = result.detections.to_json(include_masks=False)[:rows]
    if not shown:
      print(f"{result.image[-28:]:<28} {'(no detections)':<24}")
    for item in shown:
      box = ", ".join(f"{v:.0f}" for v in item["bbox"])
      print(f"{result.image[-28:]:<28} {item['label'][:24]:<24} {item['score']:6.3f}  [{box}]")
  for skipped in report.skipped:
    print(f"{skipped['image'][-28:]:<28} SKIPPED: {skipped['error']}")
  print(f"\n{len(report.results)} images processed, {len(report.skipped)} skipped; outputs in "
        f"{FLAGS.output_dir}")


def main(argv):
  del argv
  try:
    paths = [p for spec in FLAGS.image for p in images_lib.find_images(spec)]
    if not FLAGS.vocabulary.endswith(".npy"):  # names: check them before loading the model
      vocabulary_lib.load_vocabulary(FLAGS.vocabulary)
    detector = build_detector()
    vocab, _ = detector.text_embeddings(FLAGS.vocabulary)  # fails before any image
  except (images_lib.ImageError, vocabulary_lib.VocabularyError,
          text_embeddings.TextEmbeddingError, checkpoint.ModelDirError, export.ExportError,
          detector_lib.DetectorError) as e:
    raise app.UsageError(str(e)) from e
  logging.info("%d images, vocabulary %s.", len(paths), FLAGS.vocabulary)
  if detector.spec.uses_ensemble:
    print(vocabularies.describe_split(*detector.base_novel_split(vocab)))
  report = batch.detect_files(detector, paths, FLAGS.vocabulary, FLAGS.output_dir,
                              method=FLAGS.method, include_masks=FLAGS.json_masks,
                              model_name=FLAGS.model)
  print_table(report, FLAGS.table_rows)
  if not report.results:
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
