"""The run's config.gin: what a rerun into an existing model_dir may change.

A model_dir keeps the gin config its run was trained with (`config.gin`; evaluation and
vild.inference rebuild the model from it). Before a rerun touches the directory,
`check_rerun` compares the new config with that file, binding by binding (a binding set in one
config only is compared with the parameter's default; macros are expanded):

- A **model-changing** difference stops the run with `ConfigMismatchError`, naming every such
  binding with its old and new value. Model-changing are the bindings of everything that builds
  the model (the configurables of `vild.modeling` and `vild.anchors`: architecture, sizes,
  distillation mode, RoI sampling, proposal and detection settings) and `MODEL_BINDINGS` (the
  classes the classifier is trained on, the input size the model is evaluated at). Resuming
  such a run would restore checkpoints into another model, or silently turn it into one.
- Every other difference (train steps, learning-rate schedule, loss weights, batch size, data
  paths, logging and checkpoint intervals, ...) is allowed and logged. `write` then replaces
  config.gin and keeps the previous one as `config.before_step_<N>.gin`.
"""
import dataclasses
import importlib
import inspect
import os
from typing import Any, Dict, List, Optional, Tuple

from absl import logging
import gin
from gin import config_parser
import tensorflow as tf

from vild.utils import io

CONFIG_NAME = "config.gin"
MODEL_MODULES = ("vild.modeling", "vild.anchors")
# Model-changing bindings outside the model builders.
MODEL_BINDINGS = frozenset({"training_vocabulary.classes", "Parser.output_size"})
_UNSET = "<not set, no default>"


class ConfigMismatchError(ValueError):
  """A rerun's gin config changes the model of the run already in model_dir."""


@dataclasses.dataclass(frozen=True)
class Difference:
  binding: str          # [scope/]configurable.parameter
  run_value: Any        # in the model_dir's config.gin (or the default)
  new_value: Any        # in the new config (or the default)
  model_changing: bool

  def describe(self) -> str:
    return f"{self.binding}: {self.run_value!r} (run) -> {self.new_value!r} (now)"


@dataclasses.dataclass(frozen=True)
class _Reference:
  name: str
  evaluate: bool

  def __repr__(self):
    return f"@{self.name}{'()' if self.evaluate else ''}"


@dataclasses.dataclass(frozen=True)
class _Macro:
  name: str


class _Delegate(config_parser.ParserDelegate):
  """Parses references and macros into plain values, without importing or calling anything."""

  def configurable_reference(self, scoped_configurable_name, evaluate):
    return _Reference(scoped_configurable_name, evaluate)

  def macro(self, macro_name):
    return _Macro(macro_name)


def bindings(text: str) -> Dict[str, Any]:
  """{'[scope/]selector.parameter': value} of a gin config text, macros expanded.

  Imports the text's modules, as parsing it with gin would, so that its configurables are
  known (a module that no longer imports is left out).
  """
  values, macros = {}, {}
  for statement in config_parser.ConfigParser(text, _Delegate()):
    if isinstance(statement, config_parser.ImportStatement):
      _try_import(statement.module)
    if not isinstance(statement, config_parser.BindingStatement):
      continue  # config_str() writes no includes
    if not statement.arg_name:  # a macro definition: NAME = value
      macros[statement.selector] = statement.value
      continue
    scope = f"{statement.scope}/" if statement.scope else ""
    values[f"{scope}{statement.selector}.{statement.arg_name}"] = statement.value
  return {key: _expand(value, macros) for key, value in values.items()}


def _try_import(module: str) -> None:
  try:
    importlib.import_module(module)
  except ImportError:
    pass


def _expand(value, macros, depth=0):
  if isinstance(value, _Macro) and value.name in macros and depth < 20:
    return _expand(macros[value.name], macros, depth + 1)
  if isinstance(value, (list, tuple)):  # gin writes tuples, users write lists: same value
    return tuple(_expand(v, macros, depth) for v in value)
  if isinstance(value, dict):
    return {k: _expand(v, macros, depth) for k, v in value.items()}
  return value


