"""vild's TF CLIP against the reference (transformers, PyTorch) fixture, and its error paths.

tests/fixtures/tiny_clip was written by scripts/make_clip_test_fixture.py: a random-weight
transformers CLIPModel and the ids/embeddings it computed. No torch is needed here.
tests/fixtures/tiny_clip_32d was written without torch by scripts/make_random_clip.py at the
tiny configs' 32 dimensions; its layout is vild's writer's, checked here against the
transformers-made fixture.
"""
import dataclasses
import filecmp
import json
import os
import shutil
import subprocess
import sys

import gin
import numpy as np
import pytest
from safetensors import numpy as safetensors_numpy
import tensorflow as tf

from tests.conftest import REPO
from tests.conftest import TINY_GIN

from vild.teacher import checkpoint
from vild.teacher import clip_config
from vild.teacher import clip_model
from vild.teacher import clip_teacher
from vild.teacher import preprocessing
from vild.teacher import tokenizer as tokenizer_lib

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "tiny_clip")
FIXTURE_32D = os.path.join(os.path.dirname(__file__), "fixtures", "tiny_clip_32d")
ATOL = 1e-4


@pytest.fixture(scope="module")
def expected():
  with open(os.path.join(FIXTURE, "expected.json"), encoding="utf-8") as f:
    texts = json.load(f)["texts"]
  return texts, dict(np.load(os.path.join(FIXTURE, "expected.npz")))


@pytest.fixture(scope="module")
def teacher():
  return clip_teacher.load_clip_teacher(FIXTURE, batch_size=4)


def copy_fixture(tmp_path, skip=()):
  target = tmp_path / "ckpt"
  shutil.copytree(FIXTURE, target, ignore=shutil.ignore_patterns(*skip))
  return str(target)


# ---------------------------------------------------------------------------------------------
# Tokenizer.
def test_token_ids_match_reference(expected):
  texts, arrays = expected
  ids = tokenizer_lib.ClipTokenizer.from_directory(FIXTURE).tokenize(texts)
  np.testing.assert_array_equal(ids, arrays["token_ids"])


def test_every_vocabulary_source_gives_the_same_ids(expected, tmp_path):
  texts, arrays = expected
  fast_only = copy_fixture(tmp_path, skip=("vocab.json", "merges.txt"))
  for tok in (tokenizer_lib.ClipTokenizer.from_directory(fast_only),
              tokenizer_lib.default_tokenizer()):
    np.testing.assert_array_equal(tok.tokenize(texts), arrays["token_ids"])


def test_tokenize_layout_truncation_and_decode():
  tok = tokenizer_lib.default_tokenizer()
  short = tok.tokenize(["a photo of a cat."])[0]
  n = int(np.argmax(short == tok.end_id)) + 1
  assert short[0] == tok.start_id and not short[n:].any()
  assert tok.decode(short) == "a photo of a cat ."
  long = tok.tokenize(["cat " * 200])[0]
  assert long.shape == (77,) and long[-1] == tok.end_id and (long[1:-1] != 0).all()
  assert tok.decode(tok.tokenize(["Café  & crème"])[0]) == "café & crème"


def test_clean_text_unescapes_html_and_whitespace_like_clip():
  assert tokenizer_lib.clean_text("  Tom &amp;amp; JERRY\n\t here ") == "tom & jerry here"


def test_tokenizer_rejects_inconsistent_files(tmp_path):
  with pytest.raises(tokenizer_lib.TokenizerError, match="no tokenizer files"):
    tokenizer_lib.ClipTokenizer.from_directory(str(tmp_path))
  with pytest.raises(tokenizer_lib.TokenizerError, match="not in the vocabulary"):
    tokenizer_lib.ClipTokenizer({"a": 0, "b": 1, "<|startoftext|>": 2, "<|endoftext|>": 3},
                                [("a", "b")])
  with pytest.raises(tokenizer_lib.TokenizerError, match="no <\\|endoftext\\|>"):
    tokenizer_lib.ClipTokenizer({"<|startoftext|>": 0}, [])


