"""Hugging Face CLIP checkpoint directories <-> vild's tf_keras CLIP, with numpy only.

A directory holds `config.json` (transformers CLIPModel config), `model.safetensors` (or shards
listed in `model.safetensors.index.json`), tokenizer files (`vocab.json` + `merges.txt` or
`tokenizer.json`) and optionally `preprocessor_config.json`. Weights are read with
`safetensors.numpy`: no torch, no network.

`WEIGHT_MAP` is the whole correspondence: for each Hugging Face tensor, the vild variable and
the layout change (PyTorch Linear weights are [out, in], Keras kernels [in, out]; attention
kernels carry a heads axis; the patch convolution is OIHW vs HWIO). Every tensor is checked
for presence and shape before anything is assigned, and the error lists each problem.

Writing: `save_clip` (a vild CLIP's weights) and `write_random_clip` (random weights of any
sizes, numpy only: a teacher for tests and pipeline runs without torch or a download).
"""
import dataclasses
import json
import os
from typing import Dict, List, Optional, Tuple

import numpy as np
from absl import logging
from safetensors import numpy as safetensors_numpy

from vild.teacher import clip_config as config_lib
from vild.teacher import clip_model
from vild.teacher import tokenizer as tokenizer_lib
from vild.utils import io

WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"

# Per transformer block: HF name suffix -> (vild name suffix, layout).
_BLOCK = {
    "self_attn.q_proj.weight": ("self_attention/query/kernel", "in_heads"),
    "self_attn.q_proj.bias": ("self_attention/query/bias", "flat"),
    "self_attn.k_proj.weight": ("self_attention/key/kernel", "in_heads"),
    "self_attn.k_proj.bias": ("self_attention/key/bias", "flat"),
    "self_attn.v_proj.weight": ("self_attention/value/kernel", "in_heads"),
    "self_attn.v_proj.bias": ("self_attention/value/bias", "flat"),
    "self_attn.out_proj.weight": ("self_attention/attention_output/kernel", "out_heads"),
    "self_attn.out_proj.bias": ("self_attention/attention_output/bias", "same"),
    "layer_norm1.weight": ("self_attention_layer_norm/gamma", "same"),
    "layer_norm1.bias": ("self_attention_layer_norm/beta", "same"),
    "layer_norm2.weight": ("output_layer_norm/gamma", "same"),
    "layer_norm2.bias": ("output_layer_norm/beta", "same"),
    "mlp.fc1.weight": ("intermediate/kernel", "linear"),
    "mlp.fc1.bias": ("intermediate/bias", "same"),
    "mlp.fc2.weight": ("output/kernel", "linear"),
    "mlp.fc2.bias": ("output/bias", "same"),
}

# Outside the blocks: HF name -> (vild name, layout).
_STEMS = {
    "logit_scale": ("logit_scale", "same"),
    "text_projection.weight": ("text/projection/kernel", "linear"),
    "visual_projection.weight": ("vision/projection/kernel", "linear"),
    "text_model.embeddings.token_embedding.weight": ("text/token_embedding/embeddings", "same"),
    "text_model.embeddings.position_embedding.weight": ("text/position_embedding", "same"),
    "text_model.final_layer_norm.weight": ("text/ln_final/gamma", "same"),
    "text_model.final_layer_norm.bias": ("text/ln_final/beta", "same"),
    "vision_model.embeddings.class_embedding": ("vision/class_embedding", "same"),
    "vision_model.embeddings.patch_embedding.weight": ("vision/patch_embedding/kernel", "conv"),
    "vision_model.embeddings.position_embedding.weight": ("vision/position_embedding", "same"),
    "vision_model.pre_layrnorm.weight": ("vision/ln_pre/gamma", "same"),
    "vision_model.pre_layrnorm.bias": ("vision/ln_pre/beta", "same"),
    "vision_model.post_layernorm.weight": ("vision/ln_post/gamma", "same"),
    "vision_model.post_layernorm.bias": ("vision/ln_post/beta", "same"),
}

# Buffers some transformers versions save; they hold no learned values.
_IGNORED_SUFFIXES = ("position_ids",)


class CheckpointError(ValueError):
  """A checkpoint directory is incomplete or does not fit the model; names file and fix."""


