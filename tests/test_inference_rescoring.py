"""Re-scoring stored detections: the model's scoring by hand, re-scoring vs a fresh detect,
attribute expansion, base/novel masks."""
import numpy as np
import pytest

from tests import inference_helpers as helpers
from vild.data import toy
from vild.inference import rescoring

NAMES = list(toy.TOY_CATEGORIES)
NEW_NAMES = ["disc", "square", "red thing", "koala"]


def unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def softmax(x):
  e = np.exp(x - x.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def teacher():
  return helpers.teacher()


@pytest.fixture(scope="module")
def ensemble_detector(tmp_path_factory):
  return helpers.detector(tmp_path_factory)


@pytest.fixture(scope="module")
def text_only_detector(tmp_path_factory):
  return helpers.detector(tmp_path_factory, use_ensemble=False)


def test_class_scores_match_hand_computed_text_softmax_and_ensemble_fusion():
  rng = np.random.default_rng(0)
  regions, images, text = (unit(rng.normal(size=s)) for s in [(5, 8), (5, 8), (3, 8)])
  background = rng.normal(size=8)
  base_mask = np.array([True, False, True])
  temperature, lam = 0.05, 2 / 3
  p_text = softmax(np.concatenate(
      [regions @ unit(background)[:, None], regions @ text.T], axis=1) / temperature)[:, 1:]
  p_image = softmax(images @ text.T / temperature)
  weight = np.where(base_mask, lam, 1 - lam)
  fused = p_text ** weight * p_image ** (1 - weight)

  text_only = rescoring.ScoringParams(background, temperature, ensemble_lambda=None)
  np.testing.assert_allclose(rescoring.class_scores(text_only, regions, text), p_text,
                             rtol=1e-4)
  params = rescoring.ScoringParams(background, temperature, ensemble_lambda=lam)
  np.testing.assert_allclose(rescoring.class_scores(params, regions, text, images, base_mask),
                             fused, rtol=1e-4)
  with pytest.raises(ValueError, match="image embeddings"):
    rescoring.class_scores(params, regions, text)


@pytest.mark.parametrize("which", ["ensemble_detector", "text_only_detector"])
def test_rescoring_with_the_same_vocabulary_reproduces_detect(request, which):
  detector = request.getfixturevalue(which)
  [detections] = detector.detect(helpers.toy_image(3), NAMES)
  rescored = detector.rescore(detections, NAMES)
  assert len(rescored) == len(detections) > 0
  np.testing.assert_array_equal(rescored.roi_indices, detections.roi_indices)
  np.testing.assert_array_equal(rescored.class_indices, detections.class_indices)
  np.testing.assert_array_equal(rescored.boxes, detections.boxes)
  np.testing.assert_array_equal(rescored.box_masks, detections.box_masks)
  np.testing.assert_allclose(rescored.scores, detections.scores, rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(rescored.class_scores, detections.class_scores, rtol=1e-4,
                             atol=1e-7)


@pytest.mark.parametrize("which", ["ensemble_detector", "text_only_detector"])
def test_rescoring_with_new_text_scores_each_roi_as_a_fresh_detect(request, which):
  detector = request.getfixturevalue(which)
  image = helpers.toy_image(4)
  [first] = detector.detect(image, NAMES)
  [fresh] = detector.detect(image, NEW_NAMES)
  rescored = detector.rescore(first, NEW_NAMES)
  assert rescored.vocabulary.names == tuple(NEW_NAMES)
  fresh_rows = {r: i for i, r in enumerate(fresh.roi_indices)}
  common = [(i, fresh_rows[r]) for i, r in enumerate(rescored.roi_indices) if r in fresh_rows]
  assert common, "the two detection sets share no RoI"
  ours, theirs = np.array(common).T
  np.testing.assert_allclose(rescored.class_scores[ours], fresh.class_scores[theirs],
                             rtol=1e-4, atol=1e-7)
  np.testing.assert_array_equal(rescored.boxes[ours], fresh.boxes[theirs])


def paper_scores(detections, text, scoring, base_mask=None):
  """ViLD's scores by hand from a detection's embeddings (VILD.md)."""
  logits = np.concatenate([detections.region_embeddings @ unit(scoring.background_embedding)[
      :, None], detections.region_embeddings @ text.T], axis=1) / scoring.temperature
  p_text = softmax(logits.astype(np.float64))[:, 1:]
  if base_mask is None:
    return p_text
  p_image = softmax(detections.image_embeddings @ text.T / scoring.temperature)
  weight = np.where(base_mask, scoring.ensemble_lambda, 1 - scoring.ensemble_lambda)
  return p_text ** weight * p_image ** (1 - weight)


def test_detect_scores_are_the_papers_text_and_ensemble_scores(
    ensemble_detector, text_only_detector, teacher):
  image, text = helpers.toy_image(3), unit(teacher.encode_text(NAMES))
  base_mask = np.array([True] * 4 + [False] * 2)
  [fused] = ensemble_detector.detect(image, NAMES, base_mask=base_mask)
  [text_only] = text_only_detector.detect(image, NAMES, base_mask=base_mask)
  assert ensemble_detector.spec.scoring.ensemble_lambda == pytest.approx(2 / 3)
  assert text_only_detector.spec.scoring.ensemble_lambda is None
  np.testing.assert_allclose(
      fused.class_scores, paper_scores(fused, text, ensemble_detector.spec.scoring, base_mask),
      rtol=2e-3, atol=1e-9)
  np.testing.assert_allclose(
      text_only.class_scores, paper_scores(text_only, text, text_only_detector.spec.scoring),
      rtol=2e-3, atol=1e-9)


def test_novel_categories_take_the_image_branch_weight(ensemble_detector):
  image = helpers.toy_image(5)
  [all_base] = ensemble_detector.detect(image, NAMES, base_mask=[True] * 6)
  rescored = ensemble_detector.rescore(all_base, NAMES, base_mask=[True] * 5 + [False])
  pool = all_base.select(np.unique(all_base.roi_indices, return_index=True)[1])
  scores = rescoring.class_scores(ensemble_detector.spec.scoring, pool.region_embeddings,
                                  ensemble_detector.text_embeddings(NAMES)[1],
                                  pool.image_embeddings, [True] * 5 + [False])
  assert not np.allclose(scores[:, 5], pool.class_scores[:, 5])
  np.testing.assert_allclose(scores[:, :5], pool.class_scores[:, :5], rtol=1e-4, atol=1e-7)
  assert set(rescored.roi_indices) <= set(all_base.roi_indices)


def test_attribute_expansion_is_the_product_of_name_and_attribute_probabilities(
    ensemble_detector, teacher):
  names, attributes = ["disc", "square"], ["red", "green", "blue"]
  [detections] = ensemble_detector.detect(helpers.toy_image(6), names)
  expanded = ensemble_detector.expand_with_attributes(detections, attributes)

  temperature = ensemble_detector.spec.scoring.temperature
  p_attribute = softmax(detections.region_embeddings @ teacher.encode_text(attributes).T /
                        temperature)                                         # [K, q]
  joint = detections.class_scores[:, :, None] * p_attribute[:, None, :]    # [K, p, q]
  np.testing.assert_allclose(expanded.class_scores, joint.reshape(len(detections), 6),
                             rtol=1e-4, atol=1e-7)
  assert expanded.vocabulary.names == ("red disc", "green disc", "blue disc", "red square",
                                       "green square", "blue square")
  best = p_attribute.argmax(axis=1)
  assert expanded.names == [f"{attributes[b]} {names[c]}"
                            for b, c in zip(best, detections.class_indices)]
  rows = np.arange(len(detections))
  np.testing.assert_allclose(expanded.scores, joint[rows, detections.class_indices, best],
                             rtol=1e-4, atol=1e-7)
