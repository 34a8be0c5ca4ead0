"""Loading a trained ViLD from a model directory written by the trainer.

The contract (the trainer writes it, inference reads it):
  <model_dir>/config.gin   the run's full gin config (vild.training.trainer writes it); it
                           builds the model with vild.modeling.factory.build_vild_model
  <model_dir>/ckpt-N.*     TF checkpoints of tf.train.Checkpoint(model=model, ...), found with
                           tf.train.latest_checkpoint(model_dir)
Text embeddings are never in a checkpoint (they are data); the caller sets or passes them.
"""
import dataclasses
import os
from typing import Optional, Sequence, Tuple

from absl import logging
import gin
import tensorflow as tf
import tf_keras

from vild.inference import serving
from vild.modeling import factory
from vild.modeling import vild_model
from vild.training import trainer

CONFIG_NAME = trainer.CONFIG_NAME
DEFAULT_INPUT_SIZE = (1024, 1024)  # the paper's training and test size


class ModelDirError(ValueError):
  """A model directory is missing a piece, or its checkpoint does not fit its config."""


@dataclasses.dataclass(frozen=True)
class LoadedModel:
  model: vild_model.ViLDModel
  input_size: Tuple[int, int]  # (height, width) of the model input
  checkpoint_path: str


def load_model(model_dir: str, input_size: Optional[Sequence[int]] = None,
               checkpoint_path: Optional[str] = None, gin_files: Sequence[str] = (),
               gin_bindings: Sequence[str] = ()) -> LoadedModel:
  """Builds the model from `<model_dir>/config.gin` and restores its latest checkpoint.

  Args:
    model_dir: a directory holding config.gin and TF checkpoints (see the module docstring).
    input_size: (height, width) the model will see; default the config's
      `Parser.output_size` if bound, else the paper's 1024x1024. Must be a multiple of the
      anchors' stride.
    checkpoint_path: a specific checkpoint prefix; default the latest in `model_dir`.
    gin_files: the experiment's own gin files, parsed instead of `<model_dir>/config.gin`.
    gin_bindings: more bindings, parsed after the config (e.g. a larger
      'build_roi_generator.test_num_proposals').

  The config is parsed into gin's global configuration (as the trainer does).

  Raises:
    ModelDirError: naming the directory and what is missing or mismatched.
  """
  if not tf.io.gfile.isdir(model_dir):
    raise ModelDirError(f"{model_dir}: no such model directory; give the trainer's model_dir.")
  config_paths = list(gin_files) or [os.path.join(model_dir, CONFIG_NAME)]
  for path in config_paths:
    _parse_config_file(path)
  checkpoint_path = _checkpoint(model_dir, checkpoint_path)
  try:
    gin.parse_config(list(gin_bindings))
  except (ValueError, ImportError) as e:
    raise ModelDirError(f"gin bindings {list(gin_bindings)}: cannot be parsed ({e}).") from e
  input_size = tuple(int(s) for s in (input_size or configured_input_size()))
  model = factory.build_vild_model()
  try:
    serving.check_input_size(model, input_size)
  except ValueError as e:
    raise ModelDirError(f"{model_dir}: {e}") from e
  factory.build_variables(model, input_size)
  restore_weights(model, checkpoint_path, config=", ".join(config_paths))
  logging.info("Restored %s (%s distillation, embedding dim %d, input %s).", checkpoint_path,
               model.distillation, model.embedding_dim, input_size)
  return LoadedModel(model=model, input_size=input_size, checkpoint_path=checkpoint_path)


def restore_weights(model: tf_keras.Model, checkpoint_path: str,
                    config: str = "its gin config") -> None:
  """Loads a trainer checkpoint's model weights into a built model (optimizer, data state and
  anything else in the checkpoint are ignored); every model variable must be in it."""
  try:
    status = tf.train.Checkpoint(model=model).read(checkpoint_path).expect_partial()
    status.assert_existing_objects_matched()
  except (AssertionError, ValueError, tf.errors.NotFoundError) as e:
    raise ModelDirError(
        f"{checkpoint_path}: the checkpoint does not match the model built from {config} "
        f"({str(e)[:300]}); the config and checkpoint must come from one run.") from e


def _checkpoint(model_dir: str, checkpoint_path: Optional[str]) -> str:
  if checkpoint_path is None:
    checkpoint_path = tf.train.latest_checkpoint(model_dir)
    if checkpoint_path is None:
      raise ModelDirError(f"{model_dir}: no TF checkpoint found (no 'checkpoint' index file); "
                          "train the model first (scripts/train.py) or pass a checkpoint.")
  elif not tf.io.gfile.exists(checkpoint_path + ".index"):
    raise ModelDirError(f"{checkpoint_path}: no such checkpoint (expected "
                        f"{checkpoint_path}.index); give a prefix such as model_dir/ckpt-1000.")
  return checkpoint_path


def _parse_config_file(path: str) -> None:
  if not tf.io.gfile.exists(path):
    raise ModelDirError(f"{path}: missing; a model directory needs the config.gin the trainer "
                        "writes beside its checkpoints (or pass the experiment's gin files).")
  try:
    gin.parse_config_file(path)
  except (ValueError, ImportError) as e:
    raise ModelDirError(f"{path}: cannot be parsed ({e}).") from e


def configured_input_size() -> Tuple[int, int]:
  """The training pipeline's output size if config.gin binds it, else the paper's size."""
  try:
    return tuple(gin.query_parameter("Parser.output_size"))
  except ValueError:  # not bound, or the data module is not part of this config
    return DEFAULT_INPUT_SIZE
