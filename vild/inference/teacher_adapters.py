"""The teacher's three jobs at inference, as the plain callables the Detector takes.

  load_teacher(path)   the CLIP teacher of a local checkpoint directory
  embed_names(teacher) names -> [C, D]: ViLD's prompt ensemble (63 templates), as for training
  embed_crops(teacher) (image, boxes) -> [N, D]: normalize(teacher(1x crop) + teacher(1.5x))

The Detector itself only needs the callables, so any encoder with the teacher protocol
(`embedding_dim`, `image_size`, `encode_text`, `encode_images`) plugs in through here.
"""
from typing import Callable, Optional

import numpy as np

from vild import text_embeddings
from vild import vocabulary as vocabulary_lib


def check_embedding_dim(teacher, embedding_dim: int) -> None:
  """Fails unless the teacher embeds in the model's region-embedding dimension."""
  if teacher is not None and teacher.embedding_dim != embedding_dim:
    raise text_embeddings.TextEmbeddingError(
        f"The teacher {getattr(teacher, 'name', type(teacher).__name__)!r} embeds in "
        f"{teacher.embedding_dim} dimensions but the model's region embeddings have "
        f"{embedding_dim}; use the teacher the model was trained with.")


def load_teacher(path: str):
  from vild.teacher import clip_teacher  # pylint: disable=g-import-not-at-top
  return clip_teacher.load_clip_teacher(path)


def embed_names(teacher) -> Optional[Callable[[list], np.ndarray]]:
  if teacher is None:
    return None
  from vild.teacher import vocabulary_embeddings  # pylint: disable=g-import-not-at-top

  def embed(names):
    vocab = vocabulary_lib.Vocabulary.from_names(names, source="detector names")
    return vocabulary_embeddings.embed_vocabulary(teacher, vocab, progress=False)
  return embed


def embed_crops(teacher) -> Optional[Callable[[np.ndarray, np.ndarray], np.ndarray]]:
  if teacher is None:
    return None
  from vild.teacher import crops  # pylint: disable=g-import-not-at-top
  return crops.RegionEmbedder(teacher)
