"""Which detector and which teacher made a directory of distillation data: identified by content.

Names are not identities: another teacher can sit at the same path, and every training run has
a ckpt-30. The settings file beside the shards (`shard_jobs.check_settings`) therefore records
the sha256 of the weights a source computes with, as they are after loading (each variable's
shape, dtype and bytes, in the model's order; not its name, which Keras numbers by how many
models the process built), and of the configuration that builds it.
Machines that mount the same checkpoint under other paths agree; another checkpoint, a retrained
teacher in the same directory, or a config with other model settings does not.

Cost: hashlib's sha256 runs at about 1.6 GB/s of CPU time on these machines (measured with
`time.process_time` over 256 MB), so hashing every weight takes about 0.1 s for an R50 Mask R-CNN
(45 M float32), 0.4 s for CLIP ViT-B/32 (150 M) and 1 s for ViT-L/14 (430 M): less than loading
the model, and nothing next to the job (hours at LVIS scale). So every weight is hashed; a
sample of the weights would miss a teacher fine-tuned in a few layers.
"""
import dataclasses
import hashlib
import json
from typing import Dict, Iterable, Optional, Sequence

from absl import logging
import tensorflow as tf


def weights_sha256(variables: Iterable[tf.Variable]) -> str:
  """'sha256:<hex>' over each variable's shape, dtype and values, in the given order."""
  digest = hashlib.sha256()
  for variable in variables:
    value = variable.numpy()
    digest.update(f"{value.shape}|{value.dtype}|".encode())
    digest.update(value.tobytes())
  return f"sha256:{digest.hexdigest()}"


def texts_sha256(texts: Sequence[str]) -> str:
  """'sha256:<hex>' of a sequence of texts (e.g. config files, then bindings)."""
  digest = hashlib.sha256()
  for text in texts:
    encoded = text.encode("utf-8")
    digest.update(f"{len(encoded)}|".encode() + encoded)
  return f"sha256:{digest.hexdigest()}"


def detector_identity(model: tf.Module, config_paths: Sequence[str],
                      gin_bindings: Sequence[str] = ()) -> Dict[str, str]:
  """A restored detector's weights and the config that built it (its files' text, bindings)."""
  texts = []
  for path in config_paths:
    with tf.io.gfile.GFile(path, "r") as f:
      texts.append(f.read())
  return {"detector_weights_sha256": weights_sha256(model.weights),
          "detector_config_sha256": texts_sha256(texts + list(gin_bindings))}


def teacher_identity(teacher) -> Dict[str, Optional[str]]:
  """A teacher's weights and architecture/preprocessing config.

  For vild's CLIP teacher (a Keras `model` and a dataclass `config`). Another `Teacher` is
  identified by its name and sizes only, with a warning: give it `model` and `config`
  attributes to be identified by content.
  """
  model, config = getattr(teacher, "model", None), getattr(teacher, "config", None)
  if model is None or not dataclasses.is_dataclass(config):
    logging.warning("Teacher %r has no Keras model and config to hash: the settings check "
                    "identifies it by name and sizes only.", teacher.name)
    return {"teacher": teacher.name, "teacher_weights_sha256": None,
            "teacher_config_sha256": None}
  # The config's name is the checkpoint directory's name: not part of the content.
  config = {k: v for k, v in dataclasses.asdict(config).items() if k != "name"}
  return {"teacher_weights_sha256": weights_sha256(model.weights),
          "teacher_config_sha256": texts_sha256([json.dumps(config, sort_keys=True)])}
