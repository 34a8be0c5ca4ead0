"""The tf.data input pipeline: ViLD TFRecords -> batches of (images, labels) for the model.

Training labels (per image, batched along axis 0; shapes static for TPU):
  image_info [4, 2]      official.vision layout, see `vild.data.augmentation`
  anchor_boxes, rpn_score_targets, rpn_box_targets  {level: ...}
  gt_boxes [I, 4]        pixel yxyx in the model input, -1 padded
  gt_classes [I]         1-based indices into the training Vocabulary, -1 padded
  gt_masks [I, s, s]     masks cropped to their boxes (with include_mask)
  num_clipped_instances  int32, instances beyond I dropped from this image's targets (the
                         trainer logs them; build_training_labels.max_num_instances)
  sampling_seeds [2]     int32 seed of this example's RoI subsample in the model
  distill_rois [M, 4]    pixel yxyx in the model input, -1 padded (with distill_feature_dim)
  distill_features [M, D] teacher embeddings of the RoIs, -1 padded rows
  distill_roi_valid [M]  int32, 1 for the RoIs the distillation loss counts, 0 for padding
The per-image part is exactly `vild.data.targets.build_training_labels`.

Evaluation labels (resize only, no augmentation):
  image_info [4, 2], anchor_boxes {level: ...}, and groundtruths: source_id (int64 image id),
  height, width, num_detections, boxes [G, 4] pixel yxyx in the ORIGINAL image, classes [G]
  dataset category ids, areas [G], is_crowds [G] (G = max_num_eval_instances, -1 padded) —
  official.vision's maskrcnn_input eval layout. Mask AP is computed against the annotation JSON.

Training augmentation: large-scale jitter (scale range configurable, paper 0.1-2.0) with random
crop/pad to the output size, and one horizontal flip decision for image, boxes, masks and distill
RoIs. Distill RoIs that the crop leaves without area are dropped. The official parser's
behaviour is a binding away for each (docs/fidelity.md): `distill_roi_flip = 'independent'`
(a second coin flips image, boxes and masks but not the RoIs, a defect that mismatches them
half the time) and `cropped_distill_rois = 'keep'` (zero-area RoIs on the crop border, counted
by the loss). Annotations whose category is not in the vocabulary are dropped (so base-only training
needs only a base vocabulary), and so are crowd annotations. Everything random is stateless and
seeded per example, so a seeded pipeline gives identical batches run after run.

Cost to know: masks are resampled to the full output size before `build_training_labels` crops
them to their boxes, so an image with N visible instances holds N x H x W floats for a moment
(about 4 MB per instance at 1024 x 1024).
"""
import random
from typing import Optional, Sequence, Tuple, Union

import gin
import tensorflow as tf
from absl import logging

from official.vision.dataloaders import utils as dataloader_utils
from official.vision.ops import box_ops
from official.vision.ops import preprocess_ops
from vild import anchors as anchors_lib
from vild import vocabulary as vocabulary_lib
from vild.data import augmentation
from vild.data import repeat_factor
from vild.data import targets
from vild.data import tf_example
from vild.data import undecodable_records


# The distillation fields of this many records at the start of every shard are checked
# before training starts (check_distillation_fields).
RECORDS_CHECKED_PER_SHARD = 2


DISTILL_ROI_FLIPS = ("shared", "independent")
CROPPED_DISTILL_ROIS = ("drop", "keep")


