"""Encode/decode round trip of every ViLD record key, distillation add-on, clear errors."""
import numpy as np
import pytest
import tensorflow as tf

from vild.data import conversion
from vild.data import schema
from vild.data import tf_example

H, W = 6, 8


def _fields():
  rng = np.random.default_rng(0)
  masks = (rng.random((2, H, W)) > 0.5).astype(np.uint8)
  return {
      "encoded_image": conversion.encode_png(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)),
      "image_format": "png", "source_id": 123, "height": H, "width": W, "filename": "a/b.png",
      "boxes": np.array([[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0]], np.float32),
      "classes": [3, 1203], "areas": [4.5, 48.0], "is_crowd": [0, 1],
      "masks_png": [conversion.encode_png(m) for m in masks],
      "not_exhaustive_category_ids": [5, 6], "neg_category_ids": [7],
      "distill_rois": np.array([[0.0, 0.1, 0.2, 0.3], [0.4, 0.5, 0.6, 0.7], [0, 0, 1, 1]],
                               np.float32),
      "distill_roi_scores": [0.9, 0.8, 0.7],
      "distill_features": rng.normal(size=(3, 4)).astype(np.float32),
  }, masks


def test_every_key_round_trips():
  fields, masks = _fields()
  serialized = tf_example.encode_example(fields).SerializeToString()
  decoded = tf_example.Decoder(include_mask=True, distill_feature_dim=4).decode(serialized)
  decoded = tf.nest.map_structure(lambda t: t.numpy(), decoded)
  assert decoded["source_id"] == b"123"
  assert (decoded["height"], decoded["width"]) == (H, W)
  assert decoded["image"].shape == (H, W, 3)
  np.testing.assert_allclose(decoded["groundtruth_boxes"], fields["boxes"])
  assert decoded["groundtruth_classes"].tolist() == [3, 1203]
  np.testing.assert_allclose(decoded["groundtruth_area"], [4.5, 48.0])
  assert decoded["groundtruth_is_crowd"].tolist() == [False, True]
  np.testing.assert_array_equal(decoded["groundtruth_instance_masks"], masks)
  assert decoded["not_exhaustive_category_ids"].tolist() == [5, 6]
  assert decoded["neg_category_ids"].tolist() == [7]
  np.testing.assert_allclose(decoded["distill_rois"], fields["distill_rois"])
  np.testing.assert_allclose(decoded["distill_roi_scores"], [0.9, 0.8, 0.7])
  np.testing.assert_allclose(decoded["distill_features"], fields["distill_features"])
  raw = tf.train.Example.FromString(serialized).features.feature
  assert raw[schema.FILENAME].bytes_list.value == [b"a/b.png"]
  assert raw[schema.FORMAT].bytes_list.value == [b"png"]


def test_add_distillation_and_official_negatives_key():
  fields, _ = _fields()
  for key in ("distill_rois", "distill_roi_scores", "distill_features"):
    fields.pop(key)
  example = tf_example.encode_example(fields)
  # The official LVIS converter wrote negatives under another key; both are read.
  example.features.feature[schema.NEG_CATEGORY_IDS_OFFICIAL].int64_list.value.append(9)
  features = np.ones((2, 3), np.float32)
  serialized = tf_example.add_distillation(example.SerializeToString(),
                                           [[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1]], features)
  decoded = tf_example.Decoder(include_mask=False, distill_feature_dim=3).decode(serialized)
  assert decoded["neg_category_ids"].numpy().tolist() == [7, 9]
  np.testing.assert_array_equal(decoded["distill_features"].numpy(), features)
  np.testing.assert_array_equal(decoded["distill_roi_scores"].numpy(), [1.0, 1.0])


def test_errors_name_the_field_and_the_fix():
  fields, _ = _fields()
  serialized = tf_example.encode_example(fields).SerializeToString()
  with pytest.raises(tf.errors.InvalidArgumentError, match="distill_feature_dim"):
    tf_example.Decoder(include_mask=False, distill_feature_dim=5).decode(serialized)
  with pytest.raises(tf_example.RecordError, match="2 masks for 1 boxes"):
    tf_example.encode_example(dict(fields, boxes=[[0, 0, 1, 1]], classes=[1], areas=[1.0],
                                   is_crowd=[0]))
  with pytest.raises(tf_example.RecordError, match="distill_features must be"):
    tf_example.add_distillation(serialized, [[0, 0, 1, 1]], np.ones((2, 4)))
  with pytest.raises(tf_example.RecordError, match="missing fields"):
    tf_example.encode_example({"encoded_image": b""})
