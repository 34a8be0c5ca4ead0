"""What the CLIP-on-crops investigation measures besides AP: proposals, crops and the teacher.

The paper's CLIP on cropped regions beats ViLD-text on novel categories (AP_r 18.9 vs 10.1);
`ablations` asks which part of the R-CNN-style pipeline decides that order on the synthetic
world. Each function here measures one candidate cause on the validation split (or on the
distillation data, which is made of the same crops):

  proposal_recall          how many objects the base-trained RPN's top k proposals find
                           (IoU >= 0.5), base vs novel
  teacher_accuracy         the teacher's top-1 accuracy on 1x + 1.5x crops of the objects'
                           own boxes (cut as always, and resampled with area averaging
                           instead of bilinear taps), and of the refined proposal that best
                           matches each object
  best_box_iou             for each object, the IoU of the proposal its own class scores
                           highest, by the teacher's probability alone or combined with
                           objectness (the paper's point: the crop CLIP likes best is not the
                           best box)
  distillation_targets     the distillation data: share of proposals on an object and the
                           teacher's accuracy on them (what ViLD-image learns from)
"""
import json
from typing import Dict, Iterator, List, Mapping, Sequence

import numpy as np
import tensorflow as tf

from vild import text_embeddings as text_embeddings_lib
from vild import vocabulary as vocabulary_lib
from vild.data import augmentation
from vild.data import tf_example
from vild.evaluation import detections as detections_lib
from vild.evaluation import evaluator as evaluator_lib
from vild.synthetic_benchmark import clip_on_crops
from vild.teacher import crops

STAGE = "clip_on_crops_diagnostics"  # the ablations' stage of these measurements (+ seed)
IOU = 0.5
RECALL_AT = (10, 30, 100)


def box_iou(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
  """[N, 4] x [K, 4] yxyx -> [N, K] IoU."""
  boxes, others = boxes[:, None], others[None]
  low = np.maximum(boxes[..., :2], others[..., :2])
  high = np.minimum(boxes[..., 2:], others[..., 2:])
  inter = np.prod(np.clip(high - low, 0, None), axis=-1)
  area = lambda b: np.prod(np.clip(b[..., 2:] - b[..., :2], 0, None), axis=-1)  # noqa: E731
  return inter / np.maximum(area(boxes) + area(others) - inter, 1e-9)


def groundtruth_boxes(annotation_file: str, vocabulary: vocabulary_lib.Vocabulary
                      ) -> Dict[int, tuple]:
  """{image id: (boxes [N, 4] yxyx original pixels, class indices [N] into vocabulary)}."""
  with open(annotation_file, encoding="utf-8") as f:
    data = json.load(f)
  index = {c: i for i, c in enumerate(vocabulary.category_ids)}
  per_image = {image["id"]: ([], []) for image in data["images"]}
  for ann in data["annotations"]:
    x, y, w, h = ann["bbox"]
    per_image[ann["image_id"]][0].append([y, x, y + h, x + w])
    per_image[ann["image_id"]][1].append(index[ann["category_id"]])
  return {i: (np.asarray(b, np.float32).reshape(-1, 4), np.asarray(c, np.int64))
          for i, (b, c) in per_image.items()}


def validation_images(evaluator: clip_on_crops.ClipOnCropsEvaluator, dataset: tf.data.Dataset
                      ) -> Iterator[dict]:
  """Per validation image: id, pixels, proposals and refined boxes (both in original image
  pixels, best objectness first) and objectness."""
  for images, labels in dataset:
    features, first_stage = evaluator._propose(images, labels)  # pylint: disable=protected-access
    image_shape = augmentation.content_size(labels["image_info"])
    proposals = first_stage["proposals"]
    refined = evaluator._boxes(features, proposals, image_shape)  # pylint: disable=protected-access
    pixels = evaluator_lib.unnormalized_images(images)
    infos = labels["image_info"].numpy()
    for b, source_id in enumerate(labels["groundtruths"]["source_id"].numpy()):
      yield {"image_id": int(source_id), "pixels": pixels[b], "image_info": infos[b],
             "proposals": detections_lib.original_boxes(proposals[b].numpy(), infos[b]),
             "refined": detections_lib.original_boxes(refined[b].numpy(), infos[b]),
             "objectness": first_stage["proposal_scores"][b].numpy()}


def area_resampled_embeddings(teacher, image: np.ndarray, boxes: np.ndarray,
                              scales: Sequence[float]) -> np.ndarray:
  """[N, D] like `crops.RegionEmbedder`, but each crop is cut at 4x the teacher's input size
  and shrunk by area averaging (no aliasing), to see whether the bilinear cut costs accuracy."""
  size = teacher.image_size
  height, width = image.shape[:2]
  total = 0.0
  for scale in scales:
    big = crops.crop_regions(image, crops.scale_boxes(boxes, scale, height, width), 4 * size)
    total = total + teacher.encode_images(tf.image.resize(big, [size, size], method="area"))
  return text_embeddings_lib.l2_normalize(np.asarray(total))


def _to_input(boxes: np.ndarray, image_info: np.ndarray) -> np.ndarray:
  """Original-image boxes -> the model input's pixels (as the crops are cut from it)."""
  return boxes * np.tile(image_info[2], 2) - np.tile(image_info[3], 2)


def _split(values: Sequence[float], novel: Sequence[bool]) -> Dict[str, float]:
  values, novel = np.asarray(values, np.float64), np.asarray(novel, bool)
  mean = lambda v: float(v.mean()) if v.size else float("nan")  # noqa: E731
  return {"base": mean(values[~novel]), "novel": mean(values[novel]),
          "count_base": int((~novel).sum()), "count_novel": int(novel.sum())}


def investigate(images: Iterator[dict], groundtruth: Mapping[int, tuple],
                embedder: crops.RegionEmbedder, text_embeddings: np.ndarray,
                vocabulary: vocabulary_lib.Vocabulary, temperature: float,
                num_proposals: int, teacher=None) -> dict:
  """Every measurement of the module docstring on the validation images (see there); with
  `teacher` (the embedder's), also its accuracy on area-resampled crops of the objects."""
  unit_text = text_embeddings_lib.l2_normalize(text_embeddings)
  novel_class = vocabulary.novel_mask
  rows: Dict[str, List] = {k: [] for k in (
      "novel", *[f"recall_{k}" for k in RECALL_AT], "recall_refined", "gt_correct",
      "gt_correct_area", "matched_correct", "best_iou_teacher", "best_iou_combined")}
  for image in images:
    boxes, classes = groundtruth[image["image_id"]]
    if not len(boxes) or not len(image["refined"]):
      continue
    info = image["image_info"]
    proposals = image["proposals"][:num_proposals]
    refined = image["refined"][:num_proposals]
    objectness = image["objectness"][:num_proposals]
    iou = box_iou(boxes, proposals)  # [N, P]
    refined_iou = box_iou(boxes, refined)
    cut = np.concatenate([boxes, refined])
    embeddings = embedder(image["pixels"], _to_input(cut, info))
    gt_embeddings, refined_embeddings = embeddings[:len(boxes)], embeddings[len(boxes):]
    gt_predicted = np.argmax(gt_embeddings @ unit_text.T, axis=1)
    area_predicted = None
    if teacher is not None:
      area = area_resampled_embeddings(teacher, image["pixels"], _to_input(boxes, info),
                                       embedder.scales)
      area_predicted = np.argmax(area @ unit_text.T, axis=1)
    logits = refined_embeddings @ unit_text.T / temperature
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)  # [P, C]
    combined = clip_on_crops.combined_scores(probabilities, objectness, 0.5)
    for n, label in enumerate(classes):
      rows["novel"].append(bool(novel_class[label]))
      for k in RECALL_AT:
        rows[f"recall_{k}"].append(float(iou[n, :k].max(initial=0) >= IOU))
      rows["gt_correct"].append(float(gt_predicted[n] == label))
      rows["gt_correct_area"].append(float(area_predicted[n] == label)
                                     if area_predicted is not None else np.nan)
      best = int(np.argmax(refined_iou[n]))
      matched = refined_iou[n, best] >= IOU
      rows["recall_refined"].append(float(matched))
      rows["matched_correct"].append(float(np.argmax(probabilities[best]) == label)
                                     if matched else np.nan)
      rows["best_iou_teacher"].append(float(refined_iou[n, np.argmax(probabilities[:, label])]))
      rows["best_iou_combined"].append(float(refined_iou[n, np.argmax(combined[:, label])]))
  novel = rows.pop("novel")
  out = {}
  for key, values in rows.items():
    values = np.asarray(values, np.float64)
    keep = ~np.isnan(values)
    out[key] = _split(values[keep], np.asarray(novel)[keep])
  return out


