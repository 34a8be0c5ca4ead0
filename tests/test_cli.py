"""The command line every script shares (vild.utils.cli): a user error prints its message and
exits 1 without a traceback (a gin typo, text embeddings of the wrong dimension, a missing
checkpoint), a bug keeps its traceback; every script takes --gin_file, --gin_param (old name
--gin_bindings) and --verbose, and --help lists them; other libraries' logs are quiet."""
import glob
import logging
import os
import re
import subprocess
import sys

from absl import app
from absl import logging as absl_logging
import gin
import numpy as np
import pytest

from tests import train_toy
from tests.conftest import REPO
from vild import text_embeddings
from vild import vocabulary as vocabulary_lib
from vild.data import conversion
from vild.data import synthetic
from vild.training import experiment
from vild.training import strategy
from vild.utils import cli
from vild.utils import gin_config
from vild.utils import progress

# An argparse tool run in a separate torch environment (see its docstring), not a vild CLI.
NOT_VILD_CLIS = ("make_clip_test_fixture.py",)
SCRIPTS = sorted(p for p in glob.glob(os.path.join(REPO, "scripts", "*.py"))
                 if os.path.basename(p) not in NOT_VILD_CLIS)
TINY_TRAINING = os.path.join(REPO, "configs", "tiny", "synthetic_vild_text.gin")


def run_script(script, *flags, quiet_env=False):
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
  if quiet_env:  # as a user runs it: nothing set
    env.pop("TF_CPP_MIN_LOG_LEVEL")
    env.pop(cli.VERBOSE_ENV, None)
  return subprocess.run([sys.executable, os.path.join(REPO, "scripts", script), *flags],
                        env=env, capture_output=True, text=True, timeout=600, cwd=REPO)


def raised(function):
  with pytest.raises(BaseException) as info:
    function()
  return info.value


def test_user_errors_and_bugs_are_told_apart():
  user_errors = [
      raised(lambda: vocabulary_lib.load_vocabulary(" ; ")),  # one of vild's error classes
      raised(lambda: strategy.select_strategy("bogus")),  # a ValueError vild raises on purpose
      raised(lambda: gin_config.parse([], ["NoSuchConfigurable.x = 1"])),
      raised(lambda: gin.parse_config("NoSuchConfigurable.x = 1")),  # gin's own, unwrapped
      raised(experiment.training_vocabulary),  # a REQUIRED binding missing
      raised(lambda: open("/no/such/file.json", encoding="utf-8")),
      app.UsageError("--image is required"),
  ]
  bugs = [
      raised(lambda: progress.format_duration(float("nan"))),  # ValueError inside vild's code
      raised(lambda: np.zeros(3).reshape(2)),
      raised(lambda: {}["key"]),
  ]
  gin.finalize()
  bugs.append(raised(lambda: gin.parse_config("x = 1")))  # a locked config: vild's bug
  assert [cli.is_user_error(e) for e in user_errors] == [True] * len(user_errors), user_errors
  assert [cli.is_user_error(e) for e in bugs] == [False] * len(bugs), bugs


def test_a_gin_typo_prints_gins_message_and_no_traceback(tmp_path):
  result = run_script("train.py", f"--gin_file={TINY_TRAINING}",
                      "--gin_param=ViLDTrainer.train_stepz = 3", f"--model_dir={tmp_path}")
  assert result.returncode == 1
  assert "Traceback" not in result.stderr
  assert re.search(r"error: gin config: .*train_stepz", result.stderr), result.stderr[-2000:]
  assert os.listdir(tmp_path) == []


def test_wrong_text_embedding_dimension_names_the_file(tmp_path):
  root = str(tmp_path)
  synthetic.generate(root, synthetic.WorldSpec(num_train_images=2, num_val_images=1,
                                               num_crops=2, image_size=64))
  conversion.convert(os.path.join(root, "train.json"), os.path.join(root, "images"),
                     os.path.join(root, "records"), "train", base_only=True)
  vocab = vocabulary_lib.Vocabulary.from_file(os.path.join(root, "train.json"))
  embeddings = os.path.join(root, "text_16d.npy")  # the tiny model projects to 32 dimensions
  text_embeddings.save(embeddings, np.random.default_rng(0).normal(size=(len(vocab), 16)),
                       vocab, teacher="random")
  bindings = [f"training_vocabulary.text_embeddings_path = '{embeddings}'",
              f"train.train_file_pattern = '{root}/records/train-*'",
              "Parser.output_size = (64, 64)", "train.global_batch_size = 1"] + train_toy.SMALLER
  result = run_script("train.py", f"--gin_file={TINY_TRAINING}", f"--model_dir={root}/run",
                      *[f"--gin_param={b}" for b in bindings])
  assert result.returncode == 1
  assert "Traceback" not in result.stderr
  assert re.search(r"error: \S*text_16d\.(json|npy): text embeddings have dimension 16 but the "
                   "model projects regions to dimension 32", result.stderr), result.stderr[-3000:]


