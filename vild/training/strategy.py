"""Where a run executes and in what precision.

Selection ('auto'): a TPU when an address is given or the machine is a TPU VM, then
MultiWorkerMirroredStrategy when TF_CONFIG describes a cluster, then MirroredStrategy over the
local GPUs, else TensorFlow's default (CPU) strategy. The strategies themselves are built by
the Model Garden's `official.common.distribute_utils`.

Precision ('auto', `set_precision.policy`): mixed bfloat16 wherever the hardware computes in
bfloat16 natively: TPUs, GPUs of compute capability 8.0 or newer, and CPUs with AVX512_BF16 or
AMX-BF16 instructions when TensorFlow's oneDNN kernels are on (without them, or without those
instructions, bfloat16 is emulated and slower than float32); float32 elsewhere.
'mixed_float16' (older GPUs) trains with dynamic loss scaling (`with_loss_scaling`). Loss
terms, the text-embedding matrix and the cosine logits are float32 under every policy
(vild.training.train_step, vild.modeling.text_classifier): at temperature 0.01 a bfloat16
cosine's rounding (up to 2^-8) would move a logit by up to 0.4.

XLA ('auto', `ViLDTrainer.jit_compile`): TPUStrategy compiles every replica step itself; on
GPUs the step is compiled with `tf.function(jit_compile=True)`; on CPUs it is not (measured
slower there: `python -m benchmarks.run --rows=precision_xla`).
"""
import glob
import json
import os
from typing import List, Optional, Sequence, Tuple, Union

from absl import logging
import gin
import tensorflow as tf
import tf_keras

from official.common import distribute_utils

STRATEGIES = ("auto", "tpu", "multi_worker_mirrored", "mirrored", "default")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
JIT_COMPILE = ("auto", True, False)
# /proc/cpuinfo flags of instructions that compute in bfloat16 (oneDNN uses them).
BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


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


def device_type(strategy: tf.distribute.Strategy) -> str:
  """'TPU', 'GPU' or 'CPU': where the strategy's replicas run."""
  if is_tpu(strategy):
    return "TPU"
  try:
    devices = strategy.extended.worker_devices
  except RuntimeError:  # The default strategy: TensorFlow places ops on a GPU if there is one.
    return "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
  return "GPU" if any("GPU" in d.upper() for d in devices) else "CPU"


def cpu_bfloat16_flags(cpuinfo: str = "/proc/cpuinfo") -> List[str]:
  """The native bfloat16 instruction sets this CPU reports (BFLOAT16_CPU_FLAGS), if any."""
  try:
    with open(cpuinfo, encoding="utf-8") as f:  # A kernel file, never a data path.
      lines = f.read().splitlines()
  except OSError:
    return []
  flags = {flag for line in lines if line.startswith("flags")
           for flag in line.split(":", 1)[1].split()}
  return [flag for flag in BFLOAT16_CPU_FLAGS if flag in flags]


def onednn_enabled() -> bool:
  """True when TensorFlow runs its oneDNN CPU kernels (the only ones using bfloat16 natively)."""
  try:
    from tensorflow.python.util import _pywrap_util_port  # pylint: disable=g-import-not-at-top
    return bool(_pywrap_util_port.IsMklEnabled())
  except (ImportError, AttributeError):  # Private API; fall back to TensorFlow's own rule.
    return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "") not in ("0", "false", "False")


def gpu_compute_capabilities() -> List[Tuple[int, int]]:
  return [tuple(tf.config.experimental.get_device_details(gpu).get("compute_capability",
                                                                   (0, 0)))
          for gpu in tf.config.list_physical_devices("GPU")]


