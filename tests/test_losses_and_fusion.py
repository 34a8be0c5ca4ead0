"""ViLD's formulas against independent numpy implementations of VILD.md."""
import numpy as np
import pytest
import tensorflow as tf

from vild import losses
from vild.modeling import ensemble
from vild.modeling import text_classifier

RNG = np.random.default_rng(7)


def np_softmax(x, axis=-1):
  e = np.exp(x - x.max(axis=axis, keepdims=True))
  return e / e.sum(axis=axis, keepdims=True)


def unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_text_logits_are_cosines_over_temperature_with_background_first():
  regions = unit(RNG.normal(size=(2, 5, 8))).astype(np.float32)
  text = RNG.normal(size=(3, 8)).astype(np.float32)  # not normalised: the layer must do it
  layer = text_classifier.TextEmbeddingClassifier(embedding_dim=8, temperature=0.01)
  layer.set_text_embeddings(text)
  logits = layer(tf.constant(regions)).numpy()
  background = unit(layer.background_embedding.numpy())
  expected = np.concatenate([regions @ background[:, None], regions @ unit(text).T], -1) / 0.01
  np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-3)


def test_text_loss_matches_numpy_cross_entropy():
  logits = RNG.normal(size=(2, 6, 5)).astype(np.float32) * 3
  targets = RNG.integers(0, 5, size=(2, 6))
  p = np_softmax(logits)
  expected = -np.log(np.take_along_axis(p, targets[..., None], -1)).mean()
  got = losses.text_classification_loss(tf.constant(logits), tf.constant(targets))
  np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)


def test_text_loss_class_mask_sets_masked_logits_to_zero_but_keeps_them_in_softmax():
  logits = RNG.normal(size=(1, 4, 4)).astype(np.float32) * 3
  targets = np.array([[0, 1, 3, 1]])
  class_mask = np.array([True, False, True])  # class 2 (column 2) masked, like LVIS rare
  masked = logits.copy()
  masked[..., 2] = 0.0
  expected = -np.log(np.take_along_axis(np_softmax(masked), targets[..., None], -1)).mean()
  got = losses.text_classification_loss(tf.constant(logits), tf.constant(targets),
                                        tf.constant(class_mask))
  np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)


def test_text_loss_ignores_negative_targets():
  logits = RNG.normal(size=(1, 3, 4)).astype(np.float32)
  full = losses.text_classification_loss(tf.constant(logits[:, :2]), tf.constant([[1, 2]]))
  with_ignored = losses.text_classification_loss(tf.constant(logits), tf.constant([[1, 2, -1]]))
  np.testing.assert_allclose(full.numpy(), with_ignored.numpy(), rtol=1e-6)


def test_distillation_loss_is_mean_l1_over_valid_rois_against_normalised_teacher():
  regions = unit(RNG.normal(size=(2, 4, 6))).astype(np.float32)
  teacher = RNG.normal(size=(2, 4, 6)).astype(np.float32) * 5  # unnormalised CLIP features
  rois = RNG.uniform(0, 50, size=(2, 4, 2)).astype(np.float32)
  rois = np.concatenate([rois, rois + 10], -1)
  rois[0, 3] = -1.0  # padding
  rois[1, 2:] = -1.0
  valid = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], bool)
  per_roi = np.abs(regions - unit(teacher)).sum(-1)
  expected = per_roi[valid].mean()
  got = losses.distillation_loss(tf.constant(regions), tf.constant(teacher), tf.constant(rois))
  np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)


def test_l2_distillation_loss_is_mean_squared_distance_over_valid_rois():
  regions = unit(RNG.normal(size=(2, 3, 6))).astype(np.float32)
  teacher = RNG.normal(size=(2, 3, 6)).astype(np.float32) * 5
  rois = np.tile(np.array([2.0, 2.0, 20.0, 20.0], np.float32), (2, 3, 1))
  rois[1, 2] = -1.0  # padding
  per_roi = ((regions - unit(teacher)) ** 2).sum(-1)
  expected = per_roi[np.array([[1, 1, 1], [1, 1, 0]], bool)].mean()
  got = losses.distillation_loss(tf.constant(regions), tf.constant(teacher), tf.constant(rois),
                                 loss_type="l2")
  np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)
  # For unit vectors it is 2 - 2 cos.
  cosine = (regions * unit(teacher)).sum(-1)
  np.testing.assert_allclose(per_roi, 2 - 2 * cosine, rtol=1e-4, atol=1e-5)


def test_vild_loss_takes_the_distillation_loss_type_and_rejects_unknown_ones():
  regions = unit(RNG.normal(size=(1, 2, 4))).astype(np.float32)
  teacher = unit(RNG.normal(size=(1, 2, 4))).astype(np.float32)
  rois = np.array([[[0, 0, 8, 8], [2, 2, 9, 9]]], np.float32)
  l1 = losses.distillation_loss(tf.constant(regions), tf.constant(teacher), tf.constant(rois))
  l2 = losses.distillation_loss(tf.constant(regions), tf.constant(teacher), tf.constant(rois),
                                loss_type="l2")
  assert losses.ViLDLoss().distill_loss_type == "l1"
  assert not np.isclose(float(l1), float(l2))
  with pytest.raises(ValueError, match="distill_loss_type.*'l3'"):
    losses.ViLDLoss(distill_loss_type="l3")
  with pytest.raises(ValueError, match="distill_loss_type"):
    losses.distillation_loss(tf.constant(regions), tf.constant(teacher), tf.constant(rois),
                             loss_type="cosine")


def test_distillation_loss_is_zero_when_every_roi_is_padding():
  got = losses.distillation_loss(tf.ones([1, 3, 4]), tf.ones([1, 3, 4]), -tf.ones([1, 3, 4]))
  assert float(got) == 0.0


@pytest.mark.parametrize("ensemble_lambda", [2.0 / 3.0, 0.25])
def test_ensemble_fusion_matches_the_paper_formula(ensemble_lambda):
  text_logits = RNG.normal(size=(2, 5, 4)).astype(np.float32) * 4   # bg + 3 classes
  image_logits = RNG.normal(size=(2, 5, 3)).astype(np.float32) * 4  # 3 classes, no bg
  base = np.array([True, False, True])
  p_txt = np_softmax(text_logits)[..., 1:]
  p_img = np_softmax(image_logits)
  lam = ensemble_lambda
  expected = np.where(base, p_txt ** lam * p_img ** (1 - lam),
                      p_txt ** (1 - lam) * p_img ** lam)
  got = ensemble.fuse_scores(tf.constant(text_logits), tf.constant(image_logits),
                             tf.constant(base), ensemble_lambda)
  np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-7)


def test_text_scores_drop_background_after_softmax():
  logits = RNG.normal(size=(1, 2, 4)).astype(np.float32)
  np.testing.assert_allclose(ensemble.text_scores(tf.constant(logits)).numpy(),
                             np_softmax(logits)[..., 1:], rtol=1e-6)
