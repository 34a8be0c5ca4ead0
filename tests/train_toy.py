"""Toy training inputs for the trainer and evaluator tests: deterministic scenes, a vocabulary
file and a dataset function in the trainer's contract (InputContext -> per-replica batches)."""
import os

import numpy as np
import tensorflow as tf

from vild import text_embeddings
from vild import vocabulary as vocabulary_lib
from vild.data import toy

IMAGE_SIZE = (64, 64)
EMBEDDING_DIM = 32
NOVEL = ("blue disc",)


def write_text_embeddings(directory: str, seed: int = 0) -> str:
  """Random unit embeddings for the six toy categories, 'blue disc' novel; returns the path."""
  vocab = vocabulary_lib.Vocabulary.from_names(toy.TOY_CATEGORIES, novel_names=NOVEL)
  matrix = np.random.default_rng(seed).normal(size=(len(vocab), EMBEDDING_DIM))
  path = os.path.join(directory, "toy_text.npy")
  text_embeddings.save(path, matrix.astype(np.float32), vocab, teacher="random")
  return path


def toy_dataset_fn(global_batch_size: int = 2, num_scenes: int = 8, num_distill_rois: int = 0,
                   shuffle_seed: int = 1):
  """A dataset function over `num_scenes` fixed toy scenes, shuffled and repeated forever."""
  images, labels = toy.toy_batch(range(num_scenes), IMAGE_SIZE,
                                 num_distill_rois=num_distill_rois,
                                 embedding_dim=EMBEDDING_DIM)

  def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    dataset = dataset.shard(context.num_input_pipelines, context.input_pipeline_id)
    dataset = dataset.shuffle(num_scenes, seed=shuffle_seed).repeat()
    return dataset.batch(context.get_per_replica_batch_size(global_batch_size),
                         drop_remainder=True)
  return dataset_fn
