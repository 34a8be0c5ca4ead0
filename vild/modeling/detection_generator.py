"""Post-processing for ViLD: exact per-class NMS over class-agnostic boxes that remembers each
detection's RoI, so the detection's region embeddings (and full score vector) come with it.

Why not `official.vision`'s DetectionGenerator: it needs the class count at graph-build time
(ViLD's is data and can change per call) and it does not return which RoI a detection came from,
which ViLD needs to hand back region embeddings a user can re-score against new text.

Two rules pick the candidates of per-class NMS (`pre_nms_rule`):
  'per_class'  the official ViLD post-processing: the top `pre_nms_top_k` RoIs of EACH class
               (official 1000), NMS within each class with the classes as the batch dimension of
               tf.image.non_max_suppression_padded (as official.vision's v2 generator), then the
               best `max_num_detections` over all classes. Cost grows with C x k^2.
  'overall'    the top `pre_nms_top_k` (RoI, class) pairs of the whole score matrix (10,000),
               then one greedy NMS over them in which a box only suppresses boxes of its own
               class. Cost grows with k^2 / tile, whatever C (cheap for LVIS's 1203 classes).
Both are exact per-class NMS: no class offsets are added to coordinates (float32 pixel
coordinates shifted by class x image size round to 1/16-1/8 px at LVIS's 1203 classes, which
flipped decisions near the IoU threshold). A box suppresses another of its class when their
IoU >= nms_iou_threshold (tf.image.non_max_suppression_padded's rule, the official code's).

Before any of it, boxes are decoded, clipped to the image content (`image_shape`: the real,
unpadded content size) and those left without area (e.g. entirely in the letterbox padding)
are dropped: they are never detections.

Every op compiles under XLA (tf.function(jit_compile=True)) with static shapes.
"""
from typing import Any, Dict, Sequence

import tensorflow as tf
import tf_keras

from official.vision.ops import box_ops

PRE_NMS_RULES = ("overall", "per_class")
# Rows (image x class) per call of the batched padded NMS: with 512-box tiles its IoU tiles
# took ~6 MB per row, so all 1203 LVIS classes at once needed ~8 GB per image.
_NMS_ROWS_PER_CALL = 64
# Boxes per NMS tile (the result does not depend on it). On CPU, LVIS's 1203 classes x 1000
# RoIs ran about 3x faster with 128 than with tf.image's default 512 (benchmark row 4's inputs);
# TPUs, which compare a whole tile at once, may prefer larger tiles.
_MAX_TILE_SIZE = 128


