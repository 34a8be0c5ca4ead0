"""What detection writes and shows: no two outputs of a run at one path (an image named
detections.png, equal names in two folders, an input inside the output directory), a table that
shortens with an ellipsis, labels with accents drawn as letters, 16-bit images read as 8-bit."""
import json
import os

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from vild import vocabulary as vocabulary_lib
from vild.inference import batch
from vild.inference import detections as detections_lib
from vild.inference import images
from vild.inference import visualize


def one_detection(vocabulary, height, width, name_index=0):
  return detections_lib.Detections(
      boxes=np.array([[2, 2, height - 2, width - 2]], np.float32),
      scores=np.array([0.9], np.float32), class_indices=np.array([name_index]),
      class_scores=np.eye(len(vocabulary), dtype=np.float32)[[name_index]],
      region_embeddings=np.ones([1, 4], np.float32) / 2, vocabulary=vocabulary,
      image_size=(height, width), roi_indices=np.array([0]))


class OneBoxDetector:
  """Detector stand-in: one box labelled with the first name, in every image (no model)."""

  def text_embeddings(self, vocabulary):
    vocab = vocabulary_lib.Vocabulary.from_names(vocabulary.split(";"))
    return vocab, np.eye(len(vocab), 4, dtype=np.float32)

  def detect(self, image, vocabulary, method="vild"):
    del method
    return [one_detection(vocabulary[0], *image.shape[:2])]


def write_image(path, seed):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  pixels = np.random.default_rng(seed).integers(0, 255, size=(24, 32, 3), dtype=np.uint8)
  Image.fromarray(pixels).save(path)
  return str(path)


def test_no_two_outputs_of_a_run_share_a_path(tmp_path):
  out = tmp_path / "out"
  paths = [write_image(tmp_path / "a" / "detections.png", 0),  # the run index's name
           write_image(tmp_path / "b" / "detections.jpg", 1),
           write_image(tmp_path / "a" / "scene.png", 2),  # same name, two folders
           write_image(tmp_path / "b" / "scene.png", 3),
           write_image(tmp_path / "b" / "Scene.bmp", 4),  # same name on a case-blind disk
           write_image(out / "photo.png", 5)]  # an input inside the output directory
  with open(paths[-1], "rb") as f:
    photo = f.read()
  report = batch.detect_files(OneBoxDetector(), paths + [paths[2]], "cat;dog", str(out))

  outputs = [r.png for r in report.results] + [r.json for r in report.results]
  assert len(report.results) == len(paths)  # the repeated path is processed once
  assert len({o.casefold() for o in outputs}) == len(outputs) == 2 * len(paths)
  assert str(out / batch.INDEX_NAME) not in outputs
  with open(paths[-1], "rb") as f:
    assert f.read() == photo
  index = json.loads((out / batch.INDEX_NAME).read_text())
  assert [item["image"] for item in index["images"]] == paths
  for item in index["images"]:  # each image's own JSON, with its own detections
    record = json.loads((out / item["json"]).read_text())
    assert record["image"] == item["image"] and len(record["detections"]) == 1
    with Image.open(out / item["png"]) as drawn:
      assert drawn.size == (32, 24)
  assert sorted(os.listdir(out)) == sorted(
      [os.path.basename(o) for o in outputs] + [batch.INDEX_NAME, "photo.png"])


def test_the_table_shortens_file_names_and_labels_with_an_ellipsis():
  vocab = vocabulary_lib.Vocabulary.from_names(["a category name much longer than the column"])
  image = "/data/photos/2026/holidays/beach/IMG_0001_extra_long_name.jpg"
  report = batch.RunReport(results=[batch.FileResult(
      image, one_detection(vocab, 40, 40), "x.png", "x.json")],
      skipped=[{"image": "/data/photos/unreadable_file_number_two.png", "error": "bad"}])
  header, row, skipped = batch.summary_table(report, rows=5).splitlines()
  assert row.startswith("…")
  assert row.index("IMG_0001_extra_long_name.jpg ") + len("IMG_0001_extra_long_name.jpg") == 32
  assert "a category name much lo… " in row
  assert header.index("label") == row.index("a category") == 33
  assert skipped.startswith("…") and "unreadable_file_number_two.png SKIPPED: bad" in skipped


def test_labels_draw_accented_letters_not_missing_glyph_boxes():
  image = np.full((60, 120, 3), 255, np.uint8)

  def drawn(name):
    vocab = vocabulary_lib.Vocabulary.from_names([name])
    return np.asarray(visualize.draw_detections(image, one_detection(vocab, 60, 120)))
  # U+4E00 (CJK) is missing from the font: its box is what a missing "è" would look like.
  assert not np.array_equal(drawn("è"), drawn("\u4e00"))
  assert not np.array_equal(drawn("crème brûlée"), drawn("cr\u4e00me br\u4e00l\u4e00e"))


def test_16_bit_images_are_scaled_to_8_bits_as_tensorflow_reads_them(tmp_path):
  values = np.linspace(0, 65535, 24 * 32).reshape(24, 32).astype(np.uint16)
  path = str(tmp_path / "depth16.png")
  Image.fromarray(values).save(path)
  with Image.open(path) as check:
    assert check.mode.startswith("I;16")
  loaded = images.load_image(path)
  expected = np.repeat((values >> 8).astype(np.uint8)[..., None], 3, axis=-1)
  np.testing.assert_array_equal(loaded, expected)
  with open(path, "rb") as f:  # the SavedModel's serve_bytes decodes with TensorFlow
    decoded = tf.io.decode_image(f.read(), channels=3, expand_animations=False).numpy()
  np.testing.assert_array_equal(loaded, decoded)

  float_path = str(tmp_path / "float.tif")
  Image.fromarray(values.astype(np.float32)).save(float_path)
  with pytest.raises(images.ImageError, match=r"float\.tif: 32-bit floating-point pixels"):
    images.load_image(float_path)
