"""Writes tests/fixtures/tiny_clip/: a tiny random CLIP made by the reference implementation.

The fixture is a Hugging Face CLIPModel checkpoint directory (config.json, model.safetensors,
tokenizer and preprocessor files) with random weights of vild's `tiny` sizes, plus
`expected.npz` / `expected.json`: token ids, text embeddings and image embeddings that
transformers (PyTorch) computes for fixed texts and images. tests/test_teacher_clip.py loads
it in vild's TensorFlow CLIP and must match; the test itself needs no torch.

This script runs in a separate environment that has torch and transformers (never the
project's):

  python3 -m venv /tmp/venv-torch
  /tmp/venv-torch/bin/pip install torch transformers safetensors numpy pillow ftfy regex
  /tmp/venv-torch/bin/pip install --no-deps open_clip_torch  # optional second reference
  PYTHONPATH=. /tmp/venv-torch/bin/python scripts/make_clip_test_fixture.py

Token ids are checked against two references: transformers' CLIPTokenizer and, when
open_clip is installed, OpenAI's original `simple_tokenizer` (as shipped in open_clip).
"""
import argparse
import importlib.util
import json
import os
import sys

import numpy as np
import torch
import transformers
from transformers.models.clip import image_processing_pil_clip

from vild.teacher import clip_config
from vild.teacher import tokenizer as tokenizer_lib

# Texts whose ids both references agree on (HF does not unescape HTML; CLIP does, so HTML
# entities are tested separately).
TEXTS = [
    "a photo of a cat.",
    "This is a photo of a Traffic Light",
    "There is an umbrella in the scene.",
    "  multiple   spaces\tand\nnewlines  ",
    "it's the dog's toy; isn't it?",
    "café crème brûlée",
    "R2-D2 costs $1,234.50!!",
    "日本の猫 and a 🚗",
    "a photo of a " + " ".join(["very"] * 90) + " long caption",  # truncated at 77
]


def image_fixtures(rng: np.random.Generator, size: int):
  """Three square images at the model's input size and one that needs resize + crop."""
  yy, xx = np.mgrid[0:size, 0:size] / size
  gradient = np.stack([yy, xx, 1 - yy], -1) * 255
  checker = ((np.floor(yy * 4) + np.floor(xx * 4)) % 2)[..., None] * np.array([250, 30, 90])
  noise = rng.integers(0, 256, (size, size, 3))
  square = np.stack([gradient, checker, noise]).round().astype(np.uint8)  # [3, S, S, 3]
  h, w = size + size // 4, 2 * size - 3  # 40 x 61 for S = 32: both resize and crop
  yy, xx = np.mgrid[0:h, 0:w]
  smooth = np.stack([127 + 100 * np.sin(xx / 5.0), 127 + 100 * np.cos(yy / 4.0),
                     255 * xx / w], -1)
  raw = smooth.round().clip(0, 255).astype(np.uint8)[None]  # [1, h, w, 3]
  return square, raw


