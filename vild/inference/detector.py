"""Detector: detect anything by name with a trained ViLD, from a checkpoint or a SavedModel.

  detector = Detector.load("runs/vild_lvis", teacher=teacher)     # model dir or export dir
  [dets] = detector.detect("kitchen.jpg", ["cat", "red umbrella", "koala"])
  more = detector.rescore(dets, ["toaster", "kettle"])             # no second detector pass
  fruit = detector.expand_with_attributes(dets, ["red", "green", "yellow"])

The vocabulary is data: names (embedded once each with the teacher and cached), a Vocabulary,
a .npy text-embedding file or a [C, D] matrix. For ViLD-ensemble fusion a name is base iff the
model was trained on it with boxes (its run's training vocabulary, vild.inference.vocabularies);
`base_names` / `novel_names` override that, and without a known training vocabulary the
vocabulary's own flags count. Both backends run the same serving graph
(vild.inference.serving). `method='clip_on_crops'` classifies the model's proposals with
teacher embeddings of their crops instead (the paper's R-CNN-style baseline, which the paper
measures at 630x the runtime of ViLD).
"""
import dataclasses
from typing import Callable, Collection, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from vild import vocabulary as vocabulary_lib
from vild.inference import checkpoint
from vild.inference import detections as detections_lib
from vild.inference import export
from vild.inference import images as images_lib
from vild.inference import rescoring
from vild.inference import serving
from vild.inference import spec as spec_lib
from vild.inference import teacher_adapters
from vild.inference import vocabularies
from vild.modeling import vild_model

Detections = detections_lib.Detections
EmbedCrops = Callable[[np.ndarray, np.ndarray], np.ndarray]  # image, [N, 4] yxyx -> [N, D]
ServeFn = Callable[..., Dict[str, tf.Tensor]]


class DetectorError(ValueError):
  """Detector options that do not fit the model, or a model and teacher that do not fit."""


@dataclasses.dataclass(frozen=True)
class DetectorOptions:
  """Attributes:
    score_threshold: keep detections scoring above this.
    max_detections: keep at most this many per image (None: the model's setting).
    nms_iou_threshold: per-class NMS IoU (None: the model's setting).
    use_ensemble: False scores a ViLD-ensemble model with its text branch only.
    base_names: names of the categories the model was trained on with boxes; other names
      count as novel in ViLD-ensemble fusion. None: a name is base iff it is a base category
      of the model's training vocabulary (if known, else the vocabulary's own flags).
    novel_names: names that count as novel whatever the rule above says.
  """
  score_threshold: float = 0.0
  max_detections: Optional[int] = None
  nms_iou_threshold: Optional[float] = None
  use_ensemble: Optional[bool] = None
  base_names: Optional[Collection[str]] = None
  novel_names: Optional[Collection[str]] = None


