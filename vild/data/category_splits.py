"""Open-vocabulary category splits: which categories a dataset uses, and which are novel.

  lvis_rare  LVIS: every category is used; rare ('r') ones are novel (337 of 1203 in v1).
  ov_coco    COCO: the standard 48 base / 17 novel split, shipped as vild/data/splits/ov_coco.json;
             the other 15 COCO categories are not part of the benchmark.
  none       every category is used and none is novel.

A split is returned as a `Vocabulary` of the used categories with `is_novel` set, so the
converter, the input pipeline and the evaluator all read one definition.
"""
import json
import os
from typing import Sequence

from vild import vocabulary as vocabulary_lib

SPLITS = ("lvis_rare", "ov_coco", "none")
SPLITS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "splits")


def load_split_file(name: str) -> dict:
  """A split shipped as package data, e.g. 'ov_coco' -> {'base': [...], 'novel': [...]}."""
  path = os.path.join(SPLITS_DIR, f"{name}.json")
  if not os.path.exists(path):
    raise ValueError(f"{path}: no such split file; shipped splits are "
                     f"{sorted(f[:-5] for f in os.listdir(SPLITS_DIR))}.")
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def split_vocabulary(categories: Sequence[dict], split: str,
                     source: str = "<categories>") -> vocabulary_lib.Vocabulary:
  """The categories of `split` (LVIS/COCO category dicts) with their novel flags."""
  if split == "lvis_rare":
    if not any("frequency" in c for c in categories):
      raise ValueError(f"{source}: split 'lvis_rare' needs LVIS categories with a 'frequency' "
                       "field; for COCO use split 'ov_coco'.")
    return vocabulary_lib.Vocabulary.from_categories(categories, ("r",), source=source)
  if split == "ov_coco":
    ov = load_split_file("ov_coco")
    used = set(ov["base"]) | set(ov["novel"])
    missing = used.difference(c.get("name") for c in categories)
    if missing:
      raise ValueError(f"{source}: split 'ov_coco' needs the COCO categories {sorted(missing)}, "
                       "which this file lacks; is it a COCO 2017 instances file?")
    kept = [c for c in categories if c["name"] in used]
    return vocabulary_lib.Vocabulary.from_categories(kept, (), ov["novel"], source=source)
  if split == "none":
    return vocabulary_lib.Vocabulary.from_categories(categories, (), source=source)
  raise ValueError(f"Unknown category split {split!r}; use one of {SPLITS}.")
