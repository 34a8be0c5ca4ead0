"""Evaluating a ViLD model: run it over an eval split, write detections and official metrics.

  evaluator = Evaluator(model, vocabulary, text_embeddings, metric="lvis",
                        annotation_file="lvis_v1_val.json")
  metrics = evaluator.evaluate(dataset, output_dir, step)    # one checkpoint's weights
  evaluate_checkpoints(model, evaluator, dataset_fn, model_dir, output_dir)   # each new one

Written to `output_dir`: detections_<step>.json (official results format), metrics_<step>.json
and TensorBoard scalars '<iou_type>/<metric>'. Metrics come from the official `lvis` API or
`pycocotools` (plus novel/base AP50 when the vocabulary has novel categories, as in OV-COCO).

Transfer evaluation is just another vocabulary and text-embedding matrix: the model's weights are
untouched, and class k maps to the new vocabulary's dataset ids.

ViLD-text + CLIP (the paper's slow R-CNN-style ensemble): give `teacher=` (any
vild.teacher.Teacher, e.g. load_clip_teacher) and every proposal's 1x + 1.5x crops of the model
input are embedded by it; its class scores are fused with the text branch's as in
ViLD-ensemble before per-class NMS (ViLDModel.detect_with_teacher).

`rescore_fn(images, labels, outputs) -> outputs` runs inside the compiled predict step after the
model: a hook for other score changes on the final detections.

Through a strategy (`strategy=`, the model built in its scope): each global batch is split over
the replicas, each replica runs `inference_step` (XLA-compiled: by TPUStrategy itself, on GPUs
with `jit_compile`), and the host gathers every replica's detections and ground truth for the
LVIS/COCO API. Batches are static for that: the last one is padded with copies of the first
image, marked `is_padding` and dropped on the host (`static_batches`).
"""
import collections
import json
import os
from typing import Callable, Dict, Optional, Sequence, Union

from absl import logging
import gin
import numpy as np
import tensorflow as tf

from official.vision.ops import preprocess_ops
from vild import text_embeddings as text_embeddings_lib
from vild import vocabulary as vocabulary_lib
from vild.data import augmentation
from vild.evaluation import coco_metrics
from vild.evaluation import detections as detections_lib
from vild.evaluation import lvis_metrics
from vild.inference import checkpoint as checkpoint_lib
from vild.inference import teacher_adapters
from vild.modeling import text_classifier
from vild.teacher import crops
from vild.training import strategy as strategy_lib
from vild.training import train_step
from vild.utils import io
from vild.utils import progress as progress_lib

METRIC_TYPES = ("lvis", "coco")
OUTPUT_KEYS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections",
               "detection_masks")
PADDING_KEY = "is_padding"  # labels[PADDING_KEY] [B] bool: a padding copy, not an eval image