class Detector:
  """ViLD inference over a serving function; build it with `load`, `from_checkpoint`,
  `from_saved_model` or `from_model`.

  Args:
    serve: a function of (images uint8 [1, H, W, 3], text_embeddings [C, D], base_mask [C])
      returning the serving outputs (vild.inference.serving).
    spec: the model's ModelSpec (its detection settings are the ones `serve` applies).
    options: DetectorOptions; score threshold and max detections are applied here too.
    embed_names: names -> [C, D] unit rows (a teacher's prompt-ensembled text embeddings).
    embed_crops: (image uint8 [H, W, 3], boxes [N, 4] pixel yxyx) -> [N, D] teacher
      embeddings of the regions (1x and 1.5x crops ensembled), for method='clip_on_crops'.
    owner: the object `serve` belongs to (a ServingModule or a loaded SavedModel), kept
      alive as long as the detector.
    training_vocabulary: the vocabulary the model was trained on (its base categories are
      the base names of ViLD-ensemble fusion); None if unknown.
  """

  def __init__(self, serve: ServeFn, spec: spec_lib.ModelSpec,
               options: DetectorOptions = DetectorOptions(),
               embed_names: Optional[vocabularies.EmbedNames] = None,
               embed_crops: Optional[EmbedCrops] = None, owner: object = None,
               training_vocabulary: Optional[vocabulary_lib.Vocabulary] = None):
    self._serve = serve
    self._owner = owner
    self.spec = spec
    self.options = options
    self.training_vocabulary = training_vocabulary
    self._embed_crops = embed_crops
    self._text_cache = vocabularies.TextEmbeddingCache(embed_names, spec.embedding_dim)
    self._detection_settings = {
        **spec.detection_settings, "score_threshold": options.score_threshold,
        "max_num_detections": options.max_detections or spec.detection_settings[
            "max_num_detections"]}

  # ------------------------------------------------------------------------------------------
  # Constructors.
  @classmethod
  def load(cls, path: str, teacher=None, input_size: Optional[Sequence[int]] = None,
           **kwargs) -> "Detector":
    """From an export directory (SavedModel) or a trainer's model directory."""
    if export.is_saved_model(path):
      if input_size is not None:
        raise DetectorError(f"{path}: a SavedModel's input size is fixed at export; drop "
                            "input_size or re-export.")
      if "gin_files" in kwargs or "gin_bindings" in kwargs:
        raise DetectorError(f"{path}: a SavedModel's graph is fixed at export; gin files and "
                            "bindings apply to model directories only.")
      return cls.from_saved_model(path, teacher=teacher, **kwargs)
    return cls.from_checkpoint(path, teacher=teacher, input_size=input_size, **kwargs)

  @classmethod
  def from_checkpoint(cls, model_dir: str, teacher=None,
                      input_size: Optional[Sequence[int]] = None,
                      gin_files: Sequence[str] = (), gin_bindings: Sequence[str] = (),
                      **kwargs) -> "Detector":
    """From a model directory (config.gin + checkpoints; see vild.inference.checkpoint);
    `gin_files` replace its config.gin, `gin_bindings` apply after it."""
    loaded = checkpoint.load_model(model_dir, input_size=input_size, gin_files=gin_files,
                                   gin_bindings=gin_bindings)
    kwargs.setdefault("training_vocabulary", vocabularies.load_training_vocabulary(model_dir))
    return cls.from_model(loaded.model, loaded.input_size, teacher=teacher, **kwargs)

  @classmethod
  def from_model(cls, model: vild_model.ViLDModel, input_size: Sequence[int], teacher=None,
                 embed_names=None, embed_crops=None, training_vocabulary=None,
                 **options) -> "Detector":
    """From a Keras ViLDModel. Its detection generator is rebuilt with the options' NMS IoU
    and max detections (the model is changed in place)."""
    opts = DetectorOptions(**options)
    if opts.use_ensemble and not model.uses_ensemble:
      raise DetectorError(f"use_ensemble=True needs a ViLD-ensemble model; this one has "
                          f"distillation={model.distillation!r}.")
    teacher_adapters.check_embedding_dim(teacher, model.embedding_dim)
    serving.set_detection_settings(model, opts.score_threshold, opts.nms_iou_threshold,
                                   opts.max_detections)
    module = serving.ServingModule(model, input_size, use_ensemble=opts.use_ensemble)
    return cls(module.signature("serve_with_embeddings"),
               spec_lib.ModelSpec.from_model(model, input_size, opts.use_ensemble), opts,
               embed_names=embed_names or teacher_adapters.embed_names(teacher),
               embed_crops=embed_crops or teacher_adapters.embed_crops(teacher), owner=module,
               training_vocabulary=training_vocabulary)

  @classmethod
  def from_saved_model(cls, export_dir: str, teacher=None, embed_names=None,
                       embed_crops=None, **options) -> "Detector":
    """From an export of scripts/export_saved_model.py; NMS IoU and scoring are fixed there."""
    loaded = export.load_saved_model(export_dir)
    opts = DetectorOptions(**options)
    _check_export_options(export_dir, loaded.spec, opts)
    teacher_adapters.check_embedding_dim(teacher, loaded.spec.embedding_dim)
    return cls(loaded.signatures["serve_with_embeddings"], loaded.spec, opts,
               embed_names=embed_names or teacher_adapters.embed_names(teacher),
               embed_crops=embed_crops or teacher_adapters.embed_crops(teacher), owner=loaded,
               training_vocabulary=loaded.training_vocabulary)

  # ------------------------------------------------------------------------------------------
  def text_embeddings(self, vocabulary: vocabularies.VocabularyLike
                      ) -> Tuple[vocabulary_lib.Vocabulary, np.ndarray]:
    """(Vocabulary, [C, D] text embeddings) for any vocabulary form (see vocabularies)."""
    return vocabularies.resolve(vocabulary, self._text_cache, self.spec.embedding_dim)

  def base_novel_split(self, vocabulary: vocabulary_lib.Vocabulary
                       ) -> Tuple[vocabulary_lib.Vocabulary, str]:
    """(`vocabulary` with the base/novel flags ViLD-ensemble fusion uses, the rule applied).

    base_names given: exactly those are base. Else, with a known training vocabulary, a name
    is base iff the model was trained on it with boxes. Else the vocabulary's own flags.
    novel_names are novel in every case.
    """
    if self.options.base_names is not None:
      vocabulary = vocabularies.with_base_names(vocabulary, self.options.base_names)
      rule = "base = the given base names"
    elif self.training_vocabulary is not None:
      vocabulary = vocabularies.split_by_training(vocabulary, self.training_vocabulary)
      rule = f"base = trained with boxes, per {self.training_vocabulary.source}"
    else:
      rule = f"the model's training vocabulary is unknown: {vocabulary.source}'s own flags"
    if self.options.novel_names:
      vocabulary = vocabularies.with_novel_names(vocabulary, self.options.novel_names)
      rule += ", then the given novel names"
    return vocabulary, rule

  def detect(self, images, vocabulary: vocabularies.VocabularyLike,
             base_mask: Optional[Sequence[bool]] = None,
             method: str = "vild") -> List[Detections]:
    """Detects `vocabulary` in each image.

    Args:
      images: one image or a list; each a path, PIL image or uint8 [H, W, 3] array.
      vocabulary: names, a Vocabulary, a ';'-separated string or vocabulary file, a .npy
        text-embedding file, a [C, D] matrix, or a (names, matrix) pair.
      base_mask: [C] True for base categories (ViLD-ensemble); default `base_novel_split`.
      method: 'vild', or 'clip_on_crops' (teacher embeddings of proposal crops).

    Returns:
      One Detections per image.
    """
    if method not in detections_lib.METHODS:
      raise DetectorError(f"method must be one of {detections_lib.METHODS}, got {method!r}.")
    if method == "clip_on_crops" and self._embed_crops is None:
      raise DetectorError("method='clip_on_crops' needs a teacher (or embed_crops=) to embed "
                          "the cropped regions.")
    vocab, matrix = self.text_embeddings(vocabulary)
    mask = self._base_mask(vocab, base_mask)
    results = []
    for image in _image_list(images):
      array = images_lib.as_array(image)
      outputs = self._serve(images=tf.constant(array[np.newaxis]),
                            text_embeddings=tf.constant(matrix),
                            base_mask=tf.constant(mask))
      outputs = {k: v.numpy()[0] for k, v in outputs.items()}
      if method == "vild":
        results.append(self._keep(self._from_outputs(outputs, vocab, array.shape[:2])))
      else:
        results.append(self._clip_on_crops(array, outputs, vocab, matrix))
    return results

  def rescore(self, detections: Detections, vocabulary: vocabularies.VocabularyLike,
              base_mask: Optional[Sequence[bool]] = None) -> Detections:
    """Scores detections already made against a new vocabulary, without the detector.

    Each RoI is scored once with the model's head (its stored region embeddings), then
    per-class NMS picks the detections as the model would; with the vocabulary of
    `detections` this reproduces them exactly.
    """
    vocab, matrix = self.text_embeddings(vocabulary)
    _, first = np.unique(detections.roi_indices, return_index=True)
    pool = detections.select(np.sort(first))
    if detections.method == "clip_on_crops":
      scores = rescoring.vocabulary_probabilities(pool.region_embeddings, matrix,
                                                  self.spec.scoring.temperature)
    else:
      scores = rescoring.class_scores(self.spec.scoring, pool.region_embeddings, matrix,
                                      pool.image_embeddings, self._base_mask(vocab, base_mask))
    return self._select(pool, scores, vocab)

  def expand_with_attributes(self, detections: Detections,
                             attributes: vocabularies.VocabularyLike) -> Detections:
    """p names x q attributes: Pr(v_i, a_j | e) = Pr(v_i | e) * Pr(a_j | e).

    Pr(v_i | e) is each detection's class score; Pr(a_j | e) is a softmax over the attributes
    of cosine(region embedding, attribute embedding) / temperature. Each detection keeps its
    name and takes its most likely attribute; the vocabulary becomes the p*q pairs
    "attribute name" (row i*q + j).
    """
    attribute_vocab, attribute_matrix = self.text_embeddings(attributes)
    probabilities = rescoring.vocabulary_probabilities(
        detections.region_embeddings, attribute_matrix, self.spec.scoring.temperature)
    joint = rescoring.attribute_scores(detections.class_scores, probabilities)  # [K, p, q]
    q = len(attribute_vocab)
    best = np.argmax(probabilities, axis=-1)
    names = [f"{a} {n}" for n in detections.vocabulary.names for a in attribute_vocab.names]
    rows = np.arange(len(detections))
    return dataclasses.replace(
        detections,
        vocabulary=vocabulary_lib.Vocabulary.from_names(
            names, source=f"{detections.vocabulary.source} x {attribute_vocab.source}"),
        class_indices=detections.class_indices * q + best,
        scores=joint[rows, detections.class_indices, best],
        class_scores=joint.reshape(len(detections), -1))

  # ------------------------------------------------------------------------------------------
  def _base_mask(self, vocab: vocabulary_lib.Vocabulary,
                 base_mask: Optional[Sequence[bool]]) -> np.ndarray:
    if base_mask is not None:
      mask = np.asarray(base_mask, bool)
      if mask.shape != (len(vocab),):
        raise DetectorError(f"base_mask has shape {mask.shape} but the vocabulary has "
                            f"{len(vocab)} categories; give one flag per category.")
      return mask
    return self.base_novel_split(vocab)[0].base_mask

  def _from_outputs(self, outputs: Dict[str, np.ndarray], vocab: vocabulary_lib.Vocabulary,
                    image_size: Tuple[int, int]) -> Detections:
    n = int(outputs["num_detections"])
    take = lambda key: outputs[key][:n] if key in outputs else None  # noqa: E731
    return Detections(
        boxes=take("detection_boxes"), scores=take("detection_scores"),
        class_indices=take("detection_classes").astype(np.int64) - 1,
        class_scores=take("detection_class_scores"),
        region_embeddings=take("detection_region_embeddings"), vocabulary=vocab,
        image_size=tuple(image_size), roi_indices=take("detection_roi_indices"),
        image_embeddings=take("detection_image_embeddings"),
        box_masks=take("detection_masks"))

  def _clip_on_crops(self, image: np.ndarray, outputs: Dict[str, np.ndarray],
                     vocab: vocabulary_lib.Vocabulary, matrix: np.ndarray) -> Detections:
    """R-CNN style: classify each proposal by the teacher's embedding of its crops."""
    proposals = outputs["proposals"]
    real = np.nonzero((proposals[:, 2] > proposals[:, 0]) &
                      (proposals[:, 3] > proposals[:, 1]))[0]
    crop_embeddings = np.asarray(self._embed_crops(image, proposals[real]), np.float32)
    if crop_embeddings.shape != (len(real), self.spec.embedding_dim):
      raise DetectorError(f"embed_crops returned shape {crop_embeddings.shape} for "
                          f"{len(real)} boxes; expected ({len(real)}, "
                          f"{self.spec.embedding_dim}).")
    pool = Detections(
        boxes=proposals[real], scores=np.zeros(len(real), np.float32),
        class_indices=np.zeros(len(real), np.int64),
        class_scores=np.zeros((len(real), len(vocab)), np.float32),
        region_embeddings=crop_embeddings, vocabulary=vocab, image_size=tuple(image.shape[:2]),
        roi_indices=real, method="clip_on_crops")
    scores = rescoring.vocabulary_probabilities(crop_embeddings, matrix,
                                                self.spec.scoring.temperature)
    return self._select(pool, scores, vocab)

  def _select(self, pool: Detections, scores: np.ndarray,
              vocab: vocabulary_lib.Vocabulary) -> Detections:
    """Per-class NMS over a pool of scored RoIs, with this detector's settings."""
    indices, classes, kept_scores = rescoring.select_detections(
        pool.boxes, scores, pool.image_size, self._detection_settings)
    return self._keep(pool.select(indices, class_indices=classes, scores=kept_scores,
                                  class_scores=scores[indices], vocabulary=vocab))

  def _keep(self, detections: Detections) -> Detections:
    """Score threshold and max detections (a no-op when the graph applied them already)."""
    keep = np.nonzero(detections.scores > self.options.score_threshold)[0]
    return detections.select(keep[:self._detection_settings["max_num_detections"]])


