"""ServingModule: a raw image in, detections in original-image pixels out, as tf.functions.

One graph serves both the Python Detector (on a Keras model) and the exported SavedModel, so
the two cannot drift apart. Preprocessing is official.vision's evaluation resize: keep the
aspect ratio, scale to fit the model input, pad at the bottom-right (no augmentation).

Signature functions (inputs by name; B images per call):
  serve_with_embeddings(images uint8 [B, H, W, 3], text_embeddings [C, D], base_mask [C] bool)
  serve_bytes_with_embeddings(image_bytes string [B], text_embeddings, base_mask)
  serve(images)  and  serve_bytes(image_bytes)   with a vocabulary baked in at export
`base_mask` (True = base category) matters only for ViLD-ensemble scoring: True for a name the
model was trained on with boxes, i.e. a base category of its training vocabulary (an export
carries it in assets.extra/training_vocabulary.json; vild.inference.vocabularies.
split_by_training computes the mask, as the Detector does by default).

Outputs (K detections, P proposals; see ViLDModel.call):
  detection_boxes [B, K, 4]       pixel [ymin, xmin, ymax, xmax] in the ORIGINAL image
  detection_scores [B, K], detection_classes [B, K] int32 (1-based; 0 = padding),
  num_detections [B], detection_class_scores [B, K, C], detection_roi_indices [B, K],
  detection_region_embeddings [B, K, D], detection_image_embeddings [B, K, D] (ensemble),
  detection_masks [B, K, m, m] probabilities in each box's frame (models with masks),
  proposals [B, P, 4] original pixels, proposal_scores [B, P], image_info [B, 4, 2].
"""
from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from official.vision.ops import box_ops
from vild import anchors as anchors_lib
from vild import text_embeddings as text_embeddings_lib
from vild.data import augmentation
from vild.data import input_pipeline
from vild.inference import spec as spec_lib
from vild.modeling import detection_generator as detection_generator_lib
from vild.modeling import text_classifier as text_classifier_lib
from vild.modeling import vild_model

BOX_OUTPUTS = ("detection_boxes", "proposals")