def distillation_targets(record_pattern: str, annotation_file: str,
                         text_embeddings: np.ndarray,
                         vocabulary: vocabulary_lib.Vocabulary) -> dict:
  """The distillation data against every object of the training scenes (train_full.json):
  the share of proposals with IoU >= 0.5 to an object, and the teacher's top-1 accuracy on
  the region embeddings of those proposals (base and novel objects)."""
  groundtruth = groundtruth_boxes(annotation_file, vocabulary)
  unit_text = text_embeddings_lib.l2_normalize(text_embeddings)
  on_object, correct, novel = [], [], []
  paths = sorted(tf.io.gfile.glob(record_pattern))
  for record in tf.data.TFRecordDataset(paths):
    example = tf.train.Example.FromString(record.numpy())
    distill = tf_example.read_distillation(example)
    image_id = int(tf_example.source_id(example))
    feature = example.features.feature
    height = feature["image/height"].int64_list.value[0]
    width = feature["image/width"].int64_list.value[0]
    rois = distill["rois"] * np.array([height, width, height, width], np.float32)
    features = distill["features"].reshape(len(rois), -1)
    boxes, classes = groundtruth[image_id]
    if not len(rois):
      continue
    iou = box_iou(rois, boxes) if len(boxes) else np.zeros([len(rois), 0])
    best = iou.argmax(axis=1) if len(boxes) else np.zeros(len(rois), np.int64)
    matched = iou.max(axis=1, initial=0) >= IOU
    on_object.extend(matched.tolist())
    predicted = np.argmax(features @ unit_text.T, axis=1)
    for r in np.flatnonzero(matched):
      correct.append(float(predicted[r] == classes[best[r]]))
      novel.append(bool(vocabulary.novel_mask[classes[best[r]]]))
  return {"proposals_on_an_object": float(np.mean(on_object)) if on_object else float("nan"),
          "num_proposals": len(on_object),
          "teacher_accuracy": _split(correct, novel)}

