"""The training/eval input pipeline: one flip decision, determinism, class mapping, eval labels."""
import gin
import numpy as np
import pytest
import tensorflow as tf

from official.vision.ops import preprocess_ops
from vild import anchors
from vild import vocabulary as vocabulary_lib
from vild.data import augmentation
from vild.data import conversion
from vild.data import input_pipeline
from vild.data import tf_example

H, W = 64, 96  # original image
OUT = (64, 96)  # model input (multiple of 32 with levels 3-5)
RED = (230, 20, 20)
VOCAB = vocabulary_lib.Vocabulary.from_categories(
    [{"id": 7, "name": "red ell"}, {"id": 9, "name": "blue square"}])


@pytest.fixture
def small_gin():
  """Small anchors and labels; returns a function that adds more bindings."""
  gin.parse_config(["AnchorSpec.min_level = 3", "AnchorSpec.max_level = 5",
                    "AnchorSpec.anchor_size = 4.0", "build_training_labels.max_num_instances = 16",
                    "build_training_labels.mask_crop_size = 28"])
  return lambda *bindings: gin.parse_config(list(bindings))


def _l_shape():
  """An asymmetric object on the left: an 'L' whose mirror image differs from it."""
  mask = np.zeros([H, W], np.uint8)
  mask[8:40, 10:18] = 1   # vertical bar
  mask[32:40, 10:34] = 1  # foot pointing right
  return mask


def _record(mask=None, category=7, rois=None, source_id=1, extra_object=False) -> bytes:
  mask = _l_shape() if mask is None else mask
  image = np.full([H, W, 3], 120, np.uint8)
  image[mask > 0] = RED
  ys, xs = np.nonzero(mask)
  box = [ys.min() / H, xs.min() / W, (ys.max() + 1) / H, (xs.max() + 1) / W]
  boxes, classes, masks = [box], [category], [mask]
  if extra_object:  # a novel-category object at the bottom right
    other = np.zeros([H, W], np.uint8)
    other[44:60, 70:90] = 1
    image[other > 0] = (20, 20, 230)
    boxes.append([44 / H, 70 / W, 60 / H, 90 / W])
    classes.append(99)
    masks.append(other)
  rois = np.array([box, [0.0, 0.5, 0.5, 1.0]] if rois is None else rois, np.float32)
  features = np.arange(len(rois) * 4, dtype=np.float32).reshape(len(rois), 4)
  return tf_example.encode_example({
      "encoded_image": conversion.encode_png(image), "image_format": "png",
      "source_id": source_id, "height": H, "width": W, "boxes": boxes, "classes": classes,
      "areas": [float(m.sum()) for m in masks],
      "masks_png": [conversion.encode_png(m) for m in masks],
      "distill_rois": rois, "distill_features": features}).SerializeToString()


def _parser(is_training=True, **kwargs):
  kwargs.setdefault("aug_scale_range", (0.8, 1.25))
  return input_pipeline.Parser(
      VOCAB, is_training, output_size=OUT, distill_feature_dim=4, max_num_distill_rois=4,
      anchor_spec=anchors.AnchorSpec(min_level=3, max_level=5, anchor_size=4.0), **kwargs)


def _red_pixels(image):
  """[H, W] bool: where the (normalised) model input shows the red object."""
  pixels = image * np.array(preprocess_ops.STDDEV_RGB) + np.array(preprocess_ops.MEAN_RGB)
  return (pixels[..., 0] > 170) & (pixels[..., 1] < 80)


def _covers(box, red, margin=1.5):
  """True when every red pixel lies inside the pixel yxyx box (plus a resampling margin)."""
  ys, xs = np.nonzero(red)
  return bool(ys.min() + 1 >= box[0] - margin and xs.min() + 1 >= box[1] - margin
              and ys.max() <= box[2] + margin and xs.max() <= box[3] + margin)


def _mask_matches(mask, box, red):
  """IoU of the box-cropped gt mask [s, s] with the red pixels inside the same box."""
  size = mask.shape[0]
  crop = tf.image.crop_and_resize(
      tf.cast(red, tf.float32)[tf.newaxis, ..., tf.newaxis],
      [np.array(box) / [OUT[0], OUT[1], OUT[0], OUT[1]]], [0], [size, size])[0, ..., 0]
  a, b = mask > 0.5, crop.numpy() > 0.5
  return (a & b).sum() / max((a | b).sum(), 1)


def test_one_flip_decision_for_image_boxes_masks_and_distill_rois(small_gin):
  parser = _parser()
  serialized = tf.constant(_record())
  flipped = []
  for seed in range(12):
    image, labels = parser(serialized, tf.constant([0, seed], tf.int64))
    red = _red_pixels(image.numpy())
    box = labels["gt_boxes"].numpy()[0]
    roi = labels["distill_rois"].numpy()[0]
    assert _covers(box, red), f"seed {seed}: gt box {box} misses the object"
    assert _covers(roi, red), f"seed {seed}: distill RoI {roi} misses the object"
    assert _mask_matches(labels["gt_masks"].numpy()[0], box, red) > 0.8, f"seed {seed}: mask"
    flipped.append(np.nonzero(red)[1].mean() > OUT[1] / 2)
    # Padding: 2 RoIs in the record, M = 4.
    np.testing.assert_array_equal(labels["distill_rois"].numpy()[2:], -1)
    np.testing.assert_array_equal(labels["distill_features"].numpy()[2:], -1)
  assert any(flipped) and not all(flipped), "the seeds should cover both flip outcomes"