@tf_keras.utils.register_keras_serializable(package="vild")
class ViLDDetectionGenerator(tf_keras.layers.Layer):
  """Call: `generator(box_outputs, class_scores, rois, image_shape)`.

  Args (constructor):
    pre_nms_top_k: candidates before NMS: (RoI, class) pairs over the image ('overall') or
      RoIs per class ('per_class').
    pre_nms_rule: 'overall' (ours) or 'per_class' (the official code's); see the module doc.
    score_threshold: detections score above this (paper 0).
    nms_iou_threshold: per-class NMS IoU (paper 0.5).
    max_num_detections: detections per image (paper 300).
    box_regression_weights: of the box coder.

  Args (call):
    box_outputs: [B, N, 4] class-agnostic box deltas w.r.t. `rois`.
    class_scores: [B, N, C] per-class probabilities (no background column).
    rois: [B, N, 4] the RoIs, pixel [ymin, xmin, ymax, xmax] in the scaled image.
    image_shape: [B, 2] height and width of the real image content in the scaled image
      (not the padded input size): detections are clipped to it.

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
               pre_nms_rule: str = "overall",
               **kwargs):
    super().__init__(**kwargs)
    if pre_nms_rule not in PRE_NMS_RULES:
      raise ValueError(f"build_detection_generator.pre_nms_rule must be one of "
                       f"{PRE_NMS_RULES}, got {pre_nms_rule!r}.")
    if pre_nms_top_k <= 0 or max_num_detections <= 0:
      raise ValueError(f"build_detection_generator: pre_nms_top_k ({pre_nms_top_k}) and "
                       f"max_num_detections ({max_num_detections}) must be positive.")
    self._config = dict(pre_nms_top_k=pre_nms_top_k, score_threshold=score_threshold,
                        nms_iou_threshold=nms_iou_threshold,
                        max_num_detections=max_num_detections,
                        box_regression_weights=tuple(box_regression_weights),
                        pre_nms_rule=pre_nms_rule)

  def decode_boxes(self, box_outputs: tf.Tensor, rois: tf.Tensor,
                   image_shape: tf.Tensor) -> tf.Tensor:
    boxes = box_ops.decode_boxes(tf.cast(box_outputs, tf.float32), rois,
                                 weights=list(self._config["box_regression_weights"]))
    return box_ops.clip_boxes(boxes, tf.expand_dims(tf.cast(image_shape, tf.float32), 1))

  def call(self, box_outputs, class_scores, rois, image_shape) -> Dict[str, tf.Tensor]:
    cfg = self._config
    boxes = self.decode_boxes(box_outputs, tf.cast(rois, tf.float32), image_shape)  # [B, N, 4]
    has_area = tf.logical_and(boxes[..., 2] > boxes[..., 0], boxes[..., 3] > boxes[..., 1])
    class_scores = tf.cast(class_scores, tf.float32)
    # A candidate is a (RoI, class) pair with a real box scoring above the threshold.
    candidate = tf.logical_and(has_area[..., tf.newaxis],
                               class_scores > cfg["score_threshold"])  # [B, N, C]
    if cfg["pre_nms_rule"] == "per_class":
      selected = _per_class_top_k_nms(boxes, class_scores, candidate, cfg)
    else:
      selected = _overall_top_k_nms(boxes, class_scores, candidate, cfg)
    scores, roi_indices, classes, num_detections = selected

    valid = tf.range(cfg["max_num_detections"])[tf.newaxis] < num_detections[:, tf.newaxis]
    roi_indices = tf.where(valid, roi_indices, -1)
    return {
        "detection_boxes": tf.where(valid[..., tf.newaxis],
                                    tf.gather(boxes, tf.maximum(roi_indices, 0), batch_dims=1),
                                    0.0),
        "detection_scores": tf.where(valid, scores, 0.0),
        "detection_classes": tf.where(valid, classes + 1, 0),
        "num_detections": num_detections,
        "detection_roi_indices": roi_indices,
    }

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), **self._config}


# --------------------------------------------------------------------------------------------
# The two candidate rules. Each returns, best first, [B, K] scores, RoI indices, 0-based
# classes (K = max_num_detections; only the first num_detections [B] entries are valid).
def _per_class_top_k_nms(boxes, class_scores, candidate, cfg):
  """Official rule: top k RoIs per class, NMS per class (classes batched), best K overall."""
  max_out = cfg["max_num_detections"]
  num_rois = _dim(class_scores, 1)
  num_classes = _dim(class_scores, 2)
  k = _min(cfg["pre_nms_top_k"], num_rois)
  scores = tf.where(candidate, class_scores, -1.0)
  top_scores, top_rois = tf.math.top_k(tf.transpose(scores, [0, 2, 1]), k=k)  # [B, C, k]
  per_class_out = _min(max_out, k)
  kept, num_kept = _batched_padded_nms(
      tf.gather(boxes, top_rois, batch_dims=1), top_scores, per_class_out,
      cfg["nms_iou_threshold"])  # [B, C, per_class_out], [B, C]
  kept_valid = tf.range(per_class_out) < num_kept[..., tf.newaxis]
  kept_scores = tf.where(kept_valid, tf.gather(top_scores, kept, batch_dims=2), -1.0)
  kept_rois = tf.gather(top_rois, kept, batch_dims=2)
  batch_size = tf.shape(boxes)[0]
  flat = lambda t: tf.reshape(t, [batch_size, -1])  # noqa: E731  [B, C * per_class_out]
  classes = tf.broadcast_to(tf.range(num_classes)[:, tf.newaxis], tf.shape(kept))
  best_scores, best = _top_k_padded(flat(kept_scores), max_out)
  num_detections = tf.reduce_sum(tf.cast(best_scores > -1.0, tf.int32), axis=1)
  return (best_scores, tf.gather(flat(kept_rois), best, batch_dims=1),
          tf.gather(flat(classes), best, batch_dims=1), num_detections)


def _overall_top_k_nms(boxes, class_scores, candidate, cfg):
  """Our rule: top k (RoI, class) pairs, then one greedy NMS that is blind across classes."""
  max_out = cfg["max_num_detections"]
  num_classes = _dim(class_scores, 2)
  batch_size = tf.shape(boxes)[0]
  scores = tf.reshape(tf.where(candidate, class_scores, -1.0), [batch_size, -1])
  k = _min(cfg["pre_nms_top_k"], _dim(scores, 1))
  top_scores, flat_indices = tf.math.top_k(scores, k=k, sorted=True)
  roi_indices = flat_indices // num_classes
  classes = flat_indices % num_classes
  keep = same_class_nms(tf.gather(boxes, roi_indices, batch_dims=1), classes,
                        top_scores > -1.0, cfg["nms_iou_threshold"], max_out)
  best_scores, best = _top_k_padded(tf.where(keep, top_scores, -1.0), max_out)
  num_detections = tf.reduce_sum(tf.cast(best_scores > -1.0, tf.int32), axis=1)
  return (best_scores, tf.gather(roi_indices, best, batch_dims=1),
          tf.gather(classes, best, batch_dims=1), num_detections)


# --------------------------------------------------------------------------------------------
def _batched_padded_nms(boxes, scores, max_output_size, iou_threshold):
  """NMS of each row of [B, C, k, 4] sorted boxes, in calls of a bounded number of rows.

  Returns (kept [B, C, max_output_size] indices into k, num_kept [B, C]). Boxes with score
  -1 (not candidates) are never kept.
  """
  shape = tf.shape(scores)
  k = _dim(scores, 2)
  rows = shape[0] * shape[1]
  pad = (-rows) % _NMS_ROWS_PER_CALL
  chunks = (rows + pad) // _NMS_ROWS_PER_CALL
  boxes = tf.reshape(tf.pad(tf.reshape(boxes, [rows, k, 4]), [[0, pad], [0, 0], [0, 0]]),
                     [chunks, _NMS_ROWS_PER_CALL, k, 4])
  scores = tf.reshape(tf.pad(tf.reshape(scores, [rows, k]), [[0, pad], [0, 0]],
                             constant_values=-1.0), [chunks, _NMS_ROWS_PER_CALL, k])
  tile_size = _tile_size(k)

  def nms(chunk):
    return tf.image.non_max_suppression_padded(
        chunk[0], chunk[1], max_output_size, iou_threshold=iou_threshold,
        score_threshold=-0.5, pad_to_max_output_size=True, sorted_input=True,
        canonicalized_coordinates=True, tile_size=tile_size)

  kept, num_kept = tf.map_fn(
      nms, (boxes, scores), parallel_iterations=1,
      fn_output_signature=(tf.TensorSpec([_NMS_ROWS_PER_CALL, max_output_size], tf.int32),
                           tf.TensorSpec([_NMS_ROWS_PER_CALL], tf.int32)))
  kept = tf.reshape(kept, [-1, max_output_size])[:rows]
  num_kept = tf.reshape(num_kept, [-1])[:rows]
  return (tf.reshape(kept, tf.concat([shape[:2], [max_output_size]], 0)),
          tf.reshape(num_kept, shape[:2]))


def same_class_nms(boxes: tf.Tensor, classes: tf.Tensor, valid: tf.Tensor,
                   iou_threshold: float, max_output_size: int) -> tf.Tensor:
  """Greedy NMS over score-sorted candidates where a box suppresses only boxes of its class.

  Exactly per-class NMS, run on one list: box j is kept iff it is valid and no kept box i < j
  of the same class has IoU(i, j) >= iou_threshold. Tiled like tf.image's padded NMS (tiles of
  up to 128 boxes; within a tile the rule is iterated to its fixed point, which after n rounds
  is right for the tile's first n boxes), and it stops once every image has
  `max_output_size` kept boxes (later ones rank below them).

  Args:
    boxes: [B, K, 4] pixel yxyx, sorted by descending score.
    classes: [B, K] int class of each box.
    valid: [B, K] bool, False for boxes that must not be kept (nor suppress).
    iou_threshold: the NMS IoU.
    max_output_size: how many kept boxes per image are needed.

  Returns:
    keep [B, K] bool.
  """
  batch_size = tf.shape(boxes)[0]
  num = _dim(boxes, 1)
  tile_size = _tile_size(num)
  num_tiles = -(-num // tile_size) if isinstance(num, int) else (num + tile_size - 1) // tile_size
  pad = num_tiles * tile_size - num
  tiles = lambda t, value: tf.reshape(  # noqa: E731  [B, T, tile_size, ...]
      tf.pad(t, [[0, 0], [0, pad]] + [[0, 0]] * (t.shape.rank - 2), constant_values=value),
      tf.concat([[batch_size, num_tiles, tile_size], tf.shape(t)[2:]], 0))
  boxes, classes, valid = tiles(boxes, 0.0), tiles(classes, -1), tiles(valid, False)
  earlier = tf.range(tile_size)[:, tf.newaxis] < tf.range(tile_size)[tf.newaxis]  # [i, j]: i < j

  def overlaps(a, b):
    """[B, tile, tile] bool: box i of tile a and box j of tile b, same class, IoU >= thr."""
    iou = box_ops.bbox_overlap(tf.gather(boxes, a, axis=1), tf.gather(boxes, b, axis=1))
    same = tf.equal(tf.gather(classes, a, axis=1)[:, :, tf.newaxis],
                    tf.gather(classes, b, axis=1)[:, tf.newaxis, :])
    return tf.logical_and(iou >= iou_threshold, same)

  def suppressed(suppressors, by_keep):
    """[B, tile]: boxes j with a kept box i (by_keep [B, tile]) overlapping them."""
    return tf.reduce_any(tf.logical_and(suppressors, by_keep[..., tf.newaxis]), axis=1)

  def tile_body(t, keep):
    alive = tf.gather(valid, t, axis=1)

    def cross(s, alive):
      return s + 1, tf.logical_and(alive, tf.logical_not(
          suppressed(overlaps(s, t), tf.gather(keep, s, axis=1))))
    _, alive = tf.while_loop(lambda s, _: s < t, cross, [0, alive])

    within = tf.logical_and(overlaps(t, t), earlier)

    def settle(_, tile_keep):
      new = tf.logical_and(alive, tf.logical_not(suppressed(within, tile_keep)))
      return tf.reduce_any(tf.not_equal(new, tile_keep)), new
    _, tile_keep = tf.while_loop(lambda changed, _: changed, settle, [True, alive])
    one_hot = tf.equal(tf.range(num_tiles), t)[tf.newaxis, :, tf.newaxis]
    return t + 1, tf.where(one_hot, tile_keep[:, tf.newaxis], keep)

  def more_needed(t, keep):
    counts = tf.reduce_sum(tf.cast(keep, tf.int32), axis=[1, 2])
    return tf.logical_and(t < num_tiles, tf.reduce_min(counts) < max_output_size)

  _, keep = tf.while_loop(more_needed, tile_body,
                          [0, tf.zeros_like(valid)])
  return tf.reshape(keep, [batch_size, num_tiles * tile_size])[:, :num]


def _top_k_padded(scores, k):
  """top_k of [B, n] along n, to exactly k columns (score -1 and index n - 1 when n < k)."""
  n = _dim(scores, 1)
  pad = max(k - n, 0) if isinstance(n, int) else tf.maximum(k - n, 0)
  scores = tf.pad(scores, [[0, 0], [0, pad]], constant_values=-1.0)
  top_scores, indices = tf.math.top_k(scores, k=k, sorted=True)
  return top_scores, tf.minimum(indices, n - 1)


def _tile_size(num_boxes) -> int:
  """Tiles of up to _MAX_TILE_SIZE boxes; the next power of two (>= 8) for fewer."""
  if not isinstance(num_boxes, int):
    return _MAX_TILE_SIZE
  size = 8
  while size < min(num_boxes, _MAX_TILE_SIZE):
    size *= 2
  return size


def _dim(t: tf.Tensor, axis: int):
  """The static size of an axis when known (XLA wants it), else the dynamic one."""
  static = t.shape[axis]
  return static if static is not None else tf.shape(t)[axis]


def _min(a, b):
  return min(a, b) if isinstance(a, int) and isinstance(b, int) else tf.minimum(a, b)


def gather_by_roi(values: tf.Tensor, roi_indices: tf.Tensor) -> tf.Tensor:
  """Per-RoI values [B, N, ...] -> per-detection values [B, K, ...]; zeros where index is -1."""
  gathered = tf.gather(values, tf.maximum(roi_indices, 0), batch_dims=1)
  valid = tf.reshape(roi_indices >= 0,
                     tf.concat([tf.shape(roi_indices), tf.ones([tf.rank(values) - 2],
                                                               tf.int32)], 0))
  return tf.where(valid, gathered, tf.zeros_like(gathered))
