"""The SavedModel: exported by the CLI, reloaded in a fresh process, equal to the Keras model."""
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests import inference_helpers as helpers
from vild.data import input_pipeline
from vild.inference import detector as detector_lib
from vild.inference import export

BASE_MASK = np.array([not novel for novel in helpers.TOY_NOVEL])
SIGNATURES = ("serve_with_embeddings", "serve_bytes_with_embeddings", "serve", "serve_bytes")

# Runs in a fresh interpreter that imports TensorFlow only: the export must stand on its own.
RELOAD = """
import sys
import numpy as np
import tensorflow as tf
export_dir, inputs_path, outputs_path = sys.argv[1:]
inputs = np.load(inputs_path)
signatures = tf.saved_model.load(export_dir).signatures
images = tf.constant(inputs["image"][None])
image_bytes = tf.constant([inputs["png"].tobytes()])
text = dict(text_embeddings=tf.constant(inputs["text"]), base_mask=tf.constant(inputs["mask"]))
calls = {"serve_with_embeddings": dict(images=images, **text),
         "serve_bytes_with_embeddings": dict(image_bytes=image_bytes, **text),
         "serve": dict(images=images), "serve_bytes": dict(image_bytes=image_bytes)}
outputs = {}
for name, kwargs in calls.items():
  for key, value in signatures[name](**kwargs).items():
    outputs[name + "/" + key] = value.numpy()
np.savez(outputs_path, **outputs)
"""


@pytest.fixture(scope="module")
def teacher():
  return helpers.teacher()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  """The CLI's export with the toy vocabulary baked in (the last two names novel)."""
  return helpers.exported_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def keras_model(tmp_path_factory):
  return helpers.keras_model(tmp_path_factory)


def keras_outputs(model, image, text):
  """The restored Keras model on the image, preprocessed as evaluation does."""
  normalized, image_info = input_pipeline.eval_image(tf.constant(image), helpers.SIZE)
  outputs = model(normalized[tf.newaxis], image_info[tf.newaxis, 1], text_embeddings=text,
                  base_mask=BASE_MASK, training=False)
  return {k: v.numpy() for k, v in outputs.items() if not isinstance(v, dict)}


def test_saved_model_in_a_fresh_process_matches_the_keras_model(
    exported, keras_model, teacher, tmp_path):
  image = helpers.toy_image(7)
  png = tmp_path / "scene.png"
  Image.fromarray(image).save(png)
  text = teacher.encode_text(helpers.TOY_NAMES)
  np.savez(tmp_path / "inputs.npz", image=image, text=text, mask=BASE_MASK,
           png=np.frombuffer(png.read_bytes(), np.uint8))
  helpers.run_python(["-c", RELOAD, exported, str(tmp_path / "inputs.npz"), str(tmp_path / "outputs.npz")])
  served = dict(np.load(tmp_path / "outputs.npz"))

  keras = keras_outputs(keras_model, image, text)
  n = int(keras["num_detections"][0])
  assert n > 0
  for signature in SIGNATURES:
    assert int(served[f"{signature}/num_detections"][0]) == n
    # A 128x128 image needs no resizing, so original pixels are model-input pixels.
    for key in ("detection_boxes", "detection_scores", "detection_classes",
                "detection_class_scores", "detection_region_embeddings",
                "detection_image_embeddings", "detection_masks", "detection_roi_indices",
                "proposals", "proposal_scores"):
      np.testing.assert_allclose(served[f"{signature}/{key}"], keras[key], rtol=1e-4,
                                 atol=1e-5, err_msg=f"{signature}/{key}")


def test_detector_on_the_export_equals_the_detector_on_the_keras_model(
    exported, tmp_path_factory, teacher):
  from_export = detector_lib.Detector.load(exported, embed_names=teacher.encode_text)
  from_keras = helpers.detector(tmp_path_factory)
  assert from_export.spec.to_dict() == from_keras.spec.to_dict()
  image = np.asarray(Image.fromarray(helpers.toy_image(8)).resize((160, 96)))  # not 128x128
  vocabulary = ["red square", "disc", "koala"]
  [a] = from_export.detect(image, vocabulary)
  [b] = from_keras.detect(image, vocabulary)
  assert a.image_size == (96, 160) and len(a) == len(b) > 0
  np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
  np.testing.assert_allclose(a.scores, b.scores, rtol=1e-4, atol=1e-7)
  np.testing.assert_array_equal(a.masks, b.masks)
  assert a.boxes[:, [0, 2]].max() <= 96 and a.boxes[:, [1, 3]].max() <= 160


def test_export_options_that_the_graph_fixes_fail_clearly(exported, keras_model,
                                                         tmp_path_factory):
  with pytest.raises(detector_lib.DetectorError, match="re-export with --nms_iou_threshold"):
    detector_lib.Detector.from_saved_model(exported, nms_iou_threshold=0.3)
  with pytest.raises(detector_lib.DetectorError, match="re-export with --max_detections"):
    detector_lib.Detector.from_saved_model(exported, max_detections=1000)
  with pytest.raises(export.ExportError, match="holds an earlier export.*--overwrite"):
    export.export_saved_model(keras_model, exported, helpers.SIZE)
  with pytest.raises(export.ExportError, match="no saved_model.pb"):
    export.load_saved_model(helpers.trained_model_dir(tmp_path_factory))
