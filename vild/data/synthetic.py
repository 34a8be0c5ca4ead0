"""A small, deterministic synthetic open-vocabulary world: the library's embedded default data.

Categories are colour x shape combinations ("purple star"). Each novel category is an unseen
COMBINATION of a colour and a shape that both appear in base categories ("purple star" novel
while "purple circle" and "yellow star" are base), so a text encoder trained on captions can
place novel names sensibly and a detector's region embeddings can generalise to them. With
`WorldSpec.novel_shapes`, every category of those shapes is novel too: a concept no training
box shows, only the teacher's captions, as LVIS rare categories are new concepts (the
benchmark's world, configs/synthetic/benchmark.gin). Novel categories are tagged rare ('r'),
base ones frequent or common ('f'/'c'), as in LVIS.

`generate(output_dir, spec)` writes, in LVIS v1 format so the real converter handles it:

  train.json, images/train/*.png  scenes of several objects with occlusion and varied sizes;
                                  ONLY base categories are annotated, novel objects still appear
  train_full.json                 the same training scenes with every object annotated: the
                                  data of the supervised base+novel baseline (the "oracle")
  val.json, images/val/*.png      the same kind of scenes, every object annotated
  crops.npy [N, S, S, 3] uint8, captions.json
                                  captioned photos of objects of ALL categories (varied
                                  templates and synonyms), each cut from a scene of its own
                                  around one object, framed loosely as proposals frame objects
                                  (neighbours and occluders show), and some captioned
                                  background regions: the "web image-text pairs" a CLIP-like
                                  teacher learns from
  world.json                      the spec and a summary

Annotations carry RLE masks of the visible part of each object, boxes, areas and iscrowd=0.
neg_category_ids lists the categories verified absent (train: absent base categories; val: all
absent categories), so LVIS evaluation counts false positives everywhere.
"""
import dataclasses
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import gin
import numpy as np
from absl import logging
from PIL import Image
from PIL import ImageDraw
from pycocotools import mask as mask_utils

from vild.utils import io

FORMAT = "vild.synthetic/1"
CAPTIONS_FORMAT = "vild.synthetic.captions/1"

COLOURS = {
    "red": (215, 35, 35),
    "green": (40, 165, 60),
    "blue": (40, 80, 225),
    "yellow": (235, 215, 40),
    "purple": (145, 55, 200),
    "orange": (245, 140, 25),
}
SHAPE_SYNONYMS = {
    "circle": ("disc", "round shape"),
    "square": ("box", "square shape"),
    "triangle": ("triangular shape", "three-sided shape"),
    "star": ("star shape", "five-pointed star"),
    "cross": ("plus sign", "cross shape"),
    "crescent": ("crescent moon", "crescent shape"),
}
# The shapes of the default world; "crescent" is there for worlds with more concepts.
DEFAULT_SHAPES = ("circle", "square", "triangle", "star", "cross")
CAPTION_TEMPLATES = (
    "a photo of {a} {name}.", "{a} {name}.", "a picture of {a} {name}.", "{name}",
    "there is {a} {name} in the image.", "an image of {a} {name}.", "a drawing of {a} {name}.",
    "{a} {name} on a grey background.", "a close-up of {a} {name}.", "a small {name}.",
    "a large {name}.", "this is {a} {name}.", "a {shape} that is {colour}.",
    "{a} {colour} coloured {shape}.",
)
# Crops with no object in the middle: what a detector's background proposals look like.
BACKGROUND_CAPTIONS = (
    "a grey background.", "an empty grey background.", "a plain background.",
    "nothing but background.", "an empty patch of the scene.", "a blank grey surface.",
    "the background of the scene.", "there is nothing in the image.",
)
BACKGROUND_CATEGORY_ID = 0  # category_id of the background crops in captions.json


