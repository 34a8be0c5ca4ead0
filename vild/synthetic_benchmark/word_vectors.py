"""Text embeddings without vision: GloVe word vectors learned from the captions alone.

The paper's GloVe baseline (AP_r 3.0 against ViLD-text's 10.1) classifies regions with word
embeddings that were never aligned with images. On the synthetic world the same thing is
GloVe (Pennington et al., 2014) trained on the co-occurrence counts of the words of the
teacher's captions, with no pixel in sight:

  X_ij  = sum over captions of 1 / distance for each pair of words i, j in the caption
  loss  = sum_ij f(X_ij) (w_i . w~_j + b_i + b~_j - log X_ij)^2,  f(x) = min((x / x_max)^0.75, 1)
  vector of word i = w_i + w~_i (GloVe's own choice), minus the mean vector of all words

The mean is removed because on a vocabulary of ~50 words the fit of the (all positive) log
counts puts a large common component in every vector (mean cosine 0.98 between category
embeddings without it); LVIS-scale GloVe vectors do not share one that large.

A category's embedding is the mean of its name's word vectors, averaged over its synonyms and
L2-normalised (templates add the same words to every category, so they are left out). The
vectors know that "red" and "blue" fill the same slots and which words go together; they
cannot know what a cross looks like.

  matrix = category_embeddings(captions, vocabulary, dim=32)
"""
import collections
import re
from typing import Dict, List, Sequence, Tuple

import numpy as np

from vild import text_embeddings
from vild import vocabulary as vocabulary_lib

WORD = re.compile(r"[a-z]+(?:-[a-z]+)*")


def words(text: str) -> List[str]:
  """Lower-case words of a caption ('five-pointed' stays one word)."""
  return WORD.findall(text.lower())


def cooccurrence(texts: Sequence[str]) -> Tuple[List[str], np.ndarray]:
  """(vocabulary of words, [V, V] symmetric counts weighted 1 / distance within a text)."""
  tokenized = [words(t) for t in texts]
  index: Dict[str, int] = {}
  for tokens in tokenized:
    for token in tokens:
      index.setdefault(token, len(index))
  counts = collections.defaultdict(float)
  for tokens in tokenized:
    ids = [index[t] for t in tokens]
    for a in range(len(ids)):
      for b in range(a + 1, len(ids)):
        counts[ids[a], ids[b]] += 1.0 / (b - a)
        counts[ids[b], ids[a]] += 1.0 / (b - a)
  matrix = np.zeros([len(index), len(index)], np.float64)
  for (i, j), value in counts.items():
    matrix[i, j] = value
  return list(index), matrix


def train_glove(counts: np.ndarray, dim: int, steps: int = 3000, learning_rate: float = 0.05,
                x_max: float = 100.0, alpha: float = 0.75, seed: int = 0) -> np.ndarray:
  """[V, dim] word vectors (w + w~) fitted to log counts by full-batch AdaGrad, as GloVe."""
  rng = np.random.default_rng(seed)
  size = len(counts)
  w, w_context = (rng.uniform(-0.5, 0.5, [size, dim]) / dim for _ in range(2))
  b, b_context = np.zeros(size), np.zeros(size)
  observed = counts > 0
  weight = np.where(observed, np.minimum((counts / x_max) ** alpha, 1.0), 0.0)
  log_counts = np.log(np.where(observed, counts, 1.0))
  params = [w, w_context, b, b_context]
  squares = [np.full_like(p, 1e-8) for p in params]
  for _ in range(steps):
    error = weight * (w @ w_context.T + b[:, None] + b_context[None, :] - log_counts)
    grads = [error @ w_context, error.T @ w, error.sum(axis=1), error.sum(axis=0)]
    for param, grad, square in zip(params, grads, squares):
      square += grad ** 2
      param -= learning_rate * grad / np.sqrt(square)
  return w + w_context


def category_embeddings(texts: Sequence[str], vocabulary: vocabulary_lib.Vocabulary,
                        dim: int, seed: int = 0) -> Tuple[np.ndarray, dict]:
  """([C, dim] float32 unit rows, a summary) for `vocabulary` from word vectors of `texts`.

  Raises:
    ValueError: a category name has a word the texts never use (it would have no vector).
  """
  word_list, counts = cooccurrence(texts)
  vectors = train_glove(counts, dim, seed=seed)
  vectors -= vectors.mean(axis=0)
  index = {word: i for i, word in enumerate(word_list)}
  rows = []
  for name, synonyms in zip(vocabulary.names, vocabulary.synonyms):
    per_synonym = []
    for synonym in synonyms:
      tokens = words(synonym)
      missing = [t for t in tokens if t not in index]
      if missing or not tokens:
        raise ValueError(f"category {name!r}: synonym {synonym!r} has words {missing} that no "
                         "caption uses; GloVe vectors exist only for caption words.")
      per_synonym.append(text_embeddings.l2_normalize(
          vectors[[index[t] for t in tokens]].mean(axis=0)))
    rows.append(np.mean(per_synonym, axis=0))
  matrix = text_embeddings.l2_normalize(np.stack(rows)).astype(np.float32)
  return matrix, {"num_words": len(word_list), "num_texts": len(texts), "dim": dim}
