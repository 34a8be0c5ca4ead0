"""Row: CLIP image-tower crop embeddings per second against this machine's dense matmul rate.

FLOPs per crop are counted from the preset's architecture (patch embedding, attention
projections, attention scores and weighted sums, MLP, output projection; 2 FLOPs per
multiply-add; layer norms, softmax and activations are left out, so the fraction is a
slight underestimate). The machine's rate is the best float32 matmul over a few sizes, with
and without XLA, timed in the same worker interleaved with the teacher, so both see the same
load. Two teacher figures: the XLA-compiled image tower on ready batches (the model's own
speed), and `RegionEmbedder` end to end (crops cut from images at 1x and 1.5x, batched across
images), which is what producing the distillation data costs.
"""
import dataclasses
from typing import Sequence, Tuple

import numpy as np
import tensorflow as tf

from benchmarks import harness
from benchmarks import report
from vild.teacher import clip_config
from vild.teacher import clip_teacher
from vild.teacher import crops


def image_tower_flops(vision: clip_config.VisionConfig, embed_dim: int) -> float:
  """FLOPs (2 x multiply-adds) of one image through the ViT: patchify, blocks, projection."""
  tokens, width = vision.num_patches + 1, vision.width
  patchify = vision.num_patches * vision.patch_size ** 2 * 3 * width
  per_block = (tokens * 4 * width * width          # q, k, v, output projections
               + 2 * tokens * tokens * width        # scores and weighted sum
               + 2 * tokens * width * vision.mlp_dim)
  return 2.0 * (patchify + vision.layers * per_block + width * embed_dim)


def matmul_name(size: int, jit: bool) -> str:
  return f"matmul_{size}" + ("_xla" if jit else "")


def matmul_repeats(size: int, flops_per_call: float) -> int:
  """How many chained [size, size] products make a call of about `flops_per_call`."""
  return max(1, round(flops_per_call / (2.0 * size ** 3)))


def matmul_calls(sizes: Sequence[int], flops_per_call: float) -> harness.Calls:
  """{matmul_name: chained float32 [size, size] products}, compiled with and without XLA.

  Every call does about `flops_per_call` (a teacher batch's worth), so the matmuls and the
  teacher run for similar times and have the same chance of meeting a quiet moment on a
  shared machine. Each product feeds the next, so none can be skipped or merged; the right
  factor is scaled to keep the values bounded.
  """
  calls = {}
  for size in sizes:
    a = tf.random.stateless_normal([size, size], seed=[0, 1])
    b = tf.random.stateless_normal([size, size], seed=[0, 2]) / size ** 0.5
    repeats = matmul_repeats(size, flops_per_call)

    def chain(a=a, b=b, repeats=repeats):
      return tf.foldl(lambda x, _: tf.matmul(x, b), tf.range(repeats), initializer=a)
    for jit in (False, True):
      product = tf.function(chain, jit_compile=jit)
      calls[matmul_name(size, jit)] = lambda product=product: product().numpy()
  return calls


def region_embedding_inputs(num_images: int, boxes_per_image: int, image_size: int = 640):
  """Toy (image, boxes) pairs: random pixels and random boxes of 5-50% of the side."""
  rng = np.random.default_rng(0)
  examples = []
  for _ in range(num_images):
    image = rng.integers(0, 256, (image_size, image_size, 3)).astype(np.uint8)
    corner = rng.uniform(0, image_size * 0.5, (boxes_per_image, 2))
    side = rng.uniform(image_size * 0.05, image_size * 0.5, (boxes_per_image, 2))
    boxes = np.concatenate([corner, np.minimum(corner + side, image_size)], axis=1)
    examples.append((image, boxes.astype(np.float32)))
  return examples


def throughput_calls(preset: str, batch_size: int, matmul_sizes: Sequence[int],
                     embedder_images: int) -> harness.Calls:
  """Worker factory: matmuls, one teacher batch ('tower'), and RegionEmbedder over
  `embedder_images` images whose 1x and 1.5x crops fill exactly two teacher batches
  ('region_embedder')."""
  teacher = clip_teacher.CLIPTeacher.untrained(preset, batch_size=batch_size, jit_compile=True)
  size = teacher.image_size
  batch = tf.random.stateless_uniform([batch_size, size, size, 3], seed=[0, 3], maxval=255.0)
  embedder = crops.RegionEmbedder(teacher, batch_size=batch_size)
  boxes_per_image = batch_size // embedder_images  # x 2 scales = two teacher batches
  examples = region_embedding_inputs(embedder_images, boxes_per_image)
  config = clip_config.preset(preset)
  calls = matmul_calls(matmul_sizes, batch_size * image_tower_flops(config.vision,
                                                                   config.embed_dim))
  calls["tower"] = lambda: teacher.encode_images(batch)
  calls["region_embedder"] = lambda: list(embedder.embed_many(examples))
  return calls