@gin.configurable
@dataclasses.dataclass(frozen=True)
class WorldSpec:
  """Sizes, counts and seed of a synthetic world (defaults: a few seconds to make).

  Attributes:
    colours, shapes: the attribute values; categories are all their combinations.
    num_novel: how many unseen combinations of base colours and base shapes are novel ('r').
    novel_shapes: shapes of which every category is novel: concepts the detector never sees
      in a box, only the teacher in captions (as LVIS rare categories are new concepts).
    common_fraction: fraction of base categories tagged common ('c') rather than frequent.
    frequency_weights: how often a category of each frequency is drawn into a scene.
    train_rare_weight: the weight of rare ('r') categories in TRAINING scenes, None = as in
      frequency_weights. LVIS rare categories are rare in training (1-10 images each), so
      their unannotated instances seldom teach a detector "background".
    val_rare_weight: the weight of rare categories in VALIDATION scenes, None = as in
      frequency_weights. More novel instances make AP_novel less noisy at no cost (AP is
      per category; evaluation time grows with the number of scenes, not with this).
    image_size: square scene side in pixels.
    object_size: (min, max) object side in pixels.
    objects_per_image: (min, max) objects drawn per scene.
    max_occlusion: an object may lose at most this fraction of its area to later objects.
    num_train_images, num_val_images, num_crops: counts.
    crop_size: side of the captioned crops (each a region of a scene resized to this).
    background_crop_fraction: fraction of the crops with no object in their central half (at
      most parts of objects at the edges), captioned as background. Web image-text data shows
      empty scenes too; a teacher that never saw one embeds every crop as some object.
    seed: everything is a function of it.
  """
  colours: Tuple[str, ...] = tuple(COLOURS)
  shapes: Tuple[str, ...] = DEFAULT_SHAPES
  num_novel: int = 8
  novel_shapes: Tuple[str, ...] = ()
  common_fraction: float = 0.4
  frequency_weights: Tuple[Tuple[str, float], ...] = (("f", 1.0), ("c", 0.4), ("r", 0.7))
  train_rare_weight: Optional[float] = None
  val_rare_weight: Optional[float] = None
  image_size: int = 128
  object_size: Tuple[int, int] = (16, 52)
  objects_per_image: Tuple[int, int] = (2, 5)
  max_occlusion: float = 0.4
  num_train_images: int = 300
  num_val_images: int = 100
  num_crops: int = 4000
  crop_size: int = 32
  background_crop_fraction: float = 0.1
  seed: int = 0

  def __post_init__(self):
    unknown = [c for c in self.colours if c not in COLOURS]
    unknown += [s for s in self.shapes if s not in SHAPE_SYNONYMS]
    if unknown:
      raise ValueError(f"WorldSpec: unknown colours/shapes {unknown}; known colours "
                       f"{tuple(COLOURS)}, shapes {tuple(SHAPE_SYNONYMS)}.")
    if not set(self.novel_shapes) <= set(self.shapes):
      raise ValueError(f"WorldSpec.novel_shapes {self.novel_shapes} must be among the shapes "
                       f"{self.shapes}.")
    if not self.object_size[0] <= self.object_size[1] < self.image_size:
      raise ValueError(f"WorldSpec.object_size {self.object_size} must be (min, max) with "
                       f"max < image_size {self.image_size}.")


# ------------------------------------------------------------------------------------------
# Categories.
def novel_combinations(num_colours: int, num_shapes: int, num_novel: int) -> List[Tuple[int, int]]:
  """(colour, shape) index pairs held out as novel: successive diagonals of the grid, so the
  novel pairs spread over all colours and shapes."""
  pairs = []
  for diagonal in range(num_shapes):
    for colour in range(num_colours):
      pair = (colour, (colour + diagonal) % num_shapes)
      if len(pairs) < num_novel and pair not in pairs:
        pairs.append(pair)
  for axis, size, what in ((0, num_colours, "colour"), (1, num_shapes, "shape")):
    for value in range(size):
      held_out = sum(1 for p in pairs if p[axis] == value)
      if (num_shapes if axis == 0 else num_colours) - held_out < 2:
        raise ValueError(f"WorldSpec.num_novel={num_novel} leaves a {what} in fewer than two "
                         "base categories; novel names would be unlearnable. Lower num_novel.")
  return pairs


