"""The converter on bad and changing input: reruns with other settings, corrupt and unusual
images, paths outside the image root, degenerate polygons, LVIS v0.5 / v1 image layouts."""
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from vild.data import conversion
from vild.data import tf_example

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
H, W = 8, 12
CATEGORIES = [{"id": 1, "name": "apple", "frequency": "f", "synonyms": ["apple"]},
              {"id": 2, "name": "unicorn", "frequency": "r", "synonyms": ["unicorn"]}]
SQUARE = [[1, 1, 5, 1, 5, 5, 1, 5]]


def _rgb(seed=0):
  return np.random.default_rng(seed).integers(0, 256, (H, W, 3)).astype(np.uint8)


def _save(root, relative, image: Image.Image, **kwargs) -> str:
  path = os.path.join(root, relative)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  image.save(path, **kwargs)
  return path


def _annotation(ann_id, image_id, category_id=1, segmentation=None):
  return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": [1, 1, 4, 4],
          "area": 16, "segmentation": SQUARE if segmentation is None else segmentation}


def _write_json(path, images, annotations):
  images = [dict({"height": H, "width": W}, **image) for image in images]
  with open(path, "w", encoding="utf-8") as f:
    json.dump({"images": images, "annotations": annotations, "categories": CATEGORIES}, f)
  return str(path)


def _records(output_dir, name):
  files = sorted(tf.io.gfile.glob(os.path.join(output_dir, f"{name}-*.tfrecord")))
  return [tf.train.Example.FromString(r.numpy())
          for f in files for r in tf.data.TFRecordDataset(f)]


def _decoded(output_dir, name):
  decoder = tf_example.Decoder(include_mask=True)
  files = sorted(tf.io.gfile.glob(os.path.join(output_dir, f"{name}-*.tfrecord")))
  return [decoder.decode(r) for f in files for r in tf.data.TFRecordDataset(f)]


@pytest.fixture
def two_images(tmp_path):
  """Image 1 with an apple and a (rare) unicorn, image 2 with an apple."""
  root = str(tmp_path / "images")
  for i in (1, 2):
    _save(root, f"{i}.png", Image.fromarray(_rgb(i)))
  annotations = _write_json(tmp_path / "ann.json", [{"id": 1, "file_name": "1.png"},
                                                    {"id": 2, "file_name": "2.png"}],
                            [_annotation(1, 1), _annotation(2, 1, 2), _annotation(3, 2)])
  return annotations, root, str(tmp_path / "out")


# --- Reruns (issue 17.3) --------------------------------------------------------------------
def test_rerun_with_other_settings_stops_and_overwrite_redoes(two_images, tmp_path):
  annotations, root, out = two_images
  conversion.convert(annotations, root, out, "train", base_only=True, num_shards=2)
  before = {n: os.path.getmtime(os.path.join(out, n)) for n in os.listdir(out)}

  def refused(match, path=annotations, **kwargs):
    with pytest.raises(conversion.ConversionError, match=match):
      conversion.convert(path, root, out, "train", **dict(dict(base_only=True, num_shards=2),
                                                          **kwargs))
  refused(r"base_only: saved True, now False.*--overwrite", base_only=False)
  refused(r"num_shards: saved 2, now 1", num_shards=1)
  refused(r"split: saved 'lvis_rare', now 'none'", split="none")
  refused(r"include_masks: saved True, now False", include_masks=False)
  with open(annotations, encoding="utf-8") as f:
    changed = json.load(f)
  changed["annotations"].append(_annotation(4, 2, 2))
  refused(r"annotations_sha256: saved 'sha256:", path=_write_json(
      tmp_path / "other.json", changed["images"], changed["annotations"]))
  # Nothing was touched: the shards and the report are those of the base-only run.
  assert {n: os.path.getmtime(os.path.join(out, n)) for n in os.listdir(out)} == before
  with open(os.path.join(out, "train.report.json"), encoding="utf-8") as f:
    assert json.load(f)["base_only"] is True
  classes = [c for r in _decoded(out, "train") for c in r["groundtruth_classes"].numpy()]
  assert sorted(classes) == [1, 1]

  report = conversion.convert(annotations, root, out, "train", base_only=False, num_shards=1,
                              overwrite=True)
  assert report["base_only"] is False and report["settings"]["num_shards"] == 1
  assert sorted(n for n in os.listdir(out) if n.endswith(".tfrecord")) == [
      "train-00000-of-00001.tfrecord"]  # no shard of the 2-shard run is left to be globbed
  classes = [c for r in _decoded(out, "train") for c in r["groundtruth_classes"].numpy()]
  assert sorted(classes) == [1, 1, 2]
  # The same settings again: resumed, nothing rewritten.
  mtime = os.path.getmtime(os.path.join(out, "train-00000-of-00001.tfrecord"))
  conversion.convert(annotations, root, out, "train", base_only=False, num_shards=1)
  assert os.path.getmtime(os.path.join(out, "train-00000-of-00001.tfrecord")) == mtime


