"""Checkpoints: periodic saves that survive a kill, resuming, and initialising from other runs.

Saving is `tf.train.CheckpointManager`'s: a checkpoint's files are complete before the
manager's state file (written atomically) names it, so a run killed mid-save resumes from the
previous checkpoint. `restore_latest` also skips any listed checkpoint whose files are gone.

Initialisation (`init_from_checkpoint`) copies variables by checkpoint key rather than letting
TensorFlow match silently, so the report of what was and was not restored is exactly what
happened. It reads this trainer's checkpoints (whole model, or only some parts) and part-only
checkpoints such as a Model Garden ImageNet backbone saved as `Checkpoint(backbone=...)`.
"""
import collections
import dataclasses
import json
from typing import Dict, List, Optional, Sequence

from absl import logging
import tensorflow as tf

from vild.utils import io

VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


def restore_latest(checkpoint: tf.train.Checkpoint,
                   manager: tf.train.CheckpointManager) -> Optional[str]:
  """Restores the newest complete checkpoint the manager lists; returns its path or None."""
  for path in reversed(manager.checkpoints):
    if not tf.io.gfile.exists(path + ".index"):
      logging.warning("Checkpoint %s is listed but its files are missing; trying an older one.",
                      path)
      continue
    checkpoint.read(path).assert_existing_objects_matched()
    logging.info("Resumed from %s.", path)
    return path
  return None


def variable_keys(root: tf.train.Checkpoint) -> Dict[str, tf.Variable]:
  """{checkpoint key: variable} for every variable reachable from `root`.

  The keys are the ones `root.write` would use: the first path to each object in a
  breadth-first walk of the object graph (TensorFlow's own rule; tests check they agree).
  """
  view = tf.train.TrackableView(root)
  paths = {id(root): ()}
  queue = collections.deque([root])
  keys = {}
  while queue:
    parent = queue.popleft()
    for name, child in view.children(parent).items():
      if id(child) in paths:
        continue
      paths[id(child)] = paths[id(parent)] + (_escape(name),)
      queue.append(child)
      if isinstance(child, tf.Variable):
        keys["/".join(paths[id(child)]) + VALUE_SUFFIX] = child
  return keys


def _escape(name: str) -> str:
  # TensorFlow's object-path escaping: '.' -> '..', '/' -> '.S'.
  return name.replace(".", "..").replace("/", ".S")


@dataclasses.dataclass
class InitReport:
  """What `init_from_checkpoint` did, by checkpoint key."""
  checkpoint: str
  restored: List[str]
  not_restored: List[str]       # model variables (in the requested parts) left as initialised
  shape_mismatch: List[str]     # found, but with another shape: left as initialised
  unused: List[str]             # checkpoint model variables nothing asked for

  def summary(self) -> str:
    return (f"init from {self.checkpoint}: restored {len(self.restored)} variables, "
            f"not restored {len(self.not_restored)}, shape mismatch "
            f"{len(self.shape_mismatch)}, unused in checkpoint {len(self.unused)}")

  def save(self, path: str) -> None:
    io.write_text_atomic(path, json.dumps(dataclasses.asdict(self), indent=1) + "\n")


def init_from_checkpoint(model: tf.Module, path: str,
                         parts: Optional[Sequence[str]] = None) -> InitReport:
  """Copies matching variables from a checkpoint into `model`.

  Args:
    model: a built ViLDModel (variables exist).
    path: a checkpoint prefix (…/ckpt-1000) or a directory (its latest checkpoint).
    parts: names from `model.checkpoint_items` (e.g. ['backbone']); None = every variable.
      A variable is looked up under this trainer's layout (model/<...>), then under its
      part at the top level (<part>/<...>, the Model Garden's layout for backbones).

  Returns:
    An InitReport (also logged).
  """
  path = _resolve_checkpoint_path(path)
  reader = tf.train.load_checkpoint(path)
  saved_shapes = reader.get_variable_to_shape_map()
  wanted = _wanted_variables(model, parts)
  # Each variable can be found under the whole-model key or, for parts, the part-only key.
  candidates = collections.defaultdict(list)
  for key, variable in variable_keys(tf.train.Checkpoint(model=model)).items():
    if id(variable) in wanted:
      candidates[id(variable)].append(key)
  for part, layer in _parts(model, parts).items():
    for key, variable in variable_keys(tf.train.Checkpoint(**{part: layer})).items():
      if id(variable) in wanted:
        candidates[id(variable)].append(key)

  restored, not_restored, mismatch, used = [], [], [], set()
  for variable_id, variable in wanted.items():
    keys = candidates[variable_id]
    key = next((k for k in keys if k in saved_shapes), None)
    if key is None:
      not_restored.append(keys[0] if keys else variable.name)
    elif tuple(saved_shapes[key]) != tuple(variable.shape):
      mismatch.append(f"{key}: checkpoint {tuple(saved_shapes[key])} vs model "
                      f"{tuple(variable.shape)}")
      used.add(key)
    else:
      variable.assign(reader.get_tensor(key).astype(variable.dtype.as_numpy_dtype))
      restored.append(key)
      used.add(key)
  model_like = [k for k in saved_shapes if k.endswith(VALUE_SUFFIX) and
                not k.startswith(("optimizer/", "data/", "save_counter/"))]
  unused = sorted(set(model_like) - used) if parts is None else []
  report = InitReport(path, sorted(restored), sorted(not_restored), sorted(mismatch), unused)
  logging.info(report.summary())
  for line in report.not_restored[:20] + report.shape_mismatch[:20]:
    logging.info("  not restored: %s", line)
  if not restored:
    raise ValueError(f"{path}: no variable of the model matches this checkpoint "
                     f"(parts={list(parts) if parts else 'all'}); check the checkpoint and "
                     "init parts (e.g. ['backbone'] for an ImageNet backbone).")
  return report


def _resolve_checkpoint_path(path: str) -> str:
  if tf.io.gfile.isdir(path):
    latest = tf.train.latest_checkpoint(path)
    if latest is None:
      raise ValueError(f"{path}: directory holds no checkpoint.")
    return latest
  if not tf.io.gfile.exists(path + ".index"):
    raise ValueError(f"{path}: no such checkpoint (expected {path}.index); give a checkpoint "
                     "prefix such as model_dir/ckpt-1000 or a directory.")
  return path


def _parts(model, parts: Optional[Sequence[str]]) -> Dict[str, tf.Module]:
  """The named parts (default: all of `model.checkpoint_items`)."""
  items = model.checkpoint_items
  if parts is None:
    return dict(items)
  unknown = set(parts) - set(items)
  if unknown:
    raise ValueError(f"init parts {sorted(unknown)} are not parts of this model; choose from "
                     f"{sorted(items)}.")
  return {p: items[p] for p in parts}


def _wanted_variables(model, parts) -> Dict[int, tf.Variable]:
  if parts is None:
    return {id(v): v for v in model.variables}
  return {id(v): v for layer in _parts(model, parts).values() for v in layer.variables}

