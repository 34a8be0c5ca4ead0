"""What the Detector accepts as a vocabulary, turned into (Vocabulary, [C, D] text embeddings).

Accepted: a list of names; a Vocabulary; a string of names separated by ';' or a vocabulary
file (see vild.vocabulary.load_vocabulary); a .npy text-embedding file (with its sidecar
vocabulary, see vild.text_embeddings); a precomputed [C, D] matrix; or a (names or Vocabulary,
matrix) pair. Names are embedded with `embed_names` once each and cached, so growing a
vocabulary only embeds the new names.

Base or novel (what ViLD-ensemble fuses differently): a name is base iff the model was
trained on it with boxes, i.e. it is a base category of the run's training vocabulary
(`load_training_vocabulary`; matched by name or LVIS synonym, ignoring case and '_').
`split_by_training` applies that rule; explicit base/novel names override it.
"""
import dataclasses
import os
from typing import Callable, Collection, Dict, Optional, Sequence, Tuple, Union

from absl import logging
import gin
import numpy as np

from vild import text_embeddings as text_embeddings_lib
from vild import vocabulary as vocabulary_lib
from vild.teacher import prompts
from vild.training import experiment as training_experiment
from vild.utils import io

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


def with_novel_names(vocabulary: vocabulary_lib.Vocabulary, novel_names: Collection[str]
                     ) -> vocabulary_lib.Vocabulary:
  """The vocabulary with `novel_names` made novel, every other flag kept."""
  novel = set(novel_names)
  return dataclasses.replace(vocabulary, is_novel=tuple(
      flag or n in novel for n, flag in zip(vocabulary.names, vocabulary.is_novel)))


def split_by_training(vocabulary: vocabulary_lib.Vocabulary,
                      training_vocabulary: vocabulary_lib.Vocabulary
                      ) -> vocabulary_lib.Vocabulary:
  """The vocabulary with base = the names the model was trained on with boxes.

  A category is base iff its name or one of its synonyms is the name or a synonym of a base
  category of `training_vocabulary`, compared after clean-up ('traffic_light' = 'Traffic
  light'); every other category is novel.
  """
  trained = {prompts.clean_name(s)
             for synonyms, novel in zip(training_vocabulary.synonyms, training_vocabulary.is_novel)
             if not novel for s in synonyms}
  return dataclasses.replace(vocabulary, is_novel=tuple(
      not any(prompts.clean_name(s) in trained for s in synonyms)
      for synonyms in vocabulary.synonyms))


def load_training_vocabulary(model_dir: str) -> Optional[vocabulary_lib.Vocabulary]:
  """The vocabulary a trainer's run trained on, or None if it cannot be found.

  Read from <model_dir>/training_vocabulary.json (the trainer writes it), else from the
  sidecar of the text embeddings the parsed run config names
  (`training_vocabulary.text_embeddings_path`, with its `classes`).
  """
  path = os.path.join(model_dir, training_experiment.TRAINING_VOCABULARY)
  if io.exists(path):
    return vocabulary_lib.Vocabulary.from_dict(io.read_json(path), source=path)
  embeddings_path = _bound("training_vocabulary.text_embeddings_path")
  sidecar = embeddings_path and text_embeddings_lib.sidecar_path(embeddings_path)
  if not sidecar or not io.exists(sidecar):
    logging.warning("%s: no %s and no readable training text-embedding sidecar (%s): the "
                    "names the model was trained on are unknown.", model_dir,
                    training_experiment.TRAINING_VOCABULARY, sidecar)
    return None
  vocabulary = vocabulary_lib.Vocabulary.from_dict(io.read_json(sidecar)["vocabulary"],
                                                   source=sidecar)
  if _bound("training_vocabulary.classes") == "base":
    vocabulary = vocabulary.subset(vocabulary.base_mask)
  return vocabulary


def describe_split(vocabulary: vocabulary_lib.Vocabulary, rule: str, shown: int = 20) -> str:
  """'base (<rule>): a, b; novel: c' for a person to check."""
  def listed(mask):
    names = [n for n, keep in zip(vocabulary.names, mask) if keep]
    more = f" ... and {len(names) - shown} more" if len(names) > shown else ""
    return (", ".join(names[:shown]) + more) if names else "none"
  return (f"ViLD-ensemble split of {len(vocabulary)} names ({rule}): base: "
          f"{listed(vocabulary.base_mask)}; novel: {listed(vocabulary.novel_mask)}")


def _bound(name: str):
  """A parsed gin binding's value (a %MACRO followed to its value), or None if unbound."""
  try:
    value = gin.query_parameter(name)
  except ValueError:
    return None
  if isinstance(value, gin.config.ConfigurableReference):
    return gin.query_parameter(value.scoped_selector.split("/")[0] + "/macro.value")
  return value


def _as_vocabulary(names) -> vocabulary_lib.Vocabulary:
  if isinstance(names, vocabulary_lib.Vocabulary):
    return names
  if isinstance(names, str):
    return vocabulary_lib.load_vocabulary(names)
  return vocabulary_lib.Vocabulary.from_names(list(names))


def _checked(matrix, source: str, num_classes: Optional[int], embedding_dim: int) -> np.ndarray:
  return text_embeddings_lib.l2_normalize(text_embeddings_lib.validate(
      matrix, source, num_classes=num_classes, embedding_dim=embedding_dim))
