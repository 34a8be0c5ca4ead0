"""What the Detector accepts as a vocabulary, turned into (Vocabulary, [C, D] text embeddings).

Accepted: a list of names; a Vocabulary; a string of names separated by ';' or a vocabulary
file (see vild.vocabulary.load_vocabulary); a .npy text-embedding file (with its sidecar
vocabulary, see vild.text_embeddings); a precomputed [C, D] matrix; or a (names or Vocabulary,
matrix) pair. Names are embedded with `embed_names` once each and cached, so growing a
vocabulary only embeds the new names.
"""
import dataclasses
from typing import Callable, Collection, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from vild import text_embeddings as text_embeddings_lib
from vild import vocabulary as vocabulary_lib

EmbedNames = Callable[[Sequence[str]], np.ndarray]  # names -> [C, D] unit rows
VocabularyLike = Union[str, Sequence[str], vocabulary_lib.Vocabulary, np.ndarray, tuple]


class TextEmbeddingCache:
  """Text embeddings of names, computed by `embed_names` at most once per name."""

  def __init__(self, embed_names: Optional[EmbedNames], embedding_dim: int):
    self._embed_names = embed_names
    self._embedding_dim = embedding_dim
    self._cache: Dict[str, np.ndarray] = {}

  def __len__(self) -> int:
    return len(self._cache)

  def matrix(self, names: Sequence[str]) -> np.ndarray:
    """[C, D] embeddings of `names`, embedding only the names not seen before."""
    missing = list(dict.fromkeys(n for n in names if n not in self._cache))
    if missing:
      if self._embed_names is None:
        raise text_embeddings_lib.TextEmbeddingError(
            f"No text encoder to embed {missing[:5]}: give the Detector a teacher (--teacher) "
            "or embed_names=, or pass precomputed text embeddings (a .npy file or a matrix).")
      embedded = text_embeddings_lib.validate(
          self._embed_names(missing), "the teacher's text embeddings",
          num_classes=len(missing), embedding_dim=self._embedding_dim)
      self._cache.update(zip(missing, text_embeddings_lib.l2_normalize(embedded)))
    return np.stack([self._cache[n] for n in names])


def resolve(vocabulary: VocabularyLike, cache: TextEmbeddingCache, embedding_dim: int
            ) -> Tuple[vocabulary_lib.Vocabulary, np.ndarray]:
  """(Vocabulary, [C, D] unit-row text embeddings) for any accepted vocabulary form."""
  if isinstance(vocabulary, tuple) and len(vocabulary) == 2 and isinstance(
      vocabulary[1], np.ndarray):
    names, matrix = vocabulary
    vocab = _as_vocabulary(names)
    return vocab, _checked(matrix, f"text embeddings for {vocab.source}", len(vocab),
                           embedding_dim)
  if isinstance(vocabulary, np.ndarray):
    matrix = _checked(vocabulary, "the text-embedding matrix", None, embedding_dim)
    names = [f"class_{i + 1}" for i in range(len(matrix))]
    return vocabulary_lib.Vocabulary.from_names(names, source="<matrix>"), matrix
  if isinstance(vocabulary, str) and vocabulary.endswith(".npy"):
    matrix, vocab = text_embeddings_lib.load(vocabulary, embedding_dim=embedding_dim)
    if vocab is None:
      names = [f"class_{i + 1}" for i in range(len(matrix))]
      vocab = vocabulary_lib.Vocabulary.from_names(names, source=vocabulary)
    return vocab, matrix
  vocab = _as_vocabulary(vocabulary)
  return vocab, cache.matrix(vocab.names)


def with_base_names(vocabulary: vocabulary_lib.Vocabulary, base_names: Collection[str]
                    ) -> vocabulary_lib.Vocabulary:
  """The vocabulary with exactly `base_names` as base categories, every other name novel.

  For ViLD-ensemble: base = the categories the model was trained on with boxes.
  """
  base = set(base_names)
  return dataclasses.replace(vocabulary, is_novel=tuple(n not in base for n in vocabulary.names))


def _as_vocabulary(names) -> vocabulary_lib.Vocabulary:
  if isinstance(names, vocabulary_lib.Vocabulary):
    return names
  if isinstance(names, str):
    return vocabulary_lib.load_vocabulary(names)
  return vocabulary_lib.Vocabulary.from_names(list(names))


def _checked(matrix, source: str, num_classes: Optional[int], embedding_dim: int) -> np.ndarray:
  return text_embeddings_lib.l2_normalize(text_embeddings_lib.validate(
      matrix, source, num_classes=num_classes, embedding_dim=embedding_dim))
