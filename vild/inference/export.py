"""The ViLD SavedModel: export with a vocabulary chosen at serving time (and one baked in).

Layout of an export directory:
  saved_model.pb, variables/        the ServingModule's signatures (see vild.inference.serving)
  assets.extra/vild_model_spec.json ModelSpec: input size, embedding dim, scoring head, NMS
  assets.extra/vocabulary.json      the baked vocabulary (only with `serve` / `serve_bytes`)

The directory is written under a temporary name and renamed when complete, so a job that dies
never leaves a half-written export behind.
"""
import dataclasses
import os
import uuid
from typing import Callable, Dict, Optional, Sequence

from absl import logging
import numpy as np
import tensorflow as tf

from vild import vocabulary as vocabulary_lib
from vild.inference import serving
from vild.inference import spec as spec_lib
from vild.modeling import vild_model
from vild.utils import io

SPEC_PATH = os.path.join("assets.extra", "vild_model_spec.json")
VOCABULARY_PATH = os.path.join("assets.extra", "vocabulary.json")


class ExportError(ValueError):
  """An export directory is missing, incomplete or not a ViLD export."""


def export_saved_model(model: vild_model.ViLDModel, export_dir: str,
                       input_size: Sequence[int],
                       text_embeddings: Optional[np.ndarray] = None,
                       vocabulary: Optional[vocabulary_lib.Vocabulary] = None,
                       use_ensemble: Optional[bool] = None,
                       overwrite: bool = False) -> spec_lib.ModelSpec:
  """Writes a SavedModel of `model` to `export_dir`; returns its ModelSpec.

  Args:
    model: a built (restored) ViLDModel; its detection generator's settings are exported.
    export_dir: the directory to create.
    input_size: (height, width) of the model input.
    text_embeddings: [C, D] to bake into `serve` / `serve_bytes`; needs `vocabulary`.
    vocabulary: the baked vocabulary (names and its base mask).
    use_ensemble: False exports text-branch-only scoring for a ViLD-ensemble model.
    overwrite: replace an existing `export_dir`.
  """
  if (text_embeddings is None) != (vocabulary is None):
    raise ExportError("export_saved_model: pass text_embeddings and vocabulary together to "
                      "bake a vocabulary in, or neither.")
  if io.isdir(export_dir) and io.listdir(export_dir) and not overwrite:
    raise ExportError(f"{export_dir}: exists and is not empty; choose a new directory or "
                      "pass overwrite=True (--overwrite).")
  module = serving.ServingModule(
      model, input_size, use_ensemble=use_ensemble, text_embeddings=text_embeddings,
      base_mask=None if vocabulary is None else vocabulary.base_mask)
  if use_ensemble and not model.uses_ensemble:
    raise ExportError(f"use_ensemble=True needs a ViLD-ensemble model; this one has "
                      f"distillation={model.distillation!r}.")
  model_spec = spec_lib.ModelSpec.from_model(model, input_size, use_ensemble)
  signatures = module.signatures()
  # Written beside export_dir under a temporary name, then renamed (tf.io.gfile: gs:// too).
  export_dir = export_dir.rstrip("/")
  tmp_dir = os.path.join(os.path.dirname(export_dir),
                         f".{os.path.basename(export_dir)}.{uuid.uuid4().hex[:12]}.tmp")
  try:
    tf.saved_model.save(module, tmp_dir, signatures=signatures)
    model_spec.save(os.path.join(tmp_dir, SPEC_PATH))
    if vocabulary is not None:
      vocabulary.save(os.path.join(tmp_dir, VOCABULARY_PATH))
    io.remove(export_dir)
    tf.io.gfile.rename(tmp_dir, export_dir)
  finally:
    io.remove(tmp_dir)
  logging.info("Exported %s (signatures: %s).", export_dir, ", ".join(signatures))
  return model_spec


@dataclasses.dataclass(frozen=True)
class LoadedExport:
  signatures: Dict[str, Callable]       # signature name -> function(**inputs) -> outputs
  spec: spec_lib.ModelSpec
  vocabulary: Optional[vocabulary_lib.Vocabulary]  # the baked one, if any
  saved_model: object                   # keeps the loaded object (and its variables) alive


def is_saved_model(path: str) -> bool:
  return io.exists(os.path.join(path, "saved_model.pb"))


def load_saved_model(export_dir: str) -> LoadedExport:
  """Loads an export of `export_saved_model` with its spec and baked vocabulary."""
  if not is_saved_model(export_dir):
    raise ExportError(f"{export_dir}: no saved_model.pb; give a directory written by "
                      "scripts/export_saved_model.py.")
  spec_path = os.path.join(export_dir, SPEC_PATH)
  if not io.exists(spec_path):
    raise ExportError(f"{spec_path}: missing; this SavedModel was not exported by vild "
                      "(re-export it with scripts/export_saved_model.py).")
  loaded = tf.saved_model.load(export_dir)
  vocabulary_path = os.path.join(export_dir, VOCABULARY_PATH)
  vocabulary = (vocabulary_lib.Vocabulary.from_file(vocabulary_path)
                if io.exists(vocabulary_path) else None)
  return LoadedExport(signatures=dict(loaded.signatures),
                      spec=spec_lib.ModelSpec.load(spec_path),
                      vocabulary=vocabulary, saved_model=loaded)
