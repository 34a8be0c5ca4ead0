"""The vocabulary: which categories a model scores, in which order, and which are novel.

A `Vocabulary` is the data half of a ViLD classifier: row i of a text-embedding matrix is the
embedding of `names[i]`, and model class index i + 1 (0 is background) means that category.
Nothing in vild assumes a category count; LVIS (1203), OV-COCO (65) and a user's list of three
names are all just vocabularies.

Sources: an LVIS v1 or COCO instances/categories JSON, a plain list of names (Python or a text
file, one name per line), or a saved vocabulary JSON (`Vocabulary.save`).
"""
import dataclasses
import json
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np

from vild.utils import io

FORMAT = "vild.vocabulary/1"
FREQUENCIES = ("f", "c", "r")


class VocabularyError(ValueError):
  """A vocabulary source is malformed; the message names the source, the field and the fix."""


@dataclasses.dataclass(frozen=True)
class Vocabulary:
  """Category names, dataset ids, synonyms, LVIS frequency and the base/novel split.

  Attributes:
    names: category names, in classifier order (row order of the text embeddings).
    category_ids: dataset category id of each name (LVIS/COCO ids; 1..C for plain lists).
    synonyms: per category, the names to ensemble in prompts (always starts with the name).
    frequencies: per category 'f', 'c', 'r' (LVIS frequency groups) or '' when unknown.
    is_novel: per category, True when held out of box/mask training (e.g. LVIS rare).
    source: where it came from, for error messages.
  """
  names: Tuple[str, ...]
  category_ids: Tuple[int, ...]
  synonyms: Tuple[Tuple[str, ...], ...]
  frequencies: Tuple[str, ...]
  is_novel: Tuple[bool, ...]
  source: str = "<memory>"

  def __post_init__(self):
    n = len(self.names)
    for field in ("category_ids", "synonyms", "frequencies", "is_novel"):
      if len(getattr(self, field)) != n:
        raise VocabularyError(
            f"{self.source}: field '{field}' has {len(getattr(self, field))} entries but there "
            f"are {n} names; every category needs one of each.")
    if n == 0:
      raise VocabularyError(f"{self.source}: the vocabulary is empty; give at least one name.")
    for i, name in enumerate(self.names):
      if not isinstance(name, str) or not name.strip():
        raise VocabularyError(
            f"{self.source}: category {i} (id {self.category_ids[i]}) has an empty name; "
            "every category needs a non-empty name.")
    _raise_on_duplicates(self.names, "name", self.source)
    _raise_on_duplicates(self.category_ids, "id", self.source)
    for i, f in enumerate(self.frequencies):
      if f not in FREQUENCIES + ("",):
        raise VocabularyError(
            f"{self.source}: category '{self.names[i]}' has frequency {f!r}; use one of "
            f"{FREQUENCIES} or leave it empty.")

  # ----------------------------------------------------------------------------------------
  # Constructors.
  @classmethod
  def from_names(cls, names: Iterable[str], novel_names: Iterable[str] = (),
                 source: str = "<names>") -> "Vocabulary":
    """A vocabulary from plain names; ids are 1..C in the given order."""
    names = tuple(n.strip() for n in names)
    novel = set(novel_names)
    unknown = novel.difference(names)
    if unknown:
      raise VocabularyError(
          f"{source}: novel names {sorted(unknown)} are not in the vocabulary; check spelling.")
    return cls(
        names=names,
        category_ids=tuple(range(1, len(names) + 1)),
        synonyms=tuple((n,) for n in names),
        frequencies=tuple("" for _ in names),
        is_novel=tuple(n in novel for n in names),
        source=source)

  @classmethod
  def from_categories(cls, categories: Sequence[dict], novel_frequencies: Iterable[str] = ("r",),
                      novel_names: Iterable[str] = (), source: str = "<categories>"
                      ) -> "Vocabulary":
    """From an LVIS/COCO `categories` list, sorted by id.

    A category is novel when its LVIS `frequency` is in `novel_frequencies` (LVIS: rare) or
    its name is in `novel_names` (e.g. the OV-COCO 17). `synonyms` (LVIS) are kept.
    """
    novel_frequencies = set(novel_frequencies)
    novel_names = set(novel_names)
    cats = sorted(categories, key=lambda c: c.get("id", 0))
    for i, c in enumerate(cats):
      for key in ("id", "name"):
        if key not in c:
          raise VocabularyError(
              f"{source}: categories[{i}] has no '{key}' field; LVIS/COCO categories need "
              "'id' and 'name'.")
    names = tuple(c["name"] for c in cats)
    unknown = novel_names.difference(names)
    if unknown:
      raise VocabularyError(
          f"{source}: novel names {sorted(unknown)} are not categories of this file.")
    synonyms = []
    for c in cats:
      syns = [c["name"]] + [s for s in c.get("synonyms", []) if s != c["name"]]
      synonyms.append(tuple(syns))
    frequencies = tuple(c.get("frequency", "") for c in cats)
    return cls(
        names=names,
        category_ids=tuple(int(c["id"]) for c in cats),
        synonyms=tuple(synonyms),
        frequencies=frequencies,
        is_novel=tuple(f in novel_frequencies or c["name"] in novel_names
                       for c, f in zip(cats, frequencies)),
        source=source)

  @classmethod
  def from_file(cls, path: str, novel_frequencies: Iterable[str] = ("r",),
                novel_names: Iterable[str] = ()) -> "Vocabulary":
    """Loads a saved vocabulary, an LVIS/COCO JSON (uses its `categories`) or a names file."""
    if not io.exists(path):
      raise VocabularyError(f"{path}: no such file. Give an LVIS/COCO JSON, a vocabulary JSON "
                            "or a text file with one category name per line.")
    if path.endswith(".json"):
      try:
        data = io.read_json(path)
      except json.JSONDecodeError as e:
        raise VocabularyError(f"{path}: not valid JSON ({e}).") from e
      if isinstance(data, dict) and data.get("format") == FORMAT:
        return cls.from_dict(data, source=path)
      if isinstance(data, dict) and "categories" in data:
        return cls.from_categories(data["categories"], novel_frequencies, novel_names,
                                   source=path)
      if isinstance(data, list) and all(isinstance(n, str) for n in data):
        return cls.from_names(data, novel_names, source=path)
      raise VocabularyError(
          f"{path}: expected a vild vocabulary (format {FORMAT!r}), an LVIS/COCO JSON with a "
          "'categories' list, or a JSON list of names.")
    names = [line.strip() for line in io.read_text(path).splitlines()
             if line.strip() and not line.startswith("#")]
    return cls.from_names(names, novel_names, source=path)

  # ----------------------------------------------------------------------------------------
  # Serialisation.
  def to_dict(self) -> dict:
    return {
        "format": FORMAT,
        "categories": [
            {"id": i, "name": n, "synonyms": list(s), "frequency": f, "novel": nov}
            for i, n, s, f, nov in zip(self.category_ids, self.names, self.synonyms,
                                       self.frequencies, self.is_novel)
        ],
    }

  @classmethod
  def from_dict(cls, data: dict, source: str = "<dict>") -> "Vocabulary":
    cats = data["categories"]
    for i, c in enumerate(cats):
      missing = {"id", "name"}.difference(c)
      if missing:
        raise VocabularyError(f"{source}: categories[{i}] lacks {sorted(missing)}.")
    return cls(
        names=tuple(c["name"] for c in cats),
        category_ids=tuple(int(c["id"]) for c in cats),
        synonyms=tuple(tuple(c.get("synonyms") or [c["name"]]) for c in cats),
        frequencies=tuple(c.get("frequency", "") for c in cats),
        is_novel=tuple(bool(c.get("novel", False)) for c in cats),
        source=source)

  def save(self, path: str) -> None:
    io.write_text_atomic(path, json.dumps(self.to_dict(), indent=1) + "\n")

  # ----------------------------------------------------------------------------------------
  # Views.
  def __len__(self) -> int:
    return len(self.names)

  @property
  def base_mask(self) -> np.ndarray:
    """[C] bool, True for base (trained-with-boxes) categories."""
    return ~np.asarray(self.is_novel, dtype=bool)

  @property
  def novel_mask(self) -> np.ndarray:
    return np.asarray(self.is_novel, dtype=bool)

  def frequency_mask(self, frequency: str) -> np.ndarray:
    return np.asarray([f == frequency for f in self.frequencies], dtype=bool)

  def subset(self, keep: Sequence[bool]) -> "Vocabulary":
    """The categories where `keep` is True, in order (e.g. `vocab.subset(vocab.base_mask)`)."""
    keep = np.asarray(keep, dtype=bool)
    if keep.shape != (len(self),):
      raise VocabularyError(f"{self.source}: subset mask has shape {keep.shape}, "
                            f"expected ({len(self)},).")
    pick = lambda seq: tuple(x for x, k in zip(seq, keep) if k)  # noqa: E731
    return Vocabulary(pick(self.names), pick(self.category_ids), pick(self.synonyms),
                      pick(self.frequencies), pick(self.is_novel), self.source)

  def index_of_ids(self, category_ids: Sequence[int]) -> np.ndarray:
    """Classifier index (0-based) of each dataset id; -1 for ids not in the vocabulary."""
    lookup = {cid: i for i, cid in enumerate(self.category_ids)}
    return np.asarray([lookup.get(int(c), -1) for c in category_ids], dtype=np.int64)

  def describe(self) -> str:
    n_novel = int(self.novel_mask.sum())
    return (f"{len(self)} categories ({len(self) - n_novel} base, {n_novel} novel) "
            f"from {self.source}")


def _raise_on_duplicates(values: Sequence, what: str, source: str) -> None:
  seen = {}
  for i, v in enumerate(values):
    if v in seen:
      raise VocabularyError(
          f"{source}: duplicate category {what} {v!r} at positions {seen[v]} and {i}; "
          f"each category {what} must appear once.")
    seen[v] = i


def load_vocabulary(spec: str, novel_names: Optional[List[str]] = None) -> Vocabulary:
  """A vocabulary from a file path or from inline names separated by ';' ("cat;red umbrella")."""
  if io.exists(spec) or spec.endswith((".json", ".txt")):
    return Vocabulary.from_file(spec, novel_names=novel_names or ())
  names = [n.strip() for n in spec.split(";") if n.strip()]
  return Vocabulary.from_names(names, novel_names or (), source=f"names {spec!r}")
