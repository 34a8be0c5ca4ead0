"""scripts/detect.py end to end: PNG and JSON per image, a corrupt image skipped and reported,
clear failures for an empty vocabulary and a model/embedding dimension mismatch."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests import inference_helpers as helpers
from tests.conftest import REPO
from vild import text_embeddings
from vild import vocabulary as vocabulary_lib

NAMES = ["red square", "green disc", "blue disc"]


def detect_cli(*flags):
  env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"}
  return subprocess.run([sys.executable, "scripts/detect.py", *flags], capture_output=True,
                        text=True, env=env, cwd=REPO, timeout=300)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
  return helpers.trained_model_dir(tmp_path_factory)


def write_vocabulary(path, dim):
  text_embeddings.save(str(path), helpers.BagOfWordsTeacher(dim).encode_text(NAMES),
                       vocabulary_lib.Vocabulary.from_names(NAMES))
  return str(path)


def test_detect_writes_png_and_json_and_skips_a_corrupt_image(model_dir, tmp_path):
  images = tmp_path / "images"
  images.mkdir()
  for seed in (0, 1):
    Image.fromarray(helpers.toy_image(seed)).save(images / f"scene{seed}.png")
  (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
  out = tmp_path / "out"
  result = detect_cli(f"--image={images}", f"--vocabulary={write_vocabulary(tmp_path / 'v.npy', 32)}",
                      f"--model={model_dir}", f"--output_dir={out}", "--input_size=128,128",
                      "--score_threshold=0")
  assert result.returncode == 0, result.stderr[-3000:]
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


def test_detect_rejects_embeddings_of_another_dimension(model_dir, tmp_path):
  Image.fromarray(helpers.toy_image(0)).save(tmp_path / "scene.png")
  result = detect_cli(f"--image={tmp_path / 'scene.png'}",
                      f"--vocabulary={write_vocabulary(tmp_path / 'v16.npy', 16)}",
                      f"--model={model_dir}", f"--output_dir={tmp_path / 'out'}",
                      "--input_size=128,128")
  assert result.returncode != 0
  assert "dimension 16" in result.stderr and "dimension 32" in result.stderr
  assert not (tmp_path / "out").exists()
