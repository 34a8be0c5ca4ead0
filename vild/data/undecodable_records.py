"""Records that do not decode (a half-written JPEG, a broken mask PNG, distillation features
that are not M x D): skipped, counted and named, or fatal, but never an anonymous crash.

`decode_or_skip` decodes each record inside its own tiny dataset whose errors are dropped, so a
failure becomes a flagged placeholder instead of an error that ends the pipeline. A `scan`
then counts the records read and skipped (its state is part of the iterator, so an exactly
resumed run continues the count), prints one line per skipped record naming its shard, its
index in the shard and its image/source_id, and fails the pipeline with a `DataError` once the
skipped records exceed the allowed fraction. With `max_skipped_fraction = 0` the first
undecodable record fails, with the same names. Every op involved is stateless, so the iterator
stays checkpointable and deterministic.

Failures carry the message between `DATA_ERROR_TAGS` inside TensorFlow's error; `data_error`
turns such an error back into a `DataError` for the caller (the trainer does), so users see
the message, not a graph traceback.
"""
import re
import sys
from typing import Callable, Optional

import tensorflow as tf

from vild.data import schema

DATA_ERROR_TAGS = ("<vild-data-error>", "</vild-data-error>")
# The fraction applies to at least this many records read, so a short or young stream may
# skip max(1, fraction x MIN_RECORDS_FOR_FRACTION) records before the fraction takes over.
MIN_RECORDS_FOR_FRACTION = 1000
IMAGE_FAILED = "its image (image/encoded) does not decode: a truncated or corrupt file"
OTHER_FAILED = ("its image decodes but another field does not (instance-mask PNGs, or "
                "image/roi/feature not M x D)")


class DataError(ValueError):
  """The input data is bad; the message names the shard, the record and the fix."""


def tagged(message: tf.Tensor) -> tf.Tensor:
  """A message (string tensor) marked for `data_error`, for tf.debugging.Assert."""
  return tf.strings.join([DATA_ERROR_TAGS[0], message, DATA_ERROR_TAGS[1]])


def data_error(error: tf.errors.OpError) -> Optional[DataError]:
  """The DataError inside a TensorFlow error raised by the input pipeline, or None."""
  pattern = re.escape(DATA_ERROR_TAGS[0]) + "(.*?)" + re.escape(DATA_ERROR_TAGS[1])
  found = re.search(pattern, str(error.message), re.DOTALL)
  return DataError(found.group(1)) if found else None