# ---------------------------------------------------------------------------------------------
# Model and preprocessing against the reference.
def test_text_embeddings_match_reference(teacher, expected):
  texts, arrays = expected
  np.testing.assert_allclose(teacher.encode_text(texts), arrays["text_embeds"], atol=ATOL)


def test_image_tower_matches_reference_on_reference_pixels(teacher, expected):
  _, arrays = expected
  for key in ("square", "raw"):
    embeds = tf.math.l2_normalize(
        teacher.model.encode_image(arrays[f"{key}_pixel_values"]), axis=-1)
    np.testing.assert_allclose(embeds, arrays[f"{key}_image_embeds"], atol=ATOL)


def test_preprocessing_matches_reference(teacher, expected):
  _, arrays = expected
  config = teacher.config
  square = preprocessing.preprocess(arrays["square_images"], 32, config.image_mean,
                                    config.image_std)
  np.testing.assert_allclose(square, arrays["square_pixel_values"], atol=1e-5)
  # 40 x 61 -> resize to 32 x 48 (bicubic) -> centre crop; within one grey level of PIL.
  raw = preprocessing.preprocess(arrays["raw_image"], 32, config.image_mean, config.image_std)
  np.testing.assert_allclose(raw, arrays["raw_pixel_values"], atol=1 / (255 * 0.26))


def test_encode_images_matches_reference_from_uint8(teacher, expected):
  _, arrays = expected
  np.testing.assert_allclose(teacher.encode_images(arrays["square_images"]),
                             arrays["square_image_embeds"], atol=ATOL)
  np.testing.assert_allclose(teacher.encode_images(arrays["raw_image"]),
                             arrays["raw_image_embeds"], atol=ATOL)


def test_jit_compiled_teacher_pads_the_last_batch_and_agrees(expected):
  texts, arrays = expected  # 9 texts in batches of 4: the last one is padded
  jitted = clip_teacher.load_clip_teacher(FIXTURE, batch_size=4, jit_compile=True)
  np.testing.assert_allclose(jitted.encode_text(texts), arrays["text_embeds"], atol=ATOL)


def test_argmax_pooling_equals_end_token_pooling_for_clip_vocabularies(teacher, expected):
  _, arrays = expected
  ids = arrays["token_ids"]
  tower = teacher.model.text_tower
  by_argmax = clip_model.TextTower(**{**tower.get_config(), "end_token_id": None})
  by_argmax(ids[:1])
  by_argmax.set_weights(tower.get_weights())
  np.testing.assert_allclose(by_argmax(ids), tower(ids), atol=1e-6)


def test_layers_round_trip_through_get_config(teacher):
  for layer in (teacher.model.vision_tower, teacher.model.text_tower,
                teacher.model.text_tower.transformer):
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
  model = clip_model.CLIPModel.from_config(teacher.model.get_config())
  assert model.vision_tower is teacher.model.vision_tower


def test_presets_have_the_reference_parameter_count():
  # transformers.CLIPModel(CLIPConfig()) (ViT-B/32) has 151,277,313 parameters.
  model = clip_model.build_clip_model(clip_config.preset("vit_b32"))
  assert sum(int(np.prod(w.shape)) for w in model.weights) == 151_277_313
  assert clip_config.preset("vit_l14").embed_dim == 768
  assert clip_config.preset("vit_b16").vision.num_patches == 196
  # The tiny preset is the architecture the reference fixture checks.
  tiny, fixture = clip_config.preset("tiny"), checkpoint.read_config(FIXTURE)
  assert (fixture.vision, fixture.embed_dim) == (tiny.vision, tiny.embed_dim)
  assert fixture.text == dataclasses.replace(tiny.text, end_token_id=4609)


