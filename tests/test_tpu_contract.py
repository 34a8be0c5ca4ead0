"""The TPU contract, without a TPU: what a TPU would run compiles with XLA and has static shapes.

Checked with vild.utils.tpu_contract (XLA lowering plus a scan of the HLO for data-dependent
shapes, which XLA's CPU backend would otherwise accept) on:
  - the trainer's replica step ('none', 'shared', 'separate', the supervised classifier; all
    with masks), then run as the trainer runs it: strategy.run(tf.function(jit_compile=True));
  - the evaluator's inference step (proposals -> heads -> fusion -> per-class NMS -> masks)
    for a text and an ensemble model, the vocabulary passed per call;
  - the input pipeline's training and evaluation element specs at the configured batch.
The injection tests show that a tf.py_function / Python-side NMS or a dynamic-shape gather in
these functions fails, naming the function and the op.
"""
import glob
import os

import gin
import numpy as np
import pytest
import tensorflow as tf

from tests import train_toy
from tests.conftest import REPO, TINY_GIN
from vild import losses as losses_lib
from vild import text_embeddings as text_embeddings_lib
from vild.data import conversion
from vild.data import input_pipeline
from vild.data import tf_example
from vild.data import toy
from vild.evaluation import evaluator as evaluator_lib
from vild.modeling import detection_generator
from vild.modeling import factory
from vild.training import trainer as trainer_lib
from vild.utils import gin_config
from vild.utils import tpu_contract

SHORT_SCHEDULE = ["learning_rate_schedule.base_learning_rate = 0.01",
                  "learning_rate_schedule.warmup_steps = 0",
                  "learning_rate_schedule.decay_boundaries = ()",
                  "learning_rate_schedule.total_steps = 10"]
TRAINING_CASES = {
    "ViLD-text": ["build_vild_model.distillation = 'none'"],
    "ViLD (shared)": ["build_vild_model.distillation = 'shared'"],
    "ViLD-ensemble (separate)": ["build_vild_model.distillation = 'separate'"],
    "supervised (learned classifier)": [
        "build_vild_model.distillation = 'none'", "build_classifier.kind = 'learned'",
        f"build_classifier.num_learned_classes = {len(toy.TOY_CATEGORIES)}"],
}


def _trainer(directory, bindings):
  gin.parse_config_file(TINY_GIN)
  gin.parse_config(SHORT_SCHEDULE + train_toy.SMALLER + list(bindings))
  distills = gin.query_parameter("build_vild_model.distillation") != "none"
  dataset_fn = train_toy.toy_dataset_fn(num_distill_rois=4 if distills else 0)
  trainer = trainer_lib.ViLDTrainer(
      str(directory), dataset_fn, train_toy.toy_text_embeddings(), train_toy.toy_vocabulary(),
      global_batch_size=2, train_steps=1, steps_per_loop=1, jit_compile=True)
  images, labels = next(iter(dataset_fn(tf.distribute.InputContext())))
  return trainer, images, labels


def _check_training_step(trainer, images, labels, case):
  # The replica step the trainer hands to strategy.run (plain TensorFlow).
  return tpu_contract.check_compiles(trainer._replica_step, (images, labels),  # pylint: disable=protected-access
                                     name=f"ViLDTrainer replica step ({case})")


@pytest.mark.parametrize("case", list(TRAINING_CASES))
def test_training_step_compiles_with_xla_and_runs(case, tmp_path):
  trainer, images, labels = _trainer(tmp_path, TRAINING_CASES[case])
  assert trainer.jit_compile and trainer.model.mask_head is not None
  _check_training_step(trainer, images, labels, case)
  history = trainer.train()  # strategy.run(tf.function(_replica_step, jit_compile=True))
  assert history["step"] == [1]
  assert np.isfinite(history["total_loss"]).all() and history["total_loss"][0] > 0


