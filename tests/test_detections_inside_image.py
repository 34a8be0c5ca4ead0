"""No detection leaves the image content: not in the model (through train_step.forward, which
evaluation uses), not from the Detector, not from the SavedModel (issue 16.7).

A 96x160 image in the 128x128 model input fills 77 rows; the rest is letterbox padding, where an
undertrained model puts boxes that clipping to the image turns into zero-area slivers.
"""
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests import inference_helpers as helpers
from vild.data import augmentation
from vild.data import input_pipeline
from vild.inference import detector as detector_lib
from vild.training import train_step

HEIGHT, WIDTH = 96, 160
VOCABULARY = ["red square", "disc", "koala", "green triangle"]


@pytest.fixture(scope="module")
def wide_image():
  return np.asarray(Image.fromarray(helpers.toy_image(8)).resize((WIDTH, HEIGHT)))


def assert_inside_with_area(boxes, height, width):
  assert len(boxes) > 0
  assert boxes.min() >= 0
  assert boxes[:, [0, 2]].max() <= height + 1e-3 and boxes[:, [1, 3]].max() <= width + 1e-3
  areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
  assert areas.min() > 0, f"{np.sum(areas <= 0)} of {len(boxes)} detections have no area"


def test_content_size_excludes_the_padding_and_the_crop():
  eval_info = input_pipeline.eval_image(tf.zeros([HEIGHT, WIDTH, 3], tf.uint8), (128, 128))[1]
  np.testing.assert_allclose(augmentation.content_size(eval_info), [77, 128])
  # Jitter: scaled 200 x 256 cropped at offset (40, 100) to 128 x 128: content fills it.
  jitter_info = tf.constant([[100, 128], [128, 128], [2, 2], [40, 100]], tf.float32)
  np.testing.assert_allclose(augmentation.content_size(jitter_info), [128, 128])
  # Shrunk to 50 x 64 in a 128 x 128 input (batched image_info).
  small_info = tf.constant([[[100, 128], [128, 128], [0.5, 0.5], [0, 0]]], tf.float32)
  np.testing.assert_allclose(augmentation.content_size(small_info), [[50, 64]])


def test_model_detections_stay_in_the_content(tmp_path_factory, wide_image):
  model = helpers.keras_model(tmp_path_factory)
  image, image_info = input_pipeline.eval_image(tf.constant(wide_image), helpers.SIZE)
  text = helpers.teacher().encode_text(VOCABULARY)
  outputs = train_step.forward(model, image[tf.newaxis], {"image_info": image_info[tf.newaxis]},
                               training=False, text_embeddings=text,
                               base_mask=np.ones(len(VOCABULARY), bool))
  n = int(outputs["num_detections"][0])
  assert_inside_with_area(outputs["detection_boxes"][0, :n].numpy(), 77, 128)


def test_detector_detections_stay_in_the_image(tmp_path_factory, wide_image):
  [detections] = helpers.detector(tmp_path_factory).detect(wide_image, VOCABULARY)
  assert_inside_with_area(detections.boxes, HEIGHT, WIDTH)


def test_saved_model_detections_stay_in_the_image(tmp_path_factory, wide_image):
  exported = detector_lib.Detector.load(helpers.exported_dir(tmp_path_factory),
                                        embed_names=helpers.teacher().encode_text)
  [detections] = exported.detect(wide_image, VOCABULARY)
  assert_inside_with_area(detections.boxes, HEIGHT, WIDTH)