@gin.configurable
class Parser:
  """One serialized record (and a [2] seed) -> (image [H, W, 3] float32, labels dict).

  Args:
    vocabulary: the training vocabulary (dataset category id -> class index + 1).
    is_training: augment and build training labels, or resize and keep ground truth.
    output_size: (height, width) of the model input; a multiple of the anchors' stride.
    aug_scale_range: large-scale jitter range of the output size (paper 0.1-2.0).
    aug_rand_hflip: random horizontal flip.
    skip_crowd: drop crowd annotations from training labels.
    include_mask: decode masks and emit gt_masks.
    distill_feature_dim: D of the records' teacher embeddings; None: no distillation labels.
    max_num_distill_rois: M, distill RoIs clipped or -1 padded to this many (paper 300).
    max_num_eval_instances: G, ground truth per image in evaluation labels.
    anchor_spec: anchors (gin: AnchorSpec).
    distill_roi_flip: 'shared' (one coin for image, boxes, masks and distill RoIs) or
      'independent' (the official parser: a second coin flips the image, boxes and masks
      again, not the RoIs).
    cropped_distill_rois: distill RoIs the jitter crop leaves without area: 'drop' them (and
      pad), or 'keep' them as zero-area boxes on the crop border that the loss counts (the
      official parser).
  """

  def __init__(self, vocabulary: vocabulary_lib.Vocabulary, is_training: bool,
               output_size: Sequence[int] = (1024, 1024),
               aug_scale_range: Tuple[float, float] = (0.1, 2.0),
               aug_rand_hflip: bool = True, skip_crowd: bool = True, include_mask: bool = True,
               distill_feature_dim: Optional[int] = None, max_num_distill_rois: int = 300,
               max_num_eval_instances: int = 300,
               anchor_spec: Optional[anchors_lib.AnchorSpec] = None,
               distill_roi_flip: str = "shared", cropped_distill_rois: str = "drop"):
    self.anchor_spec = anchor_spec or anchors_lib.AnchorSpec()
    self.output_size = tuple(int(s) for s in output_size)
    stride = self.anchor_spec.stride
    if any(s % stride for s in self.output_size):
      raise ValueError(
          f"Parser.output_size {self.output_size} must be a multiple of {stride} (2^max_level "
          f"with AnchorSpec.max_level={self.anchor_spec.max_level}); change it in the gin "
          "config.")
    if not 0 < aug_scale_range[0] <= aug_scale_range[1]:
      raise ValueError(f"Parser.aug_scale_range {aug_scale_range} must be (min, max) with "
                       "0 < min <= max.")
    for name, value, choices in (("distill_roi_flip", distill_roi_flip, DISTILL_ROI_FLIPS),
                                 ("cropped_distill_rois", cropped_distill_rois,
                                  CROPPED_DISTILL_ROIS)):
      if value not in choices:
        raise ValueError(f"Parser.{name} must be one of {choices}, got {value!r}.")
    self.distill_roi_flip = distill_roi_flip
    self.cropped_distill_rois = cropped_distill_rois
    self.vocabulary = vocabulary
    self.is_training = is_training
    self.aug_scale_range = tuple(float(s) for s in aug_scale_range)
    self.aug_rand_hflip = aug_rand_hflip
    self.skip_crowd = skip_crowd
    self.include_mask = include_mask
    self.distill_feature_dim = distill_feature_dim if is_training else None
    self.max_num_distill_rois = max_num_distill_rois
    self.max_num_eval_instances = max_num_eval_instances
    self.decoder = tf_example.Decoder(include_mask=include_mask and is_training,
                                      distill_feature_dim=self.distill_feature_dim)
    self._class_table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(vocabulary.category_ids, tf.int64),
            tf.range(1, len(vocabulary) + 1, dtype=tf.int64)),
        default_value=-1)

  def __call__(self, serialized: tf.Tensor, seed: tf.Tensor):
    return self.parse_decoded(self.decode(serialized), seed)

  def decode(self, serialized: tf.Tensor) -> dict:
    """The record's tensors (vild.data.tf_example.Decoder); fails on an undecodable record."""
    return self.decoder.decode(serialized)

  def parse_decoded(self, data: dict, seed: tf.Tensor):
    """Decoded record (and a [2] seed) -> (image, labels)."""
    if self.is_training:
      return self._parse_train(data, seed)
    return self._parse_eval(data)

  def _parse_train(self, data, seed):
    classes = self._class_table.lookup(data["groundtruth_classes"])
    keep = classes > 0  # categories outside the training vocabulary (e.g. novel) are dropped
    if self.skip_crowd:
      keep &= tf.logical_not(data["groundtruth_is_crowd"])
    keep = tf.where(keep)[:, 0]
    classes = tf.gather(classes, keep)
    boxes = tf.gather(data["groundtruth_boxes"], keep)
    masks = None
    if self.include_mask:
      masks = tf.gather(_checked_masks(data), keep)
    rois = data.get("distill_rois")

    flip_seed, jitter_seed, label_seed, sampling_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 4))
    image = preprocess_ops.normalize_image(data["image"])
    flip = tf.logical_and(self.aug_rand_hflip,
                          tf.random.stateless_uniform([], flip_seed) < 0.5)
    image, boxes, masks, rois = augmentation.flip_left_right(flip, image, boxes, masks, rois)
    if rois is not None and self.distill_roi_flip == "independent":
      # The official parser's defect, reproduced on request: a second coin for all but the RoIs.
      again = tf.logical_and(self.aug_rand_hflip, tf.random.stateless_uniform(
          [], tf.random.experimental.stateless_fold_in(flip_seed, 1)) < 0.5)
      image, boxes, masks, _ = augmentation.flip_left_right(again, image, boxes, masks)

    image_size = tf.shape(image)[:2]
    image_info = augmentation.jitter_image_info(image_size, self.output_size,
                                                self.aug_scale_range, jitter_seed)
    image = augmentation.resample_to_output(image[tf.newaxis], image_info, self.output_size)[0]
    boxes, visible = augmentation.transform_boxes(
        box_ops.denormalize_boxes(boxes, image_size), image_info)
    classes = tf.gather(classes, visible)
    if masks is not None:
      masks = augmentation.resample_to_output(
          tf.gather(masks, visible)[..., tf.newaxis], image_info, self.output_size)[..., 0]
    labels = targets.build_training_labels(self.output_size, boxes, classes, masks,
                                           anchor_spec=self.anchor_spec, image_info=image_info,
                                           seed=label_seed)
    # The model's RoI subsample draws from this (vild.modeling.roi_sampler), so a step depends
    # only on its examples: exact across resumes and replica layouts.
    labels["sampling_seeds"] = tf.cast(sampling_seed, tf.int32)
    if rois is not None:
      labels.update(self._distill_labels(rois, data["distill_features"], image_size, image_info))
    return image, labels

  def _distill_labels(self, rois, features, image_size, image_info):
    rois = box_ops.denormalize_boxes(rois, image_size)
    if self.cropped_distill_rois == "keep":  # clipped to the crop, empty ones too
      rois = preprocess_ops.resize_and_crop_boxes(rois, image_info[2], image_info[1],
                                                  image_info[3])
    else:
      rois, visible = augmentation.transform_boxes(rois, image_info)
      features = tf.gather(features, visible)
    pad = lambda t, value: preprocess_ops.clip_or_pad_to_fixed_size(  # noqa: E731
        t, self.max_num_distill_rois, value)
    return {
        "distill_rois": pad(rois, -1),
        "distill_features": pad(features, -1),
        "distill_roi_valid": pad(tf.ones_like(rois[:, 0], tf.int32), 0),
    }

  def _parse_eval(self, data):
    image_size = tf.shape(data["image"])[:2]
    image, image_info = eval_image(data["image"], self.output_size)
    groundtruths = {
        "source_id": dataloader_utils.process_source_id(data["source_id"]),
        "height": data["height"],
        "width": data["width"],
        "num_detections": tf.shape(data["groundtruth_classes"])[0],
        "boxes": box_ops.denormalize_boxes(data["groundtruth_boxes"], image_size),
        "classes": data["groundtruth_classes"],
        "areas": data["groundtruth_area"],
        "is_crowds": tf.cast(data["groundtruth_is_crowd"], tf.int32),
    }
    labels = {
        "image_info": image_info,
        "anchor_boxes": self.anchor_spec.multilevel_anchor_boxes(self.output_size),
        "groundtruths": dataloader_utils.pad_groundtruths_to_fixed_size(
            groundtruths, self.max_num_eval_instances),
    }
    return image, labels


