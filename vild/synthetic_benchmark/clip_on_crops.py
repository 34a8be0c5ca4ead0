"""CLIP on cropped regions: the paper's R-CNN-style baseline, over a record set.

Each image's proposals come from a detector trained on base categories (its class-agnostic
RPN, `vild.distillation_data.proposals.ProposalGenerator`); each proposal is embedded by the
teacher from its 1x and 1.5x crops (`vild.teacher.crops.RegionEmbedder`), scored by a softmax
of cosine / temperature over the vocabulary's text embeddings, and per-class NMS picks the
detections (`vild.inference.rescoring`, as `Detector.detect(method='clip_on_crops')` does).
The records are read directly because the proposal model may be a supervised one whose
learned classifier cannot take the evaluation vocabulary. Boxes only: nothing predicts masks.
"""
import itertools
from typing import Dict, Iterator, List, Tuple

import numpy as np
import tensorflow as tf

from vild import vocabulary as vocabulary_lib
from vild.data import tf_example
from vild.distillation_data import proposals as proposals_lib
from vild.inference import rescoring
from vild.inference import spec as spec_lib
from vild.teacher import crops
from vild.teacher import interface


def _images_and_proposals(generator: proposals_lib.ProposalGenerator,
                          records: List[bytes]) -> Iterator[Tuple[int, np.ndarray, np.ndarray]]:
  """(image id, image [H, W, 3] uint8, proposals [M, 4] pixel yxyx) per record."""
  records = iter(records)
  while batch := list(itertools.islice(records, generator.batch_size)):
    for record, (rois, _) in zip(batch, generator.propose(batch)):
      example = tf.train.Example.FromString(record)
      image = tf.io.decode_image(tf_example.encoded_image(example), channels=3,
                                 expand_animations=False).numpy()
      height, width = image.shape[:2]
      image_id = int(example.features.feature["image/source_id"].bytes_list.value[0])
      yield image_id, image, rois * np.array([height, width, height, width], np.float32)


def detect(generator: proposals_lib.ProposalGenerator, teacher: interface.Teacher,
           records: List[bytes], vocabulary: vocabulary_lib.Vocabulary,
           text_embeddings: np.ndarray, temperature: float = 0.01,
           batch_size: int = 256) -> List[Dict]:
  """Detections of every record's image, in the official results format (boxes only)."""
  settings = spec_lib.detection_settings(generator.model.detection_generator)
  embedder = crops.RegionEmbedder(teacher, scales=crops.VILD_SCALES, batch_size=batch_size)
  pending = []  # (image id, image size, proposals), in the order the embedder yields
  category_ids = np.asarray(vocabulary.category_ids)

  def examples():
    for image_id, image, boxes in _images_and_proposals(generator, records):
      pending.append((image_id, image.shape[:2], boxes))
      yield image, boxes

  results = []
  for embeddings in embedder.embed_many(examples()):
    image_id, image_size, boxes = pending.pop(0)
    scores = rescoring.vocabulary_probabilities(embeddings, text_embeddings, temperature)
    indices, classes, kept = rescoring.select_detections(boxes, scores, image_size, settings)
    for box, class_index, score in zip(boxes[indices], classes, kept):
      ymin, xmin, ymax, xmax = (float(v) for v in box)
      results.append({"image_id": image_id, "category_id": int(category_ids[class_index]),
                      "bbox": [xmin, ymin, xmax - xmin, ymax - ymin], "score": float(score)})
  return results
