"""Pre-training a small CLIP from scratch on captioned crops: a teacher for a synthetic world.

ViLD distils from a dual encoder that learnt, from image-text pairs, concepts it never saw in
boxes. On the synthetic world (vild.data.synthetic) that teacher is vild's own tf_keras CLIP
at a tiny size, trained here with CLIP's symmetric contrastive (InfoNCE) loss on the world's
captioned crops of ALL categories: like CLIP, it has seen the novel categories in captions,
never in boxes.

  spec = PretrainingSpec()                              # gin: PretrainingSpec.*, teacher_config.*
  report = pretrain_teacher(world_dir, output_dir, spec)

`output_dir` is a Hugging Face CLIP directory (`vild.teacher.checkpoint.save_clip`), loaded by
`vild.teacher.clip_teacher.load_clip_teacher` like any CLIP, plus `pretraining.json`: the
spec, the loss curve, and the zero-shot accuracy on held-out crops for base and novel
categories, computed as ViLD uses the teacher: prompt-ensembled class text embeddings
(`vild.teacher.vocabulary_embeddings`) against crop embeddings.

The loss is CLIP's: each crop's own caption is its only positive. The world has 30 concepts,
so a batch holds several captions of the same category that count as negatives; the option
`category_positives` counts them as positives instead (multi-positive targets, as in UniCL).
The default stays CLIP's label-free loss: with it the teacher already composes colour and
shape words for novel categories (zero-shot accuracy in results/synthetic/RESULTS.md).
"""
import dataclasses
import json
import math
import os
import time
from typing import Dict, List, Sequence, Tuple

from absl import logging
import gin
import numpy as np
import tensorflow as tf
import tf_keras

from vild import vocabulary as vocabulary_lib
from vild.data import synthetic
from vild.teacher import checkpoint
from vild.teacher import clip_config as config_lib
from vild.teacher import clip_model
from vild.teacher import clip_teacher
from vild.teacher import preprocessing
from vild.teacher import tokenizer as tokenizer_lib
from vild.teacher import vocabulary_embeddings
from vild.utils import io

REPORT_FILE = "pretraining.json"


@gin.configurable
def teacher_config(embed_dim: int = 32, image_size: int = 32, patch_size: int = 8,
                   vision_width: int = 64, vision_layers: int = 2, text_width: int = 64,
                   text_layers: int = 2, heads: int = 4, context_length: int = 24
                   ) -> config_lib.CLIPConfig:
  """A small CLIP whose text tower takes the packaged tokenizer's vocabulary.

  `context_length` 24 holds every caption and ViLD prompt of the synthetic world (the longest
  prompt is 17 tokens with start and end); longer texts are cut keeping the end token.
  """
  vocab_size = tokenizer_lib.default_tokenizer().vocab_size
  return config_lib.CLIPConfig(
      name="synthetic_teacher", embed_dim=embed_dim,
      vision=config_lib.VisionConfig(image_size, patch_size, vision_width, vision_layers,
                                     heads, 4 * vision_width),
      text=config_lib.TextConfig(vocab_size, context_length, text_width, text_layers, heads,
                                 4 * text_width))


@gin.configurable
@dataclasses.dataclass(frozen=True)
class PretrainingSpec:
  """How the teacher is trained and evaluated.

  Attributes:
    steps: optimiser steps.
    batch_size: image-caption pairs per step.
    learning_rate: peak AdamW learning rate (linear warm-up, cosine decay to 0).
    warmup_steps: warm-up length.
    weight_decay: AdamW decoupled weight decay.
    category_positives: count pairs of the same category as positives (module doc).
    held_out_per_category: crops per category (and of background) kept out of training for
      the zero-shot test.
    augment: random flips, shifts and brightness (never hue: colour is the category).
    seed: initialisation, batch order, augmentation and the held-out draw.
  """
  steps: int = 1000
  batch_size: int = 256
  learning_rate: float = 2e-3
  warmup_steps: int = 100
  weight_decay: float = 0.05
  category_positives: bool = False
  held_out_per_category: int = 10
  augment: bool = True
  seed: int = 0


