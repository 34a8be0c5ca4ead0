"""The ViLD SavedModel: export with a vocabulary chosen at serving time (and one baked in).

Layout of an export directory:
  saved_model.pb, variables/        the ServingModule's signatures (see vild.inference.serving)
  assets.extra/vild_model_spec.json ModelSpec: input size, embedding dim, scoring head, NMS
  assets.extra/vocabulary.json      the baked vocabulary (only with `serve` / `serve_bytes`)
  assets.extra/training_vocabulary.json  what the model was trained on: its base categories
                                    are the base names of ViLD-ensemble fusion (when known)

The directory is written under a hidden temporary name beside it and renamed when complete
(vild.utils.io.atomic_directory), so a job that dies never leaves a half-written export, and the
next export to that directory removes the temporary the dead one left. The export gets the
permissions of any directory the user makes (umask).

`check_export_dir` keeps an export from destroying a training run: the export directory may
not be, contain or lie inside a directory holding checkpoints (`training_files`), whatever
overwrite says, and an existing directory is replaced only if it is an earlier export (with
overwrite).
"""
import dataclasses
import glob
import os
from typing import Callable, Dict, List, Optional, Sequence

from absl import logging
import numpy as np
import tensorflow as tf

from vild import vocabulary as vocabulary_lib
from vild.inference import serving
from vild.inference import spec as spec_lib
from vild.modeling import vild_model
from vild.training import trainer
from vild.utils import io

SPEC_PATH = os.path.join("assets.extra", "vild_model_spec.json")
VOCABULARY_PATH = os.path.join("assets.extra", "vocabulary.json")
TRAINING_VOCABULARY_PATH = os.path.join("assets.extra", "training_vocabulary.json")


class ExportError(ValueError):
  """An export directory is missing, incomplete or not a ViLD export, or may not be written."""


def training_files(directory: str) -> List[str]:
  """The files in `directory` (not below it) that make it a training run's directory: TF's
  `checkpoint` state file, checkpoint indexes (`<prefix>.index` beside `<prefix>.data-*`) and
  the trainer's config.gin."""
  names = [n for n in ("checkpoint", trainer.CONFIG_NAME)
           if io.exists(os.path.join(directory, n)) and not io.isdir(os.path.join(directory, n))]
  for index in io.glob(os.path.join(glob.escape(directory), "*.index")):
    if io.glob(glob.escape(index[:-len(".index")]) + ".data-*"):
      names.append(os.path.basename(index))
  return names


def _shown(files: List[str]) -> str:
  return ", ".join(files[:3]) + (", ..." if len(files) > 3 else "")


def check_export_dir(export_dir: str, overwrite: bool = False) -> None:
  """Raises ExportError unless exporting to `export_dir` destroys nothing but an old export.

  Refused, whatever `overwrite` says: a directory that holds checkpoints, lies inside one or
  contains one, any existing non-empty directory that is not an export of this module, and a
  file. An earlier export is replaced only with `overwrite`.
  """
  path = io.absolute(export_dir).rstrip("/")
  advice = "choose another --export_dir, e.g. exports/<run name>"
  parent = os.path.dirname(path)
  while True:  # no ancestor may be a training run: a later --overwrite there could delete it
    files = training_files(parent)
    if files:
      raise ExportError(f"{export_dir}: lies inside {parent}, a training run's directory "
                        f"({_shown(files)}); {advice}.")
    if os.path.dirname(parent) == parent or ("://" in path and
                                             "://" not in os.path.dirname(parent)):
      break  # the root, or a bucket (gs://bucket)
    parent = os.path.dirname(parent)
  if not io.exists(path):
    return
  if not io.isdir(path) or os.path.islink(path):
    raise ExportError(f"{export_dir}: exists and is not a directory; {advice}.")
  files = training_files(path)
  if files:
    raise ExportError(f"{export_dir}: a training run's directory ({_shown(files)}); exporting "
                      f"there would delete it, even with --overwrite. {advice.capitalize()}.")
  if not io.listdir(path):
    return
  if not (is_saved_model(path) and io.exists(os.path.join(path, SPEC_PATH))):
    raise ExportError(f"{export_dir}: exists, is not empty and is not a vild export "
                      f"(no saved_model.pb and {SPEC_PATH}); --overwrite replaces only an "
                      f"earlier export. {advice.capitalize()}.")
  for root, dirs, _ in tf.io.gfile.walk(path):  # a run someone put inside an old export
    dirs[:] = [d for d in dirs if os.path.join(root, d) != os.path.join(path, "variables")]
    found = training_files(root) if root != path else []
    if found:
      raise ExportError(f"{export_dir}: contains {root}, a training run's directory "
                        f"({_shown(found)}); exporting there would delete it, even with "
                        f"--overwrite. {advice.capitalize()}.")
  if not overwrite:
    raise ExportError(f"{export_dir}: holds an earlier export; pass overwrite=True "
                      "(--overwrite) to replace it, or choose a new directory.")