def test_a_missing_checkpoint_prints_the_message_alone(tmp_path):
  result = run_script("compute_text_embeddings.py", "--vocabulary=cat;dog",
                      f"--checkpoint_dir={tmp_path}/nothing", f"--output={tmp_path}/v.npy",
                      quiet_env=True)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines() == [
      f"error: {tmp_path}/nothing: no such checkpoint directory. Give a local Hugging Face CLIP "
      "directory (config.json, model.safetensors, vocab.json, merges.txt)."]
  assert result.stdout == ""  # no usage text, no TensorFlow log lines


def test_verbose_shows_the_traceback(tmp_path):
  result = run_script("compute_text_embeddings.py", "--vocabulary=cat;dog",
                      f"--checkpoint_dir={tmp_path}/nothing", f"--output={tmp_path}/v.npy",
                      "--verbose")
  assert result.returncode == 1
  assert "Traceback" in result.stderr and "CheckpointError" in result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=os.path.basename)
def test_every_script_uses_the_common_command_line(script):
  with open(script, encoding="utf-8") as f:
    lines = f.read().splitlines()
  assert 'if __name__ == "__main__":' in lines and "  cli.run(main)" in lines
  quiet = lines.index("cli.quiet_native_logs()  # before TensorFlow loads: it reads its C++ "
                      "log level once")
  loads_tensorflow = (r"(import|from) (tensorflow|tf_keras|official|vild\.(?!utils import cli)|"
                      r"vild import (?!cpu_kernels))")
  first = next(i for i, line in enumerate(lines) if re.match(loads_tensorflow, line))
  assert quiet < first


def test_abseils_setter_is_found_in_the_pinned_tensorflow():
  # Without it grappler's ~1 KB cost-model warning reaches every run's stderr (docs/command_line.md).
  assert cli.quiet_abseil_logs()


def test_help_lists_the_shared_flags():
  result = run_script("generate_proposals.py", "--help")
  for flag in ("--gin_file", "--gin_param", "--gin_bindings", "--[no]verbose"):
    assert flag in result.stdout, flag


def test_verbose_request_is_read_before_flags_are_parsed(monkeypatch):
  monkeypatch.delenv(cli.VERBOSE_ENV, raising=False)
  assert not cli._verbose_in_argv(["x.py", "--model=m"])
  assert cli._verbose_in_argv(["x.py", "--verbose"])
  assert not cli._verbose_in_argv(["x.py", "--verbose", "--noverbose"])
  assert not cli._verbose_in_argv(["x.py", "--", "--verbose"])  # a Beam option, not ours
  monkeypatch.setenv(cli.VERBOSE_ENV, "1")
  assert cli._verbose_in_argv(["x.py"])

  monkeypatch.delenv(cli.VERBOSE_ENV)
  monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
  cli.quiet_native_logs(["x.py"])
  assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
  monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "1")  # the user's choice stays
  cli.quiet_native_logs(["x.py"])
  assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1"
  cli.quiet_native_logs(["x.py", "--verbose"])
  assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"


def test_quiet_python_logs_keep_vilds_info_and_everyones_warnings():
  absl_logger = absl_logging.get_absl_logger()
  tf_logger = logging.getLogger("tensorflow")
  filters, level = list(absl_logger.filters), tf_logger.level
  try:
    cli.quiet_python_logs()

    def passes(pathname, level=logging.INFO):
      return bool(absl_logger.filter(logging.LogRecord(
          "absl", level, pathname, 1, "message", None, None)))
    assert passes(os.path.join(REPO, "vild", "inference", "checkpoint.py"))
    assert passes(os.path.join(REPO, "scripts", "detect.py"))
    assert not passes("/venv/site-packages/official/vision/modeling/decoders/fpn.py")
    assert passes("/venv/site-packages/official/vision/modeling/decoders/fpn.py",
                  logging.WARNING)
    assert tf_logger.getEffectiveLevel() == logging.ERROR
  finally:
    absl_logger.filters[:] = filters
    tf_logger.setLevel(level)
