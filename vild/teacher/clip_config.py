"""CLIP architecture configs: the named presets (ViT-B/32, ViT-B/16, ViT-L/14, tiny) and
the reader for a Hugging Face `config.json`.

A config says only what the weights need (sizes, activation, layer-norm epsilon, how the text
tower finds its end token) plus the image-normalisation constants of the checkpoint.
"""
import dataclasses
import os
from typing import Optional, Tuple

from vild.utils import io

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # RGB, on [0, 1] pixels
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
ACTIVATIONS = ("quick_gelu", "gelu")


class CLIPConfigError(ValueError):
  """A CLIP config is missing a field or holds sizes that cannot fit together."""


@dataclasses.dataclass(frozen=True)
class VisionConfig:
  """ViT image tower: `image_size`^2 inputs cut into `patch_size`^2 patches."""
  image_size: int = 224
  patch_size: int = 32
  width: int = 768
  layers: int = 12
  heads: int = 12
  mlp_dim: int = 3072

  @property
  def num_patches(self) -> int:
    return (self.image_size // self.patch_size) ** 2


@dataclasses.dataclass(frozen=True)
class TextConfig:
  """Causal text transformer pooled at the end-of-text token.

  `end_token_id` None means "the largest id in the row", which is OpenAI CLIP's rule (its
  <|endoftext|> is the last vocabulary entry); Hugging Face configs name the id instead.
  """
  vocab_size: int = 49408
  context_length: int = 77
  width: int = 512
  layers: int = 12
  heads: int = 8
  mlp_dim: int = 2048
  end_token_id: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class CLIPConfig:
  """A dual encoder: both towers project to `embed_dim`."""
  name: str
  embed_dim: int
  vision: VisionConfig
  text: TextConfig
  activation: str = "quick_gelu"
  layer_norm_epsilon: float = 1e-5
  image_mean: Tuple[float, float, float] = CLIP_MEAN
  image_std: Tuple[float, float, float] = CLIP_STD

  def __post_init__(self):
    v, t = self.vision, self.text
    problems = []
    if v.image_size % v.patch_size:
      problems.append(f"image_size {v.image_size} is not a multiple of patch_size "
                      f"{v.patch_size}")
    if v.width % v.heads:
      problems.append(f"vision width {v.width} is not divisible by {v.heads} heads")
    if t.width % t.heads:
      problems.append(f"text width {t.width} is not divisible by {t.heads} heads")
    if self.activation not in ACTIVATIONS:
      problems.append(f"activation {self.activation!r} is not one of {ACTIVATIONS}")
    if t.end_token_id is not None and not 0 <= t.end_token_id < t.vocab_size:
      problems.append(f"end_token_id {t.end_token_id} is outside the vocabulary of "
                      f"{t.vocab_size}")
    if problems:
      raise CLIPConfigError(f"CLIP config {self.name!r}: " + "; ".join(problems) + ".")

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


_VIT_B32 = CLIPConfig(
    name="vit_b32", embed_dim=512,
    vision=VisionConfig(224, 32, 768, 12, 12, 3072),
    text=TextConfig(49408, 77, 512, 12, 8, 2048))

PRESETS = {
    "vit_b32": _VIT_B32,
    # ViT-B/16 differs from ViT-B/32 only in its patch size.
    "vit_b16": dataclasses.replace(
        _VIT_B32, name="vit_b16", vision=dataclasses.replace(_VIT_B32.vision, patch_size=16)),
    "vit_l14": CLIPConfig(
        name="vit_l14", embed_dim=768,
        vision=VisionConfig(224, 14, 1024, 24, 16, 4096),
        text=TextConfig(49408, 77, 768, 12, 12, 3072)),
    # Tests and the synthetic world: the vocabulary of `tokenizer.default_tokenizer()`.
    "tiny": CLIPConfig(
        name="tiny", embed_dim=16,
        vision=VisionConfig(32, 8, 32, 2, 2, 64),
        text=TextConfig(4610, 77, 32, 2, 2, 64)),
}


def preset(name: str) -> CLIPConfig:
  if name not in PRESETS:
    raise CLIPConfigError(f"unknown CLIP preset {name!r}; choose one of {sorted(PRESETS)}.")
  return PRESETS[name]


def from_hf_config(config: dict, name: str = "hf", source: str = "<config>") -> CLIPConfig:
  """A CLIPConfig from a Hugging Face CLIPModel `config.json` dict; errors name `source`."""
  try:
    return _config_from_hf(config, name)
  except CLIPConfigError as e:
    raise CLIPConfigError(f"{source}: {e}") from e


def _config_from_hf(config: dict, name: str) -> CLIPConfig:
  def field(section: str, key: str):
    part = config.get(section)
    if not isinstance(part, dict) or key not in part:
      raise CLIPConfigError(
          f"'{section}.{key}' is missing; expected a transformers CLIPModel config.json "
          "(with projection_dim, text_config and vision_config).")
    return part[key]

  activation = config.get("vision_config", {}).get("hidden_act", "quick_gelu")
  text_activation = config.get("text_config", {}).get("hidden_act", "quick_gelu")
  if activation != text_activation:
    raise CLIPConfigError(f"text and vision towers use different activations "
                          f"({text_activation!r}, {activation!r}); vild supports one for both.")
  if "projection_dim" not in config:
    raise CLIPConfigError("'projection_dim' is missing; is this a CLIPModel config.json?")
  eos = config.get("text_config", {}).get("eos_token_id", 2)
  return CLIPConfig(
      name=name,
      embed_dim=int(config["projection_dim"]),
      vision=VisionConfig(
          image_size=int(field("vision_config", "image_size")),
          patch_size=int(field("vision_config", "patch_size")),
          width=int(field("vision_config", "hidden_size")),
          layers=int(field("vision_config", "num_hidden_layers")),
          heads=int(field("vision_config", "num_attention_heads")),
          mlp_dim=int(field("vision_config", "intermediate_size"))),
      text=TextConfig(
          vocab_size=int(field("text_config", "vocab_size")),
          context_length=int(field("text_config", "max_position_embeddings")),
          width=int(field("text_config", "hidden_size")),
          layers=int(field("text_config", "num_hidden_layers")),
          heads=int(field("text_config", "num_attention_heads")),
          mlp_dim=int(field("text_config", "intermediate_size")),
          # eos_token_id 2 is the placeholder of early transformers configs, which pooled
          # at the largest id; transformers keeps that rule for them, and so do we.
          end_token_id=None if eos == 2 else int(eos)),
      activation=activation,
      layer_norm_epsilon=float(config.get("text_config", {}).get("layer_norm_eps", 1e-5)),
  )


def read_preprocessor_config(directory: str) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
  """(mean, std) from `preprocessor_config.json` if present, else CLIP's constants."""
  path = os.path.join(directory, "preprocessor_config.json")
  if not io.exists(path):
    return CLIP_MEAN, CLIP_STD
  data = io.read_json(path)
  mean = tuple(float(x) for x in data.get("image_mean", CLIP_MEAN))
  std = tuple(float(x) for x in data.get("image_std", CLIP_STD))
  if len(mean) != 3 or len(std) != 3:
    raise CLIPConfigError(f"{path}: image_mean and image_std must have 3 values (RGB).")
  return mean, std
