"""tf.Example encoding and decoding of ViLD records (keys: `vild.data.schema`).

Encoding takes a dict of plain Python/numpy fields (`encode_example`); `add_distillation` adds
proposals and teacher embeddings to an already serialized record. Decoding extends the Model
Garden's `TfExampleDecoder` (standard detection keys, PNG masks) with the LVIS and distillation
keys; its output dict holds the official keys plus:

  not_exhaustive_category_ids [K1] int64, neg_category_ids [K2] int64 (LVIS; empty for COCO)
  distill_rois [M, 4] float32 normalised yxyx, distill_roi_scores [M], distill_features [M, D]
    (only when the decoder is built with `distill_feature_dim`)
"""
from typing import Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from official.core import tf_example_builder
from official.vision.dataloaders import tf_example_decoder
from vild.data import schema

# encode_example's fields; everything but the image fields is optional.
IMAGE_FIELDS = ("encoded_image", "image_format", "source_id", "height", "width")


class RecordError(ValueError):
  """A record's fields are inconsistent; the message names the image and the field."""


def encode_example(fields: Mapping) -> tf.train.Example:
  """Builds a ViLD tf.Example.

  Args:
    fields: encoded_image (bytes), image_format ('jpeg'/'png'), source_id (str or int),
      height, width (int), and optionally filename (str), boxes [N, 4] normalised yxyx,
      classes [N] dataset category ids, areas [N], is_crowd [N], masks_png (N PNG byte
      strings), not_exhaustive_category_ids, neg_category_ids (int lists), distill_rois
      [M, 4] normalised yxyx, distill_roi_scores [M], distill_features [M, D].
  """
  missing = [f for f in IMAGE_FIELDS if f not in fields]
  source = fields.get("source_id", "?")
  if missing:
    raise RecordError(f"image {source}: missing fields {missing}; every record needs "
                      f"{IMAGE_FIELDS}.")
  builder = tf_example_builder.TfExampleBuilder()
  builder.add_bytes_feature(schema.ENCODED, fields["encoded_image"])
  builder.add_bytes_feature(schema.FORMAT, fields["image_format"])
  builder.add_bytes_feature(schema.SOURCE_ID, str(fields["source_id"]))
  builder.add_ints_feature(schema.HEIGHT, [int(fields["height"])])
  builder.add_ints_feature(schema.WIDTH, [int(fields["width"])])
  if "filename" in fields:
    builder.add_bytes_feature(schema.FILENAME, fields["filename"])

  boxes = np.asarray(fields.get("boxes", np.zeros([0, 4])), np.float32).reshape(-1, 4)
  num = len(boxes)
  _add_boxes(builder, schema.OBJECT_BOX_KEYS, boxes)
  builder.add_ints_feature(schema.OBJECT_CLASS, _ints(fields.get("classes", []), num,
                                                      "classes", source))
  builder.add_floats_feature(schema.OBJECT_AREA, _floats(fields.get("areas", []), num,
                                                         "areas", source))
  builder.add_ints_feature(schema.OBJECT_IS_CROWD, _ints(fields.get("is_crowd", [0] * num), num,
                                                         "is_crowd", source))
  if "masks_png" in fields:
    masks = list(fields["masks_png"])
    if len(masks) != num:
      raise RecordError(f"image {source}: {len(masks)} masks for {num} boxes; give one PNG "
                        "mask per box.")
    builder.add_bytes_feature(schema.OBJECT_MASK, masks)
  builder.add_ints_feature(schema.NOT_EXHAUSTIVE_CATEGORY_IDS,
                           [int(c) for c in fields.get("not_exhaustive_category_ids", [])])
  builder.add_ints_feature(schema.NEG_CATEGORY_IDS,
                           [int(c) for c in fields.get("neg_category_ids", [])])
  if "distill_rois" in fields:
    _add_distillation(builder, fields["distill_rois"], fields.get("distill_roi_scores"),
                      fields["distill_features"], source)
  return builder.example


def add_distillation(serialized: bytes, rois: np.ndarray, features: np.ndarray,
                     scores: Optional[np.ndarray] = None) -> bytes:
  """Returns `serialized` with distillation RoIs [M, 4] (normalised yxyx) and features [M, D]."""
  example = tf.train.Example.FromString(serialized)
  builder = tf_example_builder.TfExampleBuilder().set(example)
  _add_distillation(builder, rois, scores, features, source_id(example))
  return builder.serialized_example


def source_id(example: tf.train.Example) -> str:
  """The record's image/source_id ('?' when absent), for messages and joins."""
  value = example.features.feature[schema.SOURCE_ID].bytes_list.value[:1] or [b"?"]
  return value[0].decode()


def encoded_image(example: tf.train.Example, source: str = "records") -> bytes:
  """A parsed record's encoded image bytes; `source` (e.g. a shard's path) names it in errors."""
  encoded = example.features.feature[schema.ENCODED].bytes_list.value
  if not encoded:
    raise RecordError(f"{source}: record {source_id(example)} has no {schema.ENCODED}; "
                      "convert the dataset with scripts/create_tfrecords.py.")
  return encoded[0]


