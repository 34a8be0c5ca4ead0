r"""How reproducible training is with and without `set_determinism`, and what it costs.

  python -m benchmarks.determinism [--runs=4] [--steps=20] [--work_dir=/tmp/vild_determinism]

Trains the tiny config (configs/tiny/synthetic_vild_text.gin: batch 8, 128 px) on a small
synthetic world `--runs` times per setting, each run `scripts/train.py` in its own process, and
prints a table per setting: the child processes' CPU seconds per run (user + system, TensorFlow
import and tracing included, the same work in both settings; wall time on a shared machine
says little), how many runs equal the first bit for bit (every step's total_loss, and the
final weights and optimizer slots), and the largest |difference| in total_loss. TensorFlow's
default CPU kernels are used unless TF_ENABLE_ONEDNN_OPTS is set. docs/train.md quotes it.
"""
import glob
import os
import resource
import shutil
import subprocess
import sys
from typing import Dict, List

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from vild import text_embeddings  # noqa: E402
from vild import vocabulary as vocabulary_lib  # noqa: E402
from vild.data import conversion  # noqa: E402
from vild.data import synthetic  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs", "tiny", "synthetic_vild_text.gin")
SETTINGS = {"default": "set_determinism.deterministic = False",
            "deterministic": "set_determinism.deterministic = True"}

flags.DEFINE_integer("runs", 4, "Runs per setting.")
flags.DEFINE_integer("steps", 20, "Training steps per run.")
flags.DEFINE_string("work_dir", "/tmp/vild_determinism", "Scratch directory (replaced).")
FLAGS = flags.FLAGS


def make_world(root: str) -> List[str]:
  """A 12-image synthetic world as TFRecords and 32-d text embeddings; the gin bindings."""
  synthetic.generate(root, synthetic.WorldSpec(num_train_images=12, num_val_images=4,
                                               num_crops=4, image_size=64))
  records = os.path.join(root, "tfrecords")
  conversion.convert(os.path.join(root, "train.json"), os.path.join(root, "images"), records,
                     "train", base_only=True)
  vocabulary = vocabulary_lib.Vocabulary.from_file(os.path.join(root, "train.json"))
  embeddings = os.path.join(root, "text_embeddings.npy")
  text_embeddings.save(embeddings, np.random.default_rng(0).normal(size=(len(vocabulary), 32)),
                       vocabulary, teacher="random")
  return [f"training_vocabulary.text_embeddings_path = '{embeddings}'",
          f"train.train_file_pattern = '{records}/train-*'"]


def train(model_dir: str, bindings: List[str]) -> float:
  """Runs scripts/train.py; returns its CPU seconds."""
  before = resource.getrusage(resource.RUSAGE_CHILDREN)
  args = [sys.executable, os.path.join(REPO, "scripts", "train.py"), f"--model_dir={model_dir}",
          f"--gin_file={CONFIG}"] + [f"--gin_param={b}" for b in bindings]
  result = subprocess.run(args, env=dict(os.environ, PYTHONPATH=REPO), capture_output=True,
                          text=True, check=False)
  if result.returncode:
    raise RuntimeError(f"{' '.join(args)} failed:\n{result.stderr[-3000:]}")
  after = resource.getrusage(resource.RUSAGE_CHILDREN)
  return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def losses(model_dir: str) -> np.ndarray:
  """total_loss per step, from the run's TensorBoard events."""
  values: Dict[int, float] = {}
  for path in glob.glob(os.path.join(model_dir, "train", "events.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == "loss/total_loss":
          values[event.step] = float(tf.make_ndarray(value.tensor))
  return np.array([values[s] for s in sorted(values)])


def same_weights(a: str, b: str) -> bool:
  """Whether two runs' final checkpoints hold bitwise equal weights and optimizer slots."""
  first = tf.train.load_checkpoint(tf.train.latest_checkpoint(a))
  second = tf.train.load_checkpoint(tf.train.latest_checkpoint(b))
  keys = [k for k in first.get_variable_to_shape_map()
          if k.startswith(("model/", "optimizer/")) and k.endswith("VARIABLE_VALUE")]
  return all(np.array_equal(first.get_tensor(k), second.get_tensor(k)) for k in keys)


def main(argv):
  del argv
  shutil.rmtree(FLAGS.work_dir, ignore_errors=True)
  world = make_world(os.path.join(FLAGS.work_dir, "world"))
  common = world + [f"ViLDTrainer.train_steps = {FLAGS.steps}", "ViLDTrainer.steps_per_loop = 1",
                    f"ViLDTrainer.checkpoint_interval = {FLAGS.steps}"]
  print(f"| setting | CPU s per run (median, range) | runs bitwise equal to the first | "
        f"max abs diff total_loss | ({FLAGS.runs} runs x {FLAGS.steps} steps, "
        f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset')}) |")
  print("|---|---|---|---|---|")
  for name, binding in SETTINGS.items():
    dirs = [os.path.join(FLAGS.work_dir, f"{name}_{i}") for i in range(FLAGS.runs)]
    cpu = [train(d, common + [binding]) for d in dirs]
    runs = [losses(d) for d in dirs]
    equal = sum(np.array_equal(runs[0], r) and same_weights(dirs[0], d)
                for r, d in zip(runs, dirs))
    worst = max(float(np.max(np.abs(runs[0] - r))) for r in runs)
    print(f"| {name} | {np.median(cpu):.1f} ({min(cpu):.1f}-{max(cpu):.1f}) | "
          f"{equal} of {FLAGS.runs} | {worst:.3g} | |", flush=True)


if __name__ == "__main__":
  app.run(main)