def weight_map(config: config_lib.CLIPConfig) -> Dict[str, Tuple[str, str]]:
  """HF tensor name -> (vild variable name without ':0', layout), for every weight."""
  mapping = dict(_STEMS)
  for tower, hf_tower, layers in (("text", "text_model", config.text.layers),
                                  ("vision", "vision_model", config.vision.layers)):
    for i in range(layers):
      for hf_suffix, (suffix, layout) in _BLOCK.items():
        mapping[f"{hf_tower}.encoder.layers.{i}.{hf_suffix}"] = (
            f"{tower}/transformer/block_{i}/{suffix}", layout)
  return mapping


def hf_shape(layout: str, shape: Tuple[int, ...]) -> Tuple[int, ...]:
  """The shape the Hugging Face tensor must have for a vild variable of `shape`."""
  if layout == "same":
    return shape
  if layout == "flat":  # [heads, head_dim] <- [heads * head_dim]
    return (int(np.prod(shape)),)
  if layout == "linear":  # [in, out] <- [out, in]
    return shape[::-1]
  if layout == "in_heads":  # [width, heads, head_dim] <- [heads * head_dim, width]
    return (shape[1] * shape[2], shape[0])
  if layout == "out_heads":  # [heads, head_dim, width] <- [width, heads * head_dim]
    return (shape[2], shape[0] * shape[1])
  if layout == "conv":  # [p, p, 3, width] (HWIO) <- [width, 3, p, p] (OIHW)
    return (shape[3], shape[2], shape[0], shape[1])
  raise ValueError(f"unknown layout {layout!r}")


def to_vild(layout: str, tensor: np.ndarray, shape: Tuple[int, ...]) -> np.ndarray:
  """A Hugging Face tensor in vild's layout (`shape`)."""
  if layout == "conv":
    return tensor.transpose(2, 3, 1, 0)
  if layout in ("linear", "in_heads", "out_heads"):
    tensor = tensor.T
  return tensor.reshape(shape)


def to_hf(layout: str, value: np.ndarray) -> np.ndarray:
  """The inverse of `to_vild`."""
  if layout == "conv":
    return value.transpose(3, 2, 0, 1)
  if layout == "same":
    return value
  if layout == "flat":
    return value.reshape(-1)
  if layout == "linear":
    return value.T
  if layout == "in_heads":
    return value.reshape(value.shape[0], -1).T
  return value.reshape(-1, value.shape[-1]).T  # out_heads


# --------------------------------------------------------------------------------------------
# Reading.
def read_config(directory: str) -> config_lib.CLIPConfig:
  path = os.path.join(directory, "config.json")
  if not io.isdir(directory):
    raise CheckpointError(f"{directory}: no such checkpoint directory. Give a local Hugging "
                          "Face CLIP directory (config.json, model.safetensors, vocab.json, "
                          "merges.txt).")
  if not io.exists(path):
    raise CheckpointError(f"{path}: missing. A CLIP checkpoint directory needs the "
                          "transformers CLIPModel config.json beside model.safetensors.")
  try:
    data = io.read_json(path)
  except json.JSONDecodeError as e:
    raise CheckpointError(f"{path}: not valid JSON ({e}).") from e
  name = os.path.basename(os.path.normpath(directory))
  config = config_lib.from_hf_config(data, name=name, source=path)
  mean, std = config_lib.read_preprocessor_config(directory)
  return dataclasses.replace(config, image_mean=mean, image_std=std)


def read_tensors(directory: str) -> Dict[str, np.ndarray]:
  """All tensors of `model.safetensors`, or of the shards its index lists."""
  single = os.path.join(directory, WEIGHTS_FILE)
  index = os.path.join(directory, INDEX_FILE)
  if io.exists(single):
    files = [single]
  elif io.exists(index):
    shards = sorted(set(io.read_json(index)["weight_map"].values()))
    files = [os.path.join(directory, s) for s in shards]
  else:
    others = [n for n in ("pytorch_model.bin", "tf_model.h5", "flax_model.msgpack")
              if io.exists(os.path.join(directory, n))]
    hint = (f" It holds {others}: re-save it with transformers' save_pretrained("
            "safe_serialization=True) to get model.safetensors." if others else "")
    raise CheckpointError(f"{directory}: no {WEIGHTS_FILE} (nor {INDEX_FILE}).{hint}")
  tensors = {}
  for path in files:
    if not io.exists(path):
      raise CheckpointError(f"{path}: listed in {INDEX_FILE} but missing.")
    try:
      tensors.update(safetensors_numpy.load(io.read_bytes(path)))
    except Exception as e:  # safetensors raises its own error types for corrupt headers
      raise CheckpointError(f"{path}: not a readable safetensors file ({e}).") from e
  return tensors


