"""Crop geometry (1x, 1.5x, clipping), crop sampling and region embeddings, by hand."""
import os

import numpy as np
import pytest

from vild.teacher import clip_teacher
from vild.teacher import crops
from vild.teacher import interface

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "tiny_clip")


class MeanTeacher(interface.Teacher):
  """Embeds a crop as (mean of its red channel, 1): easy to follow by hand."""
  name = "mean"

  def __init__(self, size=2):
    self.size, self.batches = size, []

  @property
  def embedding_dim(self):
    return 2

  @property
  def image_size(self):
    return self.size

  def encode_text(self, texts):
    raise NotImplementedError

  def encode_images(self, images):
    images = np.asarray(images, np.float32)
    assert images.shape[1:] == (self.size, self.size, 3)
    self.batches.append(len(images))
    return np.stack([images[..., 0].mean(axis=(1, 2)), np.ones(len(images))], -1)


def test_scale_boxes_keeps_the_centre_and_clips_to_the_image():
  boxes = [[10, 20, 30, 60],   # inside: centre (20, 40), 20 x 40 -> 30 x 60
           [0, 0, 10, 10],     # top-left corner: (-2.5, -2.5) clipped to 0
           [90, 80, 100, 100],  # bottom-right: 102.5 and 105 clipped to 100
           [-1, -1, -1, -1]]   # padding stays empty
  np.testing.assert_allclose(crops.scale_boxes(boxes, 1.5, 100, 100), [
      [5, 10, 35, 70], [0, 0, 12.5, 12.5], [87.5, 75, 100, 100], [0, 0, 0, 0]])
  np.testing.assert_allclose(crops.scale_boxes(boxes[:3], 1.0, 100, 100), boxes[:3])
  # Non-square image: height 50 clips y, width 200 does not clip x.
  np.testing.assert_allclose(crops.scale_boxes([[10, 20, 40, 60]], 1.5, 50, 200),
                             [[2.5, 10, 47.5, 70]])


def test_has_area_rejects_padding_and_degenerate_boxes():
  boxes = [[0, 0, 1, 1], [-1, -1, -1, -1], [0, 0, 0, 0], [5, 5, 5, 9], [0, 0, np.nan, 1]]
  assert crops.has_area(boxes).numpy().tolist() == [True, False, False, False, False]


def test_crop_regions_samples_pixel_centres():
  image = np.arange(6 * 8 * 3, dtype=np.float32).reshape(6, 8, 3)
  # A box covering whole pixels at the output size gives exactly those pixels.
  np.testing.assert_array_equal(crops.crop_regions(image, [[2, 1, 4, 3]], 2)[0],
                                image[2:4, 1:3])
  # The whole 6 x 8 image at 3 x 4: bilinear at the centres of 2 x 2 blocks = block means.
  whole = crops.crop_regions(image, [[0, 0, 6, 8]], 3)[0]
  assert whole.shape == (3, 3, 3)
  block_means = image[:6, :6].reshape(3, 2, 3, 2, 3).mean(axis=(1, 3))
  np.testing.assert_allclose(crops.crop_regions(image, [[0, 0, 6, 6]], 3)[0], block_means)


def test_region_embedding_is_the_normalised_sum_of_both_crops():
  image = np.zeros([4, 4, 3], np.float32)
  image[:2, :2, 0] = 8.0
  # 1x crop of [0, 0, 2, 2]: all 8 -> (8, 1).
  # 1.5x crop: [-0.5, -0.5, 2.5, 2.5] clipped to [0, 0, 2.5, 2.5]; 2 x 2 samples at pixel
  # coordinates 0.125 and 1.375 per axis: 8, 8 * 0.625 = 5, 5, 8 * 0.625^2 = 3.125 -> mean
  # 5.28125 -> (5.28125, 1). Sum (13.28125, 2), normalised.
  embedder = crops.RegionEmbedder(MeanTeacher(), batch_size=8)
  out = embedder(image, [[0, 0, 2, 2], [-1, -1, -1, -1]])
  expected = np.array([13.28125, 2.0]) / np.hypot(13.28125, 2.0)
  np.testing.assert_allclose(out[0], expected, atol=1e-6)
  np.testing.assert_array_equal(out[1], [0, 0])  # padding: zeros, no teacher time
  assert embedder.num_crops == 2


def test_embed_many_batches_across_images_and_keeps_order():
  rng = np.random.default_rng(0)
  images = [rng.uniform(0, 255, (10 + i, 12, 3)).astype(np.float32) for i in range(5)]
  corners = [rng.uniform(0, 4, (k, 2)) for k in (3, 0, 1, 4, 2)]  # (ymin, xmin)
  boxes = [np.concatenate([c, c + rng.uniform(2, 6, c.shape)], axis=1) for c in corners]
  boxes[3][1] = -1  # a padding row in the middle
  teacher = MeanTeacher()
  streamed = list(crops.RegionEmbedder(teacher, batch_size=3).embed_many(zip(images, boxes)))
  assert set(teacher.batches[:-1]) == {3}  # full batches, whatever the image boundaries
  assert sum(teacher.batches) == 2 * (3 + 0 + 1 + 3 + 2)
  one_by_one = [crops.RegionEmbedder(MeanTeacher())(i, b) for i, b in zip(images, boxes)]
  assert [s.shape for s in streamed] == [(3, 2), (0, 2), (1, 2), (4, 2), (2, 2)]
  for a, b in zip(streamed, one_by_one):
    np.testing.assert_allclose(a, b, atol=1e-6)
  np.testing.assert_array_equal(streamed[3][1], [0, 0])


def test_region_embeddings_with_the_clip_teacher():
  teacher = clip_teacher.load_clip_teacher(FIXTURE, batch_size=4)
  rng = np.random.default_rng(1)
  image = rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)
  boxes = np.array([[4, 4, 30, 20], [10, 0, 48, 40], [-1, -1, -1, -1]], np.float32)
  out = crops.RegionEmbedder(teacher)(image, boxes)
  assert out.shape == (3, teacher.embedding_dim)
  np.testing.assert_allclose(np.linalg.norm(out[:2], axis=-1), 1.0, atol=1e-5)
  by_hand = sum(teacher.encode_images(crops.crop_regions(
      image, crops.scale_boxes(boxes[:2], s, 48, 40), 32)) for s in (1.0, 1.5))
  by_hand /= np.linalg.norm(by_hand, axis=-1, keepdims=True)
  np.testing.assert_allclose(out[:2], by_hand, atol=1e-5)


def test_bad_inputs_are_named():
  embedder = crops.RegionEmbedder(MeanTeacher())
  with pytest.raises(ValueError, match="boxes must be .N, 4."):
    embedder(np.zeros([4, 4, 3]), [[0, 0, 1]])
  with pytest.raises(ValueError, match="image must be .H, W, 3."):
    embedder(np.zeros([4, 4]), [[0, 0, 1, 1]])
  with pytest.raises(ValueError, match="scales must be positive"):
    crops.RegionEmbedder(MeanTeacher(), scales=(1.0, 0.0))
