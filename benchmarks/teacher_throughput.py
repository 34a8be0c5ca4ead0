r"""Crop-embedding throughput of the CLIP image tower against this machine's matmul peak.

  python benchmarks/teacher_throughput.py --preset=vit_b32 --batch_size=32 --batches=5

Builds the preset with random weights (speed does not depend on the values), embeds
`batches` batches of random crops at the tower's input size with and without XLA, and prints
images/s of the fastest batch, the tower's GFLOP/s and that as a fraction of a float32
matmul's GFLOP/s measured (fastest of 10) on the same machine. At LVIS scale (about 60 million crops) images/s is what decides the
cost of the distillation data.
"""
import time

import numpy as np
import tensorflow as tf
from absl import app
from absl import flags

from vild.teacher import clip_config
from vild.teacher import clip_teacher

flags.DEFINE_string("preset", "vit_b32", "CLIP preset: " + ", ".join(clip_config.PRESETS))
flags.DEFINE_integer("batch_size", 32, "Crops per teacher call.")
flags.DEFINE_integer("batches", 5, "Timed batches after a warm-up one; the fastest counts.")
flags.DEFINE_integer("matmul_size", 4096, "Side of the square matmul that measures the peak.")
FLAGS = flags.FLAGS


def image_tower_flops(vision: clip_config.VisionConfig, embed_dim: int) -> float:
  """Multiply-adds x 2 of one image through the ViT (patchify, blocks, projection)."""
  tokens, width = vision.num_patches + 1, vision.width
  patchify = vision.num_patches * vision.patch_size ** 2 * 3 * width
  per_block = (tokens * 4 * width * width          # q, k, v, output projections
               + 2 * tokens * tokens * width        # scores and weighted sum
               + 2 * tokens * width * vision.mlp_dim)
  return 2.0 * (patchify + vision.layers * per_block + width * embed_dim)


def best_seconds(fn, repeats: int) -> float:
  """Fastest of `repeats` calls: the machine is shared, so the minimum is the least noisy."""
  fn()  # trace / compile / warm up
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return min(times)


def matmul_gflops(size: int) -> float:
  a = tf.random.normal([size, size])
  b = tf.random.normal([size, size])
  matmul = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
  return 2.0 * size ** 3 / best_seconds(lambda: matmul().numpy(), 10) / 1e9


def images_per_second(teacher, images: tf.Tensor, batches: int) -> float:
  return int(images.shape[0]) / best_seconds(lambda: teacher.encode_images(images), batches)


def main(argv):
  del argv
  config = clip_config.preset(FLAGS.preset)
  size = config.vision.image_size
  images = tf.constant(np.random.default_rng(0).integers(
      0, 256, (FLAGS.batch_size, size, size, 3)).astype(np.float32))
  flops = image_tower_flops(config.vision, config.embed_dim)
  peak = matmul_gflops(FLAGS.matmul_size)
  print(f"{FLAGS.preset}: {flops / 1e9:.2f} GFLOP per image; float32 matmul "
        f"{FLAGS.matmul_size}^2: {peak:.1f} GFLOP/s")
  for jit in (False, True):
    teacher = clip_teacher.CLIPTeacher.untrained(FLAGS.preset, batch_size=FLAGS.batch_size,
                                                 jit_compile=jit)
    rate = images_per_second(teacher, images, FLAGS.batches)
    print(f"jit_compile={jit!s:5}: {rate:7.1f} images/s, {rate * flops / 1e9:6.1f} GFLOP/s "
          f"({100 * rate * flops / 1e9 / peak:.0f}% of matmul)")


if __name__ == "__main__":
  app.run(main)