class ServingModule(tf.Module):
  """Wraps a ViLDModel with preprocessing and box mapping.

  Args:
    model: a built ViLDModel.
    input_size: (height, width) of the model input (a multiple of the anchors' stride).
    use_ensemble: False scores a ViLD-ensemble model with its text branch only.
    text_embeddings: optional [C, D] vocabulary baked in for `serve` / `serve_bytes`.
    base_mask: [C] bool for the baked vocabulary (default all base).
  """

  def __init__(self, model: vild_model.ViLDModel, input_size: Sequence[int],
               use_ensemble: Optional[bool] = None,
               text_embeddings: Optional[np.ndarray] = None,
               base_mask: Optional[np.ndarray] = None):
    super().__init__(name="vild_serving")
    check_input_size(model, input_size)
    # The Keras model stays out of the SavedModel's object graph (Keras would trace its own
    # training-call signatures); the traced functions capture its variables, tracked here.
    self._model = text_classifier_lib.Untracked(model)
    self.model_variables = list(model.variables)
    self._input_size = tuple(int(s) for s in input_size)
    self._use_ensemble = use_ensemble
    dim = model.embedding_dim
    self._detect = tf.function(self._detect_preprocessed, input_signature=[
        tf.TensorSpec([None, *self._input_size, 3], tf.float32, name="images"),
        tf.TensorSpec([None, 4, 2], tf.float32, name="image_info"),
        tf.TensorSpec([None, dim], tf.float32, name="text_embeddings"),
        tf.TensorSpec([None], tf.bool, name="base_mask")])
    self.baked_text_embeddings = None
    if text_embeddings is not None:
      matrix = text_embeddings_lib.l2_normalize(text_embeddings_lib.validate(
          text_embeddings, "baked vocabulary", embedding_dim=dim))
      mask = np.ones(len(matrix), bool) if base_mask is None else np.asarray(base_mask, bool)
      if mask.shape != (len(matrix),):
        raise ValueError(f"base_mask has shape {mask.shape}; the baked vocabulary has "
                         f"{len(matrix)} classes.")
      self.baked_text_embeddings = tf.Variable(matrix, trainable=False)
      self.baked_base_mask = tf.Variable(mask, trainable=False)

  # ------------------------------------------------------------------------------------------
  # Signature functions.
  @tf.function
  def serve_with_embeddings(self, images, text_embeddings, base_mask):
    return self._detect(*self._preprocess_images(images), text_embeddings, base_mask)

  @tf.function
  def serve_bytes_with_embeddings(self, image_bytes, text_embeddings, base_mask):
    return self._detect(*self._preprocess_bytes(image_bytes), text_embeddings, base_mask)

  @tf.function
  def serve(self, images):
    return self._detect(*self._preprocess_images(images), self.baked_text_embeddings,
                        self.baked_base_mask)

  @tf.function
  def serve_bytes(self, image_bytes):
    return self._detect(*self._preprocess_bytes(image_bytes), self.baked_text_embeddings,
                        self.baked_base_mask)

  def signature(self, name: str) -> tf.types.experimental.ConcreteFunction:
    """The concrete function of one signature (what the SavedModel exports under `name`)."""
    dim = self._model.value.embedding_dim
    images = tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")
    image_bytes = tf.TensorSpec([None], tf.string, name="image_bytes")
    text = tf.TensorSpec([None, dim], tf.float32, name="text_embeddings")
    mask = tf.TensorSpec([None], tf.bool, name="base_mask")
    functions = {
        "serve_with_embeddings": (self.serve_with_embeddings, (images, text, mask)),
        "serve_bytes_with_embeddings": (self.serve_bytes_with_embeddings,
                                        (image_bytes, text, mask)),
        "serve": (self.serve, (images,)),
        "serve_bytes": (self.serve_bytes, (image_bytes,)),
    }
    function, specs = functions[name]
    return function.get_concrete_function(*specs)

  def signatures(self) -> Dict[str, tf.types.experimental.ConcreteFunction]:
    """The concrete functions to export, by signature name."""
    names = ["serve_with_embeddings", "serve_bytes_with_embeddings"]
    if self.baked_text_embeddings is not None:
      names += ["serve", "serve_bytes"]
    return {name: self.signature(name) for name in names}

  # ------------------------------------------------------------------------------------------
  def _preprocess_one(self, image: tf.Tensor):
    """uint8 [H, W, 3] -> (normalised [h, w, 3] model input, image_info [4, 2]), exactly as
    evaluation and offline proposals prepare an image."""
    return input_pipeline.eval_image(image, self._input_size)

  def _preprocess_images(self, images):
    signature = (tf.TensorSpec([*self._input_size, 3], tf.float32),
                 tf.TensorSpec([4, 2], tf.float32))
    return tf.map_fn(self._preprocess_one, images, fn_output_signature=signature)

  def _preprocess_bytes(self, image_bytes):
    def decode_and_preprocess(encoded):
      image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
      image.set_shape([None, None, 3])
      return self._preprocess_one(image)
    signature = (tf.TensorSpec([*self._input_size, 3], tf.float32),
                 tf.TensorSpec([4, 2], tf.float32))
    return tf.map_fn(decode_and_preprocess, image_bytes, fn_output_signature=signature)

  def _detect_preprocessed(self, images, image_info, text_embeddings, base_mask):
    # Detections stay inside the image content, never in the letterbox padding.
    outputs = self._model.value(images, augmentation.content_size(image_info),
                                text_embeddings=text_embeddings, base_mask=base_mask,
                                use_ensemble=self._use_ensemble, training=False)
    outputs = {k: v for k, v in outputs.items() if k.startswith("detection_") or
               k in ("num_detections", "proposals", "proposal_scores")}
    for key in BOX_OUTPUTS:
      outputs[key] = to_original_pixels(outputs[key], image_info)
    outputs["image_info"] = image_info
    return outputs


def check_input_size(model: vild_model.ViLDModel, input_size: Sequence[int]) -> None:
  """Fails unless (height, width) are positive multiples of the anchors' coarsest stride."""
  stride = (model.get_config()["anchor_spec"] or anchors_lib.AnchorSpec()).stride
  if len(input_size) != 2 or any(int(s) <= 0 or int(s) % stride for s in input_size):
    raise ValueError(f"input_size {tuple(input_size)} must be (height, width), each a positive "
                     f"multiple of {stride} (2^max_level of the model's anchors).")


def set_detection_settings(model: vild_model.ViLDModel, score_threshold: Optional[float] = None,
                           nms_iou_threshold: Optional[float] = None,
                           max_detections: Optional[int] = None) -> None:
  """Rebuilds the model's detection generator with new settings (None keeps a setting).

  The generator has no weights, so this changes only post-processing, in place.
  """
  settings = spec_lib.detection_settings(model.detection_generator)
  overrides = {"score_threshold": score_threshold, "nms_iou_threshold": nms_iou_threshold,
               "max_num_detections": max_detections}
  settings.update({k: v for k, v in overrides.items() if v is not None})
  model.detection_generator = detection_generator_lib.ViLDDetectionGenerator(**settings)


def to_original_pixels(boxes: tf.Tensor, image_info: tf.Tensor) -> tf.Tensor:
  """[B, N, 4] boxes in the model input -> pixels of the original image, clipped to it."""
  scale = tf.tile(image_info[:, 2:3, :], [1, 1, 2])   # [B, 1, 4]
  offset = tf.tile(image_info[:, 3:4, :], [1, 1, 2])
  return box_ops.clip_boxes((boxes + offset) / scale, image_info[:, 0:1, :])
