"""The evaluator against direct calls of the official lvis / pycocotools APIs, the np.float shim,
ground truth built from eval labels, OV-COCO novel/base AP50 and transfer evaluation."""
import contextlib
import io
import json

import gin
import lvis
import numpy as np
import pytest
import tensorflow as tf
from pycocotools import coco
from pycocotools import cocoeval

from tests import train_toy
from tests.conftest import TINY_GIN
from vild import vocabulary as vocabulary_lib
from vild.evaluation import detections as detections_lib
from vild.evaluation import evaluator as evaluator_lib
from vild.evaluation import lvis_metrics
from vild.modeling import factory


@pytest.fixture(scope="module")
def toy_split(tmp_path_factory):
  images, labels, annotation = train_toy.toy_eval_data(num_scenes=4)
  path = str(tmp_path_factory.mktemp("gt") / "val.json")
  with open(path, "w") as f:
    json.dump(annotation, f)
  gin.parse_config_file(TINY_GIN)
  model = factory.build_vild_model(image_size=train_toy.IMAGE_SIZE)
  gin.clear_config()
  dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(2)
  vocab = vocabulary_lib.Vocabulary.from_categories(annotation["categories"])
  return dict(model=model, dataset=dataset, annotation=annotation, path=path, vocab=vocab)


def imperfect_oracle(images, labels, outputs):
  """Detections from the ground truth, some shifted and some mislabelled, so AP is in (0, 1)."""
  del images
  gt = labels["groundtruths"]
  valid = gt["classes"] > 0
  scale = tf.tile(labels["image_info"][:, 2:3, :], [1, 1, 2])
  index = tf.range(tf.shape(gt["classes"])[1])[tf.newaxis]
  shift = tf.cast(index % 2, tf.float32)[..., tf.newaxis] * tf.constant([0.0, 6.0, 0.0, 6.0])
  classes = tf.cast(gt["classes"], tf.int32)
  classes = tf.where(index % 3 == 2, classes % 6 + 1, classes)
  out = dict(outputs)
  out["detection_boxes"] = tf.where(valid[..., None], gt["boxes"] * scale + shift, 0.0)
  out["detection_classes"] = tf.where(valid, classes, 0)
  out["detection_scores"] = tf.where(valid, 1.0 - 0.1 * tf.cast(index, tf.float32), 0.0)
  out["num_detections"] = tf.cast(gt["num_detections"], tf.int32)
  out["detection_masks"] = tf.cast(gt["masks"] > 0.5, tf.float32)
  return out


def _direct_lvis(gt_path, detections, iou_type):
  if iou_type == "segm":
    detections = [{k: v for k, v in d.items() if k != "bbox"} for d in detections]
  api = lvis.LVISEval(lvis.LVIS(gt_path), detections, iou_type)
  np.float = float  # The test's own alias: lvis 0.5.3 needs it.
  try:
    api.run()
  finally:
    del np.float
  return api.get_results()


def test_lvis_needs_the_shim_and_the_shim_is_scoped(toy_split):
  detections = [{"image_id": a["image_id"], "category_id": a["category_id"],
                 "bbox": a["bbox"], "score": 1.0} for a in toy_split["annotation"]["annotations"]]
  assert "float" not in np.__dict__
  with pytest.raises(AttributeError):
    lvis.LVISEval(lvis.LVIS(toy_split["path"]), detections, "bbox").run()
  metrics = lvis_metrics.evaluate_lvis(toy_split["path"], detections, iou_types=("bbox",))
  assert metrics["bbox/AP"] == pytest.approx(1.0)
  assert "float" not in np.__dict__


def test_lvis_evaluator_equals_the_direct_api_call(toy_split, tmp_path):
  evaluator = evaluator_lib.Evaluator(
      toy_split["model"], toy_split["vocab"], train_toy.toy_text_embeddings(), metric="lvis",
      annotation_file=toy_split["path"], rescore_fn=imperfect_oracle)
  metrics = evaluator.evaluate(toy_split["dataset"], str(tmp_path), step=3)
  detections = json.load(open(tmp_path / "detections_3.json"))
  assert json.load(open(tmp_path / "metrics_3.json"))["step"] == 3
  assert 0.05 < metrics["bbox/AP"] < 0.95
  for iou_type in ("bbox", "segm"):
    direct = _direct_lvis(toy_split["path"], detections, iou_type)
    assert {k: metrics[f"{iou_type}/{k}"] for k in direct} == pytest.approx(dict(direct))

  # Ground truth built from the eval labels gives the same box metrics as the JSON.
  results, groundtruths = evaluator.predict(toy_split["dataset"])
  from_labels = detections_lib.groundtruth_dataset(groundtruths, toy_split["vocab"])
  box_metrics = lvis_metrics.evaluate_lvis(from_labels, results, iou_types=("bbox",))
  assert box_metrics == pytest.approx({k: v for k, v in metrics.items()
                                       if k.startswith("bbox/")})


def test_coco_evaluator_equals_pycocotools_with_novel_and_base_ap50(toy_split, tmp_path):
  evaluator = evaluator_lib.Evaluator(
      toy_split["model"], toy_split["vocab"], train_toy.toy_text_embeddings(), metric="coco",
      annotation_file=toy_split["path"], rescore_fn=imperfect_oracle, iou_types=("bbox",))
  metrics = evaluator.evaluate(toy_split["dataset"], str(tmp_path), step=1)
  detections = json.load(open(tmp_path / "detections_1.json"))
  novel = [c for c, n in zip(toy_split["vocab"].category_ids, toy_split["vocab"].is_novel) if n]
  assert novel

  def direct(category_ids=None):
    with contextlib.redirect_stdout(io.StringIO()):
      gt = coco.COCO(toy_split["path"])
      api = cocoeval.COCOeval(gt, gt.loadRes(detections), "bbox")
      if category_ids is not None:
        api.params.catIds = category_ids
      api.evaluate()
      api.accumulate()
      api.summarize()
    return api.stats

  np.testing.assert_allclose([metrics[f"bbox/{k}"] for k in ("AP", "AP50", "AP75")],
                             direct()[:3])
  base = [c for c in toy_split["vocab"].category_ids if c not in novel]
  assert metrics["bbox/AP50_novel"] == pytest.approx(direct(novel)[1])
  assert metrics["bbox/AP50_base"] == pytest.approx(direct(base)[1])
  assert 0.0 < metrics["bbox/AP"] < 1.0


def test_transfer_evaluation_swaps_the_vocabulary_not_the_weights(toy_split):
  model = toy_split["model"]
  before = [v.numpy().copy() for v in model.variables]
  # Another dataset's vocabulary: two categories with ids 101 and 102.
  other = vocabulary_lib.Vocabulary.from_categories(
      [{"id": 101, "name": "red square", "frequency": "f"},
       {"id": 102, "name": "blue disc", "frequency": "f"}])
  embeddings = train_toy.toy_text_embeddings()[[0, 5]]
  evaluator = evaluator_lib.Evaluator(model, other, embeddings, metric="coco",
                                      iou_types=("bbox",))
  results, _ = evaluator.predict(toy_split["dataset"])
  assert results and {r["category_id"] for r in results} <= {101, 102}
  assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, model.variables))
  with pytest.raises(ValueError, match="rows but the vocabulary has"):
    evaluator_lib.Evaluator(model, other, train_toy.toy_text_embeddings(), metric="coco")
  with pytest.raises(ValueError, match="frequency"):
    evaluator_lib.Evaluator(model, train_toy.toy_vocabulary(), train_toy.toy_text_embeddings(),
                            metric="lvis")
