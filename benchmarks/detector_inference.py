"""Row: detector inference with an LVIS-sized vocabulary, ViLD against the stock Mask R-CNN.

Both are R50-FPN Mask R-CNNs on the same image at the same size with the same proposals
settings (paper: 1000 test proposals), masks included. ViLD scores each RoI by cosine
similarity to a [C, D] text-embedding matrix (C = 1203 for LVIS) and runs its own per-class
NMS (ViLDDetectionGenerator); the stock model has a (C + 1)-way softmax DetectionHead and the
official DetectionGenerator. Both use the paper's inference settings (score threshold 0,
per-class NMS 0.5, 300 detections). Each model runs in its own process, interleaved.

ViLD's post-processing is also timed under both candidate rules of
`build_detection_generator.pre_nms_rule` on the same inputs: 'overall' (ours: the top 10000
(RoI, class) pairs) and 'per_class' (the official code's, the paper configs': the top 1000 RoIs
of each class).
"""
import dataclasses
from typing import Sequence, Tuple

import numpy as np
import tensorflow as tf

import benchmarks
from benchmarks import harness
from benchmarks import report
from benchmarks import stock_maskrcnn
from benchmarks import training_step
from official.vision.ops import preprocess_ops
from vild.data import toy
from vild.modeling import ensemble
from vild.modeling import factory
from vild.modeling import vild_model

BOX_WEIGHTS = vild_model.BOX_REGRESSION_WEIGHTS

MODELS = ("stock", "vild")
LABELS = {"stock": "stock Mask R-CNN (softmax)", "vild": "ViLD (cosine over text)"}
# ViLD's candidate rules before per-class NMS (build_detection_generator): rule -> top k.
PRE_NMS_RULES = {"overall": 10000, "per_class": 1000}


def scene_image(image_size: int, seed: int = 0) -> tf.Tensor:
  """[1, S, S, 3] normalised toy scene: the same image for every model."""
  scene = toy.toy_scene(seed, size=(image_size, image_size), num_objects=8)
  return preprocess_ops.normalize_image(tf.constant(scene["image"]))[tf.newaxis]


def inference_calls(model_kind: str, image_size: int, num_classes: int,
                    gin_files: Sequence[str] = (),
                    gin_bindings: Sequence[str] = ()) -> harness.Calls:
  """Worker factory: 'detect', one compiled inference pass of `model_kind` on one image, and
  'postprocess', its detection generator alone on the same number of RoIs and classes."""
  harness.configure_gin(gin_files, gin_bindings)
  images = scene_image(image_size)
  image_shape = tf.constant([[image_size, image_size]], tf.float32)
  num_rois = factory.build_roi_generator().get_config()["test_num_proposals"]
  rois, box_outputs, logits = random_head_outputs(num_rois, num_classes, image_size)
  if model_kind == "stock":
    model = stock_maskrcnn.build_stock_maskrcnn(num_classes)
    postprocess = tf.function(lambda: model.detection_generator(
        box_outputs, logits, rois, image_shape, list(BOX_WEIGHTS), bbox_per_class=False))
  else:
    model = factory.build_vild_model(distillation="none")
    model.set_text_embeddings(training_step.unit_rows(num_classes, model.embedding_dim))
    postprocess = tf.function(lambda: model.detection_generator(
        box_outputs, ensemble.text_scores(logits), rois, image_shape))
    rule_calls = {f"postprocess_{rule}": _postprocess_call(
        factory.build_detection_generator(pre_nms_rule=rule, pre_nms_top_k=top_k),
        box_outputs, ensemble.text_scores(logits), rois, image_shape)
                  for rule, top_k in PRE_NMS_RULES.items()}
  # Variables are created when the warm-up call traces this.
  detect = tf.function(lambda: model(images, image_shape, training=False))
  generator = factory.build_detection_generator().get_config()
  settings = {"proposals": num_rois, **{k: generator[k] for k in (
      "pre_nms_rule", "pre_nms_top_k", "score_threshold", "nms_iou_threshold",
      "max_num_detections")}}

  def detect_once():
    detect()["detection_boxes"].numpy()
    return settings

  return {"detect": detect_once,
          "postprocess": lambda: postprocess()["detection_boxes"].numpy(),
          **(rule_calls if model_kind == "vild" else {})}


def _postprocess_call(generator, box_outputs, scores, rois, image_shape):
  """A compiled call of `generator` on fixed inputs, returning its number of detections."""
  run = tf.function(lambda: generator(box_outputs, scores, rois, image_shape))

  def call():
    return {"num_detections": int(run()["num_detections"][0])}
  return call