def test_a_python_op_in_the_training_step_fails_naming_the_step(tmp_path, monkeypatch):
  original = losses_lib.ViLDLoss.__call__

  def with_python_op(self, outputs, labels, **kwargs):
    terms = original(self, outputs, labels, **kwargs)
    terms["model_loss"] = tf.py_function(lambda x: x, [terms["model_loss"]], tf.float32)
    return terms
  monkeypatch.setattr(losses_lib.ViLDLoss, "__call__", with_python_op)
  trainer, images, labels = _trainer(tmp_path, TRAINING_CASES["ViLD-text"])
  with pytest.raises(tpu_contract.TPUContractError,
                     match=r"ViLDTrainer replica step \(ViLD-text\) does not compile with XLA"
                           r"(.|\n)*EagerPyFunc"):
    _check_training_step(trainer, images, labels, "ViLD-text")


# ----------------------------------------------------------------------------------------------
def _inference_inputs(distillation):
  gin.parse_config_file(TINY_GIN)
  gin.parse_config([f"build_vild_model.distillation = '{distillation}'"])
  model = factory.build_vild_model(image_size=train_toy.IMAGE_SIZE)
  images, labels, _ = train_toy.toy_eval_data(num_scenes=2)
  vocabulary = train_toy.toy_vocabulary()
  text = tf.constant(text_embeddings_lib.l2_normalize(train_toy.toy_text_embeddings()))
  return model, images, labels, text, tf.constant(vocabulary.base_mask)


def _check_inference_step(model, args, label):
  def step(images, labels, text_embeddings, base_mask):
    return evaluator_lib.inference_step(model, images, labels, text_embeddings, base_mask)
  return tpu_contract.check_compiles(step, args, name=f"evaluation inference step ({label})")


@pytest.mark.parametrize("distillation,label", [("none", "ViLD-text"),
                                                ("separate", "ViLD-ensemble")])
def test_inference_step_compiles_with_xla_for_a_vocabulary_per_call(distillation, label):
  model, images, labels, text, base_mask = _inference_inputs(distillation)
  jitted = _check_inference_step(model, (images, labels, text, base_mask), label)
  compiled = jitted(images, labels, text, base_mask)
  graph = evaluator_lib.inference_step(model, images, labels, text, base_mask)
  assert compiled["detection_masks"].shape[:2] == compiled["detection_boxes"].shape[:2]
  # The same detections up to float rounding (which can reorder near-ties of a random model).
  np.testing.assert_array_equal(compiled["num_detections"], graph["num_detections"])
  np.testing.assert_allclose(compiled["detection_scores"][:, 0], graph["detection_scores"][:, 0],
                             atol=1e-4)
  # Another vocabulary (3 classes, one novel) in the same function: one more compilation.
  other = jitted(images, labels, text[:3], tf.constant([True, False, True]))
  classes = other["detection_classes"].numpy()
  assert classes.max() <= 3 and (classes[:, 0] >= 1).all()


@pytest.mark.parametrize("injected", ["python NMS", "dynamic gather"])
def test_a_non_compilable_op_in_inference_fails_naming_the_step_and_op(injected, monkeypatch):
  original = detection_generator.ViLDDetectionGenerator.call

  def python_nms(self, box_outputs, class_scores, rois, image_shape):
    # Scores through NumPy, as a host-side NMS would take them.
    scores = tf.numpy_function(lambda s: s, [tf.cast(class_scores, tf.float32)], tf.float32)
    scores.set_shape(class_scores.shape)
    return original(self, box_outputs, scores, rois, image_shape)

  def dynamic_gather(self, box_outputs, class_scores, rois, image_shape):
    detections = original(self, box_outputs, class_scores, rois, image_shape)
    kept = tf.boolean_mask(detections["detection_scores"], detections["detection_scores"] > 0)
    detections["detection_scores"] += 0.0 * tf.reduce_sum(kept)
    return detections

  monkeypatch.setattr(detection_generator.ViLDDetectionGenerator, "call",
                      python_nms if injected == "python NMS" else dynamic_gather)
  model, images, labels, text, base_mask = _inference_inputs("none")
  expected = (r"does not compile with XLA(.|\n)*PyFunc" if injected == "python NMS"
              else r"has data-dependent shapes(.|\n)*Where")
  with pytest.raises(tpu_contract.TPUContractError,
                     match=r"evaluation inference step \(ViLD-text\) " + expected):
    _check_inference_step(model, (images, labels, text, base_mask), "ViLD-text")