def eval_image(image: tf.Tensor, output_size: Sequence[int]) -> Tuple[tf.Tensor, tf.Tensor]:
  """Decoded [H, W, 3] image -> the evaluation model input [out_h, out_w, 3] and image_info [4, 2].

  Resized to fit `output_size` (aspect kept), padded at the bottom-right, no augmentation:
  what a trained model sees at test time (evaluation, offline proposals).
  """
  image = preprocess_ops.normalize_image(image)
  image_info = augmentation.jitter_image_info(tf.shape(image)[:2], output_size, (1.0, 1.0),
                                              tf.zeros([2], tf.int64))
  image = augmentation.resample_to_output(image[tf.newaxis], image_info, output_size)[0]
  return image, image_info


def _checked_masks(data):
  """The decoded masks, after checking that there is one per box."""
  masks = data["groundtruth_instance_masks"]
  check = tf.debugging.Assert(
      tf.equal(tf.shape(masks)[0], tf.shape(data["groundtruth_boxes"])[0]),
      [undecodable_records.tagged(tf.strings.join([
          "Record ", data["source_id"], " has no instance mask (image/object/mask) for some "
          "boxes; convert with masks (create_tfrecords --include_masks) or set "
          "Parser.include_mask = False."]))])
  with tf.control_dependencies([check]):
    return tf.identity(masks)