def test_shards_without_settings_are_not_resumed(two_images):
  annotations, root, out = two_images
  conversion.convert(annotations, root, out, "train", num_shards=1)
  os.remove(os.path.join(out, "train.settings.json"))  # as an older vild left them
  with pytest.raises(conversion.ConversionError, match="unknown settings.*--overwrite"):
    conversion.convert(annotations, root, out, "train", num_shards=1)
  assert conversion.convert(annotations, root, out, "train", num_shards=1,
                            overwrite=True)["num_images_written"] == 2


def test_a_run_that_wrote_nothing_does_not_pin_its_settings(two_images, tmp_path):
  annotations, root, out = two_images
  with pytest.raises(conversion.ConversionError, match="2 of 2 images"):
    conversion.convert(annotations, str(tmp_path / "wrong_root"), out, "train")
  report = conversion.convert(annotations, root, out, "train")
  assert report["status"] == "ok" and report["num_images_written"] == 2


# --- Corrupt images (issue 17.5, converter side) ---------------------------------------------
def test_corrupt_images_are_refused_counted_and_named(tmp_path):
  root = str(tmp_path / "images")
  _save(root, "good.jpg", Image.fromarray(_rgb(0)), quality=90)
  buffer = io.BytesIO()  # half of a JPEG whose header PIL reads
  Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 96, 3)).astype(np.uint8)).save(
      buffer, format="JPEG")
  with open(os.path.join(root, "half.jpg"), "wb") as f:
    f.write(buffer.getvalue()[:len(buffer.getvalue()) // 2])
  buffer = io.BytesIO()
  Image.fromarray(_rgb(2)).save(buffer, format="PNG")
  with open(os.path.join(root, "cut.png"), "wb") as f:  # PIL still loads it; TensorFlow not.
    f.write(buffer.getvalue()[:-2])
  images = [{"id": 1, "file_name": "good.jpg"},
            {"id": 2, "file_name": "half.jpg", "height": 64, "width": 96},
            {"id": 3, "file_name": "cut.png"}]
  annotations = _write_json(tmp_path / "ann.json", images,
                            [_annotation(i, i) for i in (1, 2, 3)])
  out = str(tmp_path / "out")
  with pytest.raises(conversion.ConversionError, match=r"half.jpg: corrupt or truncated"):
    conversion.convert(annotations, root, out, "train")
  with open(os.path.join(out, "train.report.json"), encoding="utf-8") as f:
    assert json.load(f)["status"].startswith("failed")

  report = conversion.convert(annotations, root, out, "train", max_missing_fraction=0.7)
  assert report["status"] == "ok" and report["num_images_written"] == 1
  refused = {u["id"]: u for u in report["unreadable_images"]}
  assert sorted(refused) == [2, 3]
  assert refused[2]["path"].endswith("half.jpg")
  assert "corrupt or truncated" in refused[2]["reason"]
  assert "corrupt or truncated" in refused[3]["reason"] and "cut.png" in refused[3]["reason"]
  (record,) = _decoded(out, "train")  # what is written decodes
  assert record["image"].shape == (H, W, 3)


# --- Pixel formats (issue 17.12, converter side) ---------------------------------------------
def test_images_of_every_mode_are_stored_as_8_bit_rgb(tmp_path):
  root = str(tmp_path / "images")
  gray16 = np.linspace(0, 65535, H * W).astype(np.uint16).reshape(H, W)
  rgb16 = np.random.default_rng(3).integers(0, 65536, (H, W, 3)).astype(np.uint16)
  rgb = _rgb(4)
  paths = {
      "gray16.png": _save(root, "gray16.png", Image.fromarray(gray16)),
      "la.png": _save(root, "la.png", Image.fromarray(rgb).convert("LA")),
      "p.png": _save(root, "p.png", Image.fromarray(rgb).convert("P")),
      "anim.gif": _save(root, "anim.gif", Image.fromarray(rgb).convert("P"),
                        save_all=True, append_images=[Image.fromarray(_rgb(5)).convert("P")]),
      "cmyk.jpg": _save(root, "cmyk.jpg", Image.new("RGB", (W, H), (200, 100, 50)).convert(
          "CMYK")),
      "float.tiff": _save(root, "float.tiff", Image.fromarray(np.ones((H, W), np.float32))),
      "plain.jpg": _save(root, "plain.jpg", Image.fromarray(rgb)),
  }
  with open(os.path.join(root, "rgb16.png"), "wb") as f:
    f.write(tf.io.encode_png(rgb16).numpy())
  paths["rgb16.png"] = os.path.join(root, "rgb16.png")
  names = sorted(paths)
  annotations = _write_json(tmp_path / "ann.json",
                            [{"id": i, "file_name": n} for i, n in enumerate(names, 1)],
                            [_annotation(i, i) for i in range(1, len(names) + 1)])
  out = str(tmp_path / "out")
  report = conversion.convert(annotations, root, out, "train", max_missing_fraction=0.2)

  records = {tf_example.source_id(r): r for r in _records(out, "train")}
  decoded = {r["source_id"].numpy().decode(): r["image"].numpy() for r in _decoded(out, "train")}
  expected = {"gray16.png": np.repeat((gray16 >> 8).astype(np.uint8)[..., None], 3, -1),
              "rgb16.png": (rgb16 >> 8).astype(np.uint8),
              "p.png": np.asarray(Image.open(paths["p.png"]).convert("RGB")),
              "anim.gif": np.asarray(Image.open(paths["anim.gif"]).convert("RGB")),
              "la.png": np.asarray(Image.open(paths["la.png"]).convert("RGB"))}
  for image_id, name in enumerate(names, 1):
    if name == "float.tiff":
      assert str(image_id) not in records
      continue
    stored = tf_example.encoded_image(records[str(image_id)])
    with Image.open(io.BytesIO(stored)) as image:  # any reader sees 8-bit pixels
      assert image.mode in ("RGB", "L") and image.format in ("PNG", "JPEG"), name
      by_pil = np.asarray(image.convert("RGB")).astype(int)
      tolerance = 8 if image.format == "JPEG" else 0  # two JPEG decoders differ slightly
    assert decoded[str(image_id)].shape == (H, W, 3), name  # the training decoder
    np.testing.assert_allclose(by_pil, decoded[str(image_id)], atol=tolerance, err_msg=name)
    if name in expected:
      np.testing.assert_array_equal(by_pil, expected[name], err_msg=name)
    if name == "plain.jpg":  # stored as read
      with open(paths[name], "rb") as f:
        assert stored == f.read()
  np.testing.assert_allclose(decoded[str(names.index("cmyk.jpg") + 1)].astype(int),
                             np.full((H, W, 3), (200, 100, 50)), atol=3)
  assert report["converted_images"] == {"GIF P": 1, "JPEG CMYK": 1, "PNG I;16": 1,
                                        "PNG LA": 1, "PNG P": 1}
  (refused,) = report["unreadable_images"]
  assert refused["path"].endswith("float.tiff") and "floating-point" in refused["reason"]


# --- Paths outside the image root (issue 17.11) ---------------------------------------------
@pytest.mark.parametrize("where", ["relative", "absolute"])
def test_paths_outside_the_image_root_are_refused_unless_allowed(tmp_path, where):
  root = str(tmp_path / "data" / "images")
  inside = _save(root, "in.png", Image.fromarray(_rgb(0)))
  outside = _save(str(tmp_path), "secret.png", Image.fromarray(_rgb(1)))
  file_name = "../../secret.png" if where == "relative" else outside
  annotations = _write_json(tmp_path / "ann.json",
                            [{"id": 1, "file_name": os.path.basename(inside)},
                             {"id": 7, "file_name": file_name}],
                            [_annotation(1, 1), _annotation(2, 7)])
  out = str(tmp_path / "out")
  with pytest.raises(conversion.ConversionError,
                     match=r"image 7: .*secret.png.* outside the image root"):
    conversion.convert(annotations, root, out, "train")
  assert not os.path.exists(out) or not os.listdir(out)  # refused before writing anything
  report = conversion.convert(annotations, root, out, "train", allow_outside_image_root=True)
  assert report["num_images_written"] == 2
  filenames = [r.features.feature["image/filename"].bytes_list.value[0].decode()
               for r in _records(out, "train")]
  assert filenames == ["in.png", os.path.join("..", "..", "secret.png")]


# --- Degenerate polygons (issue 17.13) ------------------------------------------------------
def test_degenerate_polygons_are_dropped_and_counted(tmp_path):
  root = str(tmp_path / "images")
  _save(root, "1.png", Image.fromarray(_rgb(0)))
  two_points = [[1, 1, 5, 5]]
  annotations = _write_json(tmp_path / "ann.json", [{"id": 1, "file_name": "1.png"}], [
      _annotation(1, 1),
      _annotation(2, 1, segmentation=two_points),
      _annotation(3, 1, segmentation=[]),
      _annotation(4, 1, segmentation=SQUARE + two_points),  # one good part: kept
  ])
  report = conversion.convert(annotations, root, str(tmp_path / "out"), "train")
  assert report["annotations_kept"] == 2
  assert report["dropped_degenerate_polygon"] == 2
  assert report["degenerate_polygon_parts_removed"] == 1
  (record,) = _decoded(str(tmp_path / "out"), "train")
  assert record["groundtruth_instance_masks"].numpy().sum(axis=(1, 2)).tolist() == [16, 16]
  # Without masks the boxes are all that is written, and all are fine.
  report = conversion.convert(annotations, root, str(tmp_path / "boxes"), "train",
                              include_masks=False)
  assert report["annotations_kept"] == 4 and report["dropped_degenerate_polygon"] == 0


# --- Image layouts (issue 18.5) -------------------------------------------------------------
def test_lvis_v05_and_v1_images_are_found_below_the_coco_root(tmp_path):
  root = str(tmp_path / "coco")
  _save(root, "val2014/COCO_val2014_000000000011.jpg", Image.fromarray(_rgb(11)))
  _save(root, "train2017/000000000012.jpg", Image.fromarray(_rgb(12)))  # a 2014 name in 2017
  _save(root, "val2017/000000000013.jpg", Image.fromarray(_rgb(13)))
  _save(root, "train2017/000000000014.jpg", Image.fromarray(_rgb(14)))
  url = "http://images.cocodataset.org/{}/{:012d}.jpg"
  annotations = _write_json(tmp_path / "ann.json", [
      {"id": 11, "file_name": "COCO_val2014_000000000011.jpg"},  # LVIS v0.5, COCO 2014 layout
      {"id": 12, "file_name": "COCO_val2014_000000000012.jpg"},  # LVIS v0.5, COCO 2017 layout
      {"id": 13, "coco_url": url.format("val2017", 13)},  # LVIS v1
      {"id": 14, "coco_url": url.format("train2017", 14)},
  ], [_annotation(i, i) for i in (11, 12, 13, 14)])
  report = conversion.convert(annotations, root, str(tmp_path / "out"), "val")
  assert report["num_images_written"] == 4 and not report["missing_images"]
  filenames = sorted(r.features.feature["image/filename"].bytes_list.value[0].decode()
                     for r in _records(str(tmp_path / "out"), "val"))
  assert filenames == ["train2017/000000000012.jpg", "train2017/000000000014.jpg",
                       "val2014/COCO_val2014_000000000011.jpg", "val2017/000000000013.jpg"]


def test_cli_names_the_paths_tried_for_a_missing_image_before_any_usage_text(tmp_path):
  root = str(tmp_path / "coco")
  os.makedirs(root)
  annotations = _write_json(tmp_path / "ann.json",
                            [{"id": 5, "file_name": "COCO_val2014_000000000005.jpg"}],
                            [_annotation(1, 5)])
  result = subprocess.run(
      [sys.executable, os.path.join(REPO, "scripts", "create_tfrecords.py"),
       f"--annotations={annotations}", f"--image_root={root}",
       f"--output_dir={tmp_path / 'out'}", "--name=val"],
      capture_output=True, text=True, timeout=300,
      env=dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2"), check=False)
  assert result.returncode != 0
  error = result.stderr
  tried = [os.path.join(root, p) for p in (
      "COCO_val2014_000000000005.jpg", "val2014/COCO_val2014_000000000005.jpg",
      "train2017/000000000005.jpg", "val2017/000000000005.jpg")]
  message = error.index("image 5 (COCO_val2014_000000000005.jpg): not found; tried "
                        + ", ".join(tried))
  usage = error.find("Converts an LVIS")
  assert usage == -1 or usage > message, error
  assert "Traceback" not in error