def auto_precision(strategy: tf.distribute.Strategy) -> Tuple[str, str]:
  """(policy, why) that set_precision.policy = 'auto' picks for the strategy's devices."""
  kind = device_type(strategy)
  if kind == "TPU":
    return "mixed_bfloat16", "TPU"
  if kind == "GPU":
    capabilities = gpu_compute_capabilities()
    if capabilities and min(capabilities) >= (8, 0):
      return "mixed_bfloat16", f"GPUs of compute capability {min(capabilities)} >= (8, 0)"
    return "float32", (f"GPUs of compute capability {min(capabilities, default=None)} < (8, 0) "
                       "have no bfloat16 (set_precision.policy = 'mixed_float16' for "
                       "float16 with loss scaling)")
  flags = cpu_bfloat16_flags()
  if not flags:
    return "float32", "this CPU has no native bfloat16 (no AVX512_BF16 or AMX-BF16)"
  if not onednn_enabled():
    return "float32", (f"this CPU has {', '.join(flags)} but TensorFlow's oneDNN kernels are "
                       "off (TF_ENABLE_ONEDNN_OPTS=0), so bfloat16 would be emulated")
  return "mixed_bfloat16", f"this CPU computes bfloat16 natively ({', '.join(flags)}, oneDNN)"


@gin.configurable
def set_precision(strategy: tf.distribute.Strategy, policy: str = "auto") -> str:
  """Sets the Keras global dtype policy before the model is built; returns its name.

  'auto': mixed_bfloat16 where the devices compute bfloat16 natively, else float32 (see the
  module docstring); or one of 'float32', 'mixed_bfloat16', 'mixed_float16' (GPUs; the
  trainer then scales the loss dynamically).
  """
  if policy not in PRECISIONS:
    raise ValueError(f"set_precision.policy: {policy!r} is not one of {PRECISIONS}.")
  why = "set_precision.policy"
  if policy == "auto":
    policy, why = auto_precision(strategy)
  if policy == "mixed_float16" and device_type(strategy) == "TPU":
    raise ValueError("set_precision.policy = 'mixed_float16': TPUs have no float16; use "
                     "'auto' (mixed_bfloat16).")
  if policy == "mixed_float16" and device_type(strategy) == "CPU":
    logging.warning("set_precision.policy = 'mixed_float16' on CPU: float16 is emulated there "
                    "(slow); it is meant for GPUs without bfloat16.")
  tf_keras.mixed_precision.set_global_policy(policy)
  logging.info("Precision policy: %s (%s).", policy, why)
  return policy


def describe_precision(strategy: Optional[tf.distribute.Strategy] = None) -> str:
  """One sentence for reports: the global policy in force, and what 'auto' picks here and why.

  E.g. "mixed_bfloat16 (bfloat16 compute, float32 variables; losses and cosine logits
  float32); set_precision.policy = 'auto' picks mixed_bfloat16 here: this CPU computes
  bfloat16 natively (avx512_bf16, oneDNN)".
  """
  policy = tf_keras.mixed_precision.global_policy()
  auto, why = auto_precision(strategy or tf.distribute.get_strategy())
  return (f"{policy.name} ({policy.compute_dtype} compute, {policy.variable_dtype} variables; "
          f"losses and cosine logits float32); set_precision.policy = 'auto' picks {auto} "
          f"here: {why}")


def with_loss_scaling(optimizer: tf_keras.optimizers.Optimizer
                      ) -> tf_keras.optimizers.Optimizer:
  """The optimizer wrapped for dynamic loss scaling under 'mixed_float16', else unchanged."""
  if tf_keras.mixed_precision.global_policy().name != "mixed_float16":
    return optimizer
  return tf_keras.mixed_precision.LossScaleOptimizer(optimizer, dynamic=True)


def resolve_jit_compile(strategy: tf.distribute.Strategy, jit_compile: Union[str, bool]) -> bool:
  """Whether the trainer wraps its replica step in tf.function(jit_compile=True).

  'auto': on GPUs; not on TPUs (TPUStrategy compiles the step with XLA anyway) nor CPUs.
  """
  if jit_compile not in JIT_COMPILE:
    raise ValueError(f"ViLDTrainer.jit_compile: {jit_compile!r} is not one of {JIT_COMPILE}.")
  if jit_compile == "auto":
    return device_type(strategy) == "GPU"
  return bool(jit_compile)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """True on the task that writes summaries and the real checkpoints."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.task_type:
    return True
  if resolver.task_type == "chief":
    return True
  has_chief = "chief" in resolver.cluster_spec().as_dict()
  return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief
