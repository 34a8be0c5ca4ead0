"""The Detector on a trained tiny ViLD: vocabularies, caching, options, CLIP on crops, errors."""
import os
import shutil

import gin
import numpy as np
import pytest

from tests import inference_helpers as helpers
from tests.conftest import REPO
from tests.test_detection_generator import iou
from vild import text_embeddings
from vild import vocabulary as vocabulary_lib
from vild.data import toy
from vild.inference import checkpoint
from vild.inference import detector as detector_lib
from vild.inference import images
from vild.inference import teacher_adapters
from vild.inference import vocabularies
from vild.teacher import crops
from vild.teacher import vocabulary_embeddings

NAMES = list(toy.TOY_CATEGORIES)
CLIP_FIXTURE = os.path.join(REPO, "tests", "fixtures", "tiny_clip")  # random-weight tiny CLIP


@pytest.fixture(scope="module")
def teacher():
  return helpers.teacher()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
  return helpers.trained_model_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
  return helpers.detector(tmp_path_factory)


def test_two_vocabularies_on_one_model(detector):
  image = helpers.toy_image(0)
  [toy_names] = detector.detect(image, NAMES)
  [shapes] = detector.detect(image, ["disc", "square", "koala"])
  for detections, vocab in ((toy_names, NAMES), (shapes, ["disc", "square", "koala"])):
    assert len(detections) > 0
    assert detections.class_scores.shape == (len(detections), len(vocab))
    assert set(detections.names) <= set(vocab)
    assert np.all(np.diff(detections.scores) <= 0)  # best first
    assert np.all(detections.boxes >= 0) and np.all(detections.boxes <= 128)
    np.testing.assert_allclose(np.linalg.norm(detections.region_embeddings, axis=1), 1.0,
                               rtol=1e-5)
    assert detections.masks.shape == (len(detections), 128, 128)
    assert detections.masks.any(axis=(1, 2)).all()
  # A vocabulary changes the scoring, never the regions: one RoI, one region embedding.
  shared = set(toy_names.roi_indices) & set(shapes.roi_indices)
  assert shared
  for roi in shared:
    np.testing.assert_array_equal(
        toy_names.region_embeddings[list(toy_names.roi_indices).index(roi)],
        shapes.region_embeddings[list(shapes.roi_indices).index(roi)])


def test_names_are_embedded_once_and_cached(detector, teacher):
  image = helpers.toy_image(1)
  before = len(teacher.texts_encoded)
  detector.detect(image, ["zebra", "yak"])
  detector.detect(image, ["yak", "walrus", "zebra"])
  assert teacher.texts_encoded[before:] == ["zebra", "yak", "walrus"]


def test_every_vocabulary_form_gives_the_same_detections(detector, teacher, tmp_path):
  names = ["red square", "blue disc", "green disc"]
  matrix = teacher.encode_text(names)
  names_file = tmp_path / "names.txt"
  names_file.write_text("\n".join(names) + "\n")
  npy = str(tmp_path / "toy.npy")
  text_embeddings.save(npy, matrix, vocabulary_lib.Vocabulary.from_names(names))
  forms = [names, vocabulary_lib.Vocabulary.from_names(names), ";".join(names),
           str(names_file), (names, matrix), npy, matrix]
  image = helpers.toy_image(2)
  [expected] = detector.detect(image, names)
  for form in forms:
    [got] = detector.detect(image, form)
    np.testing.assert_allclose(got.scores, expected.scores, rtol=1e-5)
    np.testing.assert_array_equal(got.class_indices, expected.class_indices)
    np.testing.assert_array_equal(got.boxes, expected.boxes)
    if form is not matrix:
      assert got.vocabulary.names == tuple(names)
  [from_matrix] = detector.detect(image, matrix)
  assert from_matrix.vocabulary.names == ("class_1", "class_2", "class_3")


def test_score_threshold_max_detections_and_nms_options(model_dir, detector, teacher):
  image = helpers.toy_image(0)
  [default] = detector.detect(image, NAMES)
  threshold = 0.5 * float(default.scores[0])  # NMS always keeps the top detection
  strict = detector_lib.Detector.load(
      model_dir, input_size=helpers.SIZE, embed_names=teacher.encode_text,
      score_threshold=threshold, max_detections=4, nms_iou_threshold=0.2)
  [detections] = strict.detect(image, NAMES)
  assert 0 < len(detections) <= 4
  assert np.all(detections.scores > threshold)
  assert len(default) > 4 and default.scores[4] > 0  # the options, not the model, cut these
  for i in range(len(detections)):
    for j in range(i):
      if detections.class_indices[i] == detections.class_indices[j]:
        assert iou(detections.boxes[i], detections.boxes[j]) <= 0.2 + 1e-6


