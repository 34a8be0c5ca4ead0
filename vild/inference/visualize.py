"""Drawing detections: masks alpha-blended, boxes outlined, "name score" labels (PIL).

Labels use DejaVu Sans, which matplotlib ships (an installed dependency): full Latin coverage,
so "crème brûlée" is drawn as written (PIL's built-in font draws its accents as boxes). The
label size follows the image (`label_font_size`).
"""
import colorsys
import functools
import os
from typing import Optional

import matplotlib
import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

from vild.inference import detections as detections_lib


def class_colour(index: int) -> tuple:
  """A stable, well-separated RGB colour per class index (golden-ratio hue steps)."""
  r, g, b = colorsys.hsv_to_rgb((index * 0.618033988749895) % 1.0, 0.75, 0.95)
  return int(255 * r), int(255 * g), int(255 * b)


LABEL_FONT = os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf")


@functools.lru_cache(maxsize=8)
def label_font(size: int) -> ImageFont.FreeTypeFont:
  """DejaVu Sans at `size` pixels."""
  return ImageFont.truetype(LABEL_FONT, size)


def label_font_size(height: int, width: int) -> int:
  """Pixels per label line: 1/50 of the shorter side, kept between 10 and 40."""
  return int(np.clip(min(height, width) / 50, 10, 40))


def draw_detections(image: np.ndarray, detections: detections_lib.Detections,
                    max_drawn: Optional[int] = None, mask_alpha: float = 0.45
                    ) -> Image.Image:
  """The image [H, W, 3] uint8 with the (first `max_drawn`) detections drawn on it."""
  shown = detections.select(np.arange(min(len(detections), max_drawn or len(detections))))
  canvas = np.asarray(image, np.float32).copy()
  masks = shown.masks
  if masks is not None:
    for mask, index in zip(masks[::-1], shown.class_indices[::-1]):  # best on top
      on = mask.astype(bool)
      canvas[on] = (1 - mask_alpha) * canvas[on] + mask_alpha * np.array(class_colour(index))
  drawn = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
  draw = ImageDraw.Draw(drawn)
  font = label_font(label_font_size(*canvas.shape[:2]))
  for box, index, name, score in zip(shown.boxes[::-1], shown.class_indices[::-1],
                                     shown.names[::-1], shown.scores[::-1]):
    ymin, xmin, ymax, xmax = (float(v) for v in box)
    colour = class_colour(index)
    draw.rectangle([xmin, ymin, xmax, ymax], outline=colour, width=2)
    label = f"{name} {score:.2f}"
    left, top, right, bottom = draw.textbbox((0, 0), label, font=font)  # ink from the origin
    top_of_label = max(0.0, ymin - (bottom - top) - 2)
    draw.rectangle([xmin, top_of_label, xmin + (right - left) + 4, top_of_label +
                    (bottom - top) + 2], fill=colour)
    draw.text((xmin + 2 - left, top_of_label + 1 - top), label, fill=(0, 0, 0), font=font)
  return drawn