def make_categories(spec: WorldSpec) -> List[dict]:
  """LVIS category dicts: id, name, synonyms, frequency, def (counts are added later)."""
  base_shapes = [s for s in range(len(spec.shapes)) if spec.shapes[s] not in spec.novel_shapes]
  novel = {(c, base_shapes[s]) for c, s in
           novel_combinations(len(spec.colours), len(base_shapes), spec.num_novel)}
  novel |= {(c, s) for c in range(len(spec.colours)) for s in range(len(spec.shapes))
            if spec.shapes[s] in spec.novel_shapes}
  base = [(c, s) for c in range(len(spec.colours)) for s in range(len(spec.shapes))
          if (c, s) not in novel]
  rng = np.random.default_rng([spec.seed, 1])
  common = {base[i] for i in rng.permutation(len(base))[:round(spec.common_fraction * len(base))]}
  categories = []
  for c, colour in enumerate(spec.colours):
    for s, shape in enumerate(spec.shapes):
      name = f"{colour} {shape}"
      frequency = "r" if (c, s) in novel else ("c" if (c, s) in common else "f")
      categories.append({
          "id": 1 + c * len(spec.shapes) + s,
          "name": name,
          "synonyms": [name] + [f"{colour} {syn}" for syn in SHAPE_SYNONYMS[shape]],
          "frequency": frequency,
          "def": f"a {shape} coloured {colour}",
          "colour": colour,
          "shape": shape,
      })
  return categories


# ------------------------------------------------------------------------------------------
# Drawing.
def _unit_polygon(shape: str) -> np.ndarray:
  """[K, 2] (x, y) vertices of a shape of radius about 1 around the origin."""
  if shape == "square":
    return 0.85 * np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)], np.float64)
  if shape == "triangle":
    return np.array([(0, -1), (0.95, 0.75), (-0.95, 0.75)], np.float64)
  if shape == "star":
    angles = -np.pi / 2 + np.arange(10) * np.pi / 5
    radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
  if shape == "cross":
    a, b = 0.33, 1.0
    return np.array([(-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a), (a, b), (-a, b),
                     (-a, a), (-b, a), (-b, -a), (-a, -a)], np.float64)
  raise ValueError(f"no polygon for shape {shape!r}")


def draw_shape_mask(shape: str, size: int, centre: Tuple[float, float], side: float,
                    rotation: float, aspect: float) -> np.ndarray:
  """[size, size] bool mask of one shape of about `side` pixels across."""
  canvas = Image.new("L", (size, size), 0)
  draw = ImageDraw.Draw(canvas)
  cx, cy = centre
  half_w, half_h = side / 2 * aspect, side / 2 / aspect
  if shape in ("circle", "crescent"):
    draw.ellipse([cx - 0.95 * half_w, cy - 0.95 * half_h, cx + 0.95 * half_w,
                  cy + 0.95 * half_h], fill=1)
    if shape == "crescent":  # the disc minus a disc moved towards the rotated upper right
      dx, dy = (0.45 * half_w * np.cos(rotation + np.pi / 4),
                -0.45 * half_h * np.sin(rotation + np.pi / 4))
      draw.ellipse([cx + dx - 0.75 * half_w, cy + dy - 0.75 * half_h, cx + dx + 0.75 * half_w,
                    cy + dy + 0.75 * half_h], fill=0)
  else:
    points = _unit_polygon(shape)
    cos, sin = np.cos(rotation), np.sin(rotation)
    rotated = points @ np.array([[cos, sin], [-sin, cos]])
    xy = np.stack([cx + rotated[:, 0] * half_w, cy + rotated[:, 1] * half_h], axis=1)
    draw.polygon([tuple(p) for p in xy], fill=1)
  return np.asarray(canvas, dtype=bool)


def background(rng: np.random.Generator, size: int) -> np.ndarray:
  """[size, size, 3] float: a low-saturation grey with a gentle gradient."""
  grey = rng.uniform(85, 170)
  tint = rng.uniform(-12, 12, size=3)
  ramp = np.linspace(-1, 1, size)
  gradient = rng.uniform(-20, 20) * ramp[:, None] + rng.uniform(-20, 20) * ramp[None, :]
  return (grey + tint)[None, None, :] + gradient[..., None]


def _object_colour(rng: np.random.Generator, colour: str) -> np.ndarray:
  return np.array(COLOURS[colour], np.float64) + rng.uniform(-18, 18, size=3)


