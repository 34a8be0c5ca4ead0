"""Offline proposals: a trained detector's class-agnostic RPN over records, top M per image.

ViLD-image distils the teacher's embeddings of M = 300 proposals per training image, from an
RPN trained on base categories only (VILD.md). `ProposalGenerator` runs the detector's first
stage (`ViLDModel.propose`) on each record's image as evaluation sees it (resized, no
augmentation: `input_pipeline.eval_image`), maps the proposals back to the original image and
keeps the top M. The RPN's NMS runs within each FPN level, so the same object can come back
from two levels; a class-agnostic NMS across levels (default at the RPN's IoU, 0.7) removes
those duplicates before the top M are kept, so M counts distinct regions.

`generate_proposals` writes each record again with image/roi/bbox/{ymin,xmin,ymax,xmax}
(normalised), image/roi/bbox/score (RPN objectness) and an empty image/roi/feature added;
`region_embeddings` fills the features. A record whose image does not decode (a truncated
JPEG) is written with no proposals and named in a warning (shard, record, image/source_id); the
training pipeline then skips it by its own rule, like any undecodable record.

The settings file (`proposals.json`) identifies the detector by content (`sources`): a rerun
with another detector, even another run's checkpoint of the same name, stops.
"""
import itertools
import os
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

from absl import logging
import numpy as np
import tensorflow as tf

from vild.data import augmentation
from vild.data import input_pipeline
from vild.data import tf_example
from vild.distillation_data import shard_jobs
from vild.distillation_data import sources
from vild.evaluation import detections as detections_lib
from vild.inference import checkpoint as checkpoint_lib
from vild.modeling import vild_model

SETTINGS_NAME = "proposals"
NO_IMAGE = (np.zeros([0, 4], np.float32), np.zeros([0], np.float32))  # (rois, scores)


def select_proposals(boxes: np.ndarray, scores: np.ndarray, image_info: np.ndarray,
                     num_proposals: int, nms_iou_threshold: Optional[float] = 0.7,
                     min_score: float = 0.0) -> Tuple[np.ndarray, np.ndarray]:
  """One image's RPN output -> its top proposals, normalised to the original image.

  Args:
    boxes: [P, 4] pixel yxyx in the model input; scores [P] objectness, best first or not.
    image_info: [4, 2] of the model input (input_pipeline layout).
    num_proposals: M, the most to keep.
    nms_iou_threshold: class-agnostic NMS across FPN levels; None or 0 keeps overlaps.
    min_score: proposals scoring lower are dropped.

  Returns:
    rois [m, 4] float32 normalised yxyx and scores [m], best first, m <= M; boxes without area
    in the original image (padding, slivers outside it) are dropped.
  """
  height, width = image_info[0]
  boxes = detections_lib.original_boxes(np.asarray(boxes, np.float32), image_info)
  boxes = boxes.astype(np.float32)
  scores = np.asarray(scores, np.float32)
  keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]) & (scores >= min_score)
  boxes, scores = boxes[keep], scores[keep]
  if nms_iou_threshold:
    order = tf.image.non_max_suppression(boxes, scores, num_proposals,
                                         iou_threshold=nms_iou_threshold).numpy()
  else:
    order = np.argsort(-scores, kind="stable")[:num_proposals]
  size = np.array([height, width, height, width], np.float32)
  return boxes[order] / size, scores[order]


