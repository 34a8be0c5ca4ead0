"""Offline proposals: coordinates by hand, the top M written into every record, errors."""
import os

import numpy as np
import pytest
import tensorflow as tf

from official.vision.ops import box_ops
from tests import distillation_helpers as helpers
from vild.data import augmentation
from vild.data import input_pipeline
from vild.data import schema
from vild.data import tf_example
from vild.distillation_data import proposals
from vild.distillation_data import shard_jobs
from vild.inference import checkpoint

# Original 100 x 200 image, scaled by 0.5 into the model input, then shifted by (4, 8) (the
# eval resize never shifts; the formula must still be the inverse of the pipeline's).
IMAGE_INFO = np.array([[100, 200], [64, 128], [0.5, 0.5], [4, 8]], np.float32)


def test_select_proposals_maps_back_clips_drops_and_suppresses_by_hand():
  boxes = np.array([
      [1, 2, 21, 42],      # -> original (10, 20, 50, 100)
      [1, 2, 21, 43],      # the same object from another FPN level, lower score
      [30, 60, 60, 120],   # -> (68, 136, 128, 256), clipped to (68, 136, 100, 200)
      [60, 0, 64, 10],     # -> y from 128: below the image, no area after clipping
      [0, 0, 0, 0],        # the RoI generator's padding
      [10, 10, 20, 20],    # -> (28, 36, 48, 56), score under min_score
  ], np.float32)
  scores = np.array([0.9, 0.8, 0.7, 0.95, 0.0, 0.05], np.float32)
  rois, kept = proposals.select_proposals(boxes, scores, IMAGE_INFO, num_proposals=10,
                                          nms_iou_threshold=0.7, min_score=0.1)
  np.testing.assert_allclose(rois, [[0.1, 0.1, 0.5, 0.5], [0.68, 0.68, 1.0, 1.0]], atol=1e-6)
  np.testing.assert_allclose(kept, [0.9, 0.7])

  # Without the cross-level NMS both copies stay, best first; M caps the count.
  rois, kept = proposals.select_proposals(boxes, scores, IMAGE_INFO, num_proposals=2,
                                          nms_iou_threshold=None, min_score=0.1)
  np.testing.assert_allclose(kept, [0.9, 0.8])
  np.testing.assert_allclose(rois[1], [0.1, 0.1, 0.5, 0.51], atol=1e-6)


@pytest.fixture(scope="module")
def detector_dir(tmp_path_factory):
  return helpers.tiny_detector_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def restored(detector_dir):
  loaded = checkpoint.load_model(detector_dir)
  return loaded.model, loaded.input_size


def test_proposal_generator_adds_top_m_to_every_record_and_keeps_its_fields(tmp_path,
                                                                            restored):
  # Two image sizes (different resize scales), 5 records in 2 shards, batches of 2 + padding.
  records = [helpers.toy_record(s, size=(48, 80) if s % 2 else (64, 40)) for s in range(5)]
  helpers.write_shards(str(tmp_path / "in"), records, num_shards=2)
  model, image_size = restored
  generator = proposals.ProposalGenerator(model, image_size, num_proposals=12, batch_size=2)
  shard_jobs.run(str(tmp_path / "in" / "train-*"), str(tmp_path / "out"), generator)

  inputs = {tf_example.source_id(e): e for e in helpers.read_records(str(tmp_path / "in/*"))}
  outputs = helpers.read_records(str(tmp_path / "out" / "train-*"))
  assert sorted(tf_example.source_id(e) for e in outputs) == sorted(inputs)
  for example in outputs:
    original = inputs[tf_example.source_id(example)]
    for key, value in original.features.feature.items():
      assert example.features.feature[key] == value, key
    fields = tf_example.read_distillation(example)
    rois, scores = fields["rois"], fields["scores"]
    assert 0 < len(rois) <= 12 and fields["features"].size == 0
    assert np.all((rois >= 0) & (rois <= 1)) and np.all(rois[:, 2:] > rois[:, :2])
    assert np.all(np.diff(scores) <= 0)
    iou = box_ops.bbox_overlap(rois[None], rois[None])[0].numpy()
    assert np.all(iou[~np.eye(len(rois), dtype=bool)] <= 0.7 + 1e-6)

  # The batched, padded run equals the detector's first stage on each image alone, clipped
  # to the image's content as in training and evaluation. (Clipping to the whole input, as
  # this check once did, passed only by luck on the wide images: the untrained RPN scores
  # every anchor 0.5 to float32's last bits, so the exact ties decided the top M.)
  for example in outputs:
    image = tf.io.decode_image(tf_example.encoded_image(example), channels=3)
    model_input, image_info = input_pipeline.eval_image(image, image_size)
    _, first_stage = model.propose(model_input[None], augmentation.content_size(image_info[None]),
                                   training=False)
    expected, _ = proposals.select_proposals(first_stage["proposals"][0].numpy(),
                                             first_stage["proposal_scores"][0].numpy(),
                                             image_info.numpy(), 12)
    np.testing.assert_allclose(tf_example.read_distillation(example)["rois"], expected,
                               atol=1e-5)


def test_detector_errors_say_what_to_fix(tmp_path, detector_dir):
  # The loader is vild.inference's (tests/test_inference_detector.py covers the rest); these
  # are the options only proposal generation uses: an explicit checkpoint and gin files.
  with pytest.raises(checkpoint.ModelDirError, match="no such checkpoint"):
    checkpoint.load_model(detector_dir, checkpoint_path=os.path.join(detector_dir, "ckpt-7"))
  # A config that builds another model than the checkpoint holds.
  with pytest.raises(checkpoint.ModelDirError, match="does not match the model"):
    checkpoint.load_model(detector_dir, gin_files=[helpers.TINY_GIN],
                          gin_bindings=["build_fpn.num_filters = 16"])
  # Through the script: a usage error naming the directory, not a traceback.
  with pytest.raises(checkpoint.ModelDirError, match="no such model directory"):
    proposals.generate_proposals("in-*", str(tmp_path / "out"), str(tmp_path / "missing"))


def test_records_without_images_fail_naming_the_shard(tmp_path, restored):
  example = tf.train.Example.FromString(helpers.toy_record(0))
  del example.features.feature[schema.ENCODED]
  helpers.write_shards(str(tmp_path / "in"), [example.SerializeToString()], num_shards=1)
  generator = proposals.ProposalGenerator(*restored)
  with pytest.raises(tf_example.RecordError, match="train-00000-of-00001.tfrecord: record 0 "
                     "has no image/encoded"):
    shard_jobs.run(str(tmp_path / "in" / "*"), str(tmp_path / "out"), generator)
  assert os.listdir(tmp_path / "out") == []