def decode_or_skip(records: tf.data.Dataset, decode: Callable[[tf.Tensor], dict],
                   max_skipped_fraction: float) -> tf.data.Dataset:
  """(key, (shard, index_in_shard, serialized)) -> (key, decoded) without undecodable records.

  Args:
    records: the record stream; `key` is passed through (e.g. the record's position, which
      seeds its augmentation).
    decode: serialized record -> dict of tensors (vild.data.tf_example.Decoder.decode).
    max_skipped_fraction: the largest fraction of the records read that may be skipped
      (counted over at least MIN_RECORDS_FOR_FRACTION records); 0 fails on the first.
  """
  if not 0.0 <= max_skipped_fraction < 1.0:
    raise ValueError(f"max_skipped_fraction must be in [0, 1), got {max_skipped_fraction}.")
  spec = tf.data.Dataset.from_tensors(tf.constant("")).map(decode).element_spec

  def attempt(key, location):
    shard, index, serialized = location
    decoded = tf.data.Dataset.from_tensors(serialized).map(
        lambda record: (key, shard, index, decode(record), True, "", "")
    ).ignore_errors(log_warning=True)
    # Only reached when decoding failed: the record's source_id and what failed.
    flagged = tf.data.Dataset.zip((
        _first_or(tf.data.Dataset.from_tensors(serialized).map(_source_id), "?"),
        _first_or(tf.data.Dataset.from_tensors(serialized).map(_decode_image_only)
                  .map(lambda _: OTHER_FAILED), IMAGE_FAILED),
    )).map(lambda source_id, why: (key, shard, index, _placeholder(spec), False, source_id,
                                   why))
    return decoded.concatenate(flagged).take(1)

  # One element per record, in order: a parallel map whose elements are tiny datasets.
  flagged = records.interleave(attempt, cycle_length=tf.data.AUTOTUNE, block_length=1,
                               num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  counted = flagged.scan((tf.constant(0, tf.int64), tf.constant(0, tf.int64)),
                         _counter(max_skipped_fraction))
  return counted.filter(_is_decoded).map(_without_flag)


def _is_decoded(key, data, ok):
  del key, data
  return ok


def _without_flag(key, data, ok):
  del ok
  return key, data


def _first_or(dataset: tf.data.Dataset, default) -> tf.data.Dataset:
  """The first element of `dataset`, or `default` if computing it fails."""
  return dataset.ignore_errors().concatenate(tf.data.Dataset.from_tensors(default)).take(1)


def _source_id(serialized):
  spec = {schema.SOURCE_ID: tf.io.FixedLenFeature([], tf.string, default_value="?")}
  return tf.io.parse_single_example(serialized, spec)[schema.SOURCE_ID]


def _decode_image_only(serialized):
  spec = {schema.ENCODED: tf.io.FixedLenFeature([], tf.string)}
  encoded = tf.io.parse_single_example(serialized, spec)[schema.ENCODED]
  return tf.io.decode_image(encoded, channels=3, expand_animations=False)


def _placeholder(spec):
  """Empty tensors with the structure of `spec` (unknown dimensions 0)."""
  def empty(s):
    shape = [0 if d is None else d for d in s.shape]
    return tf.fill(shape, "") if s.dtype == tf.string else tf.zeros(shape, s.dtype)
  return tf.nest.map_structure(empty, spec)


def _counter(max_skipped_fraction: float):
  """The scan function: counts, logs each skipped record, fails past the limit."""
  limit = (f"build_dataset.max_skipped_fraction = {max_skipped_fraction:g} allows "
           f"max(1, {max_skipped_fraction:g} x the records read, counted over at least "
           f"{MIN_RECORDS_FOR_FRACTION})")

  def count(state, element):
    key, shard, index, data, ok, source_id, why = element
    read, skipped = state
    read += 1
    skipped += tf.cast(tf.logical_not(ok), tf.int64)
    where = tf.strings.join(["record ", tf.strings.as_string(index), " of ", shard,
                             " (source_id ", source_id, "): ", why])
    allowed = tf.maximum(1.0, max_skipped_fraction * tf.cast(
        tf.maximum(read, MIN_RECORDS_FOR_FRACTION), tf.float32))
    within_limit = tf.logical_or(ok, tf.logical_and(
        max_skipped_fraction > 0, tf.cast(skipped, tf.float32) <= allowed))
    if max_skipped_fraction > 0:
      message = tf.strings.join([
          tf.strings.as_string(skipped), " of the ", tf.strings.as_string(read),
          " records read so far could not be decoded, more than " + limit + ". The last: ",
          where, ". Fix or remove the records named in the log (scripts/create_tfrecords.py "
          "validates every image it writes), or raise the limit."])
    else:
      message = tf.strings.join([
          "Cannot decode ", where, ". Fix or remove it (scripts/create_tfrecords.py validates "
          "every image it writes), or set build_dataset.max_skipped_fraction > 0 to skip "
          "such records."])
    check = tf.debugging.Assert(within_limit, [tagged(message)])
    with tf.control_dependencies([check]):
      logged = tf.cond(ok, lambda: tf.constant(True), lambda: _log_skip(where, skipped, read))
    with tf.control_dependencies([logged]):
      return (tf.identity(read), tf.identity(skipped)), (key, data, ok)
  return count


def _log_skip(where, skipped, read):
  line = tf.strings.join([
      "vild input pipeline: skipped undecodable ", where, " (", tf.strings.as_string(skipped),
      " of ", tf.strings.as_string(read), " records read skipped so far)"])
  print_op = tf.print(line, output_stream=sys.stderr)
  with tf.control_dependencies([print_op]):
    return tf.constant(False)