# ----------------------------------------------------------------------------------------------
def _distillation_record(seed, size, num_rois, dim):
  scene = toy.toy_scene(seed, size=size)
  height, width = size
  return tf_example.encode_example({
      "encoded_image": conversion.encode_png(scene["image"]), "image_format": "png",
      "source_id": seed + 1, "height": height, "width": width,
      "boxes": scene["boxes"] / np.array([height, width, height, width], np.float32),
      "classes": scene["classes"], "areas": scene["masks"].sum(axis=(1, 2)),
      "masks_png": [conversion.encode_png(m.astype(np.uint8)) for m in scene["masks"]],
      "distill_rois": np.tile([[0.1, 0.1, 0.6, 0.7]], [num_rois, 1]).astype(np.float32),
      "distill_features": np.ones([num_rois, dim], np.float32)}).SerializeToString()


def test_input_pipeline_element_specs_are_static_at_the_configured_batch(tmp_path):
  """The synthetic ViLD experiment's training and evaluation inputs, as TPU infeed needs them."""
  gin.parse_config_file(os.path.join(REPO, "configs", "tiny", "synthetic_vild.gin"))
  dim = gin.query_parameter("Parser.distill_feature_dim")
  path = str(tmp_path / "train-00000-of-00001.tfrecord")
  with tf.io.TFRecordWriter(path) as writer:
    for seed in range(3):
      writer.write(_distillation_record(seed, (96, 80), 5, dim))
  vocabulary = train_toy.toy_vocabulary()
  batch = gin.query_parameter("train.global_batch_size")
  training = input_pipeline.build_dataset(path, vocabulary, is_training=True, batch_size=batch,
                                          seed=0, input_context=tf.distribute.InputContext())
  tpu_contract.check_static_spec(training.element_spec, "training input")
  assert training.element_spec[0].shape[0] == batch
  assert training.element_spec[1]["distill_features"].shape[1:] == (
      gin.query_parameter("Parser.max_num_distill_rois"), dim)

  eval_batch = gin.query_parameter("evaluate.eval_batch_size")
  records = input_pipeline.build_dataset(path, vocabulary, is_training=False,
                                         batch_size=eval_batch)
  with pytest.raises(tpu_contract.TPUContractError, match=r"evaluation records.*\(None, "):
    tpu_contract.check_static_spec(records.element_spec, "evaluation records")
  batches = evaluator_lib.static_batches(records, eval_batch)
  tpu_contract.check_static_spec(batches.element_spec, "evaluation input")
  assert batches.element_spec[0].shape[0] == eval_batch
  # 3 images padded to one batch: the padding copies are marked, no image is lost.
  (images, labels), = list(batches)
  assert labels[evaluator_lib.PADDING_KEY].numpy().tolist() == [False] * 3 + [True] * (
      eval_batch - 3)
  assert sorted(labels["groundtruths"]["source_id"].numpy()[:3].tolist()) == [1, 2, 3]


@pytest.mark.parametrize("directory", ["lvis", "ov_coco"])
def test_paper_experiments_propose_with_xla_compilable_nms(directory):
  """The combined-NMS proposals (a CPU speed-up of the synthetic benchmark) have no XLA kernel;
  the experiments meant for TPUs keep the padded NMS (a test above compiles it)."""
  for path in sorted(glob.glob(os.path.join(REPO, "configs", directory, "*.gin"))):
    gin.clear_config()
    gin_config.parse([path], finalize=False)
    assert not factory.build_roi_generator().get_config()["use_batched_nms"], path