def _finish(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
  return np.clip(image + rng.normal(0, 5, image.shape), 0, 255).astype(np.uint8)


def render_scene(rng: np.random.Generator, spec: WorldSpec, categories: Sequence[dict],
                 weights: Dict[str, float], first: Optional[dict] = None
                 ) -> Tuple[np.ndarray, List[Tuple[dict, np.ndarray]]]:
  """One scene: image [S, S, 3] uint8 and (category, visible mask [S, S] bool) per object.

  Categories are drawn with `weights` (frequency -> weight), except that the first object is
  `first` when given; objects are placed one after another, and a placement that would hide
  more than `max_occlusion` of an earlier object is retried, then skipped.
  """
  size = spec.image_size
  probabilities = np.array([weights[c["frequency"]] for c in categories], np.float64)
  probabilities /= probabilities.sum()
  image = background(rng, size)
  objects: List[Tuple[dict, np.ndarray, np.ndarray]] = []  # (category, full mask, visible)
  for i in range(rng.integers(spec.objects_per_image[0], spec.objects_per_image[1] + 1)):
    category = (first if i == 0 and first is not None
                else categories[rng.choice(len(categories), p=probabilities)])
    for _ in range(10):
      side = rng.uniform(*spec.object_size)
      margin = side / 2
      centre = (rng.uniform(margin, size - margin), rng.uniform(margin, size - margin))
      mask = draw_shape_mask(category["shape"], size, centre, side,
                             rotation=rng.uniform(-0.35, 0.35), aspect=rng.uniform(0.85, 1.15))
      if mask.sum() and all((v & ~mask).sum() >= (1 - spec.max_occlusion) * full.sum()
                            for _, full, v in objects):
        break
    else:
      continue  # no placement found; the scene gets one object fewer
    image[mask] = _object_colour(rng, category["colour"])
    objects = [(c, full, v & ~mask) for c, full, v in objects] + [(category, mask, mask)]
  return _finish(rng, image), [(c, v) for c, _, v in objects]


# ------------------------------------------------------------------------------------------
# Captioned crops: the teacher's "web photos", framed as a detector's proposals frame objects.
FRAME_SCALE = (0.9, 1.6)  # box side x this: the tight box to beyond ViLD's 1.5x crop
FRAME_SHIFT = 0.1         # centre moved by up to this fraction of the box side
FRAME_ASPECT = 0.15       # height and width scaled apart by up to this fraction


def mask_box(mask: np.ndarray) -> np.ndarray:
  """[4] (ymin, xmin, ymax, xmax) pixel box around a non-empty bool mask."""
  rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
  return np.array([rows[0], cols[0], rows[-1] + 1, cols[-1] + 1], np.float64)


def frame_box(rng: np.random.Generator, box: np.ndarray, image_size: int) -> np.ndarray:
  """A loose framing of `box`: scaled by FRAME_SCALE, shifted, aspect changed, clipped."""
  height, width = box[2] - box[0], box[3] - box[1]
  centre = (box[:2] + box[2:]) / 2 + rng.uniform(-FRAME_SHIFT, FRAME_SHIFT, 2) * (height, width)
  half = (rng.uniform(*FRAME_SCALE) * (1 + rng.uniform(-FRAME_ASPECT, FRAME_ASPECT, 2))
          * (height, width) / 2)
  return np.clip(np.concatenate([centre - half, centre + half]), 0, image_size)


def crop_and_resize(image: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
  """[size, size, 3] uint8: bilinear samples of `box` (pixels) at the centres of the output
  pixels, as vild.teacher.crops.crop_regions cuts a region for the teacher (edges clamped)."""
  height, width = image.shape[:2]
  ys = box[0] + (np.arange(size) + 0.5) * (box[2] - box[0]) / size - 0.5
  xs = box[1] + (np.arange(size) + 0.5) * (box[3] - box[1]) / size - 0.5
  ys, xs = np.clip(ys, 0, height - 1), np.clip(xs, 0, width - 1)
  y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
  y1, x1 = np.minimum(y0 + 1, height - 1), np.minimum(x0 + 1, width - 1)
  wy, wx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
  pixels = image.astype(np.float64)
  top = pixels[y0][:, x0] * (1 - wx) + pixels[y0][:, x1] * wx
  bottom = pixels[y1][:, x0] * (1 - wx) + pixels[y1][:, x1] * wx
  return np.clip(np.round(top * (1 - wy) + bottom * wy), 0, 255).astype(np.uint8)


def render_crop(rng: np.random.Generator, spec: WorldSpec, category: dict,
                categories: Sequence[dict]) -> np.ndarray:
  """[S, S, 3] uint8: a photo of one object of `category`, cut from a scene of the world
  around the object's visible box, framed loosely (`frame_box`): neighbours, occluders and
  context show as they do in the 1x and 1.5x crops of a detector's proposals."""
  image, objects = render_scene(rng, spec, categories, dict(spec.frequency_weights),
                                first=category)
  box = frame_box(rng, mask_box(objects[0][1]), spec.image_size)
  return crop_and_resize(image, box, spec.crop_size)


def render_background_crop(rng: np.random.Generator, spec: WorldSpec,
                           categories: Sequence[dict]) -> np.ndarray:
  """[S, S, 3] uint8: a region of a scene with no object in its central half (objects may
  show at its edges), sized like an object's framing."""
  image, objects = render_scene(rng, spec, categories, dict(spec.frequency_weights))
  occupied = np.zeros(image.shape[:2], bool)
  for _, visible in objects:
    occupied |= visible
  best, best_filled = None, np.inf
  for _ in range(20):
    side = rng.uniform(*spec.object_size) * rng.uniform(*FRAME_SCALE)
    corner = rng.uniform(0, spec.image_size - side, 2)
    box = np.concatenate([corner, corner + side])
    quarter = side / 4
    y0, x0, y1, x1 = np.round(box + (quarter, quarter, -quarter, -quarter)).astype(int)
    filled = occupied[y0:y1, x0:x1].mean()
    if filled < best_filled:
      best, best_filled = box, filled
    if filled == 0:
      break
  return crop_and_resize(image, best, spec.crop_size)


def caption(rng: np.random.Generator, category: dict) -> str:
  """A caption of one object: a random template filled with the name or a synonym."""
  template = CAPTION_TEMPLATES[rng.integers(len(CAPTION_TEMPLATES))]
  name = category["synonyms"][rng.integers(len(category["synonyms"]))]
  shape = name[len(category["colour"]) + 1:]
  article = "an" if name[0] in "aeiou" else "a"
  return template.format(a=article, name=name, colour=category["colour"], shape=shape)


# ------------------------------------------------------------------------------------------
# Writing.
def _annotation(ann_id: int, image_id: int, category: dict, mask: np.ndarray) -> dict:
  rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
  x, y, w, h = mask_utils.toBbox(rle).tolist()
  return {"id": ann_id, "image_id": image_id, "category_id": category["id"],
          "bbox": [x, y, w, h], "area": float(mask.sum()), "iscrowd": 0,
          "segmentation": {"size": list(mask.shape), "counts": rle["counts"].decode("ascii")}}


def scene_weights(spec: WorldSpec, split: str) -> Dict[str, float]:
  """Frequency -> weight of drawing a category into a scene of `split` ('train' or 'val')."""
  weights = dict(spec.frequency_weights)
  rare = {"train": spec.train_rare_weight, "val": spec.val_rare_weight}.get(split)
  if rare is not None:
    weights["r"] = rare
  return weights


def write_split(output_dir: str, split: str, num_images: int, spec: WorldSpec,
                categories: Sequence[dict], rng: np.random.Generator) -> dict:
  """Renders `num_images` scenes to images/<split>/ and returns the LVIS dict, every object
  annotated (`base_only` derives the training annotations)."""
  weights = scene_weights(spec, split)
  image_dir = os.path.join(output_dir, "images", split)
  io.makedirs(image_dir)
  images, annotations = [], []
  all_ids = {c["id"] for c in categories}
  for image_id in range(1, num_images + 1):
    image, objects = render_scene(rng, spec, categories, weights)
    file_name = f"{split}/{image_id:06d}.png"
    with io.atomic_path(os.path.join(output_dir, "images", file_name)) as tmp:
      with io.open_file(tmp, "wb") as f:
        Image.fromarray(image).save(f, format="PNG")
    present = {c["id"] for c, _ in objects}
    for category, mask in objects:
      annotations.append(_annotation(len(annotations) + 1, image_id, category, mask))
    images.append({"id": image_id, "file_name": file_name, "height": spec.image_size,
                   "width": spec.image_size, "not_exhaustive_category_ids": [],
                   "neg_category_ids": sorted(all_ids - present)})
  return {"info": {"description": f"vild synthetic world, {split} split", "format": FORMAT},
          "images": images, "annotations": annotations,
          "categories": _with_counts(categories, annotations)}


def base_only(split: dict) -> dict:
  """The split with novel ('r') annotations dropped, as LVIS training data of base categories:
  negatives only among base categories, annotation ids renumbered, counts recomputed."""
  base_ids = {c["id"] for c in split["categories"] if c["frequency"] != "r"}
  annotations = [dict(a, id=i) for i, a in enumerate(
      (a for a in split["annotations"] if a["category_id"] in base_ids), start=1)]
  images = [dict(image, neg_category_ids=[c for c in image["neg_category_ids"] if c in base_ids])
            for image in split["images"]]
  return dict(split, images=images, annotations=annotations,
              categories=_with_counts(split["categories"], annotations))


def _with_counts(categories: Sequence[dict], annotations: Sequence[dict]) -> List[dict]:
  images_with: Dict[int, set] = {c["id"]: set() for c in categories}
  instances = {c["id"]: 0 for c in categories}
  for ann in annotations:
    images_with[ann["category_id"]].add(ann["image_id"])
    instances[ann["category_id"]] += 1
  return [dict(c, image_count=len(images_with[c["id"]]), instance_count=instances[c["id"]])
          for c in categories]


def write_crops(output_dir: str, spec: WorldSpec, categories: Sequence[dict],
                rng: np.random.Generator) -> dict:
  """Captioned crops: single objects of all categories, balanced over categories, and
  `background_crop_fraction` background crops (category_id BACKGROUND_CATEGORY_ID)."""
  num_background = round(spec.background_crop_fraction * spec.num_crops)
  order = np.resize(np.arange(len(categories)), spec.num_crops - num_background)
  order = np.concatenate([order, np.full([num_background], -1)])  # -1: background
  rng.shuffle(order)
  crops, items = [np.zeros([0, spec.crop_size, spec.crop_size, 3], np.uint8)], []
  for i, k in enumerate(order):
    if k < 0:
      crops.append(render_background_crop(rng, spec, categories)[np.newaxis])
      items.append({"index": i, "category_id": BACKGROUND_CATEGORY_ID,
                    "caption": BACKGROUND_CAPTIONS[rng.integers(len(BACKGROUND_CAPTIONS))]})
    else:
      crops.append(render_crop(rng, spec, categories[k], categories)[np.newaxis])
      items.append({"index": i, "category_id": categories[k]["id"],
                    "caption": caption(rng, categories[k])})
  crops = np.concatenate(crops)
  io.save_npy_atomic(os.path.join(output_dir, "crops.npy"), crops)
  return {"format": CAPTIONS_FORMAT, "crops": "crops.npy", "crop_size": spec.crop_size,
          "items": items}


def generate(output_dir: str, spec: WorldSpec = WorldSpec()) -> dict:
  """Writes the whole world to `output_dir` (see the module docstring); returns world.json."""
  categories = make_categories(spec)
  train_rng, val_rng, crop_rng = (np.random.default_rng([spec.seed, i]) for i in (2, 3, 4))
  logging.info("Synthetic world: %d categories (%d novel) -> %s", len(categories),
               spec.num_novel, output_dir)
  train_full = write_split(output_dir, "train", spec.num_train_images, spec, categories,
                           train_rng)
  train = base_only(train_full)
  val = write_split(output_dir, "val", spec.num_val_images, spec, categories, val_rng)
  captions = write_crops(output_dir, spec, categories, crop_rng)
  for name, data in (("train.json", train), ("train_full.json", train_full), ("val.json", val),
                     ("captions.json", captions)):
    io.write_text_atomic(os.path.join(output_dir, name), json.dumps(data) + "\n")
  world = {
      "format": FORMAT,
      "spec": dataclasses.asdict(spec),
      "categories": [{k: c[k] for k in ("id", "name", "frequency")} for c in categories],
      "novel": [c["name"] for c in categories if c["frequency"] == "r"],
      "num_train_annotations": len(train["annotations"]),
      "num_val_annotations": len(val["annotations"]),
      "num_crops": spec.num_crops,
  }
  io.write_text_atomic(os.path.join(output_dir, "world.json"), json.dumps(world, indent=1) + "\n")
  return world


def load_captions(output_dir: str) -> Tuple[np.ndarray, List[dict]]:
  """(crops [N, S, S, 3] uint8, items [{index, category_id, caption}]) of a generated world;
  background crops have category_id BACKGROUND_CATEGORY_ID (0)."""
  path = os.path.join(output_dir, "captions.json")
  if not io.exists(path):
    raise FileNotFoundError(f"{path}: no captions; make the world with "
                            "scripts/make_synthetic_dataset.py.")
  captions = io.read_json(path)
  if captions.get("format") != CAPTIONS_FORMAT:
    raise ValueError(f"{path}: format {captions.get('format')!r}, expected {CAPTIONS_FORMAT!r}.")
  crops = io.load_npy(os.path.join(output_dir, captions["crops"]))
  return crops, captions["items"]
