"""Text-embedding matrix files: one L2-normalised row per category, plus a sidecar JSON.

On disk: `name.npy` holds a float32 [C, D] matrix (row i embeds `vocabulary.names[i]`, no
background row) and `name.json` beside it holds the vocabulary and how the matrix was made
(teacher model, prompt templates, dimension, date). Loading checks the matrix against the
sidecar and against what the caller expects, and fails with a message naming the file, the two
sizes and the fix. The official ViLD release stored [D, C]; such a file is transposed when its
orientation is unambiguous.
"""
import datetime
import json
import os
from typing import Optional, Tuple

import numpy as np

from vild import vocabulary as vocabulary_lib
from vild.utils import io


class TextEmbeddingError(ValueError):
  """A text-embedding matrix does not fit the vocabulary or the model."""


def sidecar_path(path: str) -> str:
  return os.path.splitext(path)[0] + ".json"


def l2_normalize(matrix: np.ndarray) -> np.ndarray:
  norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
  return matrix / np.maximum(norms, 1e-12)


def validate(matrix, source: str = "<matrix>", num_classes: Optional[int] = None,
             embedding_dim: Optional[int] = None) -> np.ndarray:
  """Checks a [C, D] matrix: rank, finiteness, C and D. Returns it as float32.

  Raises:
    TextEmbeddingError: naming `source`, the expected and actual sizes, and the fix.
  """
  matrix = np.asarray(matrix)
  if matrix.ndim != 2:
    raise TextEmbeddingError(
        f"{source}: text embeddings must be a 2-D [num_classes, dim] matrix, got shape "
        f"{matrix.shape}.")
  if not np.issubdtype(matrix.dtype, np.floating):
    raise TextEmbeddingError(f"{source}: text embeddings must be floating point, got "
                             f"{matrix.dtype}.")
  bad = ~np.isfinite(matrix)
  if bad.any():
    rows = np.unique(np.nonzero(bad)[0])[:10].tolist()
    raise TextEmbeddingError(
        f"{source}: text embeddings contain NaN or inf (rows {rows}); recompute them with "
        "scripts/compute_text_embeddings.py.")
  if embedding_dim is not None and matrix.shape[1] != embedding_dim:
    raise TextEmbeddingError(
        f"{source}: text embeddings have dimension {matrix.shape[1]} but the model projects "
        f"regions to dimension {embedding_dim}; use embeddings from the teacher the model was "
        "trained with, or set the model's embedding_dim to match.")
  if num_classes is not None and matrix.shape[0] != num_classes:
    raise TextEmbeddingError(
        f"{source}: text embeddings have {matrix.shape[0]} rows but the vocabulary has "
        f"{num_classes} categories; compute embeddings for exactly this vocabulary.")
  if (np.linalg.norm(matrix, axis=-1) < 1e-6).any():
    raise TextEmbeddingError(f"{source}: some text-embedding rows are all zero.")
  return matrix.astype(np.float32)


def save(path: str, matrix: np.ndarray, vocabulary: vocabulary_lib.Vocabulary,
         **metadata) -> None:
  """Writes `path` (.npy, L2-normalised rows) and its sidecar JSON atomically."""
  if not path.endswith(".npy"):
    raise TextEmbeddingError(f"{path}: text-embedding files must end in .npy.")
  matrix = l2_normalize(validate(matrix, path, num_classes=len(vocabulary)))
  sidecar = {
      "vocabulary": vocabulary.to_dict(),
      "num_classes": int(matrix.shape[0]),
      "dim": int(matrix.shape[1]),
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      **metadata,
  }
  io.save_npy_atomic(path, matrix)
  io.write_text_atomic(sidecar_path(path), json.dumps(sidecar, indent=1) + "\n")


def load(path: str, vocabulary: Optional[vocabulary_lib.Vocabulary] = None,
         embedding_dim: Optional[int] = None
         ) -> Tuple[np.ndarray, Optional[vocabulary_lib.Vocabulary]]:
  """Loads a [C, D] matrix and the vocabulary saved beside it.

  Args:
    path: a .npy file.
    vocabulary: if given, the matrix must have one row per category, and a sidecar's names
      must equal the vocabulary's names in order.
    embedding_dim: if given, the matrix's D must equal it (the model's projection size).

  Returns:
    (matrix [C, D] float32 with L2-normalised rows, the vocabulary: the sidecar's if present,
    else the given one, else None).
  """
  if not io.exists(path):
    raise TextEmbeddingError(
        f"{path}: no such text-embedding file; make one with scripts/compute_text_embeddings.py.")
  try:
    matrix = io.load_npy(path)
  except ValueError as e:
    raise TextEmbeddingError(f"{path}: not a readable .npy array ({e}).") from e
  saved_vocabulary = None
  if io.exists(sidecar_path(path)):
    saved_vocabulary = vocabulary_lib.Vocabulary.from_dict(
        io.read_json(sidecar_path(path))["vocabulary"], source=sidecar_path(path))
  expected = vocabulary or saved_vocabulary
  if expected is not None and matrix.ndim == 2:
    matrix = _maybe_transpose_official_layout(matrix, len(expected), embedding_dim)
  matrix = validate(matrix, path, num_classes=len(expected) if expected else None,
                    embedding_dim=embedding_dim)
  if vocabulary is not None and saved_vocabulary is not None:
    if vocabulary.names != saved_vocabulary.names:
      diff = next(i for i, (a, b) in enumerate(zip(vocabulary.names, saved_vocabulary.names))
                  if a != b) if len(vocabulary) == len(saved_vocabulary) else None
      where = f" (first difference at row {diff})" if diff is not None else ""
      raise TextEmbeddingError(
          f"{path}: embeddings were computed for the vocabulary in {sidecar_path(path)}, which "
          f"differs from {vocabulary.source}{where}; recompute the embeddings for this "
          "vocabulary.")
  return l2_normalize(matrix), (saved_vocabulary or vocabulary)


def _maybe_transpose_official_layout(matrix: np.ndarray, num_classes: int,
                                     embedding_dim: Optional[int]) -> np.ndarray:
  """The official ViLD files are [D, C]; transpose only when that reading is the only fit."""
  rows, cols = matrix.shape
  if rows == num_classes and (embedding_dim is None or cols == embedding_dim):
    return matrix
  if cols == num_classes and (embedding_dim is None or rows == embedding_dim):
    return matrix.T
  return matrix
