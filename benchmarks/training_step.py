"""Row: one training step of ViLD against the stock Mask R-CNN with the same backbone, input
size, batch, sampled RoIs and head sizes.

ViLD's step adds the cosine text classifier, M distill RoIs (300 in the paper) through the
region tower ('shared', ViLD) or through a second tower ('separate', ViLD-ensemble), and the L1
distillation loss (`Settings.models` may add 'none', ViLD-text). Each model trains in its own
process (its peak memory is its own); steps are interleaved across the processes. A breakdown
worker times the per-RoI heads alone at each RoI count, to show where the extra time goes.
"""
import dataclasses
import os
from typing import Dict, List, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tf_keras

import benchmarks
from benchmarks import harness
from benchmarks import report
from benchmarks import stock_maskrcnn
from vild import losses as losses_lib
from vild.data import targets  # noqa: F401  (gin: build_training_labels, before parsing)
from vild.data import toy
from vild.modeling import factory
from vild.training import train_step as train_step_lib

MODELS = ("stock", "none", "shared", "separate")
LABELS = {"stock": "stock Mask R-CNN", "none": "ViLD-text", "shared": "ViLD (shared)",
          "separate": "ViLD-ensemble (separate)"}
BREAKDOWN = "per-RoI heads"


def training_batch(image_size: int, batch_size: int, num_distill_rois: int,
                   embedding_dim: int, num_objects: int = 8) -> Tuple[tf.Tensor, Dict]:
  """Toy scenes with the input pipeline's labels and M valid distill RoIs per image.

  Every distill RoI is a real box (precomputed proposals fill all M slots on LVIS images),
  so the distillation branch does its full work.
  """
  images, labels = toy.toy_batch(range(batch_size), size=(image_size, image_size),
                                 num_objects=num_objects)
  rng = np.random.default_rng(0)
  corner = rng.uniform(0, image_size * 0.6, size=(batch_size, num_distill_rois, 2))
  side = rng.uniform(image_size * 0.05, image_size * 0.4, size=(batch_size, num_distill_rois, 2))
  boxes = np.concatenate([corner, np.minimum(corner + side, image_size)], axis=-1)
  labels["distill_rois"] = tf.constant(boxes, tf.float32)
  labels["distill_features"] = tf.constant(
      rng.normal(size=(batch_size, num_distill_rois, embedding_dim)), tf.float32)
  return images, labels


def describe_model(gin_files: Sequence[str]) -> str:
  if not gin_files:
    return "R50-FPN with the paper's heads (gin defaults)"
  return "model of " + ", ".join(os.path.relpath(f, benchmarks.REPO) for f in gin_files)


def unit_rows(num_rows: int, dim: int, seed: int = 0) -> tf.Tensor:
  """[num_rows, dim] random unit vectors: text embeddings of random weights."""
  rows = np.random.default_rng(seed).normal(size=(num_rows, dim)).astype(np.float32)
  return tf.constant(rows / np.linalg.norm(rows, axis=1, keepdims=True))


def step_calls(model_kind: str, image_size: int, batch_size: int, num_classes: int,
               num_distill_rois: int, gin_files: Sequence[str] = (),
               gin_bindings: Sequence[str] = (), policy: str = "float32",
               jit_compile: bool = False) -> harness.Calls:
  """Worker factory: {'step': one compiled training step of `model_kind`} under the Keras
  dtype `policy`, XLA-compiled with `jit_compile`."""
  harness.configure_gin(gin_files, gin_bindings)
  tf_keras.mixed_precision.set_global_policy(policy)  # before the model is built
  embedding_dim = stock_maskrcnn.effective_arguments(factory.build_vild_model)["embedding_dim"]
  images, labels = training_batch(image_size, batch_size, num_distill_rois, embedding_dim)
  optimizer = tf_keras.optimizers.SGD(learning_rate=0.01, momentum=0.9)
  if model_kind == "stock":
    model = stock_maskrcnn.build_stock_maskrcnn(num_classes)
    loss_fn = stock_maskrcnn.StockMaskRCNNLoss()
    losses = lambda: stock_maskrcnn.compute_losses(model, loss_fn, images, labels)  # noqa: E731
    step = tf.function(lambda: stock_maskrcnn.train_step(model, optimizer, loss_fn, images,
                                                         labels)["total_loss"],
                       jit_compile=jit_compile)
  else:
    model = factory.build_vild_model(distillation=model_kind)
    loss_fn = losses_lib.ViLDLoss()
    text = unit_rows(num_classes, embedding_dim)
    if model_kind == "none":
      labels = {k: v for k, v in labels.items() if not k.startswith("distill_")}
    losses = lambda: train_step_lib.compute_losses(  # noqa: E731
        model, loss_fn, images, labels, text_embeddings=text)
    step = tf.function(lambda: train_step_lib.train_step(
        model, optimizer, loss_fn, images, labels, text_embeddings=text)["total_loss"],
                       jit_compile=jit_compile)
  losses()  # one eager forward creates the variables the optimizer must know before tracing
  optimizer.build(model.trainable_variables)
  return {"step": lambda: step().numpy()}


