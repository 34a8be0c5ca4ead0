"""Every gin experiment in configs/ parses, holds the paper's values, and builds (tiny sizes)."""
import glob
import os

import gin
import numpy as np
import pytest

from tests import train_toy
from tests.conftest import REPO, TINY_GIN
from vild import losses
from vild.data import input_pipeline
from vild.modeling import factory
from vild.training import optimizer as optimizer_lib
from vild.utils import gin_config

CONFIGS = sorted(os.path.relpath(p, REPO) for p in glob.glob(
    os.path.join(REPO, "configs", "**", "*.gin"), recursive=True))
TRANSFER_BASE = "configs/lvis/vild_r50.gin"  # transfer/*.gin are added to an experiment
MODEL_SETTINGS = ("build_vild_model.distillation", "build_vild_model.embedding_dim",
                  "build_vild_model.ensemble_lambda", "build_vild_model.include_mask",
                  "build_classifier.kind", "build_classifier.num_learned_classes",
                  "build_classifier.temperature", "normalization.use_sync_bn")
_BUILT = {}


def _parse(path):
  files = [TRANSFER_BASE, path] if path.startswith("configs/transfer/") else [path]
  gin_config.parse(files, finalize=False)


def _query(name, default=None):
  try:
    return gin.query_parameter(name)
  except ValueError:
    return default


def test_there_is_an_experiment_per_paper_row():
  for row in ("supervised_base", "supervised_rfs", "vild_text", "vild_image", "vild", "vild_w1",
              "vild_w2", "vild_ensemble"):
    for depth in ("r50", "r152"):
      assert f"configs/lvis/{row}_{depth}.gin" in CONFIGS
  assert "configs/lvis/vild_ensemble_w2_r152.gin" in CONFIGS
  for row in ("supervised_base", "vild_text", "vild", "vild_ensemble"):
    assert f"configs/ov_coco/{row}_r50.gin" in CONFIGS
  for name in ("coco", "voc", "objects365"):
    assert f"configs/transfer/{name}.gin" in CONFIGS


@pytest.mark.parametrize("path", CONFIGS)
def test_config_parses_and_builds(path):
  _parse(path)
  experiment = path.startswith(("configs/lvis/", "configs/ov_coco/", "configs/transfer/"))
  if experiment:  # The paper's recipe (VILD.md) unless the row says otherwise.
    assert _query("train.global_batch_size") == 256
    assert _query("ViLDTrainer.train_steps") == 180000
    assert _query("normalization.use_sync_bn") is True
    assert _query("Parser.aug_scale_range") == (0.1, 2.0)
    depth = 152 if "r152" in path else 50
    assert _query("build_backbone.depth") == depth
  if _query("learning_rate_schedule.total_steps") is not None:
    schedule = optimizer_lib.learning_rate_schedule(
        global_batch_size=_query("train.global_batch_size"))
    optimizer_lib.sgd_optimizer(schedule)
    if experiment:
      np.testing.assert_allclose(
          [float(schedule(s)) for s in (0, 1000, 161999, 162000, 171000)],
          [0.0032, 0.32, 0.32, 0.032, 0.0032], rtol=1e-5)
  distillation = _query("build_vild_model.distillation", "none")
  if distillation != "none":
    assert _query("Parser.distill_feature_dim") == _query("build_vild_model.embedding_dim", 512)
  if "supervised" in path:  # the paper's baselines: Mask R-CNN's linear softmax classifier
    assert _query("build_classifier.kind") == "linear"
    assert _query("build_classifier.num_learned_classes") == (
        {"ov_coco": 48}.get(path.split("/")[1]) or (1203 if "rfs" in path else 866))
  loss = losses.ViLDLoss()
  if "vild_image" in path:
    assert loss.weights["text_loss"] == 0.0
  for w in ("w1", "w2"):
    if f"vild_{w}_" in path or f"ensemble_{w}_" in path:
      assert loss.weights["distill_loss"] == float(w[1])
  # Tiny sizes on top, then build the parts the experiment names.
  gin.parse_config_files_and_bindings([TINY_GIN], [], finalize_config=False)
  if _query("Parser.output_size") is not None:
    gin.bind_parameter("Parser.output_size", (64, 64))
    input_pipeline.Parser(train_toy.toy_vocabulary(), is_training=True)
  # Building is slow (a ResNet per call): once per distinct set of the model's own settings.
  settings = tuple(_query(name) for name in MODEL_SETTINGS)
  if settings not in _BUILT:
    _BUILT[settings] = factory.build_vild_model()
  assert _BUILT[settings].distillation == distillation


def _macro(name):
  """The macro a binding is set to ('X' for `name = %X`), else None."""
  value = _query(name)
  if isinstance(value, gin.config.ConfigurableReference):
    return value.scoped_selector.split("/")[0]
  return None


@pytest.mark.parametrize("row, distillation", [("vild_text", "none"), ("vild", "shared"),
                                               ("vild_ensemble", "separate")])
def test_laptop_experiments_read_paths_gin_and_scale_the_recipe_to_their_batch(row, distillation):
  _parse(f"configs/laptop/{row}.gin")
  assert _query("build_vild_model.distillation") == distillation
  records = "DISTILL_RECORDS" if distillation != "none" else "TRAIN_RECORDS"
  paths = {"train.train_file_pattern": records, "evaluate.eval_file_pattern": "VAL_RECORDS",
           "evaluate.annotation_file": "VAL_ANNOTATIONS", "evaluate.metric": "METRIC",
           "training_vocabulary.text_embeddings_path": "TEXT_EMBEDDINGS",
           "build_vild_model.embedding_dim": "EMBEDDING_DIM"}
  for binding, macro in paths.items():
    assert _macro(binding) == macro, binding  # every path comes from paths.gin
  assert gin.query_parameter("EMBEDDING_DIM/macro.value") == 512  # CLIP ViT-B/32
  if distillation != "none":
    assert _macro("Parser.distill_feature_dim") == "EMBEDDING_DIM"
  batch = _query("train.global_batch_size")
  schedule = optimizer_lib.learning_rate_schedule(global_batch_size=batch)
  assert float(schedule(1000)) == pytest.approx(0.32 * batch / 256)  # the linear rule
  assert _query("build_detection_generator.max_num_detections") == 300  # the paper's
  assert _query("build_detection_generator.pre_nms_rule") == "overall"  # cheap at 1203 classes
  assert _query("build_training_labels.max_num_instances") == 300
  assert _query("Parser.max_num_eval_instances") == 300
  assert _query("normalization.use_sync_bn") is False
