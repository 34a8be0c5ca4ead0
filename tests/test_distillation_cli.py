"""scripts/generate_proposals.py on a tiny detector's model directory, and a CLI error that says
what to run. (scripts/compute_region_embeddings.py runs in test_distillation_shard_jobs.py.)"""
import json
import os
import subprocess
import sys

from tests import distillation_helpers as helpers
from vild.data import tf_example


def _run(script, *flags):
  env = dict(os.environ, PYTHONPATH=helpers.REPO, TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.run([sys.executable, os.path.join(helpers.REPO, "scripts", script),
                         *flags], env=env, capture_output=True, text=True, timeout=300)


def test_proposals_cli_writes_proposals_into_the_records(tmp_path, tmp_path_factory):
  model_dir = helpers.tiny_detector_dir(tmp_path_factory)
  records = [helpers.toy_record(s) for s in range(4)]
  helpers.write_shards(str(tmp_path / "records"), records, num_shards=2)

  proposals = _run("generate_proposals.py", f"--model_dir={model_dir}",
                   f"--input_pattern={tmp_path}/records/train-*.tfrecord",
                   f"--output_dir={tmp_path}/proposals", "--num_proposals=8")
  assert proposals.returncode == 0, proposals.stderr[-3000:]
  assert "wrote 2 shards" in proposals.stdout
  with open(tmp_path / "proposals" / "proposals.json", encoding="utf-8") as f:
    settings = json.load(f)
  assert settings["num_proposals"] == 8
  assert settings["detector_weights_sha256"].startswith("sha256:")

  for example in helpers.read_records(str(tmp_path / "proposals" / "train-*")):
    fields = tf_example.read_distillation(example)
    assert 0 < len(fields["rois"]) <= 8 and fields["features"].size == 0


def test_proposals_cli_without_a_checkpoint_says_what_to_run(tmp_path):
  helpers.write_shards(str(tmp_path / "records"), [helpers.toy_record(0)], num_shards=1)
  (tmp_path / "untrained").mkdir()
  (tmp_path / "untrained" / "config.gin").write_text("")
  result = _run("generate_proposals.py", f"--model_dir={tmp_path}/untrained",
                f"--input_pattern={tmp_path}/records/*.tfrecord",
                f"--output_dir={tmp_path}/proposals")
  assert result.returncode != 0
  assert "no TF checkpoint" in result.stderr and "scripts/train.py" in result.stderr
  assert "Traceback" not in result.stderr
  assert not os.path.exists(tmp_path / "proposals")
