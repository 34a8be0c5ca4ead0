"""Quick look at vild: build a tiny ViLD from gin, train it briefly on generated scenes, detect.

Shows the ViLD mechanics end to end in about a minute on a laptop CPU: the classifier is a text
embedding matrix, so the trained model detects with a different vocabulary without retraining.
The text embeddings here come from a bag-of-words stand-in (one random vector per word, summed),
not a CLIP teacher; the full pipeline with a trained teacher is scripts/run_synthetic_benchmark.py.

  python scripts/demo.py [--gin_file=configs/tiny/vild_tiny.gin] [--steps=60]
"""
import time

from vild import cpu_kernels
from vild.utils import cli

cpu_kernels.prefer_onednn()  # a tiny model: oneDNN halves its step on AVX2 CPUs
cli.quiet_native_logs()  # before TensorFlow loads: it reads its C++ log level once

from absl import flags  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

from vild import losses  # noqa: E402
from vild import vocabulary as vocabulary_lib  # noqa: E402
from vild.data import augmentation  # noqa: E402
from vild.data import toy  # noqa: E402
from vild.modeling import factory  # noqa: E402
from vild.training import train_step  # noqa: E402
from vild.utils import gin_config  # noqa: E402

FLAGS = flags.FLAGS
gin_config.define_flags()  # --gin_file (default configs/tiny/vild_tiny.gin), --gin_param
flags.DEFINE_integer("steps", 60, "Training steps on the generated scenes.")
flags.DEFINE_integer("seed", 0, "Random seed.")

IMAGE_SIZE = (128, 128)


def bag_of_words_embeddings(names, dim, seed=0):
  """[C, dim]: sum of a fixed random unit vector per word (a stand-in for a text encoder)."""
  rng = np.random.default_rng(seed)
  words = sorted({w for n in names for w in n.split()})
  table = {w: rng.normal(size=dim) for w in words}
  matrix = np.stack([sum(table[w] for w in n.split()) for n in names])
  return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def print_detections(title, out, names, limit=5):
  print(f"\n{title}")
  print(f"  {'class':<16} {'score':>6}  box (ymin, xmin, ymax, xmax)")
  for i in range(min(limit, int(out["num_detections"][0]))):
    box = ", ".join(f"{v:5.1f}" for v in out["detection_boxes"][0, i].numpy())
    name = names[int(out["detection_classes"][0, i]) - 1]
    print(f"  {name:<16} {float(out['detection_scores'][0, i]):6.3f}  ({box})")


def main(_):
  tf.random.set_seed(FLAGS.seed)
  gin_files = FLAGS.gin_file or ["configs/tiny/vild_tiny.gin"]
  gin_config.parse(gin_files, FLAGS.gin_param)
  start = time.time()
  model = factory.build_vild_model(image_size=IMAGE_SIZE)
  params = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
  print(f"Built ViLD ({model.distillation} distillation, {params:,} trainable parameters, "
        f"embedding dim {model.embedding_dim}) from {', '.join(gin_files)} "
        f"in {time.time() - start:.1f}s.")

  vocabulary = vocabulary_lib.Vocabulary.from_names(toy.TOY_CATEGORIES)
  model.set_text_embeddings(bag_of_words_embeddings(vocabulary.names, model.embedding_dim),
                            base_mask=vocabulary.base_mask, source="bag-of-words demo")
  print(f"Vocabulary: {vocabulary.describe()}: {', '.join(vocabulary.names)}")

  images, labels = toy.toy_batch([FLAGS.seed, FLAGS.seed + 1], IMAGE_SIZE,
                                 num_distill_rois=8, embedding_dim=model.embedding_dim)
  optimizer = tf_keras.optimizers.Adam(2e-3)
  optimizer.build(model.trainable_variables)
  loss_fn = losses.ViLDLoss()
  step = tf.function(lambda: train_step.train_step(model, optimizer, loss_fn, images, labels))
  print(f"\nTraining {FLAGS.steps} steps on 2 generated scenes "
        "(the first step traces the graph)...")
  for i in range(FLAGS.steps):
    terms = step()
    if i in (0, FLAGS.steps - 1) or (i + 1) % 10 == 0:
      parts = "  ".join(f"{k.replace('_loss', '')} {float(v):.3f}" for k, v in terms.items()
                        if k not in ("model_loss", "total_loss"))
      print(f"  step {i + 1:3d}  loss {float(terms['total_loss']):7.3f}  ({parts})")

  image_shape = augmentation.content_size(labels["image_info"][:1])
  out = model(images[:1], image_shape, training=False)
  truth = ", ".join(vocabulary.names[int(c) - 1] for c in labels["gt_classes"][0] if c > 0)
  print_detections(f"Detections on a training scene (ground truth: {truth}):", out,
                   vocabulary.names)

  other = ["disc", "square"]  # shape words alone: a vocabulary never trained on
  model.set_text_embeddings(bag_of_words_embeddings(other, model.embedding_dim),
                            base_mask=[True] * len(other), source="new vocabulary")
  out = model(images[:1], image_shape, training=False)
  print_detections(f"Same weights, new vocabulary {other}:", out, other)
  print(f"\nDone in {time.time() - start:.1f}s.")


if __name__ == "__main__":
  cli.run(main)
