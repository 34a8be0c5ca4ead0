"""Evaluation through MirroredStrategy on two logical CPUs gives the default strategy's
detections and metrics on the same data.

Runs in a subprocess: logical devices must be configured before TensorFlow initialises. Five
scenes in global batches of 4 (2 per replica) against batches of 2 on one device: each replica
sees the batches the single device sees, the last one padded (5 = 4 + 1 real + 3 padding), so
detections must agree to float precision and the metrics exactly. The model's own detections
check that every replica's outputs come back to the host with their own images; an imperfect
oracle (detections from the ground truth passed through the replicas) makes the metrics
non-trivial.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = r"""
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import gin
from tests import train_toy
from tests.conftest import TINY_GIN
from tests.test_eval_metrics import imperfect_oracle
from vild import vocabulary as vocabulary_lib
from vild.evaluation import evaluator as evaluator_lib
from vild.modeling import factory
from vild.training import strategy as strategy_lib

gin.parse_config_file(TINY_GIN)
images, labels, annotation = train_toy.toy_eval_data(num_scenes=5)
path = sys.argv[1] + "/val.json"
with open(path, "w") as f:
  json.dump(annotation, f)
vocab = vocabulary_lib.Vocabulary.from_categories(annotation["categories"])
text = train_toy.toy_text_embeddings()
examples = tf.data.Dataset.from_tensor_slices((images, labels))

strategies = {"default": (tf.distribute.get_strategy(), 2),
              "mirrored": (strategy_lib.select_strategy("mirrored",
                                                        devices=["/cpu:0", "/cpu:1"]), 4)}
weights, out = None, {}
for name, (strategy, batch) in strategies.items():
  with strategy.scope():
    model = factory.build_vild_model(image_size=train_toy.IMAGE_SIZE)
  if weights is None:
    weights = [v.numpy() for v in model.variables]
  for variable, value in zip(model.variables, weights):
    variable.assign(value)
  dataset = examples.batch(batch)
  model_eval = evaluator_lib.Evaluator(model, vocab, text, metric="lvis", annotation_file=path,
                                       strategy=strategy)
  results, groundtruths = model_eval.predict(dataset)
  oracle_eval = evaluator_lib.Evaluator(model, vocab, text, metric="lvis", annotation_file=path,
                                        strategy=strategy, rescore_fn=imperfect_oracle)
  out[name] = {"replicas": strategy.num_replicas_in_sync, "results": results,
               "image_ids": [int(i) for ids in groundtruths["source_id"] for i in ids],
               "model_metrics": model_eval.evaluate(dataset),
               "oracle_metrics": oracle_eval.evaluate(dataset)}
print("RESULT " + json.dumps(out))
"""


def _key(result):
  return (result["image_id"], -result["score"], result["category_id"], result["bbox"])


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
  run = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path_factory.mktemp("eval"))],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
  lines = [l for l in run.stdout.splitlines() if l.startswith("RESULT ")]
  assert run.returncode == 0 and lines, run.stderr[-3000:]
  return json.loads(lines[-1][len("RESULT "):])


def test_mirrored_evaluation_matches_the_default_strategy(evaluated):
  one, two = evaluated["default"], evaluated["mirrored"]
  assert (one["replicas"], two["replicas"]) == (1, 2)
  # Every image once, none of the padding copies.
  assert sorted(one["image_ids"]) == sorted(two["image_ids"]) == [1, 2, 3, 4, 5]
  assert one["results"] and len(one["results"]) == len(two["results"])
  for a, b in zip(sorted(one["results"], key=_key), sorted(two["results"], key=_key)):
    assert (a["image_id"], a["category_id"]) == (b["image_id"], b["category_id"])
    np.testing.assert_allclose(a["bbox"] + [a["score"]], b["bbox"] + [b["score"]], atol=1e-4)
    assert a["segmentation"] == b["segmentation"]
  assert one["model_metrics"] == two["model_metrics"]
  assert 0.05 < one["oracle_metrics"]["bbox/AP"] < 0.95
  assert one["oracle_metrics"] == two["oracle_metrics"]
