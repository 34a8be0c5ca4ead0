"""A training experiment: the training vocabulary, the TFRecord input pipeline and the ViLDTrainer.

  gin:  training_vocabulary.text_embeddings_path = 'lvis_clip_vitb32.npy'
        training_vocabulary.classes = 'all'          # or 'base'
        train.train_file_pattern = 'lvis/train-*'
        train.global_batch_size = 256
  code: vild.training.experiment.train(model_dir, strategy)

The vocabulary is the text-embedding file's sidecar, so the classes the input pipeline emits
(1-based indices into it) and the rows of the classifier can never disagree.
"""
import json
import os
from typing import Dict, List, Optional, Tuple

import gin
import numpy as np
import tensorflow as tf

from vild import text_embeddings as text_embeddings_lib
from vild import vocabulary as vocabulary_lib
from vild.data import input_pipeline
from vild.training import determinism
from vild.training import strategy as strategy_lib
from vild.training import trainer as trainer_lib
from vild.utils import io

CLASS_SETS = ("all", "base")
# <model_dir>/TRAINING_VOCABULARY: the vocabulary the run trained on, with its base/novel flags
# (base = annotated with boxes), so inference can tell typed names the model knows from new ones.
TRAINING_VOCABULARY = "training_vocabulary.json"


@gin.configurable
def training_vocabulary(text_embeddings_path: str = gin.REQUIRED, classes: str = "all"
                        ) -> Tuple[np.ndarray, vocabulary_lib.Vocabulary]:
  """The training text embeddings and vocabulary.

  Args:
    text_embeddings_path: a .npy with its sidecar JSON (vild.text_embeddings.save).
    classes: 'all' keeps every category (novel ones unannotated; pair with
      ViLDTrainer.mask_novel_logits for the official "mask rare"), 'base' keeps only the base
      categories (the classifier then holds only base classes at training).
  """
  if classes not in CLASS_SETS:
    raise ValueError(f"training_vocabulary.classes: {classes!r} is not one of {CLASS_SETS}.")
  matrix, vocabulary = text_embeddings_lib.load(text_embeddings_path)
  if vocabulary is None:
    sidecar = text_embeddings_lib.sidecar_path(text_embeddings_path)
    raise ValueError(
        f"{text_embeddings_path}: no sidecar vocabulary ({sidecar}); training needs it to map "
        "dataset category ids to classifier rows. Save the embeddings with "
        "vild.text_embeddings.save or scripts/compute_text_embeddings.py.")
  if classes == "base":
    keep = vocabulary.base_mask
    return matrix[keep], vocabulary.subset(keep)
  return matrix, vocabulary


@gin.configurable(denylist=["model_dir", "strategy"])
def train(model_dir: str, strategy: Optional[tf.distribute.Strategy] = None,
          train_file_pattern: str = gin.REQUIRED, global_batch_size: int = 256,
          seed: int = 0) -> Dict[str, List[float]]:
  """Trains (or resumes) the gin-configured experiment in `model_dir`; returns the history.

  Args:
    model_dir: checkpoints, TensorBoard logs and the operative config.
    strategy: from vild.training.strategy.select_strategy; default strategy if None.
    train_file_pattern: TFRecord shards (scripts/create_tfrecords.py).
    global_batch_size: images per step over all replicas (paper 256).
    seed: seeds the input pipeline and the model; a fixed seed makes resumes exact.
  """
  determinism.set_determinism()  # a no-op unless set_determinism.deterministic = True
  strategy = strategy or tf.distribute.get_strategy()
  strategy_lib.set_precision(strategy)
  text_embeddings, vocabulary = training_vocabulary()
  if strategy_lib.is_chief(strategy):
    _write_training_vocabulary(model_dir, vocabulary)

  def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
    return input_pipeline.build_dataset(train_file_pattern, vocabulary, is_training=True,
                                        batch_size=global_batch_size, seed=seed,
                                        input_context=context)

  trainer = trainer_lib.ViLDTrainer(model_dir, dataset_fn, text_embeddings, vocabulary,
                                global_batch_size, strategy, seed=seed)
  return trainer.train()


def _write_training_vocabulary(model_dir: str, vocabulary: vocabulary_lib.Vocabulary) -> None:
  """<model_dir>/TRAINING_VOCABULARY, atomically, on any file system (e.g. gs://)."""
  io.makedirs(model_dir)
  io.write_text_atomic(os.path.join(model_dir, TRAINING_VOCABULARY),
                       json.dumps(vocabulary.to_dict(), indent=1) + "\n")