def assign_weights(model: clip_model.CLIPModel, config: config_lib.CLIPConfig,
                   tensors: Dict[str, np.ndarray], source: str) -> None:
  """Copies every mapped tensor into `model`; first checks all of them, then assigns."""
  variables = {v.name.split(":")[0]: v for v in model.weights}
  problems: List[str] = []
  assignments = []
  for hf_name, (name, layout) in weight_map(config).items():
    variable = variables[name]
    expected = hf_shape(layout, tuple(variable.shape))
    if hf_name not in tensors:
      problems.append(f"missing tensor '{hf_name}' (expected shape {list(expected)})")
      continue
    tensor = tensors[hf_name]
    if tuple(tensor.shape) != expected:
      problems.append(f"tensor '{hf_name}' has shape {list(tensor.shape)}, expected "
                      f"{list(expected)}")
      continue
    assignments.append((variable, to_vild(layout, tensor, variable.shape)))
  if problems:
    shown = "\n  ".join(problems[:20])
    more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
    raise CheckpointError(
        f"{source}: the weights do not fit the CLIP described by its config.json "
        f"({len(problems)} problems):\n  {shown}{more}\nUse the config.json saved with "
        "these weights, from a transformers CLIPModel checkpoint.")
  unused = sorted(set(tensors) - set(weight_map(config)))
  unused = [n for n in unused if not n.endswith(_IGNORED_SUFFIXES)]
  if unused:
    logging.warning("%s: %d tensors are not used by vild's CLIP, e.g. %s", source,
                    len(unused), unused[:5])
  for variable, value in assignments:
    variable.assign(value.astype(np.float32))


def load_clip(directory: str
              ) -> Tuple[clip_model.CLIPModel, tokenizer_lib.ClipTokenizer,
                         config_lib.CLIPConfig]:
  """(model with the checkpoint's weights, its tokenizer, its config) from a directory."""
  config = read_config(directory)
  tokenizer = tokenizer_lib.ClipTokenizer.from_directory(directory,
                                                        config.text.context_length)
  if tokenizer.vocab_size > config.text.vocab_size:
    raise CheckpointError(
        f"{directory}: the tokenizer has {tokenizer.vocab_size} tokens but config.json says "
        f"the text tower embeds {config.text.vocab_size}; the tokenizer files belong to "
        "another model.")
  model = clip_model.build_clip_model(config)
  assign_weights(model, config, read_tensors(directory), source=directory)
  return model, tokenizer, config


# --------------------------------------------------------------------------------------------
# Writing (e.g. a tiny teacher trained from scratch), readable by vild and by transformers.
def save_clip(directory: str, model: clip_model.CLIPModel,
              tokenizer: tokenizer_lib.ClipTokenizer, config: config_lib.CLIPConfig) -> None:
  """Writes a Hugging Face CLIP directory; each file appears complete or not at all."""
  variables = {v.name.split(":")[0]: v for v in model.weights}
  tensors = {hf_name: to_hf(layout, variables[name].numpy())
             for hf_name, (name, layout) in weight_map(config).items()}
  save_tensors(directory, tensors, tokenizer, config)


def random_tensors(config: config_lib.CLIPConfig, seed: int = 0) -> Dict[str, np.ndarray]:
  """Every Hugging Face tensor of a random CLIP of `config`'s sizes, from numpy's seeded
  generator only (the same seed gives the same bytes on any machine).

  Weights and embeddings ~ N(0, 0.02^2) (transformers' initializer_range); layer-norm scales
  1 + N(0, 0.1^2) and biases N(0, 0.1^2), off their 1/0 init so that a transposed or swapped
  tensor changes the outputs; the logit scale is CLIP's initial log(1 / 0.07).
  """
  model = clip_model.build_clip_model(config)  # only for the variable shapes
  shapes = {v.name.split(":")[0]: tuple(v.shape) for v in model.weights}
  rng = np.random.default_rng(seed)
  tensors = {}
  for hf_name, (name, layout) in weight_map(config).items():
    shape = hf_shape(layout, shapes[name])
    if hf_name == "logit_scale":
      value = np.float32(np.log(1 / 0.07))
    elif "norm" in hf_name and hf_name.endswith("weight"):
      value = 1.0 + 0.1 * rng.standard_normal(shape)
    elif hf_name.endswith("bias"):
      value = 0.1 * rng.standard_normal(shape)
    else:
      value = 0.02 * rng.standard_normal(shape)
    tensors[hf_name] = np.asarray(value, np.float32)
  return tensors