def median_fraction(measured: harness.WorkerReport, settings: "Settings", flops: float) -> float:
  """The image tower's FLOP/s over the best matmul's, both from median times."""
  work = settings.batch_size * flops
  peak = max(2.0 * size ** 3 * matmul_repeats(size, work) / measured.median(matmul_name(size, jit))
             for size in settings.matmul_sizes for jit in (False, True))
  return work / measured.median("tower") / peak


@dataclasses.dataclass(frozen=True)
class Settings:
  preset: str = "vit_b32"
  batch_size: int = 64
  matmul_sizes: Tuple[int, ...] = (1024, 2048, 4096)
  embedder_images: int = 4  # images whose crops fill two teacher batches
  rounds: int = 3


DEFAULT = Settings()
QUICK = Settings(preset="tiny", batch_size=8, matmul_sizes=(128,), embedder_images=2, rounds=1)
TARGET = report.Target(0.60, upper=False)  # at least 60% of the measured matmul rate


def run(settings: Settings, isolated: bool = True) -> report.RowResult:
  label = f"{settings.preset} teacher and matmuls"
  workload = harness.Workload(label, throughput_calls, dict(
      preset=settings.preset, batch_size=settings.batch_size,
      matmul_sizes=settings.matmul_sizes, embedder_images=settings.embedder_images))
  measured = harness.run_interleaved([workload], settings.rounds, isolated=isolated)[label]
  config = clip_config.preset(settings.preset)
  flops = image_tower_flops(config.vision, config.embed_dim)
  tower_batch_flops = settings.batch_size * flops
  matmul_rates = {
      (size, jit): 2.0 * size ** 3 * matmul_repeats(size, tower_batch_flops)
      / measured.best(matmul_name(size, jit)) / 1e9
      for size in settings.matmul_sizes for jit in (False, True)}
  (peak_size, peak_jit), peak = max(matmul_rates.items(), key=lambda item: item[1])
  embedder_crops = 2 * settings.embedder_images * (settings.batch_size // settings.embedder_images)
  crops_per_call = {"tower": settings.batch_size, "region_embedder": embedder_crops}
  rates = {name: count / measured.best(name) for name, count in crops_per_call.items()}
  peak_label = f"matmul {peak_size}² {'XLA' if peak_jit else 'graph'}"
  comparisons = [
      report.Comparison(
          f"{settings.preset} crop embeddings (RegionEmbedder, 1x+1.5x crops, XLA), "
          "GFLOP/s / matmul peak",
          report.Figure(f"{rates['region_embedder']:.1f} crops/s",
                        rates["region_embedder"] * flops / 1e9, "GFLOP/s"),
          report.Figure(peak_label, peak, "GFLOP/s"), TARGET),
      report.Comparison(
          f"{settings.preset} image tower alone (XLA, ready batches), GFLOP/s / matmul peak",
          report.Figure(f"{rates['tower']:.1f} crops/s", rates["tower"] * flops / 1e9,
                        "GFLOP/s"),
          report.Figure(peak_label, peak, "GFLOP/s"), TARGET),
  ]
  details = [
      f"{flops / 1e9:.2f} GFLOP per crop, counted from the {settings.preset} config "
      "(matmuls and convolutions only).",
      "float32 matmul GFLOP/s (best of the rounds): " + ", ".join(
          f"{size}² {'XLA' if jit else 'graph'} {rate:.0f}"
          for (size, jit), rate in matmul_rates.items()),
      f"Crop embeddings per second (best of {settings.rounds}): image tower "
      f"{rates['tower']:.1f}, RegionEmbedder {rates['region_embedder']:.1f} (ratio "
      f"{rates['region_embedder'] / rates['tower']:.2f}: what cutting and resizing the crops "
      "costs on top of the forward passes). With medians "
      "instead of bests, the image tower runs at "
      f"{100 * median_fraction(measured, settings, flops):.0f}% of the matmul peak.",
  ]
  setup = (f"CLIP {settings.preset} image tower with random weights (speed does not depend on "
           f"them), teacher batch {settings.batch_size}, `jit_compile=True`; RegionEmbedder "
           f"cuts {embedder_crops} crops from {settings.embedder_images} 640x640 "
           "images per call. Peak = best float32 matmul, each call chaining products worth one "
           "teacher batch of FLOPs so both sides run for similar times; all timed in one "
           f"process, interleaved, best of {settings.rounds} round(s) (a peak is a best case, "
           "so both sides use their best).")
  return report.RowResult(title="Teacher throughput against the machine's matmul peak",
                          setup=setup, comparisons=comparisons, details=details)