# ------------------------------------------------------------------------------------------
# Data.
def split_held_out(category_ids: Sequence[int], per_category: int, seed: int
                   ) -> Tuple[np.ndarray, np.ndarray]:
  """(train indices, held-out indices): `per_category` random crops of each category held out."""
  category_ids = np.asarray(category_ids)
  rng = np.random.default_rng([seed, 7])
  held = []
  for category in np.unique(category_ids):
    members = np.flatnonzero(category_ids == category)
    if len(members) <= per_category:
      raise ValueError(
          f"category {category} has {len(members)} captioned crops, not more than "
          f"held_out_per_category={per_category}; make the world with more crops "
          "(WorldSpec.num_crops) or hold out fewer.")
    held.extend(rng.choice(members, per_category, replace=False).tolist())
  held = np.sort(np.asarray(held, np.int64))
  return np.setdiff1d(np.arange(len(category_ids)), held), held


def augment_crops(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """[N, S, S, 3] float 0..255: random flips, shifts of up to S/8 and brightness x0.85-1.15."""
  size = images.shape[1]
  seeds = tf.random.experimental.stateless_split(seed, 3)
  flip = tf.random.stateless_uniform([tf.shape(images)[0], 1, 1, 1], seeds[0]) < 0.5
  images = tf.where(flip, tf.image.flip_left_right(images), images)
  pad = size // 8
  padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="SYMMETRIC")
  offsets = tf.random.stateless_uniform([2], seeds[1], 0, 2 * pad + 1, tf.int32)
  images = padded[:, offsets[0]:offsets[0] + size, offsets[1]:offsets[1] + size, :]
  scale = tf.random.stateless_uniform([tf.shape(images)[0], 1, 1, 1], seeds[2], 0.85, 1.15)
  return tf.clip_by_value(images * scale, 0.0, 255.0)


def contrastive_loss(logits: tf.Tensor, positives: tf.Tensor) -> tf.Tensor:
  """Symmetric InfoNCE over [N, N] image-to-text logits with [N, N] {0,1} positive pairs.

  With the identity as `positives` this is CLIP's loss; with several positives per row the
  target spreads evenly over them.
  """
  image_targets = positives / tf.reduce_sum(positives, axis=1, keepdims=True)
  text_targets = tf.transpose(positives) / tf.reduce_sum(positives, axis=0)[:, tf.newaxis]
  image_loss = tf.nn.softmax_cross_entropy_with_logits(image_targets, logits)
  text_loss = tf.nn.softmax_cross_entropy_with_logits(text_targets, tf.transpose(logits))
  return (tf.reduce_mean(image_loss) + tf.reduce_mean(text_loss)) / 2


# ------------------------------------------------------------------------------------------
# Training.
def _optimizer(spec: PretrainingSpec) -> tf_keras.optimizers.Optimizer:
  schedule = tf_keras.optimizers.schedules.CosineDecay(
      0.0, max(spec.steps - spec.warmup_steps, 1), warmup_target=spec.learning_rate,
      warmup_steps=spec.warmup_steps)
  optimizer = tf_keras.optimizers.AdamW(schedule, weight_decay=spec.weight_decay,
                                        beta_2=0.98, epsilon=1e-6)
  # CLIP's practice: no decay on gains, biases, embeddings' positions or the logit scale.
  optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias", "position",
                                                 "class_embedding", "logit_scale"])
  return optimizer


