"""Toy training inputs for the trainer and evaluator tests: deterministic scenes, a vocabulary
file and a dataset function in the trainer's contract (InputContext -> per-replica batches)."""
import os

import numpy as np
import tensorflow as tf

from vild import text_embeddings
from vild import vocabulary as vocabulary_lib
from vild.data import toy

IMAGE_SIZE = (64, 64)
EMBEDDING_DIM = 32
NOVEL = ("blue disc",)
# On top of the tiny config, for tests that trace whole training steps: tracing dominates.
SMALLER = ["build_backbone.depth = 10", "build_roi_sampler.num_sampled_rois = 32"]


def toy_vocabulary() -> vocabulary_lib.Vocabulary:
  return vocabulary_lib.Vocabulary.from_names(toy.TOY_CATEGORIES, novel_names=NOVEL)


def toy_text_embeddings(seed: int = 0) -> np.ndarray:
  """Random [6, EMBEDDING_DIM] embeddings for the toy categories."""
  return np.random.default_rng(seed).normal(
      size=(len(toy.TOY_CATEGORIES), EMBEDDING_DIM)).astype(np.float32)


def write_text_embeddings(directory: str, seed: int = 0) -> str:
  """Random unit embeddings for the six toy categories, 'blue disc' novel; returns the path."""
  path = os.path.join(directory, "toy_text.npy")
  text_embeddings.save(path, toy_text_embeddings(seed), toy_vocabulary(), teacher="random")
  return path


def toy_batch_images(num_scenes: int):
  """The first `num_scenes` toy scenes as (images [N, H, W, 3] numpy, labels)."""
  images, labels = toy.toy_batch(range(num_scenes), IMAGE_SIZE)
  return images.numpy(), labels


def toy_dataset_fn(global_batch_size: int = 2, num_scenes: int = 8, num_distill_rois: int = 0,
                   shuffle_seed: int = 1):
  """A dataset function over `num_scenes` fixed toy scenes, shuffled (unless shuffle_seed is
  None) and repeated forever."""
  images, labels = toy.toy_batch(range(num_scenes), IMAGE_SIZE,
                                 num_distill_rois=num_distill_rois,
                                 embedding_dim=EMBEDDING_DIM)

  def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    dataset = dataset.shard(context.num_input_pipelines, context.input_pipeline_id)
    if shuffle_seed is not None:
      dataset = dataset.shuffle(num_scenes, seed=shuffle_seed)
    dataset = dataset.repeat()
    return dataset.batch(context.get_per_replica_batch_size(global_batch_size),
                         drop_remainder=True)
  return dataset_fn


def toy_eval_data(num_scenes: int = 4, scale: float = 0.5, seed_offset: int = 100,
                  max_instances: int = 8):
  """An eval split of toy scenes as (images [N, H, W, 3], labels, LVIS-style annotation dict).

  The scenes pretend to be originals of size IMAGE_SIZE / scale resized by `scale` for the
  model, so boxes must be mapped back through image_info. Labels follow the eval layout:
  image_info [N, 4, 2] and groundtruths (source_id, height, width, num_detections, boxes
  [N, K, 4] original pixels, classes (dataset ids), areas, is_crowds, masks [N, K, 28, 28]).
  """
  from vild.data import targets  # pylint: disable=g-import-not-at-top
  from official.vision.ops import preprocess_ops  # pylint: disable=g-import-not-at-top
  from pycocotools import mask as mask_api  # pylint: disable=g-import-not-at-top
  height, width = IMAGE_SIZE
  original = (int(height / scale), int(width / scale))
  vocab = toy_vocabulary()
  images, infos, gts = [], [], []
  annotations, image_entries = [], []
  for i in range(num_scenes):
    scene = toy.toy_scene(seed_offset + i, IMAGE_SIZE)
    image_id = i + 1
    images.append(preprocess_ops.normalize_image(tf.constant(scene["image"])))
    infos.append(np.array([original, IMAGE_SIZE, [scale, scale], [0, 0]], np.float32))
    boxes = scene["boxes"] / scale
    n = len(boxes)
    full_masks = tf.image.resize(scene["masks"][..., None], original, method="nearest")
    full_masks = full_masks.numpy()[..., 0].astype(np.uint8)
    crops = targets.crop_masks_to_boxes(scene["masks"], scene["boxes"], IMAGE_SIZE, 28).numpy()
    pad = lambda a, value: np.concatenate(  # noqa: E731
        [a, np.full((max_instances - n,) + a.shape[1:], value, a.dtype)])
    category_ids = np.asarray(vocab.category_ids)[scene["classes"] - 1]
    gts.append({
        "source_id": np.int64(image_id), "height": np.int32(original[0]),
        "width": np.int32(original[1]), "num_detections": np.int32(n),
        "boxes": pad(boxes.astype(np.float32), -1), "classes": pad(category_ids, -1),
        "areas": pad(full_masks.reshape(n, -1).sum(1).astype(np.float32), -1),
        "is_crowds": pad(np.zeros(n, np.int32), 0), "masks": pad(crops, -1)})
    image_entries.append({"id": image_id, "height": original[0], "width": original[1],
                          "neg_category_ids": [c for c in vocab.category_ids
                                               if c not in set(category_ids)],
                          "not_exhaustive_category_ids": []})
    for k in range(n):
      rle = mask_api.encode(np.asfortranarray(full_masks[k]))
      rle["counts"] = rle["counts"].decode("ascii")
      y0, x0, y1, x1 = boxes[k]
      annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                          "category_id": int(category_ids[k]), "iscrowd": 0,
                          "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                          "area": float(full_masks[k].sum()), "segmentation": rle})
  labels = {"image_info": tf.constant(np.stack(infos)),
            "groundtruths": {k: tf.constant(np.stack([g[k] for g in gts])) for k in gts[0]}}
  categories = [{"id": c, "name": n, "frequency": "r" if nov else "f", "synonyms": [n]}
                for c, n, nov in zip(vocab.category_ids, vocab.names, vocab.is_novel)]
  annotation = {"images": image_entries, "annotations": annotations,
                "categories": categories}
  return tf.stack(images), labels, annotation
