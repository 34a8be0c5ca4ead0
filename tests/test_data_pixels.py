"""to_rgb8 on real files of every PIL mode: 16-bit scaled like libpng, the rest like TensorFlow."""
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from vild.data import pixels

H, W = 6, 8


def _reopened(tmp_path, image: Image.Image, name: str) -> Image.Image:
  path = str(tmp_path / name)
  image.save(path)
  return Image.open(path)


def test_sixteen_bit_grayscale_png_keeps_its_high_byte_like_tensorflow(tmp_path):
  values = np.linspace(0, 65535, H * W).astype(np.uint16).reshape(H, W)
  path = str(tmp_path / "gray16.png")
  Image.fromarray(values).save(path)
  with Image.open(path) as image:
    assert image.mode in pixels.SIXTEEN_BIT_MODES
    rgb = pixels.to_rgb8(image, path)
  assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8
  np.testing.assert_array_equal(rgb[..., 0], values >> 8)
  assert rgb.max() == 255 and rgb.min() == 0 and len(np.unique(rgb)) > 10  # not all white
  with open(path, "rb") as f:
    np.testing.assert_array_equal(rgb, tf.io.decode_png(f.read(), channels=3).numpy())


def test_sixteen_bit_rgb_png_written_by_tensorflow(tmp_path):
  values = np.random.default_rng(0).integers(0, 65536, (H, W, 3)).astype(np.uint16)
  path = tmp_path / "rgb16.png"
  path.write_bytes(tf.io.encode_png(values).numpy())
  with Image.open(path) as image:
    np.testing.assert_array_equal(pixels.to_rgb8(image), values >> 8)


def test_32_bit_integer_image_in_16_bit_range(tmp_path):
  values = np.full((H, W), 1000, np.int32)
  image = _reopened(tmp_path, Image.fromarray(values, mode="I"), "int.tiff")
  assert image.mode == "I"
  np.testing.assert_array_equal(pixels.to_rgb8(image), np.full((H, W, 3), 1000 >> 8))


@pytest.mark.parametrize("mode,name", [("LA", "la.png"), ("P", "p.png"), ("RGBA", "rgba.png"),
                                       ("1", "bilevel.png"), ("L", "l.png"),
                                       ("P", "p.gif")])
def test_other_modes_match_tensorflow(tmp_path, mode, name):
  rgb = np.random.default_rng(1).integers(0, 256, (H, W, 3)).astype(np.uint8)
  image = _reopened(tmp_path, Image.fromarray(rgb).convert(mode), name)
  assert image.mode == mode
  converted = pixels.to_rgb8(image)
  decoded = tf.io.decode_image((tmp_path / name).read_bytes(), channels=3,
                               expand_animations=False).numpy()
  np.testing.assert_array_equal(converted, decoded)


def test_cmyk_jpeg(tmp_path):
  rgb = np.full((H, W, 3), (200, 100, 50), np.uint8)
  image = _reopened(tmp_path, Image.fromarray(rgb).convert("CMYK"), "cmyk.jpg")
  assert image.mode == "CMYK"
  np.testing.assert_allclose(pixels.to_rgb8(image).astype(int), rgb, atol=3)


def test_pixels_without_an_8_bit_scale_are_refused(tmp_path):
  floats = _reopened(tmp_path, Image.fromarray(np.ones((H, W), np.float32)), "f.tiff")
  with pytest.raises(pixels.UnsupportedImageError, match=r"f.tiff: 32-bit floating-point"):
    pixels.to_rgb8(floats, "f.tiff")
  wide = Image.fromarray(np.full((H, W), 70000, np.int32), mode="I")
  with pytest.raises(pixels.UnsupportedImageError, match=r"wide: .*\[70000, 70000\]"):
    pixels.to_rgb8(wide, "wide")
