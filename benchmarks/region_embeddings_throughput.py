r"""Crops/s of the region-embedding tool against its teacher alone: what the tool costs on top.

  python benchmarks/region_embeddings_throughput.py --preset=vit_b32 --num_images=8 \
      --num_proposals=32 --image_size=480,640

Writes `num_images` toy scenes (JPEG, LVIS-like size) with `num_proposals` random proposals
each into a temporary shard, then times (after a warm-up run) (a) the whole local tool,
`region_embeddings.compute_region_embeddings` (decode, crop at 1x and 1.5x, embed, write), and
(b) the teacher alone on the same number of crops, in alternating rounds. It prints both rates
and their ratio. The teacher has random weights: speed does not depend on the values. On a
shared machine the absolute rates drift with the load; the ratio is the steadier number.
"""
import os
import tempfile
import time

import numpy as np
import tensorflow as tf
from absl import app
from absl import flags

from vild.data import tf_example
from vild.data import toy
from vild.distillation_data import region_embeddings
from vild.teacher import clip_config
from vild.teacher import clip_teacher
from vild.teacher import crops

flags.DEFINE_string("preset", "vit_b32", "CLIP preset: " + ", ".join(clip_config.PRESETS))
flags.DEFINE_integer("num_images", 8, "Images in the shard.")
flags.DEFINE_integer("num_proposals", 32, "Proposals per image (paper: 300).")
flags.DEFINE_list("image_size", ["480", "640"], "Image height,width (LVIS: about 480 x 640).")
flags.DEFINE_integer("batch_size", 32, "Crops per teacher call.")
flags.DEFINE_integer("rounds", 2, "Timed rounds of each, alternating.")
FLAGS = flags.FLAGS


def write_shard(path: str, num_images: int, num_proposals: int, size) -> None:
  rng = np.random.default_rng(0)
  with tf.io.TFRecordWriter(path) as writer:
    for seed in range(num_images):
      scene = toy.toy_scene(seed, size=size)
      corner = rng.uniform(0.0, 0.7, size=(num_proposals, 2))
      rois = np.concatenate([corner, corner + rng.uniform(0.05, 0.3, (num_proposals, 2))], 1)
      writer.write(tf_example.encode_example({
          "encoded_image": tf.io.encode_jpeg(scene["image"]).numpy(), "image_format": "jpeg",
          "source_id": seed, "height": size[0], "width": size[1],
          "distill_rois": np.clip(rois, 0, 1), "distill_features": np.zeros([num_proposals, 0]),
      }).SerializeToString())


def main(argv):
  del argv
  size = tuple(int(s) for s in FLAGS.image_size)
  teacher = clip_teacher.CLIPTeacher.untrained(FLAGS.preset, batch_size=FLAGS.batch_size)
  num_crops = FLAGS.num_images * FLAGS.num_proposals * len(crops.VILD_SCALES)
  crops_in = np.random.default_rng(1).uniform(
      0, 255, [num_crops, teacher.image_size, teacher.image_size, 3]).astype(np.float32)
  with tempfile.TemporaryDirectory() as tmp:
    shard = os.path.join(tmp, "in", "bench-00000-of-00001.tfrecord")
    os.makedirs(os.path.dirname(shard))
    write_shard(shard, FLAGS.num_images, FLAGS.num_proposals, size)

    def tool(run):
      region_embeddings.compute_region_embeddings(shard, os.path.join(tmp, f"out{run}"),
                                                  teacher=teacher,
                                                  batch_size=FLAGS.batch_size)

    def teacher_alone(_):
      teacher.encode_images(crops_in)

    rates = {"tool": [], "teacher alone": []}
    for run in range(FLAGS.rounds + 1):  # round 0 warms up (tracing)
      for name, job in (("tool", tool), ("teacher alone", teacher_alone)):
        start = time.perf_counter()
        job(run)
        if run:
          rates[name].append(num_crops / (time.perf_counter() - start))
  tool_rate, teacher_rate = max(rates["tool"]), max(rates["teacher alone"])
  print(f"{FLAGS.preset}, {FLAGS.num_images} images of {size[0]}x{size[1]}, "
        f"{FLAGS.num_proposals} proposals x 2 scales = {num_crops} crops, batch "
        f"{FLAGS.batch_size}, best of {FLAGS.rounds}:")
  print(f"  tool {tool_rate:.1f} crops/s, teacher alone {teacher_rate:.1f} crops/s, ratio "
        f"{tool_rate / teacher_rate:.2f}")


if __name__ == "__main__":
  app.run(main)