# ---------------------------------------------------------------------------------------------
# Checkpoint directories: round trip and errors.
def test_save_then_load_round_trips(tmp_path):
  teacher = clip_teacher.CLIPTeacher.untrained("tiny")
  directory = str(tmp_path / "saved")
  checkpoint.save_clip(directory, teacher.model, teacher.tokenizer, teacher.config)
  loaded = clip_teacher.load_clip_teacher(directory)
  texts = ["a photo of a dog.", "an apple"]
  np.testing.assert_allclose(loaded.encode_text(texts), teacher.encode_text(texts), atol=1e-6)
  images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
  np.testing.assert_allclose(loaded.encode_images(images), teacher.encode_images(images),
                             atol=1e-6)


def test_writer_gives_the_reference_layout_names_and_values(tmp_path):
  """A transformers-made checkpoint read by vild and written back is the same checkpoint:
  every tensor's name, shape and value, and the config fields the architecture needs."""
  model, tokenizer, config = checkpoint.load_clip(FIXTURE)
  written = str(tmp_path / "rewritten")
  checkpoint.save_clip(written, model, tokenizer, config)
  reference = safetensors_numpy.load_file(os.path.join(FIXTURE, "model.safetensors"))
  reference = {k: v for k, v in reference.items() if not k.endswith("position_ids")}
  ours = safetensors_numpy.load_file(os.path.join(written, "model.safetensors"))
  assert sorted(ours) == sorted(reference)
  for name, value in reference.items():
    np.testing.assert_array_equal(ours[name], value, err_msg=name)
  with open(os.path.join(FIXTURE, "config.json"), encoding="utf-8") as f:
    reference_config = json.load(f)
  with open(os.path.join(written, "config.json"), encoding="utf-8") as f:
    our_config = json.load(f)
  assert our_config["projection_dim"] == reference_config["projection_dim"]
  for tower in ("text_config", "vision_config"):
    for key, value in our_config[tower].items():
      assert reference_config[tower][key] == value, (tower, key)


