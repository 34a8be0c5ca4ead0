"""Any decoded PIL image -> uint8 [H, W, 3] RGB pixels: one rule for every reader of image files.

PIL's own `convert("RGB")` clips 16-bit pixels to 255, so a 16-bit PNG comes out all white.
Here 16-bit pixels keep their high byte (x >> 8), which is what libpng, and so
`tf.io.decode_png`, gives for the same file: an image reads the same in the converter, in the
Python detector and in the SavedModel. 32-bit integer images ("I", what older Pillow made of
16-bit PNGs) are taken as 16-bit. Alpha is dropped (as `tf.io.decode_image(channels=3)`
does); palette, bilevel, CMYK, YCbCr, LAB and HSV images take PIL's conversion. Pixels without
a defined 8-bit scale (32-bit float, 32-bit integers outside 0..65535) are refused.

Orientation is left alone: the dataset converter keeps the stored pixel grid (the one COCO/LVIS
annotations refer to); a viewer-facing loader applies EXIF rotation before calling `to_rgb8`.
"""
import numpy as np
from PIL import Image

SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
# What tf.io.decode_image(channels=3) reads into the same pixels as `to_rgb8`: stored as is.
TENSORFLOW_READABLE_MODES = ("RGB", "L")


class UnsupportedImageError(ValueError):
  """The image's pixels have no defined 8-bit RGB form; the message names the file and mode."""


def to_rgb8(image: Image.Image, source: str = "image") -> np.ndarray:
  """uint8 [H, W, 3] RGB pixels of a PIL image of any mode; `source` names it in errors.

  Raises:
    UnsupportedImageError: float pixels, integers outside 0..65535, or a mode PIL cannot
      convert.
  """
  if image.mode in SIXTEEN_BIT_MODES or image.mode == "I":
    values = np.asarray(image)
    if values.size and (values.min() < 0 or values.max() > 65535):
      raise UnsupportedImageError(
          f"{source}: 32-bit integer pixels in [{values.min()}, {values.max()}] have no 8-bit "
          "scale; save the image as 8- or 16-bit PNG or as JPEG.")
    gray = (values.astype(np.uint32) >> 8).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)
  if image.mode == "F":
    raise UnsupportedImageError(
        f"{source}: 32-bit floating-point pixels have no defined 8-bit scale; save the image as "
        "8- or 16-bit PNG or as JPEG.")
  try:
    return np.asarray(image.convert("RGB"), np.uint8)
  except ValueError as e:
    raise UnsupportedImageError(f"{source}: PIL cannot convert mode {image.mode} to RGB "
                                f"({e}); save the image as 8-bit RGB PNG or JPEG.") from e
