r"""Times inference on generated scenes: a detector pass vs re-scoring stored detections.

  python benchmarks/inference_latency.py [--gin_file=configs/tiny/vild_tiny.gin] \
      [--input_size=128,128] [--num_classes=1203] [--images=10] [--saved_model]
  python benchmarks/inference_latency.py --gin_file= --input_size=640,640 --images=3  # paper R50

Builds the model from gin with random weights (or restores --model), a random unit-norm
vocabulary of --num_classes rows, and reports median milliseconds per image for: a full
detection pass (Keras model, and the SavedModel with --saved_model), re-scoring the
detections against a new vocabulary (the paper's interactive detection: no detector pass),
and attribute expansion. The first call of each (graph tracing) is excluded.
"""
import statistics
import tempfile
import time

from absl import app
from absl import flags
import gin
import numpy as np

from vild.data import toy
from vild.inference import checkpoint
from vild.inference import detector as detector_lib
from vild.inference import export
from vild.modeling import factory

flags.DEFINE_multi_string("gin_file", ["configs/tiny/vild_tiny.gin"], "Model gin config.")
flags.DEFINE_multi_string("gin_param", [], "Extra gin bindings.")
flags.DEFINE_string("model", None, "A model directory to restore instead of random weights.")
flags.DEFINE_list("input_size", ["128", "128"], "Model input height,width.")
flags.DEFINE_integer("num_classes", 1203, "Vocabulary size (LVIS: 1203).")
flags.DEFINE_integer("images", 10, "Timed images per measurement.")
flags.DEFINE_bool("saved_model", False, "Also export a SavedModel and time it.")
FLAGS = flags.FLAGS


def median_ms(fn, inputs) -> float:
  fn(inputs[0])  # tracing
  times = []
  for item in inputs:
    start = time.perf_counter()
    fn(item)
    times.append(1000 * (time.perf_counter() - start))
  return statistics.median(times)


def main(argv):
  del argv
  input_size = tuple(int(s) for s in FLAGS.input_size)
  if FLAGS.model:
    model = checkpoint.load_model(FLAGS.model, input_size=input_size).model
  else:
    # --gin_file= (empty) builds the paper's model: every factory default is the paper's.
    gin.parse_config_files_and_bindings([f for f in FLAGS.gin_file if f], FLAGS.gin_param)
    model = factory.build_vild_model(image_size=input_size)
  rng = np.random.default_rng(0)
  vocabulary = rng.normal(size=(FLAGS.num_classes, model.embedding_dim)).astype(np.float32)
  new_vocabulary = rng.normal(size=(FLAGS.num_classes, model.embedding_dim)).astype(np.float32)
  attributes = rng.normal(size=(11, model.embedding_dim)).astype(np.float32)  # 11 colours
  images = [toy.toy_scene(seed, input_size)["image"] for seed in range(FLAGS.images)]

  detector = detector_lib.Detector.from_model(model, input_size)
  rows = [("detect (Keras)", median_ms(lambda im: detector.detect(im, vocabulary), images))]
  stored = [detector.detect(im, vocabulary)[0] for im in images]
  rows.append(("rescore stored detections",
               median_ms(lambda d: detector.rescore(d, new_vocabulary), stored)))
  rows.append(("attribute expansion (11)",
               median_ms(lambda d: detector.expand_with_attributes(d, attributes), stored)))
  if FLAGS.saved_model:
    with tempfile.TemporaryDirectory() as tmp:
      start = time.perf_counter()
      export.export_saved_model(model, f"{tmp}/export", input_size)
      rows.append(("export SavedModel (once)", 1000 * (time.perf_counter() - start)))
      served = detector_lib.Detector.from_saved_model(f"{tmp}/export")
      rows.append(("detect (SavedModel)", median_ms(lambda im: served.detect(im, vocabulary),
                                                    images)))
  print(f"\n{model.distillation} distillation, input {input_size[0]}x{input_size[1]}, "
        f"{FLAGS.num_classes} classes, {len(stored[0])} detections per image, "
        f"median of {FLAGS.images} images")
  for name, ms in rows:
    print(f"  {name:<28} {ms:9.1f} ms")


if __name__ == "__main__":
  app.run(main)
