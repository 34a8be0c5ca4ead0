"""Every file the library reads or writes goes through tf.io.gfile: the same code on `ram://`,
TensorFlow's in-memory file system, stands in for `gs://` on Cloud TPU.

Training -> evaluation -> loading the run for inference with records, text embeddings,
annotation JSON, the model directory and the evaluation outputs all on ram://, plus the IO
helpers, vocabularies, ground-truth loaders and a CLIP checkpoint directory.
"""
import json
import os

import gin
import numpy as np
import pytest
import tensorflow as tf

from tests import train_toy
from tests.conftest import REPO
from vild import text_embeddings
from vild import vocabulary as vocabulary_lib
from vild.data import conversion
from vild.data import tf_example
from vild.data import toy
from vild.evaluation import coco_metrics
from vild.evaluation import experiment as evaluation_experiment
from vild.evaluation import lvis_metrics
from vild.inference import checkpoint as inference_checkpoint
from vild.teacher import clip_teacher
from vild.training import experiment as training_experiment
from vild.utils import gin_config
from vild.utils import io

TINY_CLIP = os.path.join(REPO, "tests", "fixtures", "tiny_clip")


def _root(name):
  root = f"ram://vild_test_{name}"
  io.remove(root)
  return root


def test_io_helpers_write_atomically_and_read_back():
  root = _root("io")
  io.write_text_atomic(f"{root}/a/b.txt", "text")
  io.save_npy_atomic(f"{root}/a/m.npy", np.arange(6, dtype=np.float32).reshape(2, 3))
  assert io.read_text(f"{root}/a/b.txt") == "text"
  np.testing.assert_array_equal(io.load_npy(f"{root}/a/m.npy"), [[0, 1, 2], [3, 4, 5]])
  with pytest.raises(RuntimeError):
    with io.atomic_path(f"{root}/a/never.txt") as tmp:
      io.write_text_atomic(tmp, "half")
      raise RuntimeError("the job dies")
  assert io.glob(f"{root}/a/*") == [f"{root}/a/b.txt", f"{root}/a/m.npy"]  # no temporaries
  assert io.absolute(f"{root}/x") == f"{root}/x"


def test_vocabularies_embeddings_ground_truth_and_clip_checkpoints_on_ram():
  root = _root("data")
  vocab = train_toy.toy_vocabulary()
  vocab.save(f"{root}/vocab.json")
  assert vocabulary_lib.Vocabulary.from_file(f"{root}/vocab.json").names == vocab.names
  path = train_toy.write_text_embeddings(root)
  matrix, loaded = text_embeddings.load(path)
  assert matrix.shape == (6, train_toy.EMBEDDING_DIM) and loaded.names == vocab.names

  _, _, annotation = train_toy.toy_eval_data(num_scenes=2)
  io.write_text_atomic(f"{root}/val.json", json.dumps(annotation))
  assert len(lvis_metrics.load_groundtruth(f"{root}/val.json").get_ann_ids()) == len(
      annotation["annotations"])
  assert len(coco_metrics.load_groundtruth(f"{root}/val.json").getAnnIds()) == len(
      annotation["annotations"])

  io.makedirs(f"{root}/clip")
  for name in io.listdir(TINY_CLIP):
    tf.io.gfile.copy(os.path.join(TINY_CLIP, name), f"{root}/clip/{name}")
  local = clip_teacher.load_clip_teacher(TINY_CLIP).encode_text(["a photo of a cat"])
  remote = clip_teacher.load_clip_teacher(f"{root}/clip").encode_text(["a photo of a cat"])
  np.testing.assert_allclose(remote, local, atol=1e-6)


def _write_records(path, seeds, size=(64, 64)):
  with tf.io.TFRecordWriter(path) as writer:
    for seed in seeds:
      scene = toy.toy_scene(seed, size=size)
      height, width = size
      writer.write(tf_example.encode_example({
          "encoded_image": conversion.encode_png(scene["image"]), "image_format": "png",
          "source_id": seed + 1, "height": height, "width": width,
          "boxes": scene["boxes"] / np.array([height, width, height, width], np.float32),
          "classes": np.asarray(train_toy.toy_vocabulary().category_ids)[scene["classes"] - 1],
          "areas": scene["masks"].sum(axis=(1, 2)),
          "masks_png": [conversion.encode_png(m.astype(np.uint8)) for m in scene["masks"]],
      }).SerializeToString())


def test_train_evaluate_and_load_a_run_entirely_on_ram():
  root = _root("run")
  io.makedirs(f"{root}/records")
  _write_records(f"{root}/records/train-00000-of-00001.tfrecord", range(4))
  _write_records(f"{root}/records/val-00000-of-00001.tfrecord", range(100, 102))
  embeddings = train_toy.write_text_embeddings(root)
  model_dir = f"{root}/model"
  bindings = [
      f"training_vocabulary.text_embeddings_path = '{embeddings}'",
      f"train.train_file_pattern = '{root}/records/train-*'",
      f"evaluate.eval_file_pattern = '{root}/records/val-*'",
      "evaluate.annotation_file = None", "evaluate.iou_types = ('bbox',)",
      "evaluate.metric = 'coco'",
      "evaluate.eval_batch_size = 2", "Parser.output_size = (64, 64)",
      "train.global_batch_size = 2", "ViLDTrainer.train_steps = 2",
      "ViLDTrainer.steps_per_loop = 2", "ViLDTrainer.checkpoint_interval = 2",
      "learning_rate_schedule.warmup_steps = 0", "learning_rate_schedule.decay_boundaries = ()",
      "learning_rate_schedule.total_steps = 2", "set_precision.policy = 'float32'",
  ] + train_toy.SMALLER
  gin_config.parse(["configs/tiny/synthetic_vild_text.gin"], bindings, finalize=False)
  training_experiment.train(model_dir)
  (step, metrics), = evaluation_experiment.evaluate(model_dir).items()
  assert step == 2 and "bbox/AP" in metrics
  assert io.exists(f"{model_dir}/ckpt-2.index") and io.exists(f"{model_dir}/config.gin")
  assert io.read_json(f"{model_dir}/eval/metrics_2.json")["step"] == 2
  assert isinstance(io.read_json(f"{model_dir}/eval/detections_2.json"), list)
  assert not [p for p in io.glob(f"{model_dir}/*") + io.glob(f"{model_dir}/eval/*")
              if p.endswith(".tmp")]

  gin.clear_config()  # what evaluate.py / vild.inference do: the run's own config.gin
  loaded = inference_checkpoint.load_model(model_dir)
  assert loaded.checkpoint_path == f"{model_dir}/ckpt-2" and loaded.input_size == (64, 64)
