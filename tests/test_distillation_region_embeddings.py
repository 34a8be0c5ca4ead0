"""Region embeddings in the records: equal to the embedder's, fields kept, input-pipeline round
trip, a changed teacher refused, and the training pipeline's errors for incomplete records."""
import gin
import numpy as np
import pytest
import tensorflow as tf

from tests import distillation_helpers as helpers
from vild import vocabulary as vocabulary_lib
from vild.data import input_pipeline
from vild.data import schema
from vild.data import tf_example
from vild.data import toy
from vild.distillation_data import region_embeddings
from vild.distillation_data import shard_jobs
from vild.teacher import clip_teacher
from vild.teacher import crops

SIZE = (64, 96)  # original images


@pytest.fixture(scope="module")
def teacher():
  return clip_teacher.load_clip_teacher(helpers.TINY_CLIP, batch_size=8)


def _records_with_proposals(seeds, num_rois=4):
  return [helpers.toy_record(s, size=SIZE, rois=helpers.some_rois(s, num_rois)) for s in seeds]


def test_embed_records_sets_the_embedders_features_and_keeps_every_field(teacher):
  records = _records_with_proposals([1, 2, 3])
  # Teacher batches of 8 crops cut across the 3 records (4 proposals x 2 scales each).
  out = list(region_embeddings.embed_records(crops.RegionEmbedder(teacher, batch_size=8),
                                             records))
  alone = crops.RegionEmbedder(teacher, batch_size=1)
  for record, written in zip(records, out):
    original, example = tf.train.Example.FromString(record), tf.train.Example.FromString(written)
    for key, value in original.features.feature.items():
      if key != schema.ROI_FEATURE:
        assert example.features.feature[key] == value, key
    fields = tf_example.read_distillation(example)
    features = fields["features"].reshape(4, teacher.embedding_dim)
    image = region_embeddings.decode_image(original)
    pixels = fields["rois"] * np.array([SIZE[0], SIZE[1], SIZE[0], SIZE[1]], np.float32)
    np.testing.assert_allclose(features, alone(image, pixels), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(features[:3], axis=-1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(features[3], 0.0)  # the proposal without area


def test_records_without_proposals_say_to_generate_them(teacher):
  embedder = crops.RegionEmbedder(teacher)
  with pytest.raises(tf_example.RecordError, match=r"shard-7: record 0 \(image/source_id 5\) "
                     "has no proposals.*scripts/generate_proposals.py"):
    list(region_embeddings.embed_records(embedder, [helpers.toy_record(5)], source="shard-7"))


def test_written_records_round_trip_through_the_input_pipeline(tmp_path, teacher):
  helpers.write_shards(str(tmp_path / "in"), _records_with_proposals([4, 5]), num_shards=1)
  region_embeddings.compute_region_embeddings(str(tmp_path / "in" / "*.tfrecord"),
                                              str(tmp_path / "out"), teacher=teacher)
  written = helpers.read_records(str(tmp_path / "out" / "*.tfrecord"))

  # No jitter, no flip, output twice the original size: RoIs scale by exactly 2.
  gin.parse_config(["AnchorSpec.min_level = 3", "AnchorSpec.max_level = 5",
                    "AnchorSpec.anchor_size = 4.0", "build_training_labels.max_num_instances = 8",
                    "Parser.output_size = (128, 192)", "Parser.aug_scale_range = (1.0, 1.0)",
                    "Parser.aug_rand_hflip = False", "Parser.include_mask = False",
                    f"Parser.distill_feature_dim = {teacher.embedding_dim}",
                    "Parser.max_num_distill_rois = 6"])
  vocab = vocabulary_lib.Vocabulary.from_names(toy.TOY_CATEGORIES)
  dataset = input_pipeline.build_dataset(str(tmp_path / "out" / "*.tfrecord"), vocab,
                                         is_training=True, batch_size=1, seed=0,
                                         shuffle_buffer_size=1)
  by_source = {}
  for _, labels in dataset.take(4):
    rois, features = labels["distill_rois"][0].numpy(), labels["distill_features"][0].numpy()
    by_source[round(float(rois[0, 0]), 4)] = (rois, features)
  for example in written:
    fields = tf_example.read_distillation(example)
    visible = fields["rois"][:3]  # the 4th has no area and is dropped by the pipeline
    rois, features = by_source[round(float(visible[0, 0] * 128), 4)]
    np.testing.assert_allclose(rois[:3], visible * [128, 192, 128, 192], atol=1e-4)
    np.testing.assert_allclose(features[:3], fields["features"].reshape(4, -1)[:3], atol=1e-6)
    np.testing.assert_array_equal(rois[3:], -1.0)
    np.testing.assert_array_equal(features[3:], -1.0)


def test_a_rerun_with_another_teacher_is_refused(tmp_path, teacher):
  helpers.write_shards(str(tmp_path / "in"), _records_with_proposals([6, 7]), num_shards=2)
  pattern, out = str(tmp_path / "in" / "*.tfrecord"), str(tmp_path / "out")
  region_embeddings.compute_region_embeddings(pattern, out, teacher=teacher, shard_index=0,
                                              num_shards=2)
  with pytest.raises(shard_jobs.ShardJobError, match=r"embedding_dim: saved 16, now 3.*new "
                     "output directory"):
    region_embeddings.compute_region_embeddings(pattern, out,
                                                teacher=helpers.MeanColourTeacher(),
                                                shard_index=1, num_shards=2)


def test_training_pipeline_says_what_to_run_for_incomplete_records(tmp_path, teacher):
  gin.parse_config(["AnchorSpec.min_level = 3", "AnchorSpec.max_level = 5",
                    "Parser.output_size = (64, 96)", "Parser.include_mask = False",
                    f"Parser.distill_feature_dim = {teacher.embedding_dim}"])
  vocab = vocabulary_lib.Vocabulary.from_names(toy.TOY_CATEGORIES)

  def build(records, name):
    helpers.write_shards(str(tmp_path / name), records, num_shards=1)
    return input_pipeline.build_dataset(str(tmp_path / name / "*"), vocab, is_training=True)

  with pytest.raises(ValueError, match="no distillation fields.*generate_proposals.py then "
                     "scripts/compute_region_embeddings.py"):
    build([helpers.toy_record(1)], "plain")
  with pytest.raises(ValueError, match="4 proposals but no teacher embeddings.*"
                     "compute_region_embeddings.py"):
    build(_records_with_proposals([1]), "proposals")
  three_dim = region_embeddings.embed_records(
      crops.RegionEmbedder(helpers.MeanColourTeacher()), _records_with_proposals([1]))
  with pytest.raises(ValueError, match="12 feature values for 4 proposals, i.e. D = 3, but "
                     "Parser.distill_feature_dim = 16"):
    build(list(three_dim), "other_teacher")
