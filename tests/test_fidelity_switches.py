"""The deliberate differences from the official ViLD code, each one gin binding from the official
behaviour (docs/fidelity.md): flip coins, distill RoIs outside the crop, padded RoIs in batch
norm, and the momentum update."""
import gin
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tests.conftest import TINY_GIN
from tests.test_data_input_pipeline import OUT, _covers, _parser, _record, _red_pixels
from tests.test_data_input_pipeline import small_gin  # noqa: F401  (a fixture)
from vild import losses
from vild.data import toy
from vild.modeling import factory
from vild.training import optimizer as optimizer_lib
from vild.training import train_step


def test_independent_flip_reproduces_the_official_mismatch(small_gin):  # noqa: F811
  """The official parser's second coin flips image, boxes and masks but not the RoIs."""
  serialized = tf.constant(_record())
  roi_hits = []
  for seed in range(12):
    for flip, parser in (("shared", _parser()), ("independent",
                                                 _parser(distill_roi_flip="independent"))):
      image, labels = parser(serialized, tf.constant([0, seed], tf.int64))
      red = _red_pixels(image.numpy())
      assert _covers(labels["gt_boxes"].numpy()[0], red), f"{flip} seed {seed}: gt box"
      covered = _covers(labels["distill_rois"].numpy()[0], red)
      if flip == "shared":
        assert covered, f"seed {seed}: the shared coin keeps the RoI on its object"
      else:
        roi_hits.append(covered)
  assert any(roi_hits) and not all(roi_hits), roi_hits  # about half the RoIs miss


def test_parser_rejects_unknown_choices(small_gin):  # noqa: F811
  with pytest.raises(ValueError, match="Parser.distill_roi_flip must be one of"):
    _parser(distill_roi_flip="twice")
  with pytest.raises(ValueError, match="Parser.cropped_distill_rois must be one of"):
    _parser(cropped_distill_rois="clip")


def test_cropped_distill_rois_kept_as_zero_area_border_boxes(small_gin):  # noqa: F811
  # A RoI at the top-left corner, outside the crop whenever a 2x scale crops below its 3 px.
  rois = [[0.3, 0.1, 0.7, 0.4], [0.0, 0.0, 0.02, 0.02]]
  serialized = tf.constant(_record(rois=rois))
  seen = 0
  for seed in range(8):
    seed = tf.constant([0, seed], tf.int64)
    _, dropped = _parser(aug_scale_range=(2.0, 2.0), aug_rand_hflip=False)(serialized, seed)
    _, kept = _parser(aug_scale_range=(2.0, 2.0), aug_rand_hflip=False,
                      cropped_distill_rois="keep")(serialized, seed)
    second = kept["distill_rois"].numpy()[1]
    if (second[2] - second[0]) * (second[3] - second[1]) > 0:
      continue  # the crop kept the corner
    seen += 1
    assert dropped["distill_roi_valid"].numpy().tolist() == [1, 0, 0, 0]
    np.testing.assert_array_equal(dropped["distill_rois"].numpy()[1], -1)
    assert kept["distill_roi_valid"].numpy().tolist() == [1, 1, 0, 0]
    assert second.min() >= 0 and second[[2, 3]].max() <= max(OUT)
    np.testing.assert_array_equal(kept["distill_features"].numpy()[1], [4, 5, 6, 7])
    # The loss counts the zero-area RoI as the official one does.
    embeddings = tf.math.l2_normalize(tf.random.stateless_normal([1, 4, 4], seed=[1, 1]), -1)
    counted = losses.distillation_loss(embeddings, kept["distill_features"][tf.newaxis],
                                       kept["distill_rois"][tf.newaxis],
                                       kept["distill_roi_valid"][tf.newaxis])
    per_roi = tf.reduce_sum(tf.abs(embeddings - tf.math.l2_normalize(
        kept["distill_features"][tf.newaxis], -1)), -1)[0]
    np.testing.assert_allclose(counted, (per_roi[0] + per_roi[1]) / 2, rtol=1e-6)
  assert seen, "no seed cropped the corner RoI away"


def _shared_model():
  gin.parse_config_file(TINY_GIN)
  gin.parse_config(["build_vild_model.distillation = 'shared'"])
  model = factory.build_vild_model(image_size=(128, 128))
  gin.clear_config()
  model.set_text_embeddings(np.random.default_rng(0).normal(size=(len(toy.TOY_CATEGORIES), 32)))
  return model


def test_padded_rois_in_batch_norm_switch():
  """Ours: padded distill RoIs change no statistic. Official: every slot is in the batch."""
  model = _shared_model()
  images, labels = toy.toy_batch([0, 1], (128, 128), num_distill_rois=8, embedding_dim=32)
  num_objects = int(tf.reduce_max(tf.reduce_sum(tf.cast(labels["distill_rois"][..., 0] >= 0,
                                                        tf.int32), axis=1)))
  trimmed = dict(labels, distill_rois=labels["distill_rois"][:, :num_objects],
                 distill_features=labels["distill_features"][:, :num_objects])
  assert num_objects < 8  # there is padding to leave out

  def region_embeddings(batch_labels):
    return train_step.forward(model, images, batch_labels, training=True)["region_embeddings"]

  padded, without_padding = region_embeddings(labels), region_embeddings(trimmed)
  np.testing.assert_allclose(padded, without_padding, rtol=1e-4, atol=1e-5)
  model._padded_rois_in_batch_norm = True  # what build_vild_model.padded_rois_in_batch_norm sets
  official = region_embeddings(labels)
  assert np.abs(official - without_padding).max() > 1e-3


def test_tf1_momentum_form_is_the_official_update():
  """TF1 MomentumOptimizer: a <- m a + g; v <- v - lr a. tf_keras: u <- m u - lr g; v <- v + u."""
  rates = [0.1, 0.2, 0.4, 0.4, 0.04]  # a warm-up, then a decay
  schedule = tf_keras.optimizers.schedules.PiecewiseConstantDecay([0, 1, 2, 3], rates)
  gradients = [1.0, -0.5, 2.0, 0.25, 1.5]

  def run(form):
    variable = tf.Variable([3.0])
    optimizer = optimizer_lib.sgd_optimizer(schedule, momentum=0.9, momentum_form=form)
    values = []
    for g in gradients:
      optimizer.apply_gradients([(tf.constant([g]), variable)])
      values.append(float(variable[0]))
    return values

  tf1_reference, accumulation, value = [], 0.0, 3.0
  keras_reference, velocity, keras_value = [], 0.0, 3.0
  for rate, g in zip(rates, gradients):
    accumulation = 0.9 * accumulation + g
    value -= rate * accumulation
    tf1_reference.append(value)
    velocity = 0.9 * velocity - rate * g
    keras_value += velocity
    keras_reference.append(keras_value)
  np.testing.assert_allclose(run("tf1"), tf1_reference, rtol=1e-5)
  np.testing.assert_allclose(run("keras"), keras_reference, rtol=1e-5)
  assert abs(tf1_reference[-1] - keras_reference[-1]) > 0.1  # the forms differ here
  assert isinstance(optimizer_lib.sgd_optimizer(0.1, momentum_form="tf1"),
                    tf_keras.optimizers.SGD)
  with pytest.raises(ValueError, match="momentum_form"):
    optimizer_lib.sgd_optimizer(0.1, momentum_form="adam")
