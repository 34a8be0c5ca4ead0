"""A vocabulary -> its [C, D] text-embedding matrix (the ViLD classifier), via a teacher.

Each category's prompts (`vild.teacher.prompts`: templates x synonyms) are embedded, each
embedding L2-normalised, averaged per category and re-normalised. All prompts of all
categories go through the teacher in fixed-size batches with a progress bar (prompts/s,
ETA), however large the vocabulary. `write_text_embeddings` also saves the matrix as a .npy
with its sidecar JSON (`vild.text_embeddings`).
"""
from typing import Sequence

import gin
import numpy as np
import tqdm

from vild import text_embeddings
from vild import vocabulary as vocabulary_lib
from vild.teacher import interface
from vild.teacher import prompts as prompts_lib


@gin.configurable
def embed_vocabulary(teacher: interface.Teacher, vocabulary: vocabulary_lib.Vocabulary,
                     templates: Sequence[str] = prompts_lib.VILD_TEMPLATES,
                     this_is: bool = True, use_synonyms: bool = True,
                     batch_size: int = 1024, progress: bool = True) -> np.ndarray:
  """[C, D] float32, row i = normalised mean prompt embedding of `vocabulary.names[i]`."""
  texts, owner = [], []  # owner[j]: the category of prompt j
  for index, synonyms in enumerate(vocabulary.synonyms):
    names = synonyms if use_synonyms else synonyms[:1]
    category_prompts = prompts_lib.prompts_for_category(names, templates, this_is)
    if not category_prompts:
      raise vocabulary_lib.VocabularyError(
          f"{vocabulary.source}: category {vocabulary.names[index]!r} has no usable name "
          "after clean-up (it is only punctuation or spaces); rename it.")
    texts.extend(category_prompts)
    owner.extend([index] * len(category_prompts))

  embeddings = []
  with tqdm.tqdm(total=len(texts), unit="prompt", desc="text embeddings",
                 disable=not progress) as bar:
    for start in range(0, len(texts), batch_size):
      batch = texts[start:start + batch_size]
      embeddings.append(interface.checked_embeddings(
          teacher, teacher.encode_text(batch), len(batch), "encode_text"))
      bar.update(len(batch))
  # [P, D]; normalised again because a plugged-in teacher may not return unit rows.
  embeddings = text_embeddings.l2_normalize(np.concatenate(embeddings))

  sums = np.zeros([len(vocabulary), embeddings.shape[1]], np.float64)
  np.add.at(sums, np.asarray(owner), embeddings)
  counts = np.bincount(owner, minlength=len(vocabulary))[:, None]
  return text_embeddings.l2_normalize(sums / counts).astype(np.float32)


def write_text_embeddings(path: str, teacher: interface.Teacher,
                          vocabulary: vocabulary_lib.Vocabulary, template_set: str = "vild",
                          this_is: bool = True, use_synonyms: bool = True,
                          batch_size: int = 1024, progress: bool = True) -> np.ndarray:
  """Embeds `vocabulary` and writes `path` (.npy) with its sidecar JSON; returns the matrix.

  The sidecar records the vocabulary, the teacher, the templates and the options, so a
  detector loading the file can check it was made for its vocabulary and dimension.
  """
  if not path.endswith(".npy"):
    raise text_embeddings.TextEmbeddingError(f"{path}: the output must be a .npy file.")
  templates = prompts_lib.templates_named(template_set)
  matrix = embed_vocabulary(teacher, vocabulary, templates, this_is, use_synonyms,
                            batch_size, progress)
  text_embeddings.save(path, matrix, vocabulary, model=teacher.name, template_set=template_set,
                       templates=list(templates), this_is=this_is, synonyms=use_synonyms)
  return matrix
