"""Shard jobs: machines split the shards, reruns skip finished ones, a killed run leaves no
partial shard (an exception in-process; SIGKILL of scripts/compute_region_embeddings.py in a
subprocess) and the rerun completes."""
import glob
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tests import distillation_helpers as helpers
from vild.data import tf_example
from vild.distillation_data import region_embeddings
from vild.distillation_data import shard_jobs
from vild.teacher import crops


def _tagged(records, source):
  """A cheap transform: each record gets its shard's name appended."""
  for record in records:
    yield record + b"|" + os.path.basename(source).encode()


def _input(tmp_path, num_records=7, num_shards=3):
  records = [f"record {i}".encode() for i in range(num_records)]
  return helpers.write_shards(str(tmp_path / "in"), records, num_shards), records


def _read(path):
  return list(tf.data.TFRecordDataset(path).as_numpy_iterator())


def test_machines_split_the_shards_and_reruns_skip_finished_ones(tmp_path):
  inputs, _ = _input(tmp_path, num_records=7, num_shards=3)
  pattern, out = str(tmp_path / "in" / "*.tfrecord"), str(tmp_path / "out")
  first = shard_jobs.run(pattern, out, _tagged, shard_index=0, num_shards=2)
  second = shard_jobs.run(pattern, out, _tagged, shard_index=1, num_shards=2)
  names = lambda paths: [os.path.basename(p) for p in paths]  # noqa: E731
  assert names(first["written"]) == names([inputs[0], inputs[2]])
  assert names(second["written"]) == names([inputs[1]])
  for path in inputs:
    output = os.path.join(out, os.path.basename(path))
    assert _read(output) == [r + b"|" + os.path.basename(path).encode() for r in _read(path)]

  def must_not_run(records, source):
    raise AssertionError(f"{source} was already written")
  again = shard_jobs.run(pattern, out, must_not_run)
  assert again["written"] == [] and len(again["skipped"]) == 3


def test_an_exception_mid_shard_leaves_no_partial_shard_and_the_rerun_completes(tmp_path):
  inputs, _ = _input(tmp_path)
  pattern, out = str(tmp_path / "in" / "*.tfrecord"), str(tmp_path / "out")

  def fails_in_second_shard(records, source):
    for i, record in enumerate(_tagged(records, source)):
      if "00001-of" in source and i == 1:
        raise RuntimeError("teacher crashed")
      yield record
  with pytest.raises(RuntimeError, match="teacher crashed"):
    shard_jobs.run(pattern, out, fails_in_second_shard)
  assert sorted(os.listdir(out)) == [os.path.basename(inputs[0])]  # no temporaries either
  finished = os.path.getmtime(os.path.join(out, os.path.basename(inputs[0])))

  result = shard_jobs.run(pattern, out, _tagged)
  assert [os.path.basename(p) for p in result["skipped"]] == [os.path.basename(inputs[0])]
  assert len(result["written"]) == 2
  assert os.path.getmtime(os.path.join(out, os.path.basename(inputs[0]))) == finished


def test_a_transform_that_drops_records_leaves_no_shard(tmp_path):
  _input(tmp_path, num_records=4, num_shards=1)

  def drops_one(records, source):
    yield from list(records)[1:]
  with pytest.raises(shard_jobs.ShardJobError, match="4 records read but 3 written"):
    shard_jobs.run(str(tmp_path / "in" / "*"), str(tmp_path / "out"), drops_one)
  assert os.listdir(tmp_path / "out") == []


def test_bad_inputs_and_outputs_say_what_to_do(tmp_path):
  inputs, _ = _input(tmp_path, num_shards=1)
  with pytest.raises(shard_jobs.ShardJobError, match="matches no TFRecord files"):
    shard_jobs.run(str(tmp_path / "nothing-*"), str(tmp_path / "out"), _tagged)
  with pytest.raises(shard_jobs.ShardJobError, match="holds the input shards"):
    shard_jobs.run(inputs[0], str(tmp_path / "in"), _tagged)
  with pytest.raises(shard_jobs.ShardJobError, match="0 <= shard_index < num_shards"):
    shard_jobs.run(inputs[0], str(tmp_path / "out"), _tagged, shard_index=2, num_shards=2)
  # e.g. a settings file caught by a too-wide pattern
  (tmp_path / "in" / "notes.json").write_text('{"format": "vild.proposals/1", "scales": [1]}')
  with pytest.raises(shard_jobs.ShardJobError, match="notes.json: not a TFRecord file"):
    shard_jobs.run(str(tmp_path / "in" / "*"), str(tmp_path / "out"), _tagged)


# scripts/compute_region_embeddings.py, SIGKILLed by its own process in the middle of the
# second shard (after one of its records was written).
KILLED_RUN = textwrap.dedent("""
    import os, runpy, signal, sys
    from vild.distillation_data import region_embeddings
    embed_records = region_embeddings.embed_records

    def dies_in_the_second_shard(embedder, records, source):
      for i, record in enumerate(embed_records(embedder, records, source)):
        if "00001-of" in source and i == 1:
          os.kill(os.getpid(), signal.SIGKILL)
        yield record

    region_embeddings.embed_records = dies_in_the_second_shard
    sys.argv = ["compute_region_embeddings.py"] + sys.argv[1:]
    runpy.run_path(os.path.join("scripts", "compute_region_embeddings.py"), run_name="__main__")
""")


def test_resume_after_a_killed_region_embedding_run(tmp_path):
  records = [helpers.toy_record(s, rois=helpers.some_rois(s, 3)) for s in range(7)]
  inputs = helpers.write_shards(str(tmp_path / "in"), records, num_shards=3)
  pattern, out = str(tmp_path / "in" / "*.tfrecord"), str(tmp_path / "out")
  env = dict(os.environ, PYTHONPATH=helpers.REPO, TF_CPP_MIN_LOG_LEVEL="2")
  killed = subprocess.run(
      [sys.executable, "-c", KILLED_RUN, f"--input_pattern={pattern}", f"--output_dir={out}",
       f"--checkpoint_dir={helpers.TINY_CLIP}", "--batch_size=4"],
      cwd=helpers.REPO, env=env, capture_output=True, text=True, timeout=300)
  assert killed.returncode == -9, killed.stderr[-2000:]
  assert re.search(r"Wrote .*train-00000-of-00003.tfrecord: 3 records in .* s, crops/s [0-9.]+",
                   killed.stderr)  # progress, logged per shard
  names = [os.path.basename(p) for p in inputs]
  assert os.path.exists(os.path.join(out, names[0]))
  assert not os.path.exists(os.path.join(out, names[1]))
  assert glob.glob(os.path.join(out, f".{names[1]}.*.tmp"))  # killed while writing it

  from vild.teacher import clip_teacher  # pylint: disable=g-import-not-at-top
  teacher = clip_teacher.load_clip_teacher(helpers.TINY_CLIP)
  result = region_embeddings.compute_region_embeddings(pattern, out, teacher=teacher)
  assert [os.path.basename(p) for p in result["skipped"]] == names[:1]
  assert [os.path.basename(p) for p in result["written"]] == names[1:]
  assert sorted(os.listdir(out)) == sorted(names + ["region_embeddings.json"])

  # Every shard, the one from the killed run included, holds the embeddings of its records.
  embedder = crops.RegionEmbedder(teacher)
  for path in inputs:
    expected = region_embeddings.embed_records(embedder, _read(path))
    written = _read(os.path.join(out, os.path.basename(path)))
    assert len(written) == len(_read(path))
    for want, got in zip(expected, written):
      np.testing.assert_allclose(
          tf_example.read_distillation(tf.train.Example.FromString(got))["features"],
          tf_example.read_distillation(tf.train.Example.FromString(want))["features"],
          atol=1e-5)
