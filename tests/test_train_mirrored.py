"""MirroredStrategy on two logical CPUs matches one device for the same global batch.

Runs in a subprocess: logical devices must be configured before TensorFlow initialises. Both
replicas see the same scene, so every per-replica normaliser (the Model Garden losses normalise
per replica) equals the one-device one and the runs must agree to float precision: this checks
the loss division by the number of replicas, the gradient sum, the replica-mean of the loss
terms and sync BN. A second dataset of two different scenes checks that each replica gets its
own consecutive batch from the checkpointable host iterator.
"""
import json
import os
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = r"""
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import gin
import numpy as np
from tests import train_toy
from tests.conftest import TINY_GIN
from vild.training import strategy as strategy_lib
from vild.training import trainer as trainer_lib

gin.parse_config_file(TINY_GIN)
gin.parse_config(["learning_rate_schedule.base_learning_rate = 0.01",
                  "learning_rate_schedule.warmup_steps = 0",
                  "learning_rate_schedule.decay_boundaries = ()",
                  "learning_rate_schedule.total_steps = 10",
                  "normalization.use_sync_bn = True",
                  "build_vild_model.include_mask = False"] + train_toy.SMALLER)
vocab, embeddings = train_toy.toy_vocabulary(), train_toy.toy_text_embeddings()
model_dir = sys.argv[1]

def trainer(strategy, name, dataset_fn):
  return trainer_lib.ViLDTrainer(f"{model_dir}/{name}", dataset_fn, embeddings, vocab, 2,
                                 strategy, train_steps=2, steps_per_loop=2)

mirrored = strategy_lib.select_strategy("mirrored", devices=["/cpu:0", "/cpu:1"])
one_scene = train_toy.toy_dataset_fn(num_scenes=1)
two = trainer(mirrored, "mirrored", one_scene)
one = trainer(tf.distribute.get_strategy(), "one", one_scene)
for target, source in zip(one.model.variables, two.model.variables):
  target.assign(source.numpy())
initial = [v.numpy() for v in one.model.trainable_variables]
history = {"mirrored": two.train(), "one": one.train()}
updates = {name: [v.numpy() - w for v, w in zip(t.model.trainable_variables, initial)]
           for name, t in (("mirrored", two), ("one", one))}
np.savez(f"{model_dir}/updates.npz", *updates["mirrored"], *updates["one"])

two_scenes = train_toy.toy_dataset_fn(num_scenes=2, shuffle_seed=None)
images, _ = two._next_batch(iter(two_scenes(tf.distribute.InputContext(1, 0, 2))))
per_replica = [x.numpy() for x in mirrored.experimental_local_results(images)]
scenes, _ = train_toy.toy_batch_images(2)
print("RESULT " + json.dumps({
    "replicas": mirrored.num_replicas_in_sync, "history": history,
    "num_trainable": len(initial),
    "replica_shapes": [list(x.shape) for x in per_replica],
    "replica_gets_scene": [bool(np.allclose(x[0], scenes[i])) for i, x in enumerate(per_replica)],
}))
"""


def test_two_replicas_match_one_device(tmp_path):
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
  run = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=600)
  lines = [l for l in run.stdout.splitlines() if l.startswith("RESULT ")]
  assert run.returncode == 0 and lines, run.stderr[-3000:]
  result = json.loads(lines[-1][len("RESULT "):])
  assert result["replicas"] == 2
  mirrored, one = result["history"]["mirrored"], result["history"]["one"]
  assert mirrored["step"] == one["step"] == [1, 2]
  for term in ("total_loss", "text_loss", "box_loss", "rpn_score_loss", "weight_decay_loss",
               "gradient_norm"):
    # 1e-3: official.vision's box losses add 0.01 to their (doubled on one device) positive
    # count, a relative difference of about 0.01 / count; a wrong replica scaling is 2x.
    np.testing.assert_allclose(mirrored[term], one[term], rtol=1e-3, err_msg=term)
  updates = np.load(tmp_path / "updates.npz")
  n = result["num_trainable"]
  for i in range(n):  # Two SGD steps: equal updates = equal gradients.
    mirrored_update, one_update = updates[f"arr_{i}"], updates[f"arr_{n + i}"]
    assert (np.linalg.norm(mirrored_update - one_update)
            <= 1e-2 * np.linalg.norm(one_update) + 1e-7), i
  assert result["replica_shapes"] == [[1, 64, 64, 3], [1, 64, 64, 3]]
  assert result["replica_gets_scene"] == [True, True]
