"""Loading a trained ViLD from a model directory written by the trainer.

The contract (the trainer writes it, inference reads it):
  <model_dir>/config.gin   the operative gin config; it builds the model with
                           vild.modeling.factory.build_vild_model
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

from vild.inference import serving
from vild.modeling import factory
from vild.modeling import vild_model

CONFIG_NAME = "config.gin"
DEFAULT_INPUT_SIZE = (1024, 1024)  # the paper's training and test size


class ModelDirError(ValueError):
  """A model directory is missing a piece, or its checkpoint does not fit its config."""


@dataclasses.dataclass(frozen=True)
class LoadedModel:
  model: vild_model.ViLDModel
  input_size: Tuple[int, int]  # (height, width) of the model input
  checkpoint_path: str


def load_model(model_dir: str, input_size: Optional[Sequence[int]] = None,
               checkpoint_path: Optional[str] = None) -> LoadedModel:
  """Builds the model from `<model_dir>/config.gin` and restores its latest checkpoint.

  Args:
    model_dir: a directory holding config.gin and TF checkpoints (see the module docstring).
    input_size: (height, width) the model will see; default the config's
      `Parser.output_size` if bound, else the paper's 1024x1024. Must be a multiple of the
      anchors' stride.
    checkpoint_path: a specific checkpoint prefix; default the latest in `model_dir`.

  The config is parsed into gin's global configuration (as the trainer does).

  Raises:
    ModelDirError: naming the directory and what is missing or mismatched.
  """
  config_path = os.path.join(model_dir, CONFIG_NAME)
  if not os.path.isdir(model_dir):
    raise ModelDirError(f"{model_dir}: no such model directory; give the trainer's model_dir.")
  if not os.path.exists(config_path):
    raise ModelDirError(f"{config_path}: missing; a model directory needs the config.gin the "
                        "trainer writes beside its checkpoints.")
  checkpoint_path = checkpoint_path or tf.train.latest_checkpoint(model_dir)
  if checkpoint_path is None:
    raise ModelDirError(f"{model_dir}: no TF checkpoint found (no 'checkpoint' index file); "
                        "train the model first or pass checkpoint_path=.")
  try:
    gin.parse_config_file(config_path)
  except (ValueError, ImportError) as e:
    raise ModelDirError(f"{config_path}: cannot be parsed ({e}).") from e
  input_size = tuple(int(s) for s in (input_size or configured_input_size()))
  model = factory.build_vild_model()
  try:
    serving.check_input_size(model, input_size)
  except ValueError as e:
    raise ModelDirError(f"{model_dir}: {e}") from e
  factory.build_variables(model, input_size)
  try:
    status = tf.train.Checkpoint(model=model).restore(checkpoint_path).expect_partial()
    status.assert_existing_objects_matched()
  except (AssertionError, ValueError) as e:
    raise ModelDirError(
        f"{checkpoint_path}: the checkpoint does not match the model built from "
        f"{config_path} ({str(e)[:300]}); the config and checkpoint must come from one run."
    ) from e
  logging.info("Restored %s (%s distillation, embedding dim %d, input %s).", checkpoint_path,
               model.distillation, model.embedding_dim, input_size)
  return LoadedModel(model=model, input_size=input_size, checkpoint_path=checkpoint_path)


def configured_input_size() -> Tuple[int, int]:
  """The training pipeline's output size if config.gin binds it, else the paper's size."""
  try:
    return tuple(gin.query_parameter("Parser.output_size"))
  except ValueError:  # not bound, or the data module is not part of this config
    return DEFAULT_INPUT_SIZE
