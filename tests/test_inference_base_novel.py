"""ViLD-ensemble with typed names: a name is base iff the model was trained on it with boxes
(the run's training vocabulary), in the Detector, detect.py and the SavedModel (issue 18.7)."""
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from tests import inference_helpers as helpers
from tests.conftest import REPO
from vild import vocabulary as vocabulary_lib
from vild.inference import detector as detector_lib
from vild.inference import export
from vild.inference import vocabularies
from vild.training import experiment

TRAINED_NOVEL = dict(zip(helpers.TOY_NAMES, helpers.TOY_NOVEL))  # green disc, blue disc novel
TYPED = ["red square", "blue disc", "koala"]  # trained base, trained novel, never seen
TINY_CLIP_32D = os.path.join(REPO, "tests", "fixtures", "tiny_clip_32d")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
  """The trained ViLD-ensemble run, with the training vocabulary the trainer now writes."""
  run = str(tmp_path_factory.mktemp("run") / "vild_ensemble")
  shutil.copytree(helpers.trained_model_dir(tmp_path_factory), run)
  training = vocabulary_lib.Vocabulary.from_names(
      helpers.TOY_NAMES, novel_names=[n for n, novel in TRAINED_NOVEL.items() if novel])
  training.save(os.path.join(run, experiment.TRAINING_VOCABULARY))
  return run


def _detector(path, **options):
  teacher = helpers.teacher()
  kwargs = {} if export.is_saved_model(path) else {"input_size": helpers.SIZE}
  return detector_lib.Detector.load(path, embed_names=teacher.encode_text,
                                    embed_crops=teacher.embed_crops, **kwargs, **options)


def test_split_by_training_matches_names_and_synonyms():
  training = vocabulary_lib.Vocabulary.from_categories([
      {"id": 1, "name": "traffic_light", "synonyms": ["traffic_light", "stoplight"],
       "frequency": "f"},
      {"id": 2, "name": "aardvark", "synonyms": ["aardvark"], "frequency": "r"}])
  typed = vocabulary_lib.Vocabulary.from_names(["Traffic light", "stoplight", "aardvark", "koala"])
  split = vocabularies.split_by_training(typed, training)
  assert split.is_novel == (False, False, True, True)  # aardvark: trained without boxes


def test_typed_names_are_base_iff_trained_with_boxes(model_dir):
  detector = _detector(model_dir)
  image = helpers.toy_image(0)
  [default] = detector.detect(image, TYPED)
  [explicit] = detector.detect(image, TYPED, base_mask=[True, False, False])
  [all_base] = detector.detect(image, TYPED, base_mask=[True, True, True])
  np.testing.assert_allclose(default.class_scores, explicit.class_scores)
  assert not np.allclose(default.class_scores, all_base.class_scores)
  vocab, _ = detector.text_embeddings(TYPED)
  split, rule = detector.base_novel_split(vocab)
  assert split.is_novel == (False, True, True)
  assert experiment.TRAINING_VOCABULARY in rule
  # Overrides: --base_names makes exactly those base, --novel_names forces novel.
  overridden = _detector(model_dir, base_names=["blue disc"], novel_names=["red square"])
  assert overridden.base_novel_split(vocab)[0].is_novel == (True, False, True)


def test_the_saved_model_carries_the_training_vocabulary_and_the_same_split(model_dir,
                                                                           tmp_path):
  export_dir = str(tmp_path / "export")
  run = helpers.run_python(["scripts/export_saved_model.py", f"--model={model_dir}",
                            f"--export_dir={export_dir}", "--input_size=128,128",
                            f"--vocabulary={';'.join(TYPED)}", f"--teacher={TINY_CLIP_32D}"])
  del run
  loaded = export.load_saved_model(export_dir)
  assert loaded.training_vocabulary.names == tuple(helpers.TOY_NAMES)
  assert loaded.vocabulary.is_novel == (False, True, True)  # the baked vocabulary, same rule
  detector = _detector(export_dir)
  vocab, _ = detector.text_embeddings(TYPED)
  assert detector.base_novel_split(vocab)[0].is_novel == (False, True, True)


def test_detect_prints_the_split_of_typed_names(model_dir, tmp_path):
  Image.fromarray(helpers.toy_image(0)).save(tmp_path / "scene.png")
  run = helpers.run_python(["scripts/detect.py", f"--image={tmp_path / 'scene.png'}",
                            f"--vocabulary={';'.join(TYPED)}", f"--model={model_dir}",
                            f"--teacher={TINY_CLIP_32D}", "--input_size=128,128",
                            f"--output_dir={tmp_path / 'out'}", "--score_threshold=0"])
  assert "base: red square; novel: blue disc, koala" in run.stdout
  assert json.loads((tmp_path / "out" / "scene.json").read_text())["detections"]