class ProposalGenerator:
  """Records in, the same records with the detector's top proposals added out.

  Attributes:
    model: a restored ViLDModel (only its first stage runs).
    image_size: (height, width) of the model input.
    num_proposals, nms_iou_threshold, min_score: see `select_proposals`.
    batch_size: images per detector call (the last batch is padded: one trace).
    undecodable: names of the records whose image did not decode (written without proposals).
  """

  def __init__(self, model: vild_model.ViLDModel, image_size: Sequence[int],
               num_proposals: int = 300, nms_iou_threshold: Optional[float] = 0.7,
               min_score: float = 0.0, batch_size: int = 8):
    if num_proposals < 1 or batch_size < 1:
      raise ValueError(f"num_proposals ({num_proposals}) and batch_size ({batch_size}) must "
                       "be positive.")
    self.model = model
    self.image_size = tuple(int(s) for s in image_size)
    self.num_proposals = num_proposals
    self.nms_iou_threshold = nms_iou_threshold
    self.min_score = min_score
    self.batch_size = batch_size
    self.undecodable: List[str] = []
    self._prepare = tf.function(self._prepare_image,
                                input_signature=[tf.TensorSpec([], tf.string)])
    self._first_stage = tf.function(self._run_first_stage)

  def __call__(self, records: Iterable[bytes], source: str = "records") -> Iterator[bytes]:
    """A `shard_jobs.RecordTransform`: yields each record with its proposals added."""
    records = iter(records)
    first_index = 0
    while batch := list(itertools.islice(records, self.batch_size)):
      proposals = self.propose(batch, source, first_index)
      first_index += len(batch)
      for record, (rois, scores) in zip(batch, proposals):
        # No teacher embeddings yet: image/roi/feature stays empty ([M, 0]) until
        # region_embeddings fills it.
        yield tf_example.add_distillation(record, rois, np.zeros([len(rois), 0]), scores)

  def propose(self, records: List[bytes], source: str = "records", first_index: int = 0
              ) -> List[Tuple[np.ndarray, np.ndarray]]:
    """Up to `batch_size` serialized records -> per record (rois [m, 4] normalised, scores).

    `source` and `first_index` (the first record's index in it) name records in messages; a
    record whose image does not decode gets no proposals (m = 0) and a warning.
    """
    prepared = [self._prepare_or_none(r, source, first_index + i) for i, r in enumerate(records)]
    decoded = [p for p in prepared if p is not None]
    if not decoded:
      return [NO_IMAGE] * len(records)
    images, infos = zip(*decoded)
    padding = [tf.zeros_like(images[0])] * (self.batch_size - len(images))
    boxes, scores = self._first_stage(tf.stack(list(images) + padding),
                                      tf.stack(list(infos) + [infos[0]] * len(padding)))
    infos = np.stack(infos)
    found = iter([select_proposals(boxes[i].numpy(), scores[i].numpy(), infos[i],
                                   self.num_proposals, self.nms_iou_threshold, self.min_score)
                  for i in range(len(decoded))])
    return [NO_IMAGE if p is None else next(found) for p in prepared]

  def _prepare_or_none(self, record: bytes, source: str, index: int):
    example = tf.train.Example.FromString(record)
    try:
      return self._prepare(tf_example.encoded_image(example, source))
    except tf.errors.InvalidArgumentError as e:
      name = shard_jobs.record_name(source, index, example)
      logging.warning("%s: its image does not decode (%s); written without proposals (the "
                      "training pipeline skips records whose image does not decode).", name,
                      shard_jobs.op_error_text(e))
      self.undecodable.append(name)
      return None

  def _prepare_image(self, encoded: tf.Tensor):
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    return input_pipeline.eval_image(image, self.image_size)

  def _run_first_stage(self, images, image_info):
    # Proposals clipped to the image content, as in training (train_step) and evaluation.
    _, outputs = self.model.propose(images, augmentation.content_size(image_info),
                                    training=False)
    return outputs["proposals"], outputs["proposal_scores"]


def generate_proposals(file_pattern: str, output_dir: str, model_dir: str,
                       gin_files: Sequence[str] = (), gin_bindings: Sequence[str] = (),
                       checkpoint: Optional[str] = None,
                       image_size: Optional[Sequence[int]] = None, num_proposals: int = 300,
                       nms_iou_threshold: Optional[float] = 0.7, min_score: float = 0.0,
                       batch_size: int = 8, shard_index: int = 0, num_shards: int = 1) -> dict:
  """Adds a trained detector's proposals to this machine's share of the record shards.

  Args:
    file_pattern: glob of the input TFRecord shards (e.g. data/train-*.tfrecord).
    output_dir: output shards, under the input file names.
    model_dir, gin_files, gin_bindings, checkpoint, image_size: the detector
      (`vild.inference.checkpoint.load_model`).
    num_proposals, nms_iou_threshold, min_score, batch_size: see `ProposalGenerator`.
    shard_index, num_shards: this machine's share (`shard_jobs`).

  Returns:
    {'written': [...], 'skipped': [...]} output shard paths, and 'undecodable': the records
    (shard, index, image/source_id) written without proposals because their image does not
    decode.
  """
  loaded = checkpoint_lib.load_model(model_dir, image_size, checkpoint, gin_files,
                                     gin_bindings)
  config_paths = list(gin_files) or [os.path.join(model_dir, checkpoint_lib.CONFIG_NAME)]
  generator = ProposalGenerator(loaded.model, loaded.input_size, num_proposals,
                                nms_iou_threshold, min_score, batch_size)
  shard_jobs.check_settings(output_dir, SETTINGS_NAME, {
      "format": "vild.proposals/2", "image_size": loaded.input_size,
      **sources.detector_identity(loaded.model, config_paths, gin_bindings),
      "num_proposals": num_proposals, "nms_iou_threshold": nms_iou_threshold,
      "min_score": min_score})
  result = shard_jobs.run(file_pattern, output_dir, generator, shard_index, num_shards,
                          description="proposals")
  return {**result, "undecodable": generator.undecodable}
