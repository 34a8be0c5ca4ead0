"""Prompts, prompt ensembling and scripts/compute_text_embeddings.py."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from vild import text_embeddings
from vild import vocabulary as vocabulary_lib
from vild.teacher import clip_teacher
from vild.teacher import interface
from vild.teacher import prompts
from vild.teacher import vocabulary_embeddings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(REPO, "tests", "fixtures", "tiny_clip")


class TableTeacher(interface.Teacher):
  """Embeds each text by table look-up, so averages can be checked by hand."""
  name = "table"

  def __init__(self, table, dim=2):
    self.table, self.dim, self.calls = table, dim, []

  @property
  def embedding_dim(self):
    return 2

  @property
  def image_size(self):
    return 4

  def encode_text(self, texts):
    self.calls.append(list(texts))
    return np.array([self.table[t] for t in texts], np.float32)[:, :self.dim]

  def encode_images(self, images):
    raise NotImplementedError


def test_vild_templates_and_name_clean_up():
  assert len(prompts.VILD_TEMPLATES) == len(set(prompts.VILD_TEMPLATES)) == 63
  assert prompts.clean_name("Traffic_Light") == "traffic light"
  assert prompts.clean_name("cow/ox.") == "cow or ox"
  assert prompts.prompts_for_name("apple", prompts.SINGLE_TEMPLATE) == [
      "This is a photo of an apple."]
  assert prompts.prompts_for_name("Apple", ("There is {article} {} in the scene.",
                                            "the toy {}."), this_is=True) == [
      "There is an apple in the scene.", "This is the toy apple."]
  assert prompts.prompts_for_category(["a_b", "A B", "c"], ("{}.",), this_is=False) == [
      "a b.", "c."]


def test_ensembling_matches_a_hand_computed_mean():
  # cat: "a cat." [1, 0], "the cat." [0, 1], "a kitty." [1, 0], "the kitty." [3, 0] (not unit:
  # each prompt is normalised first) -> mean (3/4, 1/4) -> (3, 1) / sqrt(10).
  # dog (no synonyms): "a dog." [0, 2], "the dog." [0, 1] -> (0, 1).
  table = {"a cat.": [1, 0], "the cat.": [0, 1], "a kitty.": [1, 0], "the kitty.": [3, 0],
           "a dog.": [0, 2], "the dog.": [0, 1]}
  vocabulary = vocabulary_lib.Vocabulary.from_categories(
      [{"id": 1, "name": "cat", "synonyms": ["cat", "kitty"]}, {"id": 7, "name": "dog"}])
  teacher = TableTeacher(table)
  matrix = vocabulary_embeddings.embed_vocabulary(
      teacher, vocabulary, templates=("{article} {}.", "the {}."), this_is=False,
      batch_size=4, progress=False)
  np.testing.assert_allclose(matrix, [[3 / np.sqrt(10), 1 / np.sqrt(10)], [0, 1]], atol=1e-6)
  assert [len(c) for c in teacher.calls] == [4, 2]  # batches cross category boundaries
  without_synonyms = vocabulary_embeddings.embed_vocabulary(
      TableTeacher(table), vocabulary, templates=("{article} {}.", "the {}."),
      this_is=False, use_synonyms=False, progress=False)
  np.testing.assert_allclose(without_synonyms[0], [np.sqrt(0.5), np.sqrt(0.5)], atol=1e-6)


def test_a_teacher_returning_the_wrong_dimension_is_named():
  teacher = TableTeacher({"a cat.": [1, 0, 0]}, dim=3)
  vocabulary = vocabulary_lib.Vocabulary.from_names(["cat"])
  with pytest.raises(interface.TeacherError, match="encode_text returned shape .1, 3."):
    vocabulary_embeddings.embed_vocabulary(teacher, vocabulary, templates=("{article} {}.",),
                                           this_is=False, progress=False)


def test_a_name_that_cleans_to_nothing_is_named():
  vocabulary = vocabulary_lib.Vocabulary.from_names(["cat", "..."])
  with pytest.raises(vocabulary_lib.VocabularyError, match="'...' has no usable name"):
    vocabulary_embeddings.embed_vocabulary(TableTeacher({}), vocabulary, progress=False)


def test_compute_text_embeddings_script(tmp_path):
  lvis = tmp_path / "lvis_tiny.json"
  lvis.write_text(json.dumps({"categories": [
      {"id": 3, "name": "traffic_light", "synonyms": ["traffic_light", "stoplight"],
       "frequency": "f"},
      {"id": 9, "name": "aardvark", "synonyms": ["aardvark"], "frequency": "r"}]}))
  output = tmp_path / "out" / "lvis_tiny.npy"
  env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"}
  run = subprocess.run(
      [sys.executable, os.path.join(REPO, "scripts", "compute_text_embeddings.py"),
       f"--vocabulary={lvis}", f"--checkpoint_dir={FIXTURE}", f"--output={output}",
       "--batch_size=50"], env=env, capture_output=True, text=True, timeout=300)
  assert run.returncode == 0, run.stderr[-3000:]
  assert "prompt/s" in run.stderr  # progress with rate

  vocabulary = vocabulary_lib.Vocabulary.from_file(str(lvis))
  matrix, saved_vocabulary = text_embeddings.load(str(output), vocabulary, embedding_dim=16)
  assert saved_vocabulary.names == ("traffic_light", "aardvark")
  assert saved_vocabulary.is_novel == (False, True)
  expected = vocabulary_embeddings.embed_vocabulary(
      clip_teacher.load_clip_teacher(FIXTURE), vocabulary, progress=False)
  np.testing.assert_allclose(matrix, expected, atol=1e-5)
  sidecar = json.loads((tmp_path / "out" / "lvis_tiny.json").read_text())
  assert sidecar["model"] == "tiny_clip" and sidecar["dim"] == 16
  assert sidecar["templates"] == list(prompts.VILD_TEMPLATES) and sidecar["this_is"]
  with pytest.raises(text_embeddings.TextEmbeddingError, match="dimension 16"):
    text_embeddings.load(str(output), embedding_dim=512)


def test_compute_text_embeddings_script_reports_a_bad_checkpoint(tmp_path):
  env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"}
  run = subprocess.run(
      [sys.executable, os.path.join(REPO, "scripts", "compute_text_embeddings.py"),
       "--vocabulary=cat;dog", f"--checkpoint_dir={tmp_path / 'nowhere'}",
       f"--output={tmp_path / 'x.npy'}"], env=env, capture_output=True, text=True,
      timeout=300)
  assert run.returncode != 0
  assert "no such checkpoint directory" in run.stderr
  assert "Traceback" not in run.stderr
  assert not (tmp_path / "x.npy").exists()
