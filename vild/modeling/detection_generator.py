"""Post-processing for ViLD: per-class NMS over class-agnostic boxes that remembers each
detection's RoI, so the detection's region embeddings (and full score vector) come with it.

Why not `official.vision`'s DetectionGenerator: it needs the class count at graph-build time
(ViLD's is data and can change per call) and it does not return which RoI a detection came from,
which ViLD needs to hand back region embeddings a user can re-score against new text.

Per-class NMS is done in one batched NMS call by offsetting each candidate's box by its class
index (boxes of different classes then never overlap), the approach of detectron2's batched_nms.
"""
from typing import Any, Dict, Sequence

import tensorflow as tf
import tf_keras

from official.vision.ops import box_ops


@tf_keras.utils.register_keras_serializable(package="vild")
class ViLDDetectionGenerator(tf_keras.layers.Layer):
  """Call: `generator(box_outputs, class_scores, rois, image_shape)`.

  Args (call):
    box_outputs: [B, N, 4] class-agnostic box deltas w.r.t. `rois`.
    class_scores: [B, N, C] per-class probabilities (no background column).
    rois: [B, N, 4] the RoIs, pixel [ymin, xmin, ymax, xmax] in the scaled image.
    image_shape: [B, 2] scaled image height and width, for clipping.

  Returns a dict:
    detection_boxes [B, K, 4], detection_scores [B, K], detection_classes [B, K] int32
    (1-based class index into the vocabulary; 0 in padding), num_detections [B] int32, and
    detection_roi_indices [B, K] int32 (index into the N RoIs; -1 in padding).
  """

  def __init__(self,
               pre_nms_top_k: int = 10000,
               score_threshold: float = 0.0,
               nms_iou_threshold: float = 0.5,
               max_num_detections: int = 300,
               box_regression_weights: Sequence[float] = (10.0, 10.0, 5.0, 5.0),
               **kwargs):
    super().__init__(**kwargs)
    self._config = dict(pre_nms_top_k=pre_nms_top_k, score_threshold=score_threshold,
                        nms_iou_threshold=nms_iou_threshold,
                        max_num_detections=max_num_detections,
                        box_regression_weights=tuple(box_regression_weights))

  def decode_boxes(self, box_outputs: tf.Tensor, rois: tf.Tensor,
                   image_shape: tf.Tensor) -> tf.Tensor:
    boxes = box_ops.decode_boxes(tf.cast(box_outputs, tf.float32), rois,
                                 weights=list(self._config["box_regression_weights"]))
    return box_ops.clip_boxes(boxes, tf.expand_dims(tf.cast(image_shape, tf.float32), 1))

  def call(self, box_outputs, class_scores, rois, image_shape) -> Dict[str, tf.Tensor]:
    cfg = self._config
    boxes = self.decode_boxes(box_outputs, rois, image_shape)  # [B, N, 4]
    class_scores = tf.cast(class_scores, tf.float32)
    shape = tf.shape(class_scores)
    batch_size, num_rois, num_classes = shape[0], shape[1], shape[2]

    # Candidates: the top (RoI, class) pairs over the whole flattened score matrix.
    flat_scores = tf.reshape(class_scores, [batch_size, num_rois * num_classes])
    k = tf.minimum(cfg["pre_nms_top_k"], num_rois * num_classes)
    scores, flat_indices = tf.math.top_k(flat_scores, k=k, sorted=True)
    roi_indices = flat_indices // num_classes
    classes = flat_indices % num_classes
    candidate_boxes = tf.gather(boxes, roi_indices, batch_dims=1)  # [B, k, 4]

    # Per-class NMS in one call: shift each class to its own region of the plane.
    offsets = tf.cast(classes, tf.float32) * (tf.reduce_max(boxes) + 1.0)
    selected, num_detections = tf.image.non_max_suppression_padded(
        candidate_boxes + offsets[..., tf.newaxis], scores,
        max_output_size=cfg["max_num_detections"],
        iou_threshold=cfg["nms_iou_threshold"],
        score_threshold=cfg["score_threshold"],
        pad_to_max_output_size=True, sorted_input=True)

    valid = tf.range(cfg["max_num_detections"])[tf.newaxis] < num_detections[:, tf.newaxis]
    take = lambda t: tf.gather(t, selected, batch_dims=1)  # noqa: E731
    return {
        "detection_boxes": tf.where(valid[..., tf.newaxis], take(candidate_boxes), 0.0),
        "detection_scores": tf.where(valid, take(scores), 0.0),
        "detection_classes": tf.where(valid, take(classes) + 1, 0),
        "num_detections": tf.cast(num_detections, tf.int32),
        "detection_roi_indices": tf.where(valid, take(roi_indices), -1),
    }

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), **self._config}


def gather_by_roi(values: tf.Tensor, roi_indices: tf.Tensor) -> tf.Tensor:
  """Per-RoI values [B, N, ...] -> per-detection values [B, K, ...]; zeros where index is -1."""
  gathered = tf.gather(values, tf.maximum(roi_indices, 0), batch_dims=1)
  valid = tf.reshape(roi_indices >= 0,
                     tf.concat([tf.shape(roi_indices), tf.ones([tf.rank(values) - 2],
                                                               tf.int32)], 0))
  return tf.where(valid, gathered, tf.zeros_like(gathered))
