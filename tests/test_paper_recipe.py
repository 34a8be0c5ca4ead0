"""The paper configs (configs/lvis, configs/ov_coco) are the official code's recipe where our
code and the official code could differ (docs/fidelity.md), and the builders do what they say."""
import glob
import os

import gin
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tests.conftest import REPO
from vild import anchors
from vild import losses
from vild.data import targets
from vild.modeling import factory
from vild.modeling import learned_classifier
from vild.modeling import text_classifier
from vild.training import optimizer as optimizer_lib
from vild.utils import gin_config

PAPER_CONFIGS = sorted(os.path.relpath(p, REPO) for pattern in ("lvis", "ov_coco")
                       for p in glob.glob(os.path.join(REPO, "configs", pattern, "*.gin")))
# The official code's value where a difference was unintended; ours where it is deliberate.
PAPER_SETTINGS = {
    "build_rpn_head.num_convs": 2,
    "build_training_labels.max_num_instances": 300,
    "build_detection_generator.pre_nms_rule": "per_class",
    "build_detection_generator.pre_nms_top_k": 1000,
    "weight_decay_loss.decay_background_embedding": True,
}
DELIBERATE_DEFAULTS = {  # not bound: our behaviour, the official one binding away
    "Parser.distill_roi_flip": "shared",
    "Parser.cropped_distill_rois": "drop",
    "build_vild_model.padded_rois_in_batch_norm": False,
    "sgd_optimizer.momentum_form": "keras",
}


def test_there_are_paper_configs():
  assert len(PAPER_CONFIGS) >= 20
  assert "configs/lvis/common.gin" in PAPER_CONFIGS
  assert "configs/ov_coco/supervised_base_r50.gin" in PAPER_CONFIGS


def _bound(name):
  try:
    return gin.query_parameter(name)
  except ValueError:
    return None


@pytest.mark.parametrize("path", PAPER_CONFIGS)
def test_paper_config_is_the_official_recipe(path):
  gin_config.parse([path], finalize=False)
  for name, value in PAPER_SETTINGS.items():
    assert _bound(name) == value, f"{path}: {name}"
  for name in DELIBERATE_DEFAULTS:
    assert _bound(name) is None, f"{path}: {name} is bound; the default is the recipe"
  # What the builders make of it.
  generator = factory.build_detection_generator().get_config()
  assert (generator["pre_nms_rule"], generator["pre_nms_top_k"], generator["nms_iou_threshold"],
          generator["max_num_detections"], generator["score_threshold"]) == (
              "per_class", 1000, 0.5, 300, 0.0)
  rpn_head = factory.build_rpn_head(anchors.AnchorSpec(min_level=2, max_level=3))
  assert rpn_head.get_config()["num_convs"] == 2
  if "supervised" in path:
    assert _bound("build_classifier.kind") == "linear"
    classifier = factory.build_classifier(512)
    assert isinstance(classifier, learned_classifier.LinearClassifier)
  else:
    assert _bound("build_classifier.kind") == "text"


def test_official_rpn_head_has_two_batch_normed_convolutions():
  gin.parse_config(["build_rpn_head.num_convs = 2", "build_rpn_head.num_filters = 8"])
  spec = anchors.AnchorSpec(min_level=2, max_level=3)
  head = factory.build_rpn_head(spec)
  head({"2": tf.zeros([1, 8, 8, 8]), "3": tf.zeros([1, 4, 4, 8])})
  convs = sorted({v.name.split("/")[-2] for v in head.variables if "rpn-conv_" in v.name})
  norms = sorted({v.name.split("/")[-2] for v in head.variables if "rpn-conv-norm" in v.name})
  assert convs == ["rpn-conv_0", "rpn-conv_1"]  # shared across levels
  assert norms == [f"rpn-conv-norm_{level}_{i}" for level in (2, 3) for i in (0, 1)]


def test_paper_max_num_instances_keeps_300():
  gin.parse_config(["build_training_labels.max_num_instances = 300"])
  boxes = np.tile(np.array([[0, 0, 10, 10]], np.float32), [250, 1])
  labels = targets.build_training_labels((64, 64), boxes, np.ones(250, np.int32))
  assert labels["gt_boxes"].shape == (300, 4)
  assert int(labels["num_clipped_instances"]) == 0


def test_official_weight_decay_rule_decays_the_background_embedding():
  classifier = text_classifier.TextEmbeddingClassifier(embedding_dim=4)
  classifier.build(None)
  dense = tf_keras.layers.Dense(3)  # a kernel and a bias
  dense.build([None, 4])
  variables = [classifier.background_embedding, *dense.weights]
  official_regex = optimizer_lib.matching(variables, [r".*(kernel|weight):0$"])
  ours = optimizer_lib.matching(variables, [optimizer_lib.KERNEL_PATTERN])
  assert [v.name for v in ours] == [v.name for v in official_regex] == [dense.kernel.name]
  background = float(tf.nn.l2_loss(classifier.background_embedding))
  kernel = float(tf.nn.l2_loss(dense.kernel))
  np.testing.assert_allclose(
      optimizer_lib.weight_decay_loss(variables, weight_decay=0.1), 0.1 * kernel, rtol=1e-6)
  np.testing.assert_allclose(
      optimizer_lib.weight_decay_loss(variables, weight_decay=0.1,
                                      decay_background_embedding=True),
      0.1 * (kernel + background), rtol=1e-6)


def test_sampling_and_box_losses_are_the_official_settings():
  gin_config.parse(["configs/lvis/vild_r50.gin"], finalize=False)
  sampler = factory.build_roi_sampler().get_config()
  assert (sampler["num_sampled_rois"], sampler["foreground_fraction"],
          sampler["foreground_iou_threshold"]) == (512, 0.25, 0.5)
  loss = losses.ViLDLoss()
  assert loss._rpn_box._huber_loss.get_config()["delta"] == pytest.approx(1 / 9)
  assert loss._box._huber_loss.get_config()["delta"] == 1.0