def export_saved_model(model: vild_model.ViLDModel, export_dir: str,
                       input_size: Sequence[int],
                       text_embeddings: Optional[np.ndarray] = None,
                       vocabulary: Optional[vocabulary_lib.Vocabulary] = None,
                       use_ensemble: Optional[bool] = None,
                       overwrite: bool = False,
                       training_vocabulary: Optional[vocabulary_lib.Vocabulary] = None
                       ) -> spec_lib.ModelSpec:
  """Writes a SavedModel of `model` to `export_dir`; returns its ModelSpec.

  Args:
    model: a built (restored) ViLDModel; its detection generator's settings are exported.
    export_dir: the directory to create.
    input_size: (height, width) of the model input.
    text_embeddings: [C, D] to bake into `serve` / `serve_bytes`; needs `vocabulary`.
    vocabulary: the baked vocabulary (names and its base mask).
    use_ensemble: False exports text-branch-only scoring for a ViLD-ensemble model.
    overwrite: replace an earlier export in `export_dir` (see `check_export_dir`).
    training_vocabulary: the run's training vocabulary (vild.inference.vocabularies), saved so
      clients split typed names into base and novel as the Detector does.
  """
  if (text_embeddings is None) != (vocabulary is None):
    raise ExportError("export_saved_model: pass text_embeddings and vocabulary together to "
                      "bake a vocabulary in, or neither.")
  check_export_dir(export_dir, overwrite)
  module = serving.ServingModule(
      model, input_size, use_ensemble=use_ensemble, text_embeddings=text_embeddings,
      base_mask=None if vocabulary is None else vocabulary.base_mask)
  if use_ensemble and not model.uses_ensemble:
    raise ExportError(f"use_ensemble=True needs a ViLD-ensemble model; this one has "
                      f"distillation={model.distillation!r}.")
  model_spec = spec_lib.ModelSpec.from_model(model, input_size, use_ensemble)
  signatures = module.signatures()
  with io.atomic_directory(export_dir) as tmp_dir:
    tf.saved_model.save(module, tmp_dir, signatures=signatures)
    model_spec.save(os.path.join(tmp_dir, SPEC_PATH))
    if vocabulary is not None:
      vocabulary.save(os.path.join(tmp_dir, VOCABULARY_PATH))
    if training_vocabulary is not None:
      training_vocabulary.save(os.path.join(tmp_dir, TRAINING_VOCABULARY_PATH))
  logging.info("Exported %s (signatures: %s).", export_dir, ", ".join(signatures))
  return model_spec


@dataclasses.dataclass(frozen=True)
class LoadedExport:
  signatures: Dict[str, Callable]       # signature name -> function(**inputs) -> outputs
  spec: spec_lib.ModelSpec
  vocabulary: Optional[vocabulary_lib.Vocabulary]  # the baked one, if any
  saved_model: object                   # keeps the loaded object (and its variables) alive
  training_vocabulary: Optional[vocabulary_lib.Vocabulary] = None  # if it was exported


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
  training_path = os.path.join(export_dir, TRAINING_VOCABULARY_PATH)
  training_vocabulary = (vocabulary_lib.Vocabulary.from_file(training_path)
                         if io.exists(training_path) else None)
  return LoadedExport(signatures=dict(loaded.signatures),
                      spec=spec_lib.ModelSpec.load(spec_path),
                      vocabulary=vocabulary, saved_model=loaded,
                      training_vocabulary=training_vocabulary)