def test_flip_check_rejects_the_official_double_coin_behaviour(small_gin):
  """The official parser flips the distill RoIs with a second, independent coin."""
  parser = _parser(aug_scale_range=(1.0, 1.0))
  image, labels = parser(tf.constant(_record()), tf.constant([0, 0], tf.int64))
  red = _red_pixels(image.numpy())
  roi = labels["distill_rois"].numpy()[0]
  mirrored_roi = [roi[0], OUT[1] - roi[3], roi[2], OUT[1] - roi[1]]
  assert _covers(roi, red)
  assert not _covers(mirrored_roi, red)
  mirrored_mask = labels["gt_masks"].numpy()[0][:, ::-1]
  assert _mask_matches(mirrored_mask, labels["gt_boxes"].numpy()[0], red) < 0.8


def test_categories_outside_the_vocabulary_are_dropped(small_gin):
  parser = _parser(aug_scale_range=(1.0, 1.0), aug_rand_hflip=False)
  _, labels = parser(tf.constant(_record(extra_object=True)), tf.constant([0, 0], tf.int64))
  classes = labels["gt_classes"].numpy()
  assert classes[0] == 1 and (classes[1:] == -1).all()  # id 7 -> index 1; id 99 dropped


def test_distill_rois_outside_the_crop_become_padding():
  info = tf.constant([[H, W], [32, 32], [2.0, 2.0], [64.0, 64.0]], tf.float32)
  rois = tf.constant([[0.0, 0.0, 10.0, 10.0], [30.0, 30.0, 60.0, 60.0]])
  kept, visible = augmentation.transform_boxes(rois, info)
  assert visible.numpy().tolist() == [1]
  np.testing.assert_allclose(kept.numpy(), [[0.0, 0.0, 32.0, 32.0]])


def test_eval_labels_keep_original_boxes_and_dataset_ids(small_gin, tmp_path):
  path = str(tmp_path / "val.tfrecord")
  with tf.io.TFRecordWriter(path) as writer:
    writer.write(_record(source_id=42, extra_object=True))
  small_gin("Parser.output_size = (64, 96)", "Parser.max_num_eval_instances = 5")
  images, labels = next(iter(input_pipeline.build_dataset(path, VOCAB, is_training=False,
                                                          batch_size=1)))
  assert images.shape == (1, 64, 96, 3)
  truth = labels["groundtruths"]
  assert truth["source_id"].numpy().tolist() == [42]
  assert truth["classes"].numpy()[0].tolist() == [7, 99, -1, -1, -1]  # dataset ids, all kept
  np.testing.assert_allclose(truth["boxes"].numpy()[0, 1], [44, 70, 60, 90], atol=1e-4)
  np.testing.assert_allclose(labels["image_info"].numpy()[0],
                             [[H, W], [64, 96], [1, 1], [0, 0]])


def _write_records(path, n):
  with tf.io.TFRecordWriter(path) as writer:
    for i in range(n):
      mask = np.zeros([H, W], np.uint8)
      mask[4 + 3 * i:30 + 2 * i, 5 + 4 * i:40 + 3 * i] = 1
      writer.write(_record(mask=mask, source_id=i + 1))


def test_seeded_pipeline_is_deterministic(small_gin, tmp_path):
  path = str(tmp_path / "train.tfrecord")
  _write_records(path, 6)
  small_gin("Parser.output_size = (64, 96)", "Parser.distill_feature_dim = 4",
           "Parser.max_num_distill_rois = 4")

  def batches(seed):
    dataset = input_pipeline.build_dataset(path, VOCAB, is_training=True, batch_size=2,
                                           seed=seed, shuffle_buffer_size=6,
                                           repeat_factor_threshold=0.5)
    return [tf.nest.map_structure(lambda t: t.numpy(), b) for b in dataset.take(3)]

  first, again, other = batches(7), batches(7), batches(8)
  tf.nest.map_structure(np.testing.assert_array_equal, first, again)
  assert not all(np.array_equal(a[0], b[0]) for a, b in zip(first, other))
  images, labels = first[0]
  assert images.shape == (2, 64, 96, 3)
  assert labels["distill_rois"].shape == (2, 4, 4)
  assert labels["gt_masks"].shape[:2] == (2, 16)  # tiny gin: 16 instances
  # Each example carries its own RoI-sampling seed for the model (vild.modeling.roi_sampler).
  assert labels["sampling_seeds"].shape == (2, 2)
  assert not np.array_equal(labels["sampling_seeds"][0], labels["sampling_seeds"][1])


def test_bad_inputs_fail_clearly(tmp_path):
  with pytest.raises(ValueError, match="multiple of 64"):
    input_pipeline.Parser(VOCAB, True, output_size=(100, 100))
  no_masks = _record()
  example = tf.train.Example.FromString(no_masks)
  del example.features.feature["image/object/mask"]
  with pytest.raises(tf.errors.InvalidArgumentError, match="include_mask"):
    _parser()(tf.constant(example.SerializeToString()), tf.constant([0, 0], tf.int64))
  with pytest.raises(ValueError, match="matches no files"):
    input_pipeline.build_dataset(str(tmp_path / "none-*.tfrecord"), VOCAB, is_training=True)


def test_each_input_pipeline_reads_its_own_shards(small_gin, tmp_path):
  for shard in range(2):
    with tf.io.TFRecordWriter(str(tmp_path / f"val-{shard}.tfrecord")) as writer:
      for i in range(2):
        writer.write(_record(source_id=10 * shard + i))
  small_gin("Parser.output_size = (64, 96)")
  context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1,
                                       num_replicas_in_sync=2)
  dataset = input_pipeline.build_dataset(str(tmp_path / "val-*"), VOCAB, is_training=False,
                                         batch_size=4, input_context=context)
  ids = [labels["groundtruths"]["source_id"].numpy().tolist() for _, labels in dataset]
  assert ids == [[10, 11]]  # the second shard only, in per-replica batches of 2
