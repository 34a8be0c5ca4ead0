"""Where a run executes and in what precision.

Selection ('auto'): a TPU when an address is given or the machine is a TPU VM, then
MultiWorkerMirroredStrategy when TF_CONFIG describes a cluster, then MirroredStrategy over the
local GPUs, else TensorFlow's default (CPU) strategy. The strategies themselves are built by
the Model Garden's `official.common.distribute_utils`.

Precision: bfloat16 mixed precision on TPU, float32 elsewhere, unless configured. Loss terms
are always computed in float32 (vild.losses casts them).
"""
import glob
import json
import os
from typing import Optional, Sequence

from absl import logging
import gin
import tensorflow as tf
import tf_keras

from official.common import distribute_utils

STRATEGIES = ("auto", "tpu", "multi_worker_mirrored", "mirrored", "default")
PRECISIONS = ("auto", "float32", "mixed_bfloat16")


def on_tpu_vm() -> bool:
  """True on a Cloud TPU VM (TPU device files or the TPU runtime's environment)."""
  return bool(glob.glob("/dev/accel*") or os.environ.get("TPU_ACCELERATOR_TYPE")
              or os.environ.get("TPU_NAME"))


def cluster_size() -> int:
  """Number of tasks TF_CONFIG describes (0 without TF_CONFIG)."""
  raw = os.environ.get("TF_CONFIG")
  if not raw:
    return 0
  try:
    cluster = json.loads(raw).get("cluster", {})
  except json.JSONDecodeError as e:
    raise ValueError(f"TF_CONFIG is not valid JSON ({e}); see "
                     "https://www.tensorflow.org/guide/distributed_training.") from e
  return sum(len(cluster.get(role, [])) for role in ("chief", "worker"))


def resolve_name(name: str = "auto", tpu: Optional[str] = None) -> str:
  """The strategy 'auto' stands for on this machine."""
  if name not in STRATEGIES:
    raise ValueError(f"strategy {name!r} is not one of {STRATEGIES}.")
  if name != "auto":
    return name
  if tpu or on_tpu_vm():
    return "tpu"
  if cluster_size() > 1:
    return "multi_worker_mirrored"
  if tf.config.list_physical_devices("GPU"):
    return "mirrored"
  return "default"


@gin.configurable
def select_strategy(name: str = "auto", tpu: Optional[str] = None,
                    devices: Optional[Sequence[str]] = None) -> tf.distribute.Strategy:
  """Builds the strategy; `devices` pins MirroredStrategy's devices (e.g. two logical CPUs)."""
  name = resolve_name(name, tpu)
  if name == "tpu":
    strategy = distribute_utils.get_distribution_strategy("tpu", tpu_address=tpu or "local")
  elif name == "multi_worker_mirrored":
    strategy = distribute_utils.get_distribution_strategy("multi_worker_mirrored")
  elif name == "mirrored":
    devices = list(devices) if devices else [
        d.name for d in tf.config.list_logical_devices("GPU")]
    if not devices:
      raise ValueError("strategy 'mirrored' found no GPU; pass devices=['/cpu:0', ...] or use "
                       "strategy 'default'.")
    strategy = tf.distribute.MirroredStrategy(devices=devices)
  else:
    strategy = tf.distribute.get_strategy()
  logging.info("Distribution strategy: %s (%s) with %d replicas.", name,
               type(strategy).__name__, strategy.num_replicas_in_sync)
  return strategy


def is_tpu(strategy: tf.distribute.Strategy) -> bool:
  return isinstance(strategy, (tf.distribute.TPUStrategy,
                               tf.distribute.experimental.TPUStrategy))


def num_input_hosts(strategy: tf.distribute.Strategy) -> int:
  """How many hosts feed the replicas (1 for one machine; >1 on TPU pods and clusters)."""
  if is_tpu(strategy):
    return strategy.extended.num_hosts
  if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return max(cluster_size(), 1)
  return 1


@gin.configurable
def set_precision(strategy: tf.distribute.Strategy, policy: str = "auto") -> str:
  """Sets the Keras global dtype policy before the model is built; returns its name.

  'auto' is mixed_bfloat16 on TPU and float32 elsewhere (float16 would need loss scaling,
  which this trainer does not do).
  """
  if policy not in PRECISIONS:
    raise ValueError(f"set_precision.policy: {policy!r} is not one of {PRECISIONS}.")
  if policy == "auto":
    policy = "mixed_bfloat16" if is_tpu(strategy) else "float32"
  tf_keras.mixed_precision.set_global_policy(policy)
  logging.info("Precision policy: %s.", policy)
  return policy


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """True on the task that writes summaries and the real checkpoints."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.task_type:
    return True
  if resolver.task_type == "chief":
    return True
  has_chief = "chief" in resolver.cluster_spec().as_dict()
  return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief
