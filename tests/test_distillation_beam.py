"""The Beam pipeline on the DirectRunner writes the local tool's features and shard names."""
import os

import numpy as np
import pytest

from tests import distillation_helpers as helpers
from vild.data import schema
from vild.data import tf_example
from vild.distillation_data import region_embeddings

beam = pytest.importorskip(
    "apache_beam", reason="Apache Beam is the optional 'beam' extra: pip install 'vild[beam]'")
from vild.distillation_data import beam_pipeline  # noqa: E402  pylint: disable=g-import-not-at-top


def test_direct_runner_features_equal_the_local_tools(tmp_path):
  records = [helpers.toy_record(s, rois=helpers.some_rois(s, 3)) for s in range(5)]
  helpers.write_shards(str(tmp_path / "in"), records, num_shards=2)
  pattern = str(tmp_path / "in" / "train-*.tfrecord")
  region_embeddings.compute_region_embeddings(pattern, str(tmp_path / "local"),
                                              checkpoint_dir=helpers.TINY_CLIP, batch_size=4)
  with beam.Pipeline("DirectRunner") as pipeline:
    beam_pipeline.add_region_embeddings(pipeline, pattern, str(tmp_path / "beam"),
                                        helpers.TINY_CLIP, batch_size=4, records_per_batch=2)

  assert sorted(os.listdir(tmp_path / "beam")) == [
      "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
  local = {tf_example.source_id(e): e
           for e in helpers.read_records(str(tmp_path / "local" / "train-*"))}
  from_beam = helpers.read_records(str(tmp_path / "beam" / "train-*"))
  assert sorted(tf_example.source_id(e) for e in from_beam) == sorted(local)
  for example in from_beam:
    expected = local[tf_example.source_id(example)]
    assert set(example.features.feature) == set(expected.features.feature)
    for key in expected.features.feature:
      if key != schema.ROI_FEATURE:
        assert example.features.feature[key] == expected.features.feature[key], key
    np.testing.assert_allclose(tf_example.read_distillation(example)["features"],
                               tf_example.read_distillation(expected)["features"], atol=1e-5)