def random_head_outputs(num_rois: int, num_classes: int, image_size: int):
  """Seeded RoIs [1, N, 4], box deltas [1, N, 4] and [background, classes] logits
  [1, N, 1 + C]: the post-processing's inputs. Both models turn the logits into the same
  softmax probabilities."""
  rng = np.random.default_rng(0)
  corner = rng.uniform(0, image_size * 0.7, (1, num_rois, 2))
  side = rng.uniform(image_size * 0.02, image_size * 0.3, (1, num_rois, 2))
  rois = np.concatenate([corner, np.minimum(corner + side, image_size)], axis=-1)
  return (tf.constant(rois, tf.float32),
          tf.constant(rng.normal(size=(1, num_rois, 4)) * 0.1, tf.float32),
          tf.constant(rng.normal(size=(1, num_rois, num_classes + 1)) * 3, tf.float32))


@dataclasses.dataclass(frozen=True)
class Settings:
  image_size: int = 1024
  num_classes: int = 1203  # LVIS
  rounds: int = 3
  gin_files: Tuple[str, ...] = ()
  gin_bindings: Tuple[str, ...] = ()


DEFAULT = Settings()
QUICK = Settings(image_size=128, num_classes=30, rounds=1, gin_files=(benchmarks.TINY_GIN,))


def describe(label: str, measured: harness.WorkerReport) -> str:
  """One model's absolute figures, with its post-processing's share of the image."""
  image, postprocess = (measured.median(name, cpu=True) for name in ("detect", "postprocess"))
  return (f"{label}: {measured.median('detect'):.2f} s/image wall, {image:.2f} CPU s/image; "
          f"its post-processing alone {postprocess:.2f} CPU s ({100 * postprocess / image:.0f}%"
          f" of the image); peak RSS {report.gibibytes(measured.peak_rss)}")


def describe_rules(measured: harness.WorkerReport) -> str:
  """ViLD's post-processing under each candidate rule, on the same inputs."""
  parts = [f"'{rule}' (top {top_k}{' pairs' if rule == 'overall' else ' RoIs per class'}) "
           f"{measured.median(f'postprocess_{rule}', cpu=True):.2f} CPU s"
           for rule, top_k in PRE_NMS_RULES.items()]
  return ("ViLD post-processing by build_detection_generator.pre_nms_rule, exact per-class NMS "
          "either way: " + ", ".join(parts))


def run(settings: Settings, isolated: bool = True) -> report.RowResult:
  workloads = [harness.Workload(LABELS[kind], inference_calls, dict(
      model_kind=kind, image_size=settings.image_size, num_classes=settings.num_classes,
      gin_files=settings.gin_files, gin_bindings=settings.gin_bindings)) for kind in MODELS]
  reports = harness.run_interleaved(workloads, settings.rounds, isolated=isolated)
  vild, stock = reports[LABELS["vild"]], reports[LABELS["stock"]]
  facts = vild.facts["detect"]
  comparisons = report.time_and_memory(
      f"detector inference, {settings.num_classes} classes: ViLD / stock softmax",
      report.Side("ViLD", vild, "detect"), report.Side("stock", stock, "detect"),
      wall_rate_unit="images/s")
  details = [describe(LABELS["vild"], vild), describe_rules(vild),
             describe(LABELS["stock"], stock)]
  setup = (f"{training_step.describe_model(settings.gin_files)}, one "
           f"{settings.image_size}x{settings.image_size} image, {settings.num_classes} "
           f"classes, masks on, {facts['proposals']} proposals, score threshold "
           f"{facts['score_threshold']}, per-class NMS {facts['nms_iou_threshold']}, up to "
           f"{facts['max_num_detections']} detections (the paper's inference settings at the "
           "default sizes). ViLD: cosine head over a "
           f"[{settings.num_classes}, D] text matrix + ViLDDetectionGenerator (rule "
           f"'{facts['pre_nms_rule']}', top {facts['pre_nms_top_k']}, exact per-class NMS). "
           "Stock: "
           "DetectionHead "
           f"softmax over {settings.num_classes} + 1 + official DetectionGenerator "
           "(nms_version='batched'). Each in its own process, "
           f"{settings.rounds} interleaved round(s) after one warm-up; medians.")
  return report.RowResult(title=f"Detector inference with {settings.num_classes} classes",
                          setup=setup, comparisons=comparisons, details=details)
