"""CLIP in tf_keras: a ViT image tower and a causal text transformer projected to one space.

The transformer blocks are the Model Garden's pre-LN `TransformerEncoderBlock` (the block of
official.vision's ViT) with CLIP's activation and layer-norm epsilon. What is CLIP's own lives
here: the ViT stem (bias-free patch convolution, class token, learned positions, `ln_pre`),
pooling (class token after `ln_post`; text at the end-of-text token after `ln_final`), the
bias-free projections and the learned logit scale.

Towers return unnormalised projections; `vild.teacher.clip_teacher` normalises. Everything is
float32, trainable and batched (no per-example Python), so the same model serves as a frozen
teacher under `tf.function(jit_compile=True)` and as a tiny teacher trained from scratch.
"""
import math
from typing import Optional

import tensorflow as tf
import tf_keras

from official.nlp.modeling import layers as nlp_layers
from vild.teacher import clip_config as config_lib


@tf_keras.utils.register_keras_serializable(package="vild")
def quick_gelu(x):
  """OpenAI CLIP's GELU approximation, x * sigmoid(1.702 x); its weights were trained with it."""
  return x * tf.sigmoid(1.702 * x)


def _activation_name(activation: str) -> str:
  return "vild>quick_gelu" if activation == "quick_gelu" else activation


class Transformer(tf_keras.layers.Layer):
  """`layers` pre-LN blocks of width `width`; `causal` masks attention to earlier tokens."""

  def __init__(self, width: int, layers: int, heads: int, mlp_dim: int,
               activation: str = "quick_gelu", layer_norm_epsilon: float = 1e-5,
               causal: bool = False, **kwargs):
    super().__init__(**kwargs)
    self._config = dict(width=width, layers=layers, heads=heads, mlp_dim=mlp_dim,
                        activation=activation, layer_norm_epsilon=layer_norm_epsilon,
                        causal=causal)
    self.causal = causal
    self.blocks = [
        nlp_layers.TransformerEncoderBlock(
            num_attention_heads=heads, inner_dim=mlp_dim,
            inner_activation=_activation_name(activation), norm_first=True,
            norm_epsilon=layer_norm_epsilon, name=f"block_{i}")
        for i in range(layers)
    ]

  def call(self, x):  # x: [N, T, width]
    mask = None
    if self.causal:
      length = tf.shape(x)[1]
      lower = tf.linalg.band_part(tf.ones([length, length], x.dtype), -1, 0)
      mask = tf.tile(lower[tf.newaxis], [tf.shape(x)[0], 1, 1])  # [N, T, T]
    for block in self.blocks:
      x = block([x, mask]) if mask is not None else block(x)
    return x

  def get_config(self):
    return {**super().get_config(), **self._config}


class VisionTower(tf_keras.layers.Layer):
  """ViT: normalised pixels [N, S, S, 3] -> class-token projection [N, embed_dim]."""

  def __init__(self, image_size: int, patch_size: int, width: int, layers: int, heads: int,
               mlp_dim: int, embed_dim: int, activation: str = "quick_gelu",
               layer_norm_epsilon: float = 1e-5, **kwargs):
    super().__init__(**kwargs)
    self._config = dict(image_size=image_size, patch_size=patch_size, width=width,
                        layers=layers, heads=heads, mlp_dim=mlp_dim, embed_dim=embed_dim,
                        activation=activation, layer_norm_epsilon=layer_norm_epsilon)
    self.image_size = image_size
    self.num_positions = (image_size // patch_size) ** 2 + 1
    self.patch_embedding = tf_keras.layers.Conv2D(
        width, patch_size, strides=patch_size, use_bias=False, name="patch_embedding")
    self.ln_pre = tf_keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, name="ln_pre")
    self.transformer = Transformer(width, layers, heads, mlp_dim, activation,
                                   layer_norm_epsilon, name="transformer")
    self.ln_post = tf_keras.layers.LayerNormalization(
        epsilon=layer_norm_epsilon, name="ln_post")
    self.projection = tf_keras.layers.Dense(embed_dim, use_bias=False, name="projection")
    self.width = width

  def build(self, input_shape):
    scale = self.width ** -0.5
    self.class_embedding = self.add_weight(
        "class_embedding", [self.width],
        initializer=tf_keras.initializers.RandomNormal(stddev=scale))
    self.position_embedding = self.add_weight(
        "position_embedding", [self.num_positions, self.width],
        initializer=tf_keras.initializers.RandomNormal(stddev=scale))
    super().build(input_shape)

  def call(self, pixels):
    patches = self.patch_embedding(pixels)  # [N, S/p, S/p, width]
    batch = tf.shape(patches)[0]
    patches = tf.reshape(patches, [batch, -1, self.width])
    class_token = tf.tile(self.class_embedding[tf.newaxis, tf.newaxis], [batch, 1, 1])
    x = tf.concat([class_token, patches], axis=1) + self.position_embedding  # [N, P+1, width]
    x = self.transformer(self.ln_pre(x))
    return self.projection(self.ln_post(x[:, 0]))

  def get_config(self):
    return {**super().get_config(), **self._config}