def test_shipped_random_clip_has_the_tiny_configs_dimension_and_is_reproducible(tmp_path):
  gin.parse_config_file(TINY_GIN)
  assert checkpoint.read_config(FIXTURE_32D).embed_dim == gin.query_parameter(
      "build_vild_model.embedding_dim")
  # The committed directory is exactly what its documented torch-free command writes.
  output = tmp_path / "clip"
  run = subprocess.run(
      [sys.executable, os.path.join(REPO, "scripts", "make_random_clip.py"),
       f"--output_dir={output}", "--embed_dim=32"],
      env={**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"},
      capture_output=True, text=True, timeout=300)
  assert run.returncode == 0, run.stderr[-3000:]
  names = sorted(os.listdir(FIXTURE_32D))
  assert sorted(os.listdir(output)) == names
  _, mismatch, errors = filecmp.cmpfiles(FIXTURE_32D, output, names, shallow=False)
  assert not mismatch and not errors


def test_random_clip_of_any_size_loads_and_embeds(tmp_path):
  config = checkpoint.config_for_tokenizer(clip_config.CLIPConfig(
      "odd", embed_dim=24, vision=clip_config.VisionConfig(48, 16, 24, 1, 3, 96),
      text=clip_config.TextConfig(1, 20, 16, 1, 2, 64)), tokenizer_lib.default_tokenizer(20))
  directory = str(tmp_path / "odd")
  checkpoint.write_random_clip(directory, config, seed=3)
  teacher = clip_teacher.load_clip_teacher(directory)
  assert teacher.config.text == config.text and teacher.image_size == 48
  texts = teacher.encode_text(["a photo of a cat.", "a photo of a dog.", "a red umbrella"])
  assert texts.shape == (3, 24)
  np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
  assert np.abs(texts[0] - texts[2]).max() > 1e-3  # the text reaches the embedding
  images = np.random.default_rng(0).integers(0, 256, (2, 60, 50, 3), dtype=np.uint8)
  assert teacher.encode_images(images).shape == (2, 24)
  with pytest.raises(checkpoint.CheckpointError, match="must be the tokenizer's"):
    checkpoint.write_random_clip(str(tmp_path / "bad"), clip_config.preset("tiny"))


def test_missing_and_misshaped_tensors_are_named(tmp_path):
  directory = copy_fixture(tmp_path)
  path = os.path.join(directory, "model.safetensors")
  tensors = safetensors_numpy.load_file(path)
  del tensors["text_model.encoder.layers.1.mlp.fc2.weight"]
  tensors["visual_projection.weight"] = tensors["visual_projection.weight"].T.copy()
  safetensors_numpy.save_file(tensors, path)
  with pytest.raises(checkpoint.CheckpointError) as error:
    checkpoint.load_clip(directory)
  message = str(error.value)
  assert "missing tensor 'text_model.encoder.layers.1.mlp.fc2.weight'" in message
  assert "'visual_projection.weight' has shape [32, 16], expected [16, 32]" in message
  assert directory in message


@pytest.mark.parametrize("remove, match", [
    ("config.json", "config.json: missing"),
    ("model.safetensors", "no model.safetensors"),
])
def test_missing_files_are_named(tmp_path, remove, match):
  directory = copy_fixture(tmp_path, skip=(remove,))
  with pytest.raises(checkpoint.CheckpointError, match=match):
    checkpoint.load_clip(directory)


def test_tokenizer_of_another_model_is_named(tmp_path):
  directory = copy_fixture(tmp_path)
  path = os.path.join(directory, "config.json")
  with open(path, encoding="utf-8") as f:
    config = json.load(f)
  config["text_config"].update(vocab_size=1000, eos_token_id=2)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(config, f)
  with pytest.raises(checkpoint.CheckpointError, match="tokenizer has 4610 tokens"):
    checkpoint.load_clip(directory)


def test_torch_only_checkpoint_says_how_to_convert(tmp_path):
  directory = copy_fixture(tmp_path, skip=("model.safetensors",))
  open(os.path.join(directory, "pytorch_model.bin"), "wb").close()
  with pytest.raises(checkpoint.CheckpointError, match="safe_serialization=True"):
    checkpoint.load_clip(directory)


def test_config_errors_name_the_problem():
  with pytest.raises(clip_config.CLIPConfigError, match="vision_config.image_size. is missing"):
    clip_config.from_hf_config({"projection_dim": 8, "vision_config": {}, "text_config": {}})
  with pytest.raises(clip_config.CLIPConfigError, match="not a multiple of patch_size"):
    clip_config.CLIPConfig("bad", 8, clip_config.VisionConfig(30, 8, 32, 1, 2, 64),
                           clip_config.TextConfig(10, 77, 32, 1, 2, 64))
  with pytest.raises(clip_config.CLIPConfigError, match="my/config.json: CLIP config"):
    clip_config.from_hf_config({"projection_dim": 8, "vision_config": {
        "image_size": 30, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 1,
        "num_attention_heads": 2, "intermediate_size": 64}, "text_config": {
            "vocab_size": 10, "max_position_embeddings": 77, "hidden_size": 32,
            "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}},
        source="my/config.json")
  with pytest.raises(clip_config.CLIPConfigError, match="unknown CLIP preset"):
    clip_config.preset("vit_h14")


def test_temperature_is_one_over_the_learned_logit_scale(teacher, expected):
  _, arrays = expected
  assert teacher.temperature == pytest.approx(1 / np.exp(float(arrays["logit_scale"])), rel=1e-6)
  teacher.model.logit_scale.assign(np.log(100.0))  # CLIP's clip value: ViLD's 0.01
  try:
    assert teacher.temperature == pytest.approx(0.01, rel=1e-6)
  finally:
    teacher.model.logit_scale.assign(float(arrays["logit_scale"]))
