"""The synthetic open-vocabulary world: determinism, base-only training labels, LVIS format."""
import filecmp
import json
import os

import numpy as np
import pytest

from vild import vocabulary as vocabulary_lib
from vild.data import conversion
from vild.data import synthetic

SMALL = dict(num_train_images=6, num_val_images=4, num_crops=40, image_size=64,
             object_size=(12, 28), crop_size=24)


def _load(world_dir, name):
  with open(os.path.join(world_dir, f"{name}.json")) as f:
    return json.load(f)


def _files(root):
  return sorted(os.path.relpath(os.path.join(d, f), root)
                for d, _, files in os.walk(root) for f in files)


def test_same_seed_same_world_other_seed_other_world(tmp_path):
  a, b, c = (str(tmp_path / n) for n in "abc")
  synthetic.generate(a, synthetic.WorldSpec(seed=5, **SMALL))
  synthetic.generate(b, synthetic.WorldSpec(seed=5, **SMALL))
  synthetic.generate(c, synthetic.WorldSpec(seed=6, **SMALL))
  files = _files(a)
  assert files == _files(b) and len(files) == 6 + 4 + 6  # images + 4 JSONs + crops + world
  match, mismatch, errors = filecmp.cmpfiles(a, b, files, shallow=False)
  assert not mismatch and not errors
  assert not filecmp.cmp(os.path.join(a, "train.json"), os.path.join(c, "train.json"),
                         shallow=False)


def test_novel_categories_are_unseen_combinations_of_base_attributes():
  categories = synthetic.make_categories(synthetic.WorldSpec())
  novel = [c for c in categories if c["frequency"] == "r"]
  base = [c for c in categories if c["frequency"] != "r"]
  assert len(categories) == 30 and len(novel) == 8
  assert {c["frequency"] for c in base} == {"f", "c"}
  for c in novel:
    assert sum(b["colour"] == c["colour"] for b in base) >= 2
    assert sum(b["shape"] == c["shape"] for b in base) >= 2
  with pytest.raises(ValueError, match="Lower num_novel"):
    synthetic.make_categories(synthetic.WorldSpec(num_novel=20))


def test_a_novel_shape_makes_every_category_of_that_shape_novel():
  spec = synthetic.WorldSpec(novel_shapes=("cross",), num_novel=2)
  categories = synthetic.make_categories(spec)
  novel = [c for c in categories if c["frequency"] == "r"]
  base = [c for c in categories if c["frequency"] != "r"]
  assert len(novel) == len(spec.colours) + 2
  assert all(c["frequency"] == "r" for c in categories if c["shape"] == "cross")
  assert not [c for c in base if c["shape"] == "cross"]  # never boxed in training
  for c in novel:
    if c["shape"] != "cross":  # the unseen combinations: both attributes seen in base
      assert sum(b["shape"] == c["shape"] for b in base) >= 2
    assert sum(b["colour"] == c["colour"] for b in base) >= 2
  with pytest.raises(ValueError, match="novel_shapes"):
    synthetic.WorldSpec(novel_shapes=("hexagon",))


def test_train_is_base_only_val_is_complete_and_the_converter_reads_both(tmp_path):
  out = str(tmp_path / "world")
  spec = synthetic.WorldSpec(seed=1, **dict(SMALL, num_train_images=12))
  synthetic.generate(out, spec)
  train, val, train_full = (_load(out, n) for n in ("train", "val", "train_full"))
  novel_ids = {c["id"] for c in train["categories"] if c["frequency"] == "r"}
  assert not [a for a in train["annotations"] if a["category_id"] in novel_ids]
  # The oracle's annotations: the same scenes, novel objects annotated too.
  assert [a["bbox"] for a in train["annotations"]] == [
      a["bbox"] for a in train_full["annotations"] if a["category_id"] not in novel_ids]
  assert [a for a in train_full["annotations"] if a["category_id"] in novel_ids]
  assert [i["file_name"] for i in train["images"]] == [i["file_name"] for i in train_full["images"]]
  assert all(set(i["neg_category_ids"]).isdisjoint(novel_ids) for i in train["images"])
  assert [a for a in val["annotations"] if a["category_id"] in novel_ids]
  for ann in val["annotations"]:  # RLE masks agree with boxes and areas
    mask = conversion.segmentation_to_mask(ann["segmentation"], 64, 64)
    assert mask.sum() == ann["area"] > 0
    ys, xs = np.nonzero(mask)
    assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
  image = val["images"][0]
  present = {a["category_id"] for a in val["annotations"] if a["image_id"] == image["id"]}
  assert set(image["neg_category_ids"]) == {c["id"] for c in val["categories"]} - present

  vocab = vocabulary_lib.Vocabulary.from_file(os.path.join(out, "train.json"))
  assert set(np.array(vocab.category_ids)[vocab.novel_mask]) == novel_ids
  report = conversion.convert(os.path.join(out, "train.json"), os.path.join(out, "images"),
                              str(tmp_path / "records"), "train", base_only=True)
  assert report["num_images_written"] == 12 and report["dropped_novel"] == 0
  assert report["annotations_kept"] == len(train["annotations"])

  from lvis import LVIS  # pylint: disable=g-import-not-at-top
  assert len(LVIS(os.path.join(out, "val.json")).get_ann_ids()) == len(val["annotations"])


