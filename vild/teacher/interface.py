"""The teacher interface: what ViLD needs from a vision-language dual encoder.

ViLD uses its teacher twice, offline: text embeddings of the category prompts (the
classifier) and image embeddings of cropped proposals (the distillation targets). Anything
with these two methods can be the teacher: vild's CLIP, an ALIGN-like model, or a tiny
teacher trained on a synthetic world.
"""
import abc
from typing import Sequence

import numpy as np


class TeacherError(ValueError):
  """A teacher and the data given to it (or produced with another teacher) do not fit."""


class Teacher(abc.ABC):
  """A dual encoder whose text and image embeddings share one unit sphere.

  Attributes:
    name: identifies the model in saved metadata (e.g. a checkpoint directory name).
  """
  name: str = "teacher"

  @property
  @abc.abstractmethod
  def embedding_dim(self) -> int:
    """D, the length of every embedding."""

  @property
  @abc.abstractmethod
  def image_size(self) -> int:
    """Side of the square images the image encoder takes; crops are resized to it."""

  @abc.abstractmethod
  def encode_text(self, texts: Sequence[str]) -> np.ndarray:
    """[N] strings -> [N, D] float32, each row of unit L2 norm."""

  @abc.abstractmethod
  def encode_images(self, images) -> np.ndarray:
    """[N, H, W, 3] RGB (uint8, or float on the 0..255 scale) -> [N, D] float32 unit rows.

    Images of another size than `image_size` are resized and centre-cropped as the teacher
    was trained; square crops at `image_size` go in as they are.
    """


def checked_embeddings(teacher: Teacher, embeddings, count: int, method: str) -> np.ndarray:
  """`embeddings` as float32 after checking they are [count, teacher.embedding_dim].

  A plugged-in teacher that misreports its dimension would otherwise write files that fail
  much later, inside the detector.
  """
  embeddings = np.asarray(embeddings, np.float32)
  expected = (count, teacher.embedding_dim)
  if embeddings.shape != expected:
    raise TeacherError(
        f"teacher {teacher.name!r}: {method} returned shape {embeddings.shape}, expected "
        f"{expected} (embedding_dim = {teacher.embedding_dim}); fix the teacher's "
        f"{method} or its embedding_dim.")
  return embeddings
