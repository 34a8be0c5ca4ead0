"""Restoring a trained detector from its model directory (the trainer's), for offline proposals.

A model directory holds checkpoints of `tf.train.Checkpoint(model=model, ...)` (ckpt-<step>)
and the gin config that built the model: `config.gin` or the trainer's
`operative_config.gin`. Instead of those, the experiment's own gin files can be given.
"""
import os
from typing import Optional, Sequence, Tuple

import gin
import tensorflow as tf
from absl import logging

from vild.data import input_pipeline  # noqa: F401  (registers Parser for its output_size)
from vild.modeling import factory
from vild.modeling import vild_model

MODEL_DIR_CONFIGS = ("config.gin", "operative_config.gin")
PAPER_IMAGE_SIZE = (1024, 1024)


class DetectorError(ValueError):
  """A model directory, config or checkpoint that cannot give a detector; says what to fix."""


def restore_detector(model_dir: str, gin_files: Sequence[str] = (),
                     gin_bindings: Sequence[str] = (), checkpoint: Optional[str] = None,
                     image_size: Optional[Sequence[int]] = None
                     ) -> Tuple[vild_model.ViLDModel, Tuple[int, int], str]:
  """Builds the detector from its gin config and restores its weights.

  Args:
    model_dir: the training run's directory.
    gin_files: the experiment's gin files; default the config saved in `model_dir`.
    gin_bindings: more bindings, parsed after the config.
    checkpoint: a checkpoint prefix (model_dir/ckpt-1000); default the latest in model_dir.
    image_size: (height, width) of the model input; default the config's Parser.output_size,
      else the paper's 1024 x 1024.

  Returns:
    (model, image_size, checkpoint path). The config is parsed into gin's global config.
  """
  if not tf.io.gfile.isdir(model_dir):
    raise DetectorError(f"{model_dir}: no such model directory; give the detector's training "
                        "directory (--model_dir).")
  _parse_config(model_dir, gin_files)
  gin.parse_config(list(gin_bindings))
  checkpoint = checkpoint or tf.train.latest_checkpoint(model_dir)
  if checkpoint is None:
    raise DetectorError(f"{model_dir}: no checkpoint (no 'checkpoint' file naming ckpt-<step>); "
                        "train the base-category detector first (scripts/train.py), or pass "
                        "--checkpoint=<prefix>.")
  if not tf.io.gfile.exists(checkpoint + ".index"):
    raise DetectorError(f"{checkpoint}: no such checkpoint (expected {checkpoint}.index); give a "
                        "prefix such as model_dir/ckpt-1000.")
  image_size = tuple(int(s) for s in (image_size or _configured_image_size()))
  model = factory.build_vild_model()
  factory.build_variables(model, image_size)
  try:
    tf.train.Checkpoint(model=model).read(checkpoint).expect_partial() \
        .assert_existing_objects_matched()
  except (AssertionError, ValueError) as e:  # missing variables; variables of another shape
    raise DetectorError(f"{checkpoint}: does not fit the model its gin config builds "
                        f"({str(e)[:300]}...); give the config of the run that wrote it."
                        ) from e
  logging.info("Detector restored from %s, input %s.", checkpoint, image_size)
  return model, image_size, checkpoint


def _parse_config(model_dir: str, gin_files: Sequence[str]) -> None:
  if gin_files:
    for path in gin_files:
      gin.parse_config_file(path)
    return
  for name in MODEL_DIR_CONFIGS:
    path = os.path.join(model_dir, name)
    if tf.io.gfile.exists(path):
      # A saved config also binds the trainer's own configurables, unknown here; every
      # configurable that builds the model is registered by the imports above.
      with tf.io.gfile.GFile(path) as f:
        gin.parse_config(f.read(), skip_unknown=True)
      return
  raise DetectorError(f"{model_dir}: holds none of {MODEL_DIR_CONFIGS}; pass the detector's "
                      "experiment config with --gin_file.")


def _configured_image_size() -> Tuple[int, int]:
  try:
    return tuple(gin.query_parameter("Parser.output_size"))
  except ValueError:
    logging.info("Parser.output_size is not bound; using the paper's %s.", PAPER_IMAGE_SIZE)
    return PAPER_IMAGE_SIZE