def test_captioned_crops_cover_all_categories(tmp_path):
  out = str(tmp_path / "world")
  synthetic.generate(out, synthetic.WorldSpec(seed=2, **dict(SMALL, num_crops=90)))
  crops, items = synthetic.load_captions(out)
  assert crops.shape == (90, 24, 24, 3) and crops.dtype == np.uint8
  categories = {c["id"]: c for c in synthetic.make_categories(synthetic.WorldSpec(seed=2))}
  background = [i for i in items if i["category_id"] == synthetic.BACKGROUND_CATEGORY_ID]
  assert len(background) == 9  # background_crop_fraction 0.1 of 90
  assert {i["caption"] for i in background} <= set(synthetic.BACKGROUND_CAPTIONS)
  objects = [i for i in items if i["category_id"] != synthetic.BACKGROUND_CATEGORY_ID]
  assert {i["category_id"] for i in objects} == set(categories)  # novel ones too
  for item in objects:
    colour, shape = categories[item["category_id"]]["name"].split(" ")
    assert colour in item["caption"]
  assert len({i["caption"] for i in items}) > 40  # varied templates and synonyms


def test_crop_and_resize_samples_like_the_teachers_region_crops():
  from vild.teacher import crops as crops_lib  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, [40, 50, 3]).astype(np.uint8)
  for box in ([3.0, 4.0, 30.0, 41.0], [10.5, 2.25, 20.0, 12.75], [0.0, 0.0, 40.0, 50.0]):
    ours = synthetic.crop_and_resize(image, np.array(box), 16).astype(np.float64)
    theirs = crops_lib.crop_regions(image, [box], 16).numpy()[0]
    assert np.abs(ours - np.round(theirs)).max() <= 1  # uint8 rounding


def test_caption_crops_frame_their_object_like_a_proposal():
  spec = synthetic.WorldSpec(seed=3, **SMALL)
  categories = synthetic.make_categories(spec)
  rng = np.random.default_rng(0)
  box = np.array([10.0, 20.0, 30.0, 30.0])  # 20 high, 10 wide
  for _ in range(200):
    framed = synthetic.frame_box(rng, box, spec.image_size)
    assert (framed >= 0).all() and (framed <= spec.image_size).all()
    centre = (framed[:2] + framed[2:]) / 2
    assert np.all(np.abs(centre - (20, 25)) <= (2.01, 1.01)) or (
        framed[[0, 1]] == 0).any() or (framed[[2, 3]] == spec.image_size).any()
  covered = []
  for category in categories:
    crop = synthetic.render_crop(rng, spec, category, categories)
    assert crop.shape == (24, 24, 3) and crop.dtype == np.uint8
    centre = crop[8:16, 8:16].reshape(-1, 3).astype(float)
    colour = np.array(synthetic.COLOURS[category["colour"]], float)
    covered.append(np.mean(np.abs(centre - colour).max(axis=1) < 40))
  # The captioned object fills the crop's centre, unless a neighbour occludes it there.
  assert np.mean(np.array(covered) > 1 / 3) >= 0.8


def test_rare_categories_can_be_rare_in_training_scenes_only(tmp_path):
  out = str(tmp_path / "world")
  spec = synthetic.WorldSpec(seed=4, train_rare_weight=0.0,
                             **dict(SMALL, num_train_images=20, num_val_images=20))
  synthetic.generate(out, spec)
  train_full, val = _load(out, "train_full"), _load(out, "val")
  rare = {c["id"] for c in val["categories"] if c["frequency"] == "r"}
  assert not [a for a in train_full["annotations"] if a["category_id"] in rare]
  assert [a for a in val["annotations"] if a["category_id"] in rare]
  assert synthetic.scene_weights(spec, "val")["r"] == dict(spec.frequency_weights)["r"]


def test_rare_categories_can_be_frequent_in_validation_scenes():
  spec = synthetic.WorldSpec(train_rare_weight=0.1, val_rare_weight=2.0)
  assert synthetic.scene_weights(spec, "val")["r"] == 2.0
  assert synthetic.scene_weights(spec, "train")["r"] == 0.1
  assert synthetic.scene_weights(spec, "val")["f"] == dict(spec.frequency_weights)["f"]


def test_every_shape_draws_a_distinct_mask_of_about_its_side():
  masks = {shape: synthetic.draw_shape_mask(shape, 64, (32, 32), 40, 0.0, 1.0)
           for shape in synthetic.SHAPE_SYNONYMS}
  for shape, mask in masks.items():
    ys, xs = np.nonzero(mask)
    assert 30 <= ys.max() - ys.min() + 1 <= 41 and 30 <= xs.max() - xs.min() + 1 <= 41, shape
  # A crescent is the circle's disc with a bite out of it.
  assert (masks["crescent"] & ~masks["circle"]).sum() == 0
  assert 0.2 < masks["crescent"].sum() / masks["circle"].sum() < 0.6
  assert synthetic.WorldSpec().shapes == synthetic.DEFAULT_SHAPES