def reference_ids(directory: str, texts, hf_tokenizer, bpe_path: str):
  hf = [hf_tokenizer(t, truncation=True, max_length=77)["input_ids"] for t in texts]
  spec = importlib.util.find_spec("open_clip")
  if spec is None:
    print("open_clip not installed: token ids checked against transformers only.")
    return hf
  # Only its tokenizer module: the package's __init__ would need torchvision.
  path = os.path.join(spec.submodule_search_locations[0], "tokenizer.py")
  module_spec = importlib.util.spec_from_file_location("openai_clip_tokenizer", path)
  oc_tokenizer = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(oc_tokenizer)
  openai = oc_tokenizer.SimpleTokenizer(bpe_path)
  for text, ids in zip(texts, hf):
    ref = [openai.sot_token_id] + openai.encode(text)[:75] + [openai.eot_token_id]
    if ref != ids:
      sys.exit(f"references disagree on {text!r}:\n transformers {ids}\n openai {ref}")
  return hf


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--output_dir", default="tests/fixtures/tiny_clip")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  os.makedirs(args.output_dir, exist_ok=True)
  torch.manual_seed(args.seed)
  rng = np.random.default_rng(args.seed)
  tiny = clip_config.preset("tiny")

  # Tokenizer files: vild's packaged vocabulary, written in Hugging Face's layout.
  ours = tokenizer_lib.default_tokenizer()
  vocab = {t: i for t, i in sorted(ours.encoder.items(), key=lambda kv: kv[1])}
  merges = sorted(ours.ranks, key=ours.ranks.get)
  with open(os.path.join(args.output_dir, "vocab.json"), "w", encoding="utf-8") as f:
    json.dump(vocab, f, ensure_ascii=False)
  with open(os.path.join(args.output_dir, "merges.txt"), "w", encoding="utf-8") as f:
    f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
  hf_tokenizer = transformers.CLIPTokenizer.from_pretrained(args.output_dir)
  hf_tokenizer.save_pretrained(args.output_dir)

  config = transformers.CLIPConfig(
      projection_dim=tiny.embed_dim,
      text_config=dict(
          vocab_size=tiny.text.vocab_size, hidden_size=tiny.text.width,
          intermediate_size=tiny.text.mlp_dim, num_hidden_layers=tiny.text.layers,
          num_attention_heads=tiny.text.heads, max_position_embeddings=tiny.text.context_length,
          hidden_act="quick_gelu", bos_token_id=ours.start_id, eos_token_id=ours.end_id,
          pad_token_id=ours.end_id),
      vision_config=dict(
          image_size=tiny.vision.image_size, patch_size=tiny.vision.patch_size,
          hidden_size=tiny.vision.width, intermediate_size=tiny.vision.mlp_dim,
          num_hidden_layers=tiny.vision.layers, num_attention_heads=tiny.vision.heads,
          hidden_act="quick_gelu"))
  model = transformers.CLIPModel(config).eval()
  with torch.no_grad():  # move biases and norms off their zero/one init so a mix-up shows
    for name, param in model.named_parameters():
      if name.endswith("bias") or "norm" in name:
        param.add_(0.1 * torch.randn_like(param))
  model.save_pretrained(args.output_dir, safe_serialization=True)

  processor = image_processing_pil_clip.CLIPImageProcessorPil(
      size={"shortest_edge": tiny.vision.image_size},
      crop_size={"height": tiny.vision.image_size, "width": tiny.vision.image_size})
  processor.save_pretrained(args.output_dir)

  bpe_path = tokenizer_lib.DEFAULT_BPE_PATH
  ids = reference_ids(args.output_dir, TEXTS, hf_tokenizer, bpe_path)
  padded = np.zeros((len(ids), 77), np.int32)
  for row, seq in enumerate(ids):
    padded[row, :len(seq)] = seq

  square, raw = image_fixtures(rng, tiny.vision.image_size)
  with torch.no_grad():
    text_inputs = hf_tokenizer(TEXTS, truncation=True, max_length=77, padding="max_length",
                               return_tensors="pt")
    text_embeds = model.get_text_features(**text_inputs)
    text_embeds = getattr(text_embeds, "pooler_output", text_embeds)
    pixels = {}
    embeds = {}
    for key, images in (("square", square), ("raw", raw)):
      pix = processor(list(images), return_tensors="pt")["pixel_values"]
      out = model.get_image_features(pixel_values=pix)
      pixels[key] = pix.numpy().transpose(0, 2, 3, 1)  # NCHW -> NHWC
      embeds[key] = getattr(out, "pooler_output", out).numpy()

  normalize = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
  np.savez_compressed(
      os.path.join(args.output_dir, "expected.npz"),
      token_ids=padded,
      text_embeds=normalize(text_embeds.numpy()).astype(np.float32),
      square_images=square, square_pixel_values=pixels["square"].astype(np.float32),
      square_image_embeds=normalize(embeds["square"]).astype(np.float32),
      raw_image=raw, raw_pixel_values=pixels["raw"].astype(np.float32),
      raw_image_embeds=normalize(embeds["raw"]).astype(np.float32),
      logit_scale=np.float32(model.logit_scale.item()))
  with open(os.path.join(args.output_dir, "expected.json"), "w", encoding="utf-8") as f:
    json.dump({"texts": TEXTS, "torch": torch.__version__,
               "transformers": transformers.__version__, "seed": args.seed}, f, indent=1,
              ensure_ascii=False)
  total = sum(os.path.getsize(os.path.join(args.output_dir, n))
              for n in os.listdir(args.output_dir))
  print(f"wrote {args.output_dir}: {sorted(os.listdir(args.output_dir))}, {total / 1e6:.2f} MB")


if __name__ == "__main__":
  main()
