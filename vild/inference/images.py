"""Reading images for inference and expanding an --image spec (file, glob or directory).

Pixels go through `vild.data.pixels.to_rgb8`, the converter's rule: 16-bit images are scaled to
8 bits (as TensorFlow's decoder, and so the SavedModel, reads them), images without an 8-bit
scale (float) are refused with their file named.
"""
import glob
import os
from typing import List, Union

import numpy as np
from PIL import Image
from PIL import ImageOps
import tensorflow as tf

from vild.data import pixels
from vild.utils import io

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
ImageLike = Union[str, np.ndarray, Image.Image]


class ImageError(ValueError):
  """An image that cannot be read, or an --image spec that matches nothing."""


def load_image(path: str) -> np.ndarray:
  """uint8 [H, W, 3] RGB, EXIF orientation applied (as a viewer shows the photo)."""
  try:
    with io.open_file(path, "rb") as f, Image.open(f) as image:
      return pixels.to_rgb8(ImageOps.exif_transpose(image), source=path)
  except pixels.UnsupportedImageError as e:
    raise ImageError(str(e)) from e
  except (OSError, ValueError, Image.DecompressionBombError, tf.errors.OpError) as e:
    raise ImageError(f"{path}: cannot read the image ({e}).") from e


def as_array(image: ImageLike) -> np.ndarray:
  """A path, PIL image or array -> uint8 [H, W, 3]."""
  if isinstance(image, str):
    return load_image(image)
  if isinstance(image, Image.Image):
    return pixels.to_rgb8(image, source="the PIL image")
  array = np.asarray(image)
  if array.ndim == 2:
    array = np.stack([array] * 3, axis=-1)
  if array.ndim != 3 or array.shape[-1] != 3 or min(array.shape[:2]) < 1:
    raise ImageError(f"An image array must be [height, width, 3] RGB, got shape "
                     f"{array.shape}.")
  if array.dtype != np.uint8:
    if not np.issubdtype(array.dtype, np.number) or array.min() < 0 or array.max() > 255:
      raise ImageError(f"An image array must hold uint8 values or numbers in [0, 255], got "
                       f"{array.dtype} with range [{array.min()}, {array.max()}].")
    array = np.round(array).astype(np.uint8)
  return array


def find_images(spec: str) -> List[str]:
  """The image files a spec names: a file, a glob pattern, or a directory (its image files)."""
  if io.isdir(spec):
    paths = [os.path.join(spec, name) for name in sorted(io.listdir(spec))
             if name.lower().endswith(IMAGE_EXTENSIONS) and
             not io.isdir(os.path.join(spec, name))]
    where = f"directory {spec} has no image files ({', '.join(IMAGE_EXTENSIONS)})"
  elif glob.has_magic(spec):
    paths = [p for p in io.glob(spec) if not io.isdir(p)]
    where = f"pattern {spec!r} matches no files"
  else:
    paths = [spec] if io.exists(spec) and not io.isdir(spec) else []
    where = f"{spec}: no such file"
  if not paths:
    raise ImageError(f"--image: {where}.")
  return paths
