"""Deterministic training: bitwise-reproducible runs on one machine, at a CPU-time price.

  gin:  set_determinism.deterministic = True

Without it, a run already draws everything random from its seed (input order, augmentation,
RoI sampling) and resumes with the exact model, optimizer and input position; but float
reductions split over threads add up in whatever order the threads finish, so two runs of the
same config drift apart by rounding (docs/train.md gives the measured size). With it,
TensorFlow's op determinism (`tf.config.experimental.enable_op_determinism`: deterministic
kernels, or an error naming an op that has none) and `num_threads` intra-op and inter-op
threads make a run, and a killed-and-resumed run, equal bit for bit to any other run of the
same config on the same machine and TensorFlow build.

Thread counts can only be set before TensorFlow runs its first op: scripts/train.py calls
`set_determinism()` right after parsing gin; Python users call it first thing.
"""
from absl import logging
import gin
import tensorflow as tf


class DeterminismError(ValueError):
  """Determinism was asked for too late: TensorFlow already runs with other thread counts."""


@gin.configurable
def set_determinism(deterministic: bool = False, num_threads: int = 1) -> bool:
  """Makes TensorFlow deterministic if `deterministic`; returns whether it did.

  Args:
    deterministic: op determinism and fixed thread counts (see the module docstring).
    num_threads: intra-op and inter-op threads (1: the measured bitwise-equal setting).
  """
  if not deterministic:
    return False
  if num_threads < 1:
    raise ValueError(f"set_determinism.num_threads must be >= 1, got {num_threads}.")
  tf.config.experimental.enable_op_determinism()
  try:
    tf.config.threading.set_intra_op_parallelism_threads(num_threads)
    tf.config.threading.set_inter_op_parallelism_threads(num_threads)
  except RuntimeError as e:  # TensorFlow is initialised: fine if it already has these counts.
    current = (tf.config.threading.get_intra_op_parallelism_threads(),
               tf.config.threading.get_inter_op_parallelism_threads())
    if current != (num_threads, num_threads):
      raise DeterminismError(
          "set_determinism.deterministic = True must take effect before TensorFlow runs its "
          f"first op (it fixes the thread counts to {num_threads}; they are {current}). "
          "Call vild.training.determinism.set_determinism() right after parsing the gin "
          "config, as scripts/train.py does.") from e
  logging.info("Deterministic training: op determinism on, %d intra-op and inter-op thread(s).",
               num_threads)
  return True
