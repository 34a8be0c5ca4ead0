"""One directory of distillation data, one source: the detector and the teacher are identified by
content (another teacher at the same path, another run's ckpt-1: refused; the same weights at
another path: accepted); a record whose image does not decode is named, never a traceback."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from safetensors import numpy as safetensors_numpy
import tensorflow as tf

from tests import distillation_helpers as helpers
from vild.data import schema
from vild.data import tf_example
from vild.distillation_data import proposals
from vild.distillation_data import region_embeddings
from vild.distillation_data import shard_jobs


def broken_image(record: bytes) -> bytes:
  """The record with its image replaced by the first half of a JPEG."""
  example = tf.train.Example.FromString(record)
  noise = np.random.default_rng(0).integers(0, 255, size=(48, 80, 3), dtype=np.uint8)
  jpeg = tf.io.encode_jpeg(noise).numpy()
  example.features.feature[schema.ENCODED].bytes_list.value[:] = [jpeg[:len(jpeg) // 2]]
  return example.SerializeToString()


def distillation(example):
  return tf_example.read_distillation(example)


def test_another_teacher_at_the_same_path_is_refused_the_same_one_elsewhere_accepted(tmp_path):
  records = [helpers.toy_record(s, rois=helpers.some_rois(s, 3)) for s in range(2)]
  helpers.write_shards(str(tmp_path / "in"), records, num_shards=2)
  pattern, out = str(tmp_path / "in" / "*.tfrecord"), str(tmp_path / "out")
  clip = str(tmp_path / "clip")
  shutil.copytree(helpers.TINY_CLIP, clip)
  region_embeddings.compute_region_embeddings(pattern, out, checkpoint_dir=clip,
                                              shard_index=0, num_shards=2)

  # Retrained in place: only the image projection changed, same name, path and sizes.
  weights = os.path.join(clip, "model.safetensors")
  tensors = safetensors_numpy.load_file(weights)
  tensors["visual_projection.weight"] = tensors["visual_projection.weight"] + 0.01
  safetensors_numpy.save_file(tensors, weights, metadata={"format": "pt"})
  with pytest.raises(shard_jobs.ShardJobError, match="teacher_weights_sha256: saved 'sha256:"):
    region_embeddings.compute_region_embeddings(pattern, out, checkpoint_dir=clip,
                                                shard_index=1, num_shards=2)
  assert sorted(os.listdir(out)) == ["region_embeddings.json", "train-00000-of-00002.tfrecord"]

  # The original teacher mounted elsewhere under another name: the same source.
  elsewhere = str(tmp_path / "mnt" / "clip-b32")
  shutil.copytree(helpers.TINY_CLIP, elsewhere)
  result = region_embeddings.compute_region_embeddings(pattern, out, checkpoint_dir=elsewhere,
                                                       shard_index=1, num_shards=2)
  assert [os.path.basename(p) for p in result["written"]] == ["train-00001-of-00002.tfrecord"]


def test_another_detectors_checkpoint_of_the_same_name_is_refused(tmp_path, tmp_path_factory):
  helpers.write_shards(str(tmp_path / "in"), [helpers.toy_record(s) for s in range(2)], 2)
  pattern, out = str(tmp_path / "in" / "*.tfrecord"), str(tmp_path / "out")
  first = helpers.tiny_detector_dir(tmp_path_factory)
  proposals.generate_proposals(pattern, out, first, num_proposals=4, shard_index=0,
                               num_shards=2)

  other = helpers.make_tiny_detector_dir(str(tmp_path / "other_runs" / "base"))  # ckpt-1 too
  with pytest.raises(shard_jobs.ShardJobError, match="detector_weights_sha256: saved"):
    proposals.generate_proposals(pattern, out, other, num_proposals=4, shard_index=1,
                                 num_shards=2)

  moved = str(tmp_path / "mnt" / "base")  # the same run, mounted elsewhere
  shutil.copytree(first, moved)
  result = proposals.generate_proposals(pattern, out, moved, num_proposals=4, shard_index=1,
                                        num_shards=2)
  assert [os.path.basename(p) for p in result["written"]] == ["train-00001-of-00002.tfrecord"]


def test_a_record_whose_image_does_not_decode_is_named_and_passed_on(tmp_path,
                                                                     tmp_path_factory):
  records = [helpers.toy_record(0), broken_image(helpers.toy_record(1)), helpers.toy_record(2)]
  [shard] = helpers.write_shards(str(tmp_path / "in"), records, num_shards=1)
  result = proposals.generate_proposals(shard, str(tmp_path / "proposals"),
                                        helpers.tiny_detector_dir(tmp_path_factory),
                                        num_proposals=4, batch_size=2)
  assert result["undecodable"] == [f"{shard}: record 1 (image/source_id 1)"]
  written = helpers.read_records(str(tmp_path / "proposals" / "*.tfrecord"))
  assert [len(distillation(e)["rois"]) for e in written] == [4, 0, 4]

  # The region embeddings pass it on without features (training skips it by its own rule).
  result = region_embeddings.compute_region_embeddings(
      str(tmp_path / "proposals" / "*.tfrecord"), str(tmp_path / "distill"),
      checkpoint_dir=helpers.TINY_CLIP)
  written = helpers.read_records(str(tmp_path / "distill" / "*.tfrecord"))
  assert [distillation(e)["features"].size for e in written] == [4 * 16, 0, 4 * 16]

  # With proposals but an image that does not decode: stop, naming shard, record, source_id.
  helpers.write_shards(str(tmp_path / "bad"), [broken_image(helpers.toy_record(
      3, rois=helpers.some_rois(3)))], num_shards=1)
  with pytest.raises(tf_example.RecordError, match=r"train-00000-of-00001.tfrecord: record 0 "
                     r"\(image/source_id 3\): its image does not decode \(jpeg::Uncompress"):
    region_embeddings.compute_region_embeddings(str(tmp_path / "bad" / "*.tfrecord"),
                                                str(tmp_path / "distill_bad"),
                                                checkpoint_dir=helpers.TINY_CLIP)


def test_proposals_cli_names_an_undecodable_record_and_takes_the_old_gin_flag(
    tmp_path, tmp_path_factory):
  records = [helpers.toy_record(0), broken_image(helpers.toy_record(7))]
  [shard] = helpers.write_shards(str(tmp_path / "in"), records, num_shards=1)
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  result = subprocess.run(
      [sys.executable, os.path.join(helpers.REPO, "scripts", "generate_proposals.py"),
       f"--model_dir={helpers.tiny_detector_dir(tmp_path_factory)}", f"--input_pattern={shard}",
       f"--output_dir={tmp_path}/out", "--num_proposals=4",
       "--gin_bindings=build_roi_generator.test_num_proposals = 50"],  # deprecated alias
      env=dict(env, PYTHONPATH=helpers.REPO), capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Traceback" not in result.stderr and "cuInit" not in result.stderr
  assert f"{shard}: record 1 (image/source_id 7)" in result.stdout
  assert "jpeg::Uncompress failed" in result.stderr  # the warning says why
