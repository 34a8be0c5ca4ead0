"""Every configurable is registered before a config is parsed, so a lazily imported module
never meets a locked config (issue 18.1: ViLD-text + CLIP evaluation from the CLI crashed)."""
import glob
import json
import os
import re

import numpy as np

from tests import distillation_helpers
from tests import inference_helpers
from tests.conftest import REPO
from vild import configurables
from vild import text_embeddings
from vild.data import toy

DECLARES_CONFIGURABLE = re.compile(r"@gin\.configurable|gin\.external_configurable\(|"
                                   r"@gin\.register")
PARSES_GIN = re.compile(r"\bgin\.parse_config")
TINY_CLIP_32D = os.path.join(REPO, "tests", "fixtures", "tiny_clip_32d")


def _module(path: str) -> str:
  return os.path.splitext(os.path.relpath(path, REPO))[0].replace(os.sep, ".")


def _sources(folder: str):
  for path in sorted(glob.glob(os.path.join(REPO, folder, "**", "*.py"), recursive=True)):
    with open(path, encoding="utf-8") as f:
      yield path, f.read()


def test_the_registry_names_every_module_that_declares_a_configurable():
  declaring = {_module(p) for p, text in _sources("vild") if DECLARES_CONFIGURABLE.search(text)}
  assert declaring == set(configurables.MODULES)


def test_scripts_parse_gin_only_through_the_registering_helper():
  direct = [os.path.relpath(p, REPO) for p, text in _sources("scripts") if PARSES_GIN.search(text)]
  assert not direct, f"{direct} parse gin without vild.utils.gin_config (configurables unregistered)"


def test_vild_text_plus_clip_evaluation_runs_from_the_cli(tmp_path_factory):
  """The README's `evaluate.py --model_dir=... --gin_param="evaluate.clip_checkpoint_dir = ..."`:
  the teacher module is imported after the run's config is parsed and locked."""
  model_dir = inference_helpers.write_trained_model_dir(
      str(tmp_path_factory.mktemp("vild_text")), distillation="none")
  work = tmp_path_factory.mktemp("eval_data")
  records = [distillation_helpers.toy_record(seed, size=(64, 64)) for seed in range(2)]
  distillation_helpers.write_shards(str(work / "records"), records, 1, name="val")
  names = list(toy.TOY_CATEGORIES)
  vocabulary = inference_helpers.vocabulary_lib.Vocabulary.from_names(names)
  text_embeddings.save(str(work / "toy.npy"),
                       np.random.default_rng(0).normal(size=(len(names), 32)), vocabulary)
  output_dir = str(work / "eval")
  bindings = [
      f"evaluate.clip_checkpoint_dir = '{TINY_CLIP_32D}'",
      f"evaluate.eval_file_pattern = '{work}/records/val-*'",
      f"training_vocabulary.text_embeddings_path = '{work}/toy.npy'",
      "evaluate.metric = 'coco'", "evaluate.eval_batch_size = 2", "evaluate.iou_types = ('bbox',)",
      "Parser.output_size = (64, 64)"]
  run = inference_helpers.run_python(
      ["scripts/evaluate.py", f"--model_dir={model_dir}", f"--output_dir={output_dir}"] +
      [f"--gin_param={b}" for b in bindings], expect_success=False)
  assert run.returncode == 0, run.stderr[-3000:]
  metrics = json.load(open(glob.glob(os.path.join(output_dir, "metrics_*.json"))[0]))
  assert "bbox/AP" in metrics
