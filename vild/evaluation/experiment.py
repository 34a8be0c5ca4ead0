"""An evaluation experiment: a checkpoint (or each new one) on a TFRecord split, any vocabulary.

  gin:  evaluate.eval_file_pattern = 'lvis/val-*'
        evaluate.annotation_file = 'lvis_v1_val.json'     # official mask AP needs it
        evaluate.metric = 'lvis'                           # or 'coco'
        evaluate.text_embeddings_path = None               # None: the training vocabulary
  code: vild.evaluation.experiment.evaluate(model_dir, checkpoint='latest', strategy=None)

Transfer evaluation: point `text_embeddings_path` at another vocabulary's embeddings (e.g. COCO
names) and `annotation_file`/`eval_file_pattern` at that dataset; the weights are not touched.
"""
import os
from typing import Dict, Optional, Sequence

from absl import logging
import gin
import tensorflow as tf

from vild import text_embeddings as text_embeddings_lib
from vild.data import input_pipeline
from vild.evaluation import evaluator as evaluator_lib
from vild.inference import checkpoint as checkpoint_lib
from vild.inference import teacher_adapters
from vild.modeling import factory
from vild.training import experiment as training_experiment
from vild.training import strategy as strategy_lib


def _training_steps() -> Optional[int]:
  try:
    return gin.query_parameter("ViLDTrainer.train_steps")
  except ValueError:
    return None


@gin.configurable(denylist=["model_dir", "checkpoint", "output_dir", "strategy"])
def evaluate(model_dir: str, checkpoint: str = "latest", output_dir: Optional[str] = None,
             strategy: Optional[tf.distribute.Strategy] = None,
             eval_file_pattern: str = gin.REQUIRED, annotation_file: Optional[str] = None,
             metric: str = "lvis", text_embeddings_path: Optional[str] = None,
             eval_batch_size: int = 8, iou_types: Sequence[str] = ("bbox", "segm"),
             timeout: Optional[float] = None, clip_checkpoint_dir: Optional[str] = None) -> Dict[int, Dict[str, float]]:
  """Evaluates checkpoints of `model_dir`; returns {step: metrics}.

  Args:
    model_dir: the training run's directory.
    checkpoint: a checkpoint path, 'latest', or 'watch' (each new checkpoint until the run's
      ViLDTrainer.train_steps, or until none appears for `timeout` seconds).
    output_dir: default <model_dir>/eval.
    strategy: runs inference per replica (vild.training.strategy.select_strategy; the
      precision is set_precision's, as in training); default strategy if None.
    eval_file_pattern: TFRecord shards of the split.
    annotation_file: the split's LVIS/COCO JSON (needed for mask AP and for LVIS's
      federated negatives); None builds box ground truth from the records.
    metric: 'lvis' or 'coco' (COCO adds AP50_novel/AP50_base when the vocabulary has novel
      categories, as in OV-COCO).
    text_embeddings_path: the evaluation vocabulary's embeddings; default the training
      vocabulary (training_vocabulary: all classes, or the base ones for 'base' runs).
    eval_batch_size: images per batch.
    iou_types: 'bbox' and/or 'segm'.
    timeout: for 'watch'.
    clip_checkpoint_dir: a CLIP checkpoint directory (vild.teacher): evaluate as ViLD-text +
      CLIP, the teacher's scores of every proposal's crops fused with the text branch's
      (slow: R-CNN style). Use the teacher the text embeddings came from.
  """
  output_dir = output_dir or os.path.join(model_dir, "eval")
  if text_embeddings_path:
    matrix, vocabulary = text_embeddings_lib.load(text_embeddings_path)
    if vocabulary is None:
      raise ValueError(f"{text_embeddings_path}: no sidecar vocabulary; evaluation needs it to "
                       "map classes to dataset category ids (vild.text_embeddings.save).")
  else:
    matrix, vocabulary = training_experiment.training_vocabulary()
  logging.info("Evaluation vocabulary: %s", vocabulary.describe())

  def dataset_fn() -> tf.data.Dataset:
    return input_pipeline.build_dataset(eval_file_pattern, vocabulary, is_training=False,
                                        batch_size=eval_batch_size)

  strategy = strategy or tf.distribute.get_strategy()
  strategy_lib.set_precision(strategy)
  image_size = tuple(dataset_fn().element_spec[0].shape[1:3])
  with strategy.scope():
    model = factory.build_vild_model(image_size=image_size)
  teacher = clip_checkpoint_dir and teacher_adapters.load_teacher(clip_checkpoint_dir)
  evaluator = evaluator_lib.Evaluator(model, vocabulary, matrix, metric=metric,
                                      annotation_file=annotation_file, iou_types=iou_types,
                                      teacher=teacher or None, strategy=strategy)
  if checkpoint == "watch":
    return evaluator_lib.evaluate_checkpoints(model, evaluator, dataset_fn, model_dir,
                                              output_dir, timeout=timeout,
                                              last_step=_training_steps())
  if checkpoint == "latest":
    checkpoint = tf.train.latest_checkpoint(model_dir)
    if checkpoint is None:
      raise ValueError(f"{model_dir}: no checkpoint to evaluate.")
  step = evaluator_lib.checkpoint_step(checkpoint)
  checkpoint_lib.restore_weights(model, checkpoint)
  return {step: evaluator.evaluate(dataset_fn(), output_dir, step)}