def read_distillation(example: tf.train.Example) -> Optional[dict]:
  """A parsed record's distillation fields as numpy, without decoding its image.

  Returns None when the record has no image/roi/bbox fields (no proposals yet), else
  rois [M, 4] float32 normalised yxyx, scores [M] and features [M * D] flat (empty when the
  proposals have no teacher embeddings yet).
  """
  feature = example.features.feature
  if any(key not in feature for key in schema.ROI_BOX_KEYS):
    return None
  columns = [np.asarray(feature[k].float_list.value, np.float32) for k in schema.ROI_BOX_KEYS]
  if len({len(c) for c in columns}) != 1:
    raise RecordError(f"image {source_id(example)}: the {schema.ROI_BOX_KEYS} fields have "
                      f"{[len(c) for c in columns]} values; rewrite the record's proposals.")
  rois = np.stack(columns, axis=-1)
  return {"rois": rois,
          "scores": np.asarray(feature[schema.ROI_SCORE].float_list.value, np.float32),
          "features": np.asarray(feature[schema.ROI_FEATURE].float_list.value, np.float32)}


def _add_distillation(builder, rois, scores, features, source) -> None:
  rois = np.asarray(rois, np.float32).reshape(-1, 4)
  features = np.asarray(features, np.float32)
  if features.ndim != 2 or len(features) != len(rois):
    raise RecordError(f"image {source}: distill_features must be [M, D] with M = "
                      f"{len(rois)} RoIs, got shape {features.shape}.")
  scores = np.ones(len(rois)) if scores is None else scores
  _add_boxes(builder, schema.ROI_BOX_KEYS, rois)
  builder.add_floats_feature(schema.ROI_SCORE, _floats(scores, len(rois), "distill_roi_scores",
                                                       source))
  builder.add_floats_feature(schema.ROI_FEATURE, features.reshape(-1).tolist())


def _add_boxes(builder, keys: Sequence[str], boxes: np.ndarray) -> None:
  for key, column in zip(keys, boxes.T):  # keys are in yxyx order, like the boxes.
    builder.add_floats_feature(key, column.tolist())


def _ints(values, num: int, name: str, source) -> list:
  return _one_per_box(values, num, name, source, int)


def _floats(values, num: int, name: str, source) -> list:
  return _one_per_box(values, num, name, source, float)


def _one_per_box(values, num: int, name: str, source, cast) -> list:
  values = [cast(v) for v in np.asarray(values).reshape(-1)]
  if len(values) != num:
    raise RecordError(f"image {source}: field '{name}' has {len(values)} entries for {num} "
                      "boxes; give one per box.")
  return values


class Decoder(tf_example_decoder.TfExampleDecoder):
  """The Model Garden decoder plus the LVIS and ViLD distillation keys.

  Args:
    include_mask: decode the PNG instance masks.
    distill_feature_dim: D of the teacher embeddings; None skips the distillation keys.
  """

  def __init__(self, include_mask: bool = True, distill_feature_dim: Optional[int] = None):
    super().__init__(include_mask=include_mask)
    self._distill_feature_dim = distill_feature_dim
    int_list = tf.io.VarLenFeature(tf.int64)
    self._extra_keys = {
        schema.NOT_EXHAUSTIVE_CATEGORY_IDS: int_list,
        schema.NEG_CATEGORY_IDS: int_list,
        schema.NEG_CATEGORY_IDS_OFFICIAL: int_list,
    }
    if distill_feature_dim:
      for key in schema.DISTILLATION_KEYS:
        self._extra_keys[key] = tf.io.VarLenFeature(tf.float32)

  def decode(self, serialized_example):
    decoded = super().decode(serialized_example)
    # The parent does not return its parsed dict, so the extra keys are parsed separately.
    extra = tf.io.parse_single_example(serialized_example, self._extra_keys)
    extra = {k: tf.sparse.to_dense(v) for k, v in extra.items()}
    decoded["not_exhaustive_category_ids"] = extra[schema.NOT_EXHAUSTIVE_CATEGORY_IDS]
    decoded["neg_category_ids"] = tf.concat(
        [extra[schema.NEG_CATEGORY_IDS], extra[schema.NEG_CATEGORY_IDS_OFFICIAL]], axis=0)
    if self._distill_feature_dim:
      decoded.update(self._decode_distillation(extra, decoded["source_id"]))
    return decoded

  def _decode_distillation(self, extra, source_id):
    dim = self._distill_feature_dim
    rois = tf.stack([extra[k] for k in schema.ROI_BOX_KEYS], axis=-1)  # [M, 4]
    flat = extra[schema.ROI_FEATURE]
    num_rois = tf.shape(rois)[0]
    check = tf.debugging.Assert(
        tf.equal(tf.size(flat), num_rois * dim),
        [f"Record field {schema.ROI_FEATURE} does not hold M x D floats for D = {dim} "
         f"(M = number of {schema.ROI_YMIN} values). Set the pipeline's distill_feature_dim to "
         "the teacher's embedding size; records with proposals but no features need "
         "scripts/compute_region_embeddings.py. source_id, size, M:", source_id, tf.size(flat),
         num_rois])
    with tf.control_dependencies([check]):
      features = tf.reshape(flat, [num_rois, dim])
    return {
        "distill_rois": rois,
        "distill_roi_scores": extra[schema.ROI_SCORE],
        "distill_features": features,
    }
