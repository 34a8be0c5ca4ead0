r"""Writes a random-weight CLIP checkpoint directory (Hugging Face layout) of any sizes; no torch.

  # The tiny architecture at the tiny configs' 32 dimensions (tests/fixtures/tiny_clip_32d):
  python scripts/make_random_clip.py --output_dir=clip-tiny --embed_dim=32
  # A stand-in for CLIP ViT-B/32's 512-d embeddings, tiny and fast (pipeline mechanics only):
  python scripts/make_random_clip.py --output_dir=clip-random-512 --embed_dim=512
  # ViT-B/32's full architecture, random weights:
  python scripts/make_random_clip.py --output_dir=clip-b32-random --preset=vit_b32

Writes config.json (a transformers CLIPModel config), model.safetensors, vocab.json,
merges.txt and preprocessor_config.json, which vild.teacher and transformers both load. The
tokenizer is vild's packaged BPE vocabulary (4,610 tokens, tokenizer.default_tokenizer), so
the text tower's vocabulary has that size. Weights come from numpy's generator seeded with
--seed: the same command writes the same bytes. Random weights embed names and crops
consistently but meaninglessly: use a real CLIP (docs/teacher.md) for results.
"""
from vild.utils import cli

cli.quiet_native_logs()  # before TensorFlow loads: it reads its C++ log level once

import dataclasses  # noqa: E402

from absl import flags  # noqa: E402

from vild.teacher import checkpoint  # noqa: E402
from vild.teacher import clip_config  # noqa: E402
from vild.teacher import tokenizer as tokenizer_lib  # noqa: E402
from vild.utils import gin_config  # noqa: E402

flags.DEFINE_string("output_dir", None, "The checkpoint directory to write.")
flags.DEFINE_enum("preset", "tiny", sorted(clip_config.PRESETS), "Architecture to start from.")
flags.DEFINE_integer("embed_dim", None, "Projection (embedding) dimension D; default the "
                     "preset's. The detector's build_vild_model.embedding_dim must equal it.")
flags.DEFINE_integer("image_size", None, "Image tower input side (a multiple of patch_size).")
flags.DEFINE_integer("patch_size", None, "ViT patch side.")
flags.DEFINE_integer("vision_width", None, "Image tower width.")
flags.DEFINE_integer("vision_layers", None, "Image tower blocks.")
flags.DEFINE_integer("vision_heads", None, "Image tower attention heads.")
flags.DEFINE_integer("text_width", None, "Text tower width.")
flags.DEFINE_integer("text_layers", None, "Text tower blocks.")
flags.DEFINE_integer("text_heads", None, "Text tower attention heads.")
flags.DEFINE_integer("context_length", None, "Text tokens per prompt (CLIP: 77).")
flags.DEFINE_integer("seed", 0, "Seed of the weights.")
flags.mark_flag_as_required("output_dir")
FLAGS = flags.FLAGS


def configured() -> clip_config.CLIPConfig:
  """The preset with the size flags applied (MLP widths stay 4x the tower width)."""
  base = clip_config.preset(FLAGS.preset)

  def pick(flag, default):
    return default if flag is None else flag

  v, t = base.vision, base.text
  vision_width, text_width = pick(FLAGS.vision_width, v.width), pick(FLAGS.text_width, t.width)
  vision = clip_config.VisionConfig(
      pick(FLAGS.image_size, v.image_size), pick(FLAGS.patch_size, v.patch_size), vision_width,
      pick(FLAGS.vision_layers, v.layers), pick(FLAGS.vision_heads, v.heads),
      v.mlp_dim if FLAGS.vision_width is None else 4 * vision_width)
  text = dataclasses.replace(
      t, context_length=pick(FLAGS.context_length, t.context_length), width=text_width,
      layers=pick(FLAGS.text_layers, t.layers), heads=pick(FLAGS.text_heads, t.heads),
      mlp_dim=t.mlp_dim if FLAGS.text_width is None else 4 * text_width)
  return clip_config.CLIPConfig(name=f"random_{FLAGS.preset}",
                                embed_dim=pick(FLAGS.embed_dim, base.embed_dim),
                                vision=vision, text=text)


def main(argv):
  del argv
  gin_config.parse_flags()
  config = configured()
  tokenizer = tokenizer_lib.default_tokenizer(config.text.context_length)
  config = checkpoint.config_for_tokenizer(config, tokenizer)
  checkpoint.write_random_clip(FLAGS.output_dir, config, seed=FLAGS.seed, tokenizer=tokenizer)
  print(f"wrote {FLAGS.output_dir}: random CLIP ({FLAGS.preset} architecture), embedding dim "
        f"{config.embed_dim}, image {config.vision.image_size} px, seed {FLAGS.seed}")


if __name__ == "__main__":
  cli.run(main)