# --------------------------------------------------------------------------------------------
def _image_list(images) -> list:
  if isinstance(images, (list, tuple)):
    return list(images)
  if isinstance(images, np.ndarray) and images.ndim == 4:
    return list(images)
  return [images]


def _check_export_options(export_dir: str, spec: spec_lib.ModelSpec,
                          opts: DetectorOptions) -> None:
  exported = spec.detection_settings
  if (opts.nms_iou_threshold is not None and
      opts.nms_iou_threshold != exported["nms_iou_threshold"]):
    raise DetectorError(f"{export_dir}: exported with NMS IoU {exported['nms_iou_threshold']}; "
                        "re-export with --nms_iou_threshold to change it.")
  if opts.score_threshold < exported["score_threshold"]:
    raise DetectorError(f"{export_dir}: exported with score threshold "
                        f"{exported['score_threshold']}; re-export with --score_threshold to "
                        "lower it.")
  if opts.max_detections is not None and opts.max_detections > exported["max_num_detections"]:
    raise DetectorError(f"{export_dir}: exported with at most {exported['max_num_detections']} "
                        "detections; re-export with --max_detections to raise it.")
  if opts.use_ensemble is not None and spec.distillation == "separate" and (
      opts.use_ensemble != spec.uses_ensemble):
    raise DetectorError(f"{export_dir}: exported with use_ensemble={spec.uses_ensemble}; "
                        "re-export with --use_ensemble to change the scoring.")