def head_calls(batch_size: int, num_classes: int, num_distill_rois: int,
               gin_files: Sequence[str] = (), gin_bindings: Sequence[str] = ()) -> harness.Calls:
  """Worker factory for the breakdown: forward + backward of the per-RoI heads alone on
  random RoI features, at each RoI count the models use (HEADS names the calls)."""
  harness.configure_gin(gin_files, gin_bindings)
  num_rois = factory.build_roi_sampler().get_config()["num_sampled_rois"]
  model_args = stock_maskrcnn.effective_arguments(factory.build_vild_model)
  channels = stock_maskrcnn.effective_arguments(factory.build_fpn)["num_filters"]
  crop = model_args["roi_crop_size"]
  stock_head = stock_maskrcnn.build_detection_head(num_classes)
  tower = factory.build_region_tower(model_args["embedding_dim"])

  def head_step(layer, count):
    features = tf.random.stateless_normal([batch_size, count, crop, crop, channels], [0, count])
    valid = tf.ones([batch_size, count], tf.bool)

    @tf.function
    def step():
      with tf.GradientTape() as tape:
        if layer is tower:
          outputs = list(layer(features, valid_mask=valid, training=True).values())
        else:
          outputs = list(layer(features, training=True))
        loss = tf.add_n([tf.reduce_sum(v) for v in outputs])
      return tape.gradient(loss, layer.trainable_variables)

    def run_step():
      for gradient in step():
        gradient.numpy()
      return {"rois": count}
    return run_step

  return {"stock head, sampled RoIs": head_step(stock_head, num_rois),
          "region tower, sampled RoIs": head_step(tower, num_rois),
          "region tower, sampled + distill RoIs": head_step(tower, num_rois + num_distill_rois),
          "region tower, distill RoIs": head_step(tower, num_distill_rois)}


@dataclasses.dataclass(frozen=True)
class Settings:
  image_size: int = 640
  batch_size: int = 1
  num_classes: int = 866  # LVIS base categories: the training vocabulary
  num_distill_rois: int = 300
  models: Tuple[str, ...] = ("stock", "shared", "separate")
  rounds: int = 3
  breakdown: bool = True
  gin_files: Tuple[str, ...] = ()
  gin_bindings: Tuple[str, ...] = ()


DEFAULT = Settings()
QUICK = Settings(image_size=128, num_classes=20, num_distill_rois=16, rounds=1,
                 models=("stock", "shared"), gin_files=(benchmarks.TINY_GIN,))
TARGET = report.Target(1.15)  # ViLD's step at most 1.15x the stock step


def breakdown(reports, settings: Settings) -> List[str]:
  """Detail lines: the per-RoI heads' times, and how much of ViLD's extra CPU time the
  distill RoIs' pass through the region tower explains."""
  heads = reports[BREAKDOWN]
  times = {name: heads.median(name, cpu=True) for name in heads.cpu_seconds}
  lines = ["Per-RoI heads alone, forward + backward (CPU s, median): " + "; ".join(
      f"{name} ({heads.facts[name]['rois']}) {seconds:.2f}" for name, seconds in times.items())]
  if "shared" in settings.models:
    extra_step = (reports[LABELS["shared"]].median("step", cpu=True)
                  - reports[LABELS["stock"]].median("step", cpu=True))
    extra_tower = (times["region tower, sampled + distill RoIs"]
                   - times["region tower, sampled RoIs"])
    stock_step = reports[LABELS["stock"]].median("step", cpu=True)
    sampled = heads.facts["region tower, sampled RoIs"]["rois"]
    lines.append(
        f"Where ViLD's time goes: ViLD (shared) adds {extra_step:.2f} CPU s per step over "
        f"stock; the distill RoIs' extra pass through the region tower accounts for "
        f"{extra_tower:.2f} ({settings.num_distill_rois} more RoIs on top of {sampled}: "
        "the method's own cost, the same tower computing on more RoIs). Everything else ViLD "
        "adds (cosine classifier, L1 loss, its seeded RoI sampler) comes to the difference, "
        f"{extra_step - extra_tower:.2f} CPU s ({100 * (extra_step - extra_tower) / stock_step:.0f}"
        "% of the stock step; medians of separate calls, so noise can make it negative).")
  return lines


def run(settings: Settings, isolated: bool = True) -> report.RowResult:
  common = dict(batch_size=settings.batch_size, num_classes=settings.num_classes,
                num_distill_rois=settings.num_distill_rois, gin_files=settings.gin_files,
                gin_bindings=settings.gin_bindings)
  workloads = [harness.Workload(LABELS[kind], step_calls, dict(
      model_kind=kind, image_size=settings.image_size, **common)) for kind in settings.models]
  if settings.breakdown:
    workloads.append(harness.Workload(BREAKDOWN, head_calls, common))
  reports = harness.run_interleaved(workloads, settings.rounds, isolated=isolated)
  stock = report.Side("stock", reports[LABELS["stock"]], "step")
  comparisons, details = [], []
  for kind in settings.models:
    measured = reports[LABELS[kind]]
    details.append(
        f"{LABELS[kind]}: {measured.median('step', cpu=True):.2f} CPU s/step, "
        f"{measured.median('step'):.2f} s/step wall (medians of "
        f"{len(measured.seconds['step'])}), peak RSS {report.gibibytes(measured.peak_rss)}")
    if kind != "stock":
      comparisons += report.time_and_memory(
          f"training step: {LABELS[kind]} / stock", report.Side(LABELS[kind], measured, "step"),
          stock, cpu_target=TARGET)
  if settings.breakdown:
    details += breakdown(reports, settings)
  setup = (f"{describe_model(settings.gin_files)}, {settings.image_size}x"
           f"{settings.image_size}, batch {settings.batch_size}, {settings.num_classes} "
           f"training classes, M = {settings.num_distill_rois} distill RoIs (all valid), SGD "
           "momentum 0.9, float32; each model in its own process, "
           f"{settings.rounds} interleaved round(s) after one warm-up step; the target is "
           "judged on CPU time.")
  return report.RowResult(title="Training step: ViLD against the stock Mask R-CNN",
                          setup=setup, comparisons=comparisons, details=details)