def test_clip_on_crops_classifies_proposal_crops_with_the_teacher(detector, teacher):
  image = helpers.toy_image(0)
  [crops] = detector.detect(image, NAMES, method="clip_on_crops")
  assert crops.method == "clip_on_crops" and crops.masks is None and len(crops) > 0
  crop_embeddings = teacher.embed_crops(image, crops.boxes)
  logits = crop_embeddings @ teacher.encode_text(NAMES).T / detector.spec.scoring.temperature
  expected = np.exp(logits - logits.max(1, keepdims=True))
  expected /= expected.sum(1, keepdims=True)
  np.testing.assert_allclose(crops.class_scores, expected, rtol=1e-3, atol=1e-7)
  np.testing.assert_allclose(crops.scores, expected[np.arange(len(crops)), crops.class_indices],
                             rtol=1e-3, atol=1e-7)
  # Re-scoring CLIP-on-crops detections keeps their (crop) scoring.
  rescored = detector.rescore(crops, NAMES)
  np.testing.assert_allclose(rescored.scores, crops.scores, rtol=1e-4)


def test_bad_vocabularies_fail_clearly(detector, teacher, tmp_path):
  image = helpers.toy_image(0)
  with pytest.raises(vocabulary_lib.VocabularyError, match="empty"):
    detector.detect(image, " ; ")
  wrong_dim = str(tmp_path / "wrong.npy")
  text_embeddings.save(wrong_dim, helpers.BagOfWordsTeacher(16).encode_text(["cat", "dog"]),
                       vocabulary_lib.Vocabulary.from_names(["cat", "dog"]))
  with pytest.raises(text_embeddings.TextEmbeddingError, match="dimension 16.*dimension 32"):
    detector.detect(image, wrong_dim)
  with pytest.raises(text_embeddings.TextEmbeddingError, match="No text encoder"):
    vocabularies.TextEmbeddingCache(None, 32).matrix(["cat"])
  with pytest.raises(detector_lib.DetectorError, match="method"):
    detector.detect(image, NAMES, method="sliding_window")


def test_model_dir_errors_name_the_missing_piece(model_dir, tmp_path):
  with pytest.raises(checkpoint.ModelDirError, match="no such model directory"):
    checkpoint.load_model(str(tmp_path / "nowhere"))
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(checkpoint.ModelDirError, match="config.gin: missing"):
    checkpoint.load_model(str(empty))
  (empty / "config.gin").write_text(open(os.path.join(model_dir, "config.gin")).read())
  with pytest.raises(checkpoint.ModelDirError, match="no TF checkpoint"):
    checkpoint.load_model(str(empty))
  with pytest.raises(checkpoint.ModelDirError, match=r"\(100, 128\).*multiple of 32"):
    checkpoint.load_model(model_dir, input_size=(100, 128))
  other = tmp_path / "other_config"
  shutil.copytree(model_dir, other)
  config = (other / "config.gin").read_text()
  (other / "config.gin").write_text(config.replace("fc_dims = 128", "fc_dims = 64"))
  with pytest.raises(checkpoint.ModelDirError, match="does not match the model built from"):
    checkpoint.load_model(str(other), input_size=helpers.SIZE)


def test_image_inputs_and_unreadable_files(tmp_path):
  broken = tmp_path / "broken.jpg"
  broken.write_bytes(b"\xff\xd8 not really a jpeg")
  with pytest.raises(images.ImageError, match="broken.jpg: cannot read"):
    images.load_image(str(broken))
  empty = tmp_path / "nothing_here"
  empty.mkdir()
  with pytest.raises(images.ImageError, match="no image files"):
    images.find_images(str(empty))
  with pytest.raises(images.ImageError, match="matches no files"):
    images.find_images(str(tmp_path / "*.png"))
  assert images.find_images(str(tmp_path)) == [str(broken)]
  grey = images.as_array(np.full((4, 5), 7, np.uint8))
  assert grey.shape == (4, 5, 3)
  with pytest.raises(images.ImageError, match=r"\[height, width, 3\]"):
    images.as_array(np.zeros((4, 5, 4), np.uint8))



def test_teacher_adapters_wire_the_clip_teacher(tmp_path_factory):
  teacher = teacher_adapters.load_teacher(CLIP_FIXTURE)
  names = ["cat", "red umbrella"]
  np.testing.assert_allclose(
      teacher_adapters.embed_names(teacher)(names),
      vocabulary_embeddings.embed_vocabulary(
          teacher, vocabulary_lib.Vocabulary.from_names(names), progress=False), rtol=1e-6)
  image = helpers.toy_image(0)
  boxes = np.array([[10.0, 10.0, 60.0, 70.0], [0.0, 0.0, 128.0, 128.0]], np.float32)
  np.testing.assert_allclose(teacher_adapters.embed_crops(teacher)(image, boxes),
                             crops.RegionEmbedder(teacher)(image, boxes), rtol=1e-6)
  # The tiny CLIP embeds in 16 dimensions; the test model's regions have 32.
  with pytest.raises(text_embeddings.TextEmbeddingError, match="16 dimensions.*32"):
    detector_lib.Detector.from_model(helpers.keras_model(tmp_path_factory), helpers.SIZE,
                                     teacher=teacher)


def test_input_size_defaults_to_the_training_pipelines_output_size():
  assert checkpoint.configured_input_size() == checkpoint.DEFAULT_INPUT_SIZE
  gin.parse_config(["import vild.data.input_pipeline", "Parser.output_size = (96, 160)"])
  assert checkpoint.configured_input_size() == (96, 160)