class TextTower(tf_keras.layers.Layer):
  """Causal transformer: token ids [N, L] -> end-of-text projection [N, embed_dim]."""

  def __init__(self, vocab_size: int, context_length: int, width: int, layers: int,
               heads: int, mlp_dim: int, embed_dim: int, activation: str = "quick_gelu",
               layer_norm_epsilon: float = 1e-5, end_token_id: Optional[int] = None,
               **kwargs):
    super().__init__(**kwargs)
    self._config = dict(vocab_size=vocab_size, context_length=context_length, width=width,
                        layers=layers, heads=heads, mlp_dim=mlp_dim, embed_dim=embed_dim,
                        activation=activation, layer_norm_epsilon=layer_norm_epsilon,
                        end_token_id=end_token_id)
    self.context_length = context_length
    self.end_token_id = end_token_id
    self.width = width
    self.token_embedding = tf_keras.layers.Embedding(
        vocab_size, width, embeddings_initializer=tf_keras.initializers.RandomNormal(
            stddev=0.02), name="token_embedding")
    self.transformer = Transformer(width, layers, heads, mlp_dim, activation,
                                   layer_norm_epsilon, causal=True, name="transformer")
    self.ln_final = tf_keras.layers.LayerNormalization(
        epsilon=layer_norm_epsilon, name="ln_final")
    self.projection = tf_keras.layers.Dense(embed_dim, use_bias=False, name="projection")

  def build(self, input_shape):
    self.position_embedding = self.add_weight(
        "position_embedding", [self.context_length, self.width],
        initializer=tf_keras.initializers.RandomNormal(stddev=0.01))
    super().build(input_shape)

  def call(self, token_ids):  # [N, L] int, L <= context_length
    token_ids = tf.cast(token_ids, tf.int32)
    length = tf.shape(token_ids)[1]
    x = self.token_embedding(token_ids) + self.position_embedding[:length]
    x = self.ln_final(self.transformer(x))  # [N, L, width]
    if self.end_token_id is None:
      end = tf.argmax(token_ids, axis=-1, output_type=tf.int32)
    else:  # the first end token: padding may repeat it
      end = tf.argmax(tf.cast(token_ids == self.end_token_id, tf.int32), axis=-1,
                      output_type=tf.int32)
    return self.projection(tf.gather(x, end, batch_dims=1))

  def get_config(self):
    return {**super().get_config(), **self._config}


class CLIPModel(tf_keras.Model):
  """The dual encoder. `call({'pixels', 'token_ids'})` returns image-to-text logits."""

  def __init__(self, vision_tower: VisionTower, text_tower: TextTower,
               logit_scale_init: float = math.log(1 / 0.07), **kwargs):
    super().__init__(**kwargs)
    self._config = dict(vision_tower=vision_tower, text_tower=text_tower,
                        logit_scale_init=logit_scale_init)
    self.vision_tower = vision_tower
    self.text_tower = text_tower
    self.logit_scale = self.add_weight(
        "logit_scale", [], initializer=tf_keras.initializers.Constant(logit_scale_init))

  def encode_image(self, pixels):
    """[N, S, S, 3] CLIP-normalised pixels -> [N, embed_dim], not normalised."""
    return self.vision_tower(pixels)

  def encode_text(self, token_ids):
    """[N, L] token ids -> [N, embed_dim], not normalised."""
    return self.text_tower(token_ids)

  def call(self, inputs):
    image = tf.math.l2_normalize(self.encode_image(inputs["pixels"]), axis=-1)
    text = tf.math.l2_normalize(self.encode_text(inputs["token_ids"]), axis=-1)
    return tf.exp(self.logit_scale) * tf.matmul(image, text, transpose_b=True)  # [Ni, Nt]

  def get_config(self):
    return dict(self._config)

  @classmethod
  def from_config(cls, config, custom_objects=None):
    return cls(**config)


def build_clip_model(config: config_lib.CLIPConfig) -> CLIPModel:
  """An untrained CLIP of `config`'s sizes, with every weight created."""
  v, t = config.vision, config.text
  common = dict(embed_dim=config.embed_dim, activation=config.activation,
                layer_norm_epsilon=config.layer_norm_epsilon)
  model = CLIPModel(
      VisionTower(v.image_size, v.patch_size, v.width, v.layers, v.heads, v.mlp_dim,
                  name="vision", **common),
      TextTower(t.vocab_size, t.context_length, t.width, t.layers, t.heads, t.mlp_dim,
                end_token_id=t.end_token_id, name="text", **common),
      name=f"clip_{config.name}")
  model.encode_image(tf.zeros([1, v.image_size, v.image_size, 3]))
  model.encode_text(tf.zeros([1, t.context_length], tf.int32))
  return model