def differences(run_text: str, new_text: str) -> List[Difference]:
  """The bindings whose values differ between two gin config texts, sorted by name."""
  run, new = bindings(run_text), bindings(new_text)
  found = []
  for key in sorted(set(run) | set(new)):
    run_value = run[key] if key in run else _default(key)
    new_value = new[key] if key in new else _default(key)
    if run_value != new_value:
      found.append(Difference(key, run_value, new_value, is_model_changing(key)))
  return found


def _split(key: str) -> Tuple[str, str]:
  """'scope/selector.parameter' -> (selector, parameter)."""
  selector, parameter = key.rsplit("/", 1)[-1].rsplit(".", 1)
  return selector, parameter


def _configurable(selector: str):
  return gin.config._REGISTRY.get_match(selector)  # pylint: disable=protected-access


def _default(key: str) -> Any:
  selector, parameter = _split(key)
  configurable = _configurable(selector)
  if configurable is None:
    return _UNSET
  try:
    parameters = inspect.signature(configurable.wrapped).parameters
  except (TypeError, ValueError):
    return _UNSET
  if parameter not in parameters or parameters[parameter].default is inspect.Parameter.empty:
    return _UNSET
  return _expand(parameters[parameter].default, {})


def is_model_changing(key: str) -> bool:
  """Whether a binding changes the model (see the module docstring).

  A configurable this process does not know counts as model-changing: nothing vouches for it.
  """
  selector, parameter = _split(key)
  configurable = _configurable(selector)
  if configurable is None:
    return True
  if f"{configurable.name}.{parameter}" in MODEL_BINDINGS:
    return True
  return configurable.module.startswith(MODEL_MODULES)


def check_rerun(model_dir: str, new_text: Optional[str] = None) -> List[Difference]:
  """Checks a (re)run's gin config against the run already in `model_dir`; writes nothing.

  Returns the allowed differences (logged). Raises ConfigMismatchError on a model-changing
  difference when model_dir holds checkpoints (without checkpoints there is nothing to
  resume, and the new config simply replaces the old one).
  """
  path = os.path.join(model_dir, CONFIG_NAME)
  if not tf.io.gfile.exists(path):
    return []
  with tf.io.gfile.GFile(path) as f:
    run_text = f.read()
  found = differences(run_text, gin.config_str() if new_text is None else new_text)
  if not found:
    return []
  # Any checkpoint, listed or not (after deleting the later ones by hand the state file
  # may name a missing one).
  has_checkpoint = bool(tf.io.gfile.glob(os.path.join(model_dir, "*.index")))
  changing = [d for d in found if d.model_changing]
  if changing and has_checkpoint:
    raise ConfigMismatchError(
        f"{model_dir} holds checkpoints of another model: the new gin config differs from "
        f"its {CONFIG_NAME} in model-changing bindings:\n  " +
        "\n  ".join(d.describe() for d in changing) +
        "\nResuming would restore them into a different model. Train into a new --model_dir "
        f"(add --gin_param=\"ViLDTrainer.init_checkpoint = '{model_dir}'\" to start from "
        f"these weights), or resume with the run's own config (--gin_file={path}). Nothing "
        f"in {model_dir} was changed.")
  what = "resuming with" if has_checkpoint else f"no checkpoint yet, replacing {CONFIG_NAME};"
  logging.warning("%s: %s %d changed binding(s):\n  %s", model_dir, what, len(found),
                  "\n  ".join(d.describe() for d in found))
  return found


def write(model_dir: str, step: int, changed: bool) -> None:
  """Writes the current gin config as config.gin, keeping a changed previous one."""
  path = os.path.join(model_dir, CONFIG_NAME)
  if changed and step > 0 and tf.io.gfile.exists(path):
    previous = os.path.join(model_dir, f"config.before_step_{step}.gin")
    tf.io.gfile.copy(path, previous, overwrite=True)
    logging.info("The previous %s is kept as %s.", CONFIG_NAME, previous)
  io.write_text_atomic(path, gin.config_str())
