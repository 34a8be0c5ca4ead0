"""The TPU contract, checked without a TPU: XLA compiles the function and every shape is static.

A TPU runs only what XLA compiles, and TPU infeed and compilation want every shape known ahead
of time. The closest check on a CPU is `tf.function(jit_compile=True)`, but XLA's CPU backend
also accepts data-dependent ("bounded dynamic") shapes, e.g. from `tf.where(mask)`,
`tf.boolean_mask`, `tf.unique` or unpadded NMS, which is why this module also reads the
function's HLO and rejects any dynamic dimension (`f32[<=20]` in HLO text), naming the op that
made it.

  jitted = tpu_contract.check_compiles(fn, args, name="ViLDTrainer replica step")
  tpu_contract.check_static_spec(dataset.element_spec, name="training input")

Both raise `TPUContractError` with the function's name, the offending op and a hint; the
contract tests (tests/test_tpu_contract.py) run them on the trainer's replica step, the
evaluator's inference step and the input pipeline. A custom head can be checked the same way.
"""
import re
from typing import Callable, List, Sequence

import tensorflow as tf

# HLO text marks a bounded dynamic dimension as `<=N`, e.g. `s64[<=20,1]`.
_DYNAMIC_SHAPE = re.compile(r"\b[a-z]+[0-9]*\[[^\]]*<=[^\]]*\]")
_OP_METADATA = re.compile(r'op_type="([^"]*)" op_name="([^"]*)"')


class TPUContractError(ValueError):
  """A function or input spec that a TPU could not run as it is."""


def compiler_ir(function: Callable, args: Sequence, name: str) -> str:
  """The HLO text of `function(*args)` under XLA; TPUContractError naming `name` if XLA cannot
  lower it (e.g. a tf.py_function, a string op, an op with no XLA kernel)."""
  jitted = tf.function(function, jit_compile=True, autograph=False)
  try:
    return jitted.experimental_get_compiler_ir(*args)(stage="hlo")
  except (ValueError, tf.errors.InvalidArgumentError, tf.errors.UnimplementedError,
          tf.errors.InternalError) as e:
    raise TPUContractError(
        f"{name} does not compile with XLA, so a TPU cannot run it: {_xla_failure(str(e))}\n"
        "Keep it to XLA-compilable TensorFlow ops: no tf.py_function / tf.numpy_function "
        "(e.g. a NumPy NMS), no string ops.") from e


def dynamic_shape_ops(hlo: str) -> List[str]:
  """'op_type (op_name): shape' of each op that gives a value a data-dependent shape."""
  found = []
  for line in hlo.splitlines():
    if "set-dimension-size(" not in line or not _DYNAMIC_SHAPE.search(line):
      continue
    metadata = _OP_METADATA.search(line)
    shape = _DYNAMIC_SHAPE.search(line).group(0)
    origin = f"{metadata.group(1)} ({metadata.group(2)})" if metadata else "an op"
    entry = f"{origin}: {shape}"
    if entry not in found:
      found.append(entry)
  if not found and _DYNAMIC_SHAPE.search(hlo):
    found.append(f"an op: {_DYNAMIC_SHAPE.search(hlo).group(0)}")
  return found


def check_compiles(function: Callable, args: Sequence, name: str) -> Callable:
  """Checks that `function(*args)` compiles with XLA with static shapes only.

  Returns the function wrapped in tf.function(jit_compile=True), for the caller to run.
  Raises TPUContractError naming `name` and the offending op otherwise.
  """
  dynamic = dynamic_shape_ops(compiler_ir(function, args, name))
  if dynamic:
    raise TPUContractError(
        f"{name} has data-dependent shapes, which a TPU cannot compile efficiently (or at "
        f"all): {'; '.join(dynamic[:5])}. Keep shapes static: pad to a fixed size and mask "
        "(tf.where(mask, x, 0), top_k, padded NMS) instead of tf.where(mask) / "
        "tf.boolean_mask / tf.unique / unpadded NMS.")
  return tf.function(function, jit_compile=True, autograph=False)


def unknown_dimensions(element_spec, path: str = "") -> List[str]:
  """'path: shape' of each tensor in an element spec with a dimension not known statically
  (paths like '1/groundtruths/boxes' for labels['groundtruths']['boxes'] of an (images,
  labels) element)."""
  if isinstance(element_spec, dict):
    items = element_spec.items()
  elif isinstance(element_spec, (tuple, list)):
    items = enumerate(element_spec)
  else:
    shape = getattr(element_spec, "shape", None)
    if shape is None or shape.is_fully_defined():
      return []
    return [f"{path or '<element>'}: {shape}"]
  return [found for key, value in items
          for found in unknown_dimensions(value, f"{path}/{key}" if path else str(key))]


def check_static_spec(element_spec, name: str) -> None:
  """Raises TPUContractError unless every dimension of the spec is known (TPU infeed needs it:
  a fixed batch with drop_remainder=True or padding, fixed image sizes, padded labels)."""
  unknown = unknown_dimensions(element_spec)
  if unknown:
    raise TPUContractError(
        f"{name}: these tensors have dimensions not known statically, which TPU infeed cannot "
        f"take: {'; '.join(unknown[:8])}. Batch with drop_remainder=True (or pad the last "
        "batch) and pad every label to a fixed size.")


def _xla_failure(message: str, frames: int = 4) -> str:
  """XLA's message cut to what matters: the unsupported op and where the code created it
  (the innermost frames of the op's creation stack)."""
  lines = message.strip().splitlines()
  stack = [line.strip() for line in lines if line.strip().startswith("File ")]
  return "\n".join([lines[0][:500]] + (["created at (innermost last):"] + stack[-frames:]
                                        if stack else []))