def passed_labels(labels: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
  """What the host needs besides a batch's detections to map them back to the images."""
  return {"image_info": labels["image_info"], "groundtruths": labels["groundtruths"],
          PADDING_KEY: labels[PADDING_KEY]}


RescoreFn = Callable[[tf.Tensor, Dict, Dict[str, tf.Tensor]], Dict[str, tf.Tensor]]


@gin.configurable(denylist=["model", "vocabulary", "text_embeddings", "rescore_fn", "teacher",
                            "strategy"])
class Evaluator:
  """Evaluates a model on one vocabulary with the LVIS or COCO API.

  Args:
    model: a built ViLDModel.
    vocabulary: the evaluation vocabulary (dataset ids, LVIS frequencies, novel flags).
    text_embeddings: its [C, D] matrix (vild.text_embeddings.load).
    metric: 'lvis' or 'coco'.
    annotation_file: the split's LVIS/COCO annotation JSON; if None, ground truth is built
      from the eval labels' 'groundtruths' (masks from box crops are approximate).
    iou_types: 'bbox' and/or 'segm' ('segm' is dropped for a model without a mask head).
    rescore_fn: optional score hook (see the module docstring).
    log_every: batches between progress lines.
    teacher: evaluate as ViLD-text + CLIP with this teacher (see the module docstring); its
      embedding size must be the model's.
    teacher_batch_size: crops per teacher call.
    strategy: run inference per replica of this strategy (the model must be built in its
      scope); default TensorFlow's default strategy. Not with `teacher` (host-side).
    jit_compile: XLA-compile the per-replica inference: 'auto' (GPUs; TPUStrategy compiles
      it anyway), True or False.
  """

  def __init__(self, model, vocabulary: vocabulary_lib.Vocabulary, text_embeddings,
               metric: str = "lvis", annotation_file: Optional[str] = None,
               iou_types: Sequence[str] = ("bbox", "segm"),
               rescore_fn: Optional[RescoreFn] = None, log_every: int = 50,
               teacher=None, teacher_batch_size: int = 64,
               strategy: Optional[tf.distribute.Strategy] = None,
               jit_compile: Union[str, bool] = "auto"):
    if metric not in METRIC_TYPES:
      raise ValueError(f"Evaluator.metric: {metric!r} is not one of {METRIC_TYPES}.")
    if metric == "lvis" and annotation_file is None and not all(vocabulary.frequencies):
      raise ValueError(f"{vocabulary.source}: LVIS metrics need each category's frequency "
                       "(f/c/r); build the vocabulary from the LVIS annotation JSON or use "
                       "metric='coco'.")
    if model.mask_head is None and "segm" in iou_types:
      logging.info("The model has no mask head: evaluating boxes only.")
      iou_types = tuple(t for t in iou_types if t != "segm")
    matrix = text_embeddings_lib.validate(text_embeddings, vocabulary.source,
                                          num_classes=len(vocabulary),
                                          embedding_dim=model.embedding_dim)
    self.model = model
    self.vocabulary = vocabulary
    self._text_embeddings = tf.constant(text_embeddings_lib.l2_normalize(matrix))
    self._base_mask = tf.constant(vocabulary.base_mask)
    self._metric = metric
    self._annotation_file = annotation_file
    self._groundtruth_api = None  # Loaded once: an LVIS val JSON takes a while to index.
    self._iou_types = tuple(iou_types)
    self._rescore_fn = rescore_fn
    self._log_every = log_every
    self._region_embedder = None
    self._strategy = strategy or tf.distribute.get_strategy()
    if teacher is not None:
      if not isinstance(model.classifier, text_classifier.TextEmbeddingClassifier):
        raise ValueError("Evaluator(teacher=...): ViLD-text + CLIP fuses the teacher with a "
                         "text-embedding classifier; this model learns its class weights.")
      if self._strategy.num_replicas_in_sync > 1:
        raise ValueError("Evaluator(teacher=...): ViLD-text + CLIP embeds crops on the host; "
                         "evaluate it with the default strategy.")
      teacher_adapters.check_embedding_dim(teacher, model.embedding_dim)
      self._region_embedder = crops.RegionEmbedder(teacher, batch_size=teacher_batch_size)
    if strategy_lib.num_input_hosts(self._strategy) > 1:
      raise ValueError("Evaluator: the host gathers every replica's detections, so evaluation "
                       "runs on one host (e.g. a v3-8 or v4-8 TPU VM, or one GPU machine).")
    self._replica_step = self._replica_outputs
    if strategy_lib.resolve_jit_compile(self._strategy, jit_compile):
      self._replica_step = tf.function(self._replica_outputs, jit_compile=True,
                                       autograph=False)

  def _replica_outputs(self, images, labels, text_embeddings, base_mask):
    """One replica's batch: its detections, and what the host needs to map them back."""
    outputs = inference_step(self.model, images, labels, text_embeddings, base_mask,
                             self._rescore_fn)
    return outputs, passed_labels(labels)

  @tf.function(autograph=False)
  def _predict(self, images, labels):
    return self._strategy.run(self._replica_step, args=(
        images, labels, self._text_embeddings, self._base_mask))

  @tf.function(autograph=False)
  def _propose(self, images, labels):
    return self.model.propose(images, augmentation.content_size(labels["image_info"]),
                              labels.get("anchor_boxes"), training=False)

  @tf.function(autograph=False)
  def _detect_with_teacher(self, features, proposals, labels, teacher_embeddings):
    return _evaluated(self.model.detect_with_teacher(
        features, proposals, augmentation.content_size(labels["image_info"]), teacher_embeddings,
        self._text_embeddings, self._base_mask))

  def _predict_with_teacher(self, images, labels):
    """ViLD-text + CLIP: first stage, the teacher on every proposal's crops, second stage."""
    features, first_stage = self._propose(images, labels)
    proposals = first_stage["proposals"]
    pixels = unnormalized_images(images)
    teacher_embeddings = np.stack(list(self._region_embedder.embed_many(
        zip(pixels, proposals.numpy()))))
    outputs = self._detect_with_teacher(features, proposals, labels,
                                        tf.constant(teacher_embeddings))
    return outputs, passed_labels(labels)

  def predict(self, dataset: tf.data.Dataset):
    """(detections in the results format, ground-truth arrays by key) over the dataset."""
    results, groundtruths = [], collections.defaultdict(list)
    batches = static_batches(dataset, global_batch_size(
        dataset, self._strategy.num_replicas_in_sync))
    cardinality = int(batches.cardinality())
    progress = progress_lib.Progress(cardinality if cardinality > 0 else None)
    if self._region_embedder is None:
      batches = self._strategy.experimental_distribute_dataset(batches)
    for batch, (images, labels) in enumerate(batches, start=1):
      predict = self._predict if self._region_embedder is None else self._predict_with_teacher
      outputs, passed = self._gather(predict(images, labels))
      real = ~passed[PADDING_KEY]
      outputs = {k: v[real] for k, v in outputs.items()}
      gt = {k: v[real] for k, v in passed["groundtruths"].items()}
      results.extend(detections_lib.detections_to_results(
          outputs, passed["image_info"][real], gt["source_id"], self.vocabulary))
      for key, value in gt.items():
        groundtruths[key].append(value)
      progress.update(batch)
      if batch % self._log_every == 0:
        logging.info("eval %s", progress.describe("batch"))
    return results, dict(groundtruths)

  def _gather(self, per_replica):
    """Every replica's values on the host, concatenated in replica (= batch) order."""
    return tf.nest.map_structure(
        lambda value: np.concatenate([v.numpy() for v in
                                      self._strategy.experimental_local_results(value)]),
        per_replica)

  def evaluate(self, dataset: tf.data.Dataset, output_dir: Optional[str] = None,
               step: int = 0) -> Dict[str, float]:
    """Metrics of the model's current weights on `dataset` (a finite eval split)."""
    results, groundtruths = self.predict(dataset)
    if not groundtruths:
      raise ValueError("The eval dataset is empty.")
    image_ids = sorted({int(i) for ids in groundtruths["source_id"] for i in ids})
    metrics = self.compute_metrics(results, groundtruths, image_ids)
    logging.info("Step %d on %d images, %d detections: %s", step, len(image_ids), len(results),
                 json.dumps({k: round(v, 4) for k, v in metrics.items()}))
    if output_dir:
      write_outputs(output_dir, step, results, metrics)
    return metrics

  def compute_metrics(self, results, groundtruths, image_ids) -> Dict[str, float]:
    groundtruth = self._groundtruth(groundtruths)
    if self._metric == "lvis":
      return lvis_metrics.evaluate_lvis(groundtruth, results, self._iou_types, image_ids)
    novel_ids = [c for c, novel in zip(self.vocabulary.category_ids, self.vocabulary.is_novel)
                 if novel]
    return coco_metrics.evaluate_coco(groundtruth, results, self._iou_types,
                                      novel_category_ids=novel_ids or None,
                                      image_ids=image_ids)

  def _groundtruth(self, groundtruths):
    if self._annotation_file is None:
      if "segm" in self._iou_types and "masks" not in groundtruths:
        raise ValueError("Mask AP needs ground-truth masks: give Evaluator.annotation_file "
                         "(evaluate.annotation_file, the split's LVIS/COCO JSON) or evaluate "
                         "iou_types=('bbox',).")
      return detections_lib.groundtruth_dataset(groundtruths, self.vocabulary)
    if self._groundtruth_api is None:
      load = (lvis_metrics.load_groundtruth if self._metric == "lvis"
              else coco_metrics.load_groundtruth)
      self._groundtruth_api = load(self._annotation_file)
    return self._groundtruth_api


def inference_step(model, images: tf.Tensor, labels: Dict, text_embeddings: tf.Tensor,
                   base_mask: tf.Tensor, rescore_fn: Optional[RescoreFn] = None
                   ) -> Dict[str, tf.Tensor]:
  """One replica's evaluation inference: proposals -> heads -> (ensemble fusion) -> per-class
  NMS -> masks, scored against `text_embeddings` [C, D] (`base_mask` [C]) given per call.

  Plain TensorFlow with static shapes: what a TPU compiles (tests/test_tpu_contract.py).
  Returns OUTPUT_KEYS, floats as float32 whatever the compute precision.
  """
  outputs = train_step.forward(model, images, labels, training=False,
                               text_embeddings=text_embeddings, base_mask=base_mask)
  if rescore_fn is not None:
    outputs = rescore_fn(images, labels, outputs)
  return _evaluated(outputs)


def global_batch_size(dataset: tf.data.Dataset, num_replicas: int) -> int:
  """A batched dataset's batch size (read from its first batch when not static), rounded up
  to a multiple of `num_replicas`."""
  batch_size = dataset.element_spec[0].shape[0]
  if batch_size is None:
    first = next(iter(dataset.take(1)), None)
    if first is None:
      raise ValueError("The eval dataset is empty.")
    batch_size = int(first[0].shape[0])
  return -(-batch_size // num_replicas) * num_replicas


def static_batches(dataset: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
  """A batched eval dataset of (images, labels) re-batched to exactly `batch_size` images.

  The last batch is filled with copies of the first image, marked True in labels[PADDING_KEY]
  (real images False), so no image is dropped and every batch has the static shape a TPU (or
  XLA) compiles for.
  """
  def mark(is_padding):
    def add_flag(images, labels):
      return images, dict(labels, **{PADDING_KEY: tf.constant(is_padding)})
    return add_flag

  examples = dataset.unbatch()
  padding = examples.take(1).map(mark(True)).repeat(batch_size - 1)
  batches = examples.map(mark(False)).concatenate(padding)
  return batches.batch(batch_size, drop_remainder=True)


def _evaluated(outputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
  """The outputs evaluation needs, floats as float32 whatever the compute precision."""
  return {k: tf.cast(v, tf.float32) if v.dtype.is_floating else v
          for k, v in outputs.items() if k in OUTPUT_KEYS}


def unnormalized_images(images: tf.Tensor) -> np.ndarray:
  """[B, H, W, 3] model inputs (official.vision normalisation) -> uint8 RGB pixels."""
  pixels = (tf.cast(images, tf.float32) * preprocess_ops.STDDEV_RGB + preprocess_ops.MEAN_RGB)
  return tf.cast(tf.clip_by_value(tf.round(pixels), 0, 255), tf.uint8).numpy()


def write_outputs(output_dir: str, step: int, results, metrics: Dict[str, float]) -> None:
  """detections_<step>.json, metrics_<step>.json (both atomic) and TensorBoard scalars."""
  tf.io.gfile.makedirs(output_dir)
  io.write_text_atomic(os.path.join(output_dir, f"detections_{step}.json"), json.dumps(results))
  io.write_text_atomic(metrics_path(output_dir, step),
                       json.dumps({"step": step, **metrics}, indent=1) + "\n")
  writer = tf.summary.create_file_writer(output_dir)
  with writer.as_default(step=step):
    for name, value in metrics.items():
      tf.summary.scalar(name, value)
  writer.close()


def metrics_path(output_dir: str, step: int) -> str:
  return os.path.join(output_dir, f"metrics_{step}.json")


def checkpoint_step(path: str) -> int:
  """The step of a CheckpointManager checkpoint ('…/ckpt-1000' -> 1000)."""
  try:
    return int(path.rsplit("-", 1)[1])
  except (IndexError, ValueError) as e:
    raise ValueError(f"{path}: not a checkpoint named <prefix>-<step>.") from e


def evaluate_checkpoints(model, evaluator: Evaluator,
                         dataset_fn: Callable[[], tf.data.Dataset], model_dir: str,
                         output_dir: str, timeout: Optional[float] = None,
                         last_step: Optional[int] = None) -> Dict[int, Dict[str, float]]:
  """Evaluates each new checkpoint of `model_dir` as it appears.

  Stops after `last_step` (e.g. the run's train_steps) or when no new checkpoint appears for
  `timeout` seconds. Checkpoints that already have metrics in `output_dir` are skipped, so a
  restarted evaluation job picks up where it stopped.
  """
  evaluated = {}
  for path in tf.train.checkpoints_iterator(model_dir, timeout=timeout):
    step = checkpoint_step(path)
    if tf.io.gfile.exists(metrics_path(output_dir, step)):
      logging.info("Step %d already evaluated in %s.", step, output_dir)
    else:
      checkpoint_lib.restore_weights(model, path)
      evaluated[step] = evaluator.evaluate(dataset_fn(), output_dir, step)
    if last_step is not None and step >= last_step:
      break
  return evaluated