@gin.configurable
def build_dataset(file_pattern: Union[str, Sequence[str]],
                  vocabulary: Union[vocabulary_lib.Vocabulary, str],
                  is_training: bool, batch_size: int = 2, seed: Optional[int] = None,
                  shuffle_buffer_size: int = 256, cycle_length: int = 8,
                  repeat_factor_threshold: Optional[float] = None,
                  drop_remainder: Optional[bool] = None,
                  input_context: Optional[tf.distribute.InputContext] = None,
                  max_skipped_fraction: float = 0.001
                  ) -> tf.data.Dataset:
  """Batches of (images [B, H, W, 3], labels) from TFRecords; see the module docstring.

  Args:
    file_pattern: glob(s) of TFRecord shards.
    vocabulary: training vocabulary (or a path/names spec for `load_vocabulary`).
    is_training: shuffled, repeated, augmented training batches; else one ordered pass.
    batch_size: images per batch (per replica: call once per input context).
    seed: makes the pipeline deterministic; None draws one at random.
    shuffle_buffer_size: records in the shuffle buffer (training).
    cycle_length: shards read in parallel.
    repeat_factor_threshold: t of Repeat Factor Sampling (paper 0.001); None: off.
    drop_remainder: default True for training (static batch size), False for evaluation.
    input_context: from `strategy.distribute_datasets_from_function`: each input pipeline
      reads its own share of the shards, and `batch_size` is the global batch size.
    max_skipped_fraction: training skips records that do not decode (each one logged with
      its shard and source_id) and fails once they exceed this fraction of the records read
      (vild.data.undecodable_records); 0 fails on the first one. Evaluation never skips.
  """
  if isinstance(vocabulary, str):
    vocabulary = vocabulary_lib.load_vocabulary(vocabulary)
  files = _list_files(file_pattern)
  if seed is None:
    seed = random.SystemRandom().randrange(2**31)
  parser = Parser(vocabulary=vocabulary, is_training=is_training)
  if input_context:
    batch_size = input_context.get_per_replica_batch_size(batch_size)
    if input_context.num_input_pipelines > 1:
      if len(files) < input_context.num_input_pipelines:
        raise ValueError(f"{len(files)} shards for {input_context.num_input_pipelines} input "
                         "pipelines; convert with at least one shard per input pipeline.")
      # Dataset.shard's rule, in Python: this pipeline reads every n-th shard.
      files = files[input_context.input_pipeline_id::input_context.num_input_pipelines]
      seed += 1_000_003 * input_context.input_pipeline_id  # other augmentations per pipeline
  if parser.distill_feature_dim:
    check_distillation_fields(files, parser.distill_feature_dim)

  shards = tf.data.Dataset.from_tensor_slices(files)
  if is_training:
    shards = shards.shuffle(len(files), seed=seed).repeat()
  records = shards.interleave(_read_shard, cycle_length=min(cycle_length, len(files)),
                              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if is_training and repeat_factor_threshold:
    records = repeat_factor.repeat_records(
        records, _category_repeat_factors(files, repeat_factor_threshold), seed)
  if is_training:
    records = records.shuffle(shuffle_buffer_size, seed=seed)
  # The position in the stream seeds the record's augmentation, decoded or not.
  decoded = undecodable_records.decode_or_skip(
      records.enumerate(), parser.decode, max_skipped_fraction if is_training else 0.0)

  def parse(position, data):
    return parser.parse_decoded(data, tf.stack([tf.constant(seed, tf.int64), position]))

  dataset = decoded.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  dataset = dataset.batch(batch_size, drop_remainder=is_training if drop_remainder is None
                          else drop_remainder)
  options = tf.data.Options()
  options.deterministic = True
  return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def _read_shard(path: tf.Tensor) -> tf.data.Dataset:
  """A shard's records as (shard path, index in the shard, serialized record)."""
  return tf.data.TFRecordDataset(path).enumerate().map(
      lambda index, record: (path, index, record))


def _list_files(file_pattern) -> list:
  patterns = [file_pattern] if isinstance(file_pattern, str) else list(file_pattern)
  files = sorted(f for p in patterns for f in tf.io.gfile.glob(p))
  if not files:
    raise ValueError(f"build_dataset.file_pattern {file_pattern!r} matches no files; make "
                     "TFRecords with scripts/create_tfrecords.py and check the path.")
  return files


def check_distillation_fields(files: Sequence[str], dim: int,
                              records_per_shard: int = RECORDS_CHECKED_PER_SHARD) -> None:
  """Fails before training, saying what to run, when the first records of any shard lack
  D-dim distillation data.

  Without this, records with no image/roi fields would train silently without distillation,
  and a shard with features of another teacher would fail mid-run. Reads the first
  `records_per_shard` records of every shard (in parallel): cheap next to a training step.
  """
  firsts = tf.data.Dataset.from_tensor_slices(list(files)).interleave(
      lambda path: _read_shard(path).take(records_per_shard),
      cycle_length=16, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  for path, index, serialized in firsts.as_numpy_iterator():
    example = tf.train.Example.FromString(serialized)
    fields = tf_example.read_distillation(example)
    where = (f"{path.decode()}: record {index} (source_id {tf_example.source_id(example)})")
    if fields is None:
      raise ValueError(
          f"{where} has no distillation fields (image/roi/...), but Parser.distill_feature_dim "
          f"= {dim} asks for them. Add proposals and their teacher embeddings with "
          "scripts/generate_proposals.py then scripts/compute_region_embeddings.py "
          "(docs/distillation_data.md), or unset Parser.distill_feature_dim.")
    num_rois, size = len(fields["rois"]), fields["features"].size
    if num_rois and not size:
      raise ValueError(
          f"{where} has {num_rois} proposals but no teacher embeddings "
          "(image/roi/feature is empty); run scripts/compute_region_embeddings.py on these "
          "records.")
    if size != num_rois * dim:
      raise ValueError(
          f"{where} holds {size} feature values for {num_rois} proposals, i.e. D = "
          f"{size / max(num_rois, 1):g}, but Parser.distill_feature_dim = {dim}; set it to "
          "the teacher's embedding size (and the model's build_vild_model.embedding_dim).")


def _category_repeat_factors(files, threshold: float) -> dict:
  logging.info("Repeat factor sampling (t=%g): reading the class labels of %d shards.",
               threshold, len(files))
  per_image = repeat_factor.read_record_category_ids(files)
  factors = repeat_factor.category_repeat_factors(per_image, threshold)
  expected = repeat_factor.image_repeat_factors(per_image, factors).sum()
  logging.info("Repeat factor sampling: an epoch of %d images becomes about %.0f.",
               len(per_image), expected)
  return factors
