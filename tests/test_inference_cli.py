"""scripts/detect.py end to end on an exported model: PNG and JSON per image, a corrupt image
skipped and reported, a clear failure for an empty vocabulary (dimension mismatches:
test_inference_detector)."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from tests import inference_helpers as helpers
from vild import text_embeddings
from vild import vocabulary as vocabulary_lib

NAMES = ["red square", "green disc", "blue disc"]


def detect_cli(*flags):
  return helpers.run_python(["scripts/detect.py", *flags], expect_success=False)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
  """The SavedModel (the CLI's checkpoint path is Detector.load's, tested elsewhere)."""
  return helpers.exported_dir(tmp_path_factory)


def write_vocabulary(path):
  text_embeddings.save(str(path), helpers.BagOfWordsTeacher().encode_text(NAMES),
                       vocabulary_lib.Vocabulary.from_names(NAMES))
  return str(path)


def test_detect_writes_png_and_json_and_skips_a_corrupt_image(model_dir, tmp_path):
  images = tmp_path / "images"
  images.mkdir()
  for seed in (0, 1):
    Image.fromarray(helpers.toy_image(seed)).save(images / f"scene{seed}.png")
  (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
  out = tmp_path / "out"
  vocabulary = write_vocabulary(tmp_path / "v.npy")
  result = detect_cli(f"--image={images}", f"--vocabulary={vocabulary}", f"--model={model_dir}",
                      f"--output_dir={out}", "--score_threshold=0")
  assert result.returncode == 0, result.stderr[-3000:]
  # Quiet by default: not even the grappler cost model's warning (through Abseil, not TF_CPP_*).
  assert "op_level_cost_estimator" not in result.stderr, result.stderr
  assert "broken.jpg" in result.stdout and "SKIPPED" in result.stdout
  assert "2 images processed, 1 skipped" in result.stdout

  index = json.loads((out / "detections.json").read_text())
  assert [s["image"] for s in index["skipped"]] == [str(images / "broken.jpg")]
  assert "cannot read the image" in index["skipped"][0]["error"]
  assert index["vocabulary"] == NAMES
  for seed in (0, 1):
    with Image.open(out / f"scene{seed}.png") as drawn:
      assert drawn.size == (128, 128)
      assert not np.array_equal(np.asarray(drawn.convert("RGB")), helpers.toy_image(seed))
    record = json.loads((out / f"scene{seed}.json").read_text())
    assert record["height"] == record["width"] == 128
    assert record["detections"], "no detections"
    for item in record["detections"]:
      assert item["label"] in NAMES
      x, y, w, h = item["bbox"]
      ymin, xmin, ymax, xmax = item["box_yxyx"]
      assert (x, y, x + w, y + h) == pytest.approx((xmin, ymin, xmax, ymax), abs=0.02)
      assert item["segmentation"]["size"] == [128, 128]
  assert not [f for f in os.listdir(out) if f.startswith(".")]  # no temporary files left


def test_detect_rejects_an_empty_vocabulary(model_dir, tmp_path):
  Image.fromarray(helpers.toy_image(0)).save(tmp_path / "scene.png")
  result = detect_cli(f"--image={tmp_path / 'scene.png'}", "--vocabulary= ; ",
                      f"--model={model_dir}", f"--output_dir={tmp_path / 'out'}")
  assert result.returncode != 0
  assert "vocabulary is empty" in result.stderr
  assert not (tmp_path / "out").exists()

