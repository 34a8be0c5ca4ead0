"""Undecodable records: skipped (logged with shard, index and source_id, counted, limited) or
fatal with the same names; the count survives an exact resume. Bad distillation data in any
shard fails before training starts."""
import gin
import numpy as np
import pytest
import tensorflow as tf

from tests.test_data_input_pipeline import VOCAB, _record, small_gin  # noqa: F401 (fixture)
from vild.data import input_pipeline
from vild.data import undecodable_records

NUM_RECORDS = 6
DISTILLATION = ["Parser.distill_feature_dim = 4", "Parser.max_num_distill_rois = 4"]


def _half_written_jpeg(source_id) -> bytes:
  """A record whose image is the first half of a JPEG (a killed writer, a truncated copy)."""
  example = tf.train.Example.FromString(_record(source_id=source_id))
  jpeg = tf.io.encode_jpeg(tf.fill([64, 96, 3], tf.constant(120, tf.uint8))).numpy()
  example.features.feature["image/encoded"].bytes_list.value[:] = [jpeg[:len(jpeg) // 2]]
  example.features.feature["image/format"].bytes_list.value[:] = [b"jpeg"]
  return example.SerializeToString()


def _write_shard(path, bad_indices=(), bad_record=_half_written_jpeg):
  """NUM_RECORDS records with source_id index + 1; those at bad_indices are broken."""
  with tf.io.TFRecordWriter(str(path)) as writer:
    for i in range(NUM_RECORDS):
      writer.write(bad_record(i + 1) if i in bad_indices else _record(source_id=i + 1))
  return str(path)


def _dataset(path, is_training=True, **kwargs):
  return input_pipeline.build_dataset(path, VOCAB, is_training=is_training, batch_size=2,
                                      seed=3, shuffle_buffer_size=NUM_RECORDS, **kwargs)


def _data_error(batches, count):
  """Reads `count` batches; returns the DataError the pipeline raised (fails if none)."""
  with pytest.raises(tf.errors.InvalidArgumentError) as failure:
    for _ in range(count):
      next(batches)
  error = undecodable_records.data_error(failure.value)
  assert error is not None, str(failure.value)[:2000]
  return str(error)


@pytest.fixture
def input_gin(small_gin):  # noqa: F811
  small_gin("Parser.output_size = (64, 96)")


def test_training_skips_and_names_an_undecodable_record(input_gin, tmp_path, capfd):
  path = _write_shard(tmp_path / "train-0.tfrecord", bad_indices=[2])
  # Up to 10 skips in the first 1000 records read: the bad record comes by in every epoch.
  batches = iter(_dataset(path, max_skipped_fraction=0.01))
  images = [next(batches)[0].numpy() for _ in range(NUM_RECORDS)]
  assert all(np.isfinite(i).all() and i.shape == (2, 64, 96, 3) for i in images)
  log = capfd.readouterr().err
  assert (f"skipped undecodable record 2 of {path} (source_id 3): its image (image/encoded) "
          "does not decode") in log
  assert "1 of " in log and "records read skipped so far" in log


def test_with_no_skips_allowed_the_first_bad_record_fails_with_its_names(input_gin, tmp_path):
  path = _write_shard(tmp_path / "train-0.tfrecord", bad_indices=[2])
  message = _data_error(iter(_dataset(path, max_skipped_fraction=0.0)), 10)
  assert message.startswith(f"Cannot decode record 2 of {path} (source_id 3): its image")
  assert "build_dataset.max_skipped_fraction > 0" in message
  # Evaluation never skips: a dropped image would change the metrics.
  message = _data_error(iter(_dataset(path, is_training=False)), 10)
  assert message.startswith(f"Cannot decode record 2 of {path} (source_id 3)")


def test_a_record_whose_other_fields_do_not_decode_is_named_too(input_gin, tmp_path):
  def bad_features(source_id):  # 2 RoIs, 7 feature values: not M x D for D = 4
    example = tf.train.Example.FromString(_record(source_id=source_id))
    example.features.feature["image/roi/feature"].float_list.value[:] = [0.5] * 7
    return example.SerializeToString()

  gin.parse_config(DISTILLATION)
  path = _write_shard(tmp_path / "train-0.tfrecord", bad_indices=[3], bad_record=bad_features)
  message = _data_error(iter(_dataset(path, max_skipped_fraction=0.0)), 10)
  assert message.startswith(f"Cannot decode record 3 of {path} (source_id 4): its image "
                            "decodes but another field does not")


def test_skips_past_the_limit_fail_and_the_count_is_checkpointed(input_gin, tmp_path):
  """Past the limit the pipeline fails naming the last bad record. An exactly resumed run sees
  the same batches and continues the same count: it fails at the same batch with the same
  message as a run that was never interrupted."""
  path = _write_shard(tmp_path / "train-0.tfrecord", bad_indices=[1, 4])

  def until_failure(batches):
    images = []
    with pytest.raises(tf.errors.InvalidArgumentError) as failure:
      while True:
        images.append(next(batches)[0].numpy())
    return images, str(undecodable_records.data_error(failure.value))

  straight, straight_error = until_failure(iter(_dataset(path, max_skipped_fraction=0.01)))
  assert len(straight) > 3 and straight_error.startswith("11 of the ")
  assert "build_dataset.max_skipped_fraction = 0.01 allows max(1, 0.01 x" in straight_error
  assert f"The last: record 4 of {path} (source_id 5)" in straight_error or (
      f"The last: record 1 of {path} (source_id 2)" in straight_error)

  batches = iter(_dataset(path, max_skipped_fraction=0.01))
  first = next(batches)[0].numpy()
  checkpoint = tf.train.Checkpoint(data=batches)
  saved = checkpoint.write(str(tmp_path / "ckpt"))
  next(batches), next(batches)  # counted, then rewound by the restore
  checkpoint.read(saved)
  resumed, resumed_error = until_failure(batches)
  assert resumed_error == straight_error
  assert len(resumed) == len(straight) - 1
  for a, b in zip([first] + resumed, straight):
    np.testing.assert_array_equal(a, b)


def test_bad_distillation_data_in_any_shard_fails_before_training(input_gin, tmp_path):
  """Issue 17 item 9: a later shard with features of another dimension used to fail mid-run."""
  gin.parse_config(DISTILLATION)
  for shard in range(3):
    _write_shard(tmp_path / f"train-{shard}.tfrecord")

  def other_teacher(source_id):  # 2 RoIs x D = 3
    example = tf.train.Example.FromString(_record(source_id=source_id))
    example.features.feature["image/roi/feature"].float_list.value[:] = [0.5] * 6
    return example.SerializeToString()

  bad = _write_shard(tmp_path / "train-2.tfrecord", bad_indices=[1], bad_record=other_teacher)
  with pytest.raises(ValueError, match=f"{bad}: record 1 \\(source_id 2\\) holds 6 feature "
                                       "values for 2 proposals, i.e. D = 3"):
    _dataset(str(tmp_path / "train-*"))
