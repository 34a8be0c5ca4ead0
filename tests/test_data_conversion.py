"""The LVIS/COCO converter on a hand-written LVIS file: masks, crowd, splits, missing images."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from vild.data import conversion
from vild.data import schema
from vild.data import shards
from vild.data import tf_example

H, W = 40, 60


def _rle_uncompressed(mask: np.ndarray) -> dict:
  """Column-major run lengths starting with zeros, as COCO crowd annotations store them."""
  flat = mask.flatten(order="F")
  counts, value, run = [], 0, 0
  for v in flat:
    if v != value:
      counts.append(run)
      value, run = v, 0
    run += 1
  counts.append(run)
  return {"size": [H, W], "counts": counts}


def _write_png(path, seed):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  rng = np.random.default_rng(seed)
  Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(path)


@pytest.fixture
def tiny_lvis(tmp_path):
  """4 images (one missing, one unreadable), 3 categories (one rare), 6 annotations."""
  root = tmp_path / "coco"
  _write_png(str(root / "train2017" / "000000000001.png"), 1)
  _write_png(str(root / "val2017" / "000000000002.png"), 2)
  os.makedirs(root / "train2017", exist_ok=True)
  (root / "train2017" / "000000000004.png").write_bytes(b"not an image")
  crowd = np.zeros([H, W], np.uint8)
  crowd[5:15, 10:30] = 1  # 200 pixels
  compressed = np.zeros([H, W], np.uint8)
  compressed[20:30, 40:50] = 1  # 100 pixels
  from pycocotools import mask as mask_utils  # pylint: disable=g-import-not-at-top
  rle = mask_utils.encode(np.asfortranarray(compressed))
  url = "http://images.cocodataset.org/{}/{:012d}.png"
  data = {
      "images": [
          {"id": i, "height": H, "width": W, "coco_url": url.format(split, i),
           "not_exhaustive_category_ids": [2] if i == 1 else [],
           "neg_category_ids": [3] if i == 2 else []}
          for i, split in ((1, "train2017"), (2, "val2017"), (3, "train2017"), (4, "train2017"))
      ],
      "categories": [
          {"id": 1, "name": "apple", "frequency": "f", "synonyms": ["apple"]},
          {"id": 2, "name": "banjo", "frequency": "c", "synonyms": ["banjo"]},
          {"id": 3, "name": "unicorn", "frequency": "r", "synonyms": ["unicorn"]},
      ],
      "annotations": [
          # A 20x10 rectangle polygon (x 10..30, y 10..20).
          {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 10], "area": 200,
           "segmentation": [[10, 10, 30, 10, 30, 20, 10, 20]]},
          {"id": 2, "image_id": 1, "category_id": 3, "bbox": [0, 0, 5, 5], "area": 25,
           "segmentation": [[0, 0, 5, 0, 5, 5, 0, 5]]},
          {"id": 3, "image_id": 2, "category_id": 2, "bbox": [10, 5, 20, 10], "area": 200,
           "iscrowd": 1, "segmentation": _rle_uncompressed(crowd)},
          {"id": 4, "image_id": 2, "category_id": 1, "bbox": [40, 20, 10, 10], "area": 100,
           "segmentation": {"size": [H, W], "counts": rle["counts"].decode()}},
          {"id": 5, "image_id": 2, "category_id": 1, "bbox": [50, 5, 0, 10], "area": 0,
           "segmentation": []},
          {"id": 6, "image_id": 3, "category_id": 1, "bbox": [1, 1, 5, 5], "area": 25,
           "segmentation": [[1, 1, 6, 1, 6, 6, 1, 6]]},
      ],
  }
  path = tmp_path / "lvis_tiny.json"
  path.write_text(json.dumps(data))
  return str(path), str(root), tmp_path / "out"


def _read_records(output_dir, name):
  files = sorted(tf.io.gfile.glob(os.path.join(output_dir, f"{name}-*.tfrecord")))
  decoder = tf_example.Decoder(include_mask=True)
  return [decoder.decode(r) for f in files for r in tf.data.TFRecordDataset(f)]


def test_base_only_conversion_counts_and_records(tiny_lvis):
  annotations, root, out = tiny_lvis
  report = conversion.convert(annotations, root, str(out), "train", split="lvis_rare",
                              base_only=True, num_shards=2, max_missing_fraction=0.5)
  assert report["status"] == "ok"
  assert report["novel_categories"] == ["unicorn"]
  assert report["annotations_in"] == 6
  assert report["dropped_novel"] == 1
  assert report["dropped_novel_by_category"] == {"unicorn": 1}
  assert report["dropped_degenerate_box"] == 1
  assert report["annotations_kept"] == 4
  assert report["crowd_kept"] == 1
  assert [m["id"] for m in report["missing_images"]] == [3]
  assert [u["id"] for u in report["unreadable_images"]] == [4]
  assert report["num_images_written"] == 2
  with open(out / "train.report.json") as f:
    assert json.load(f)["dropped_novel"] == 1
  # The usual glob of shards matches shards only.
  assert [os.path.basename(f) for f in sorted(tf.io.gfile.glob(str(out / "train-*")))] == [
      "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]

  first, second = _read_records(out, "train")
  assert first["source_id"].numpy() == b"1"
  assert first["groundtruth_classes"].numpy().tolist() == [1]  # the rare one was dropped.
  np.testing.assert_allclose(first["groundtruth_boxes"].numpy(),
                             [[10 / H, 10 / W, 20 / H, 30 / W]], rtol=1e-6)
  assert first["groundtruth_instance_masks"].numpy().sum() == 200  # polygon
  assert first["not_exhaustive_category_ids"].numpy().tolist() == [2]
  # Image 2: crowd (uncompressed RLE) and compressed RLE kept, the zero-width box dropped.
  assert second["groundtruth_classes"].numpy().tolist() == [2, 1]
  assert second["groundtruth_is_crowd"].numpy().tolist() == [True, False]
  assert second["groundtruth_instance_masks"].numpy().sum(axis=(1, 2)).tolist() == [200, 100]
  assert second["neg_category_ids"].numpy().tolist() == [3]


def test_evaluation_conversion_keeps_novel(tiny_lvis):
  annotations, root, out = tiny_lvis
  report = conversion.convert(annotations, root, str(out), "val", split="lvis_rare",
                              base_only=False, max_missing_fraction=0.5)
  assert report["dropped_novel"] == 0 and report["annotations_kept"] == 5
  first = _read_records(out, "val")[0]
  assert sorted(first["groundtruth_classes"].numpy().tolist()) == [1, 3]


def test_too_many_missing_images_fails_with_report(tiny_lvis):
  annotations, root, out = tiny_lvis
  with pytest.raises(conversion.ConversionError, match="missing or unreadable"):
    conversion.convert(annotations, root, str(out), "train", max_missing_fraction=0.0)
  with open(out / "train.report.json") as f:
    report = json.load(f)
  assert report["status"].startswith("failed")
  assert [m["id"] for m in report["missing_images"]] == [3]
  assert not tf.io.gfile.glob(os.path.join(out, "train-*.tfrecord"))  # failed before writing
  # Missing is fine up front (1 of 4), but the unreadable one pushes it over 25%.
  with pytest.raises(conversion.ConversionError, match="2 of 4"):
    conversion.convert(annotations, root, str(out), "train", max_missing_fraction=0.25)


def test_killed_run_leaves_no_partial_shard_and_resumes(tiny_lvis, monkeypatch):
  annotations, root, out = tiny_lvis
  real = conversion.image_fields

  def dies_on_image_4(task, include_masks):
    if task["image"]["id"] == 4:  # the second shard holds images 3 and 4.
      raise KeyboardInterrupt("killed while writing the second shard")
    return real(task, include_masks)

  monkeypatch.setattr(conversion, "image_fields", dies_on_image_4)
  with pytest.raises(KeyboardInterrupt):
    conversion.convert(annotations, root, str(out), "train", num_shards=2,
                       max_missing_fraction=0.5)
  finished = shards.shard_path(str(out), "train", 0, 2)
  assert sorted(os.listdir(out)) == ["train-00000-of-00002.tfrecord", "train.settings.json",
                                     "train.shards"]
  # A SIGKILL would also leave the hidden temporary behind; the next run removes it.
  (out / ".train-00001-of-00002.tfrecord.abc123.tmp").write_bytes(b"partial")
  mtime = os.path.getmtime(finished)

  monkeypatch.setattr(conversion, "image_fields", real)
  report = conversion.convert(annotations, root, str(out), "train", num_shards=2,
                              max_missing_fraction=0.5)
  assert os.path.getmtime(finished) == mtime  # skipped, not rewritten
  assert report["num_images_written"] == 2
  assert [u["id"] for u in report["unreadable_images"]] == [4]
  assert not [f for f in os.listdir(out) if f.endswith(".tmp")]


def test_resolve_image_path_prefers_file_name_then_coco_url(tmp_path):
  _write_png(str(tmp_path / "val2017" / "a.png"), 0)
  _write_png(str(tmp_path / "b.png"), 0)

  def resolve(image):
    return conversion.resolve_image_path(image, str(tmp_path))[0]
  assert resolve({"file_name": "val2017/a.png"}).endswith("val2017/a.png")
  assert resolve({"coco_url": "http://host/val2017/a.png"}).endswith("val2017/a.png")
  assert resolve({"coco_url": "http://host/x/b.png"}).endswith("b.png")
  path, tried = conversion.resolve_image_path({"coco_url": "http://host/x/c.png"},
                                              str(tmp_path))
  assert path is None
  assert tried == [str(tmp_path / "x" / "c.png"), str(tmp_path / "c.png")]


def test_schema_keys_are_the_official_ones():
  example = tf_example.encode_example({
      "encoded_image": b"x", "image_format": "png", "source_id": 7, "height": 2, "width": 3,
      "boxes": [[0.1, 0.2, 0.3, 0.4]], "classes": [5], "areas": [1.0], "masks_png": [b"m"],
      "distill_rois": [[0.0, 0.0, 1.0, 1.0]], "distill_features": [[1.0, 2.0]]})
  keys = set(example.features.feature)
  assert {"image/encoded", "image/source_id", "image/object/bbox/xmin", "image/object/mask",
          "image/object/class/label", "image/object/is_crowd", "image/neg_category_ids",
          "image/not_exhaustive_category_ids", "image/roi/bbox/ymin", "image/roi/feature",
          "image/roi/bbox/score"} <= keys
  assert schema.ROI_FEATURE == "image/roi/feature"