def write_random_clip(directory: str, config: config_lib.CLIPConfig, seed: int = 0,
                      tokenizer: Optional[tokenizer_lib.ClipTokenizer] = None) -> None:
  """Writes a random-weight CLIP of any sizes as a Hugging Face directory (no torch).

  The tokenizer defaults to the packaged one (`tokenizer.default_tokenizer()`); the text
  tower's vocabulary size and end token must be the tokenizer's (`config_for_tokenizer`).
  """
  tokenizer = tokenizer or tokenizer_lib.default_tokenizer(config.text.context_length)
  if (config.text.vocab_size, config.text.end_token_id) != (tokenizer.vocab_size,
                                                            tokenizer.end_id):
    raise CheckpointError(
        f"CLIP config {config.name!r}: text vocab_size {config.text.vocab_size} and "
        f"end_token_id {config.text.end_token_id} must be the tokenizer's "
        f"({tokenizer.vocab_size}, {tokenizer.end_id}); use config_for_tokenizer.")
  save_tensors(directory, random_tensors(config, seed), tokenizer, config)


def config_for_tokenizer(config: config_lib.CLIPConfig,
                         tokenizer: tokenizer_lib.ClipTokenizer) -> config_lib.CLIPConfig:
  """`config` with the text tower's vocabulary and end token set to the tokenizer's."""
  return dataclasses.replace(config, text=dataclasses.replace(
      config.text, vocab_size=tokenizer.vocab_size, end_token_id=tokenizer.end_id))


def save_tensors(directory: str, tensors: Dict[str, np.ndarray],
                 tokenizer: tokenizer_lib.ClipTokenizer, config: config_lib.CLIPConfig) -> None:
  """Writes Hugging Face-layout `tensors` with config, tokenizer and preprocessor files."""
  io.makedirs(directory)
  tensors = {k: np.array(v, order="C") for k, v in tensors.items()}
  io.write_bytes_atomic(os.path.join(directory, WEIGHTS_FILE),
                        safetensors_numpy.save(tensors, metadata={"format": "pt"}))
  io.write_text_atomic(os.path.join(directory, "config.json"),
                       json.dumps(hf_config(config, tokenizer), indent=1) + "\n")
  io.write_text_atomic(os.path.join(directory, "vocab.json"),
                       json.dumps(tokenizer.encoder, ensure_ascii=False) + "\n")
  merges = sorted(tokenizer.ranks, key=tokenizer.ranks.get)
  io.write_text_atomic(os.path.join(directory, "merges.txt"),
                       "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
  io.write_text_atomic(os.path.join(directory, "preprocessor_config.json"), json.dumps({
      "image_processor_type": "CLIPImageProcessor", "do_resize": True, "do_center_crop": True,
      "size": {"shortest_edge": config.vision.image_size},
      "crop_size": {"height": config.vision.image_size, "width": config.vision.image_size},
      "resample": 3, "image_mean": list(config.image_mean), "image_std": list(config.image_std),
  }, indent=1) + "\n")


def hf_config(config: config_lib.CLIPConfig, tokenizer: tokenizer_lib.ClipTokenizer) -> dict:
  """A transformers CLIPModel config.json for `config`."""
  v, t = config.vision, config.text
  common = dict(hidden_act=config.activation, layer_norm_eps=config.layer_norm_epsilon)
  return {
      "architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": config.embed_dim,
      "text_config": dict(
          vocab_size=t.vocab_size, max_position_embeddings=t.context_length,
          hidden_size=t.width, num_hidden_layers=t.layers, num_attention_heads=t.heads,
          intermediate_size=t.mlp_dim, bos_token_id=tokenizer.start_id,
          # 2 tells transformers to pool at the largest id, vild's `end_token_id=None` rule.
          eos_token_id=tokenizer.end_id if t.end_token_id is not None else 2,
          pad_token_id=tokenizer.end_id, **common),
      "vision_config": dict(
          image_size=v.image_size, patch_size=v.patch_size, hidden_size=v.width,
          num_hidden_layers=v.layers, num_attention_heads=v.heads,
          intermediate_size=v.mlp_dim, num_channels=3, **common),
  }