def train_clip(crops: np.ndarray, token_ids: np.ndarray, category_ids: np.ndarray,
               config: config_lib.CLIPConfig, spec: PretrainingSpec
               ) -> Tuple[clip_model.CLIPModel, List[float]]:
  """A CLIP of `config` trained on (crop, caption tokens) pairs; returns it and the losses.

  Args:
    crops: [N, S, S, 3] uint8 at the model's image size.
    token_ids: [N, context_length] int32 caption tokens.
    category_ids: [N] the category each caption names (used by `category_positives`).
  """
  if crops.shape[1] != config.vision.image_size:
    raise ValueError(f"crops are {crops.shape[1]} px but the teacher takes "
                     f"{config.vision.image_size} px; set teacher_config.image_size.")
  tf_keras.utils.set_random_seed(spec.seed)  # tf_keras initializers ignore tf.random.set_seed
  model = clip_model.build_clip_model(config)
  optimizer = _optimizer(spec)
  optimizer.build(model.trainable_variables)  # slots now, so the step is traced once
  images = tf.constant(crops)
  tokens = tf.constant(token_ids)
  categories = tf.constant(category_ids, tf.int32)

  @tf.function
  def step(indices, seed):
    pixels = tf.cast(tf.gather(images, indices), tf.float32)
    if spec.augment:
      pixels = augment_crops(pixels, seed)
    pixels = preprocessing.normalize(pixels, config.image_mean, config.image_std)
    batch_categories = tf.gather(categories, indices)
    if spec.category_positives:
      positives = tf.cast(batch_categories[:, None] == batch_categories[None, :], tf.float32)
    else:
      positives = tf.eye(tf.shape(indices)[0])
    with tf.GradientTape() as tape:
      logits = model({"pixels": pixels, "token_ids": tf.gather(tokens, indices)})
      loss = contrastive_loss(logits, positives)
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    # CLIP clips the temperature so logits stay below 100.
    model.logit_scale.assign(tf.minimum(model.logit_scale, math.log(100.0)))
    return loss

  rng = np.random.default_rng([spec.seed, 11])
  batch_size = min(spec.batch_size, len(crops))
  losses, start, order = [], time.time(), np.zeros([0], np.int64)
  log_every = max(spec.steps // 10, 1)
  for i in range(spec.steps):
    if len(order) < batch_size:  # epochs without replacement, reshuffled
      order = np.concatenate([order, rng.permutation(len(crops))])
    indices, order = order[:batch_size], order[batch_size:]
    losses.append(float(step(tf.constant(indices), tf.constant([spec.seed, i]))))
    if (i + 1) % log_every == 0 or i + 1 == spec.steps:
      rate = (i + 1) / (time.time() - start)
      logging.info("teacher step %d/%d  loss %.3f  %.1f steps/s  ETA %.0f s", i + 1,
                   spec.steps, np.mean(losses[-log_every:]), rate, (spec.steps - i - 1) / rate)
  return model, losses


# ------------------------------------------------------------------------------------------
# Zero-shot evaluation, as ViLD uses the teacher.
def zero_shot_accuracy(crop_embeddings: np.ndarray, class_embeddings: np.ndarray,
                       category_ids: Sequence[int], vocabulary: vocabulary_lib.Vocabulary
                       ) -> Dict[str, float]:
  """Top-1 accuracy of classifying [N, D] crop embeddings by [C, D] class text embeddings.

  Returns accuracy over all, base and novel crops, and `chance` (1 / number of classes).
  """
  predicted = np.argmax(crop_embeddings @ class_embeddings.T, axis=1)
  truth = vocabulary.index_of_ids(category_ids)
  if (truth < 0).any():
    raise ValueError(f"crops name categories {sorted(set(np.asarray(category_ids)[truth < 0]))}"
                     f" that are not in the vocabulary {vocabulary.source}.")
  correct = predicted == truth
  novel = vocabulary.novel_mask[truth]
  return {"all": float(correct.mean()), "base": float(correct[~novel].mean()),
          "novel": float(correct[novel].mean()) if novel.any() else float("nan"),
          "chance": 1.0 / len(vocabulary)}


def evaluate_teacher(teacher: clip_teacher.CLIPTeacher, crops: np.ndarray,
                     category_ids: np.ndarray, vocabulary: vocabulary_lib.Vocabulary) -> dict:
  """Zero-shot accuracy of the object crops, with prompt-ensembled class embeddings as ViLD
  builds its classifier, and the mean highest class cosine of object and background crops
  (a teacher that never saw background embeds it as confidently as an object, and its
  distillation targets then teach a detector that background is some object)."""
  class_embeddings = vocabulary_embeddings.embed_vocabulary(teacher, vocabulary,
                                                            progress=False)
  crop_embeddings = teacher.encode_images(crops)
  is_background = category_ids == synthetic.BACKGROUND_CATEGORY_ID
  best_cosine = (crop_embeddings @ class_embeddings.T).max(axis=1)
  return {
      "zero_shot_accuracy": zero_shot_accuracy(crop_embeddings[~is_background],
                                               class_embeddings,
                                               category_ids[~is_background], vocabulary),
      "max_class_cosine": {
          "objects": float(best_cosine[~is_background].mean()),
          "background": (float(best_cosine[is_background].mean()) if is_background.any()
                         else float("nan"))},
  }


def pretrain_teacher(world_dir: str, output_dir: str,
                     spec: PretrainingSpec = PretrainingSpec()) -> dict:
  """Trains the world's teacher on its captioned crops; writes the checkpoint and the report.

  Args:
    world_dir: a world made by vild.data.synthetic.generate (captions.json, train.json).
    output_dir: receives the Hugging Face CLIP directory and `pretraining.json`.
    spec: training and evaluation settings.

  Returns:
    The report written to `pretraining.json`.
  """
  start = time.time()
  crops, items = synthetic.load_captions(world_dir)
  vocabulary = vocabulary_lib.Vocabulary.from_file(os.path.join(world_dir, "train.json"))
  config = teacher_config()
  tokenizer = tokenizer_lib.default_tokenizer(config.text.context_length)
  category_ids = np.asarray([item["category_id"] for item in items])
  train, held = split_held_out(category_ids, spec.held_out_per_category, spec.seed)
  token_ids = tokenizer.tokenize([item["caption"] for item in items])
  logging.info("Teacher pre-training: %d captioned crops (%d held out), %d steps of %d",
               len(train), len(held), spec.steps, spec.batch_size)
  model, losses = train_clip(crops[train], token_ids[train], category_ids[train], config, spec)
  train_seconds = time.time() - start

  teacher = clip_teacher.CLIPTeacher(model, tokenizer, config, name="synthetic_teacher")
  evaluation = evaluate_teacher(teacher, crops[held], category_ids[held], vocabulary)
  accuracy, cosine = evaluation["zero_shot_accuracy"], evaluation["max_class_cosine"]
  logging.info("Teacher zero-shot accuracy on %d held-out crops: base %.3f, novel %.3f "
               "(chance %.3f); highest class cosine: objects %.2f, background %.2f",
               len(held), accuracy["base"], accuracy["novel"], accuracy["chance"],
               cosine["objects"], cosine["background"])
  checkpoint.save_clip(output_dir, model, tokenizer, config)
  report = {
      "spec": dataclasses.asdict(spec),
      "config": config.to_dict(),
      "temperature": teacher.temperature,
      "num_train_crops": int(len(train)),
      "num_held_out_crops": int(len(held)),
      **evaluation,
      "loss_first": float(np.mean(losses[:10])),
      "loss_last": float(np.mean(losses[-10:])),
      "losses_every_10": [float(np.mean(losses[i:i + 10])) for i in range(0, len(losses), 10)],
      "train_seconds": train_seconds,
      "seconds": time.time() - start,
  }
  io.write_text_atomic(os.path.join(output_dir, REPORT_FILE), json.dumps(report, indent=1) + "\n")
  return report
