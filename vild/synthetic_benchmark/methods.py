"""The compared methods: each a detector trained with the same budget, told apart by gin bindings.

Every method trains on the benchmark's detector config (model, input, schedule) plus its own
bindings below, which mirror the paper-row configs in configs/lvis/ (supervised_base,
supervised_rfs, vild_text, vild_image, vild, vild_ensemble). CLIP on cropped regions trains
nothing: it classifies the supervised base-only detector's proposals with the teacher.

  records  which training records: 'train' (base annotations only), 'train_full' (every
           annotation: the oracle's) or 'distill' (base annotations + proposals and their
           teacher embeddings)

A `Row` of a table is a method with a `Variant`: what an ablation changes besides the method
(the teacher, the text embeddings, the distillation data, a loss setting). The default
Variant is the demo's setting, so `Row(VILD_TEXT)` is the demo's ViLD-text row.
"""
import dataclasses
from typing import Optional, Tuple

TEXT_ENCODERS = ("teacher", "glove")


def seeded(name: str, seed: int) -> str:
  """The stage name of row `name` trained (or derived from a detector trained) with `seed`."""
  return f"{name}_seed{seed}"


@dataclasses.dataclass(frozen=True)
class Method:
  """One row of the results table.

  Attributes:
    name: stage name and key in the metrics file.
    label: the row label.
    records: 'train', 'train_full' or 'distill' (module doc).
    classes: 'base' or 'all' (training_vocabulary.classes).
    learned_classifier: learned class weights (the supervised baselines) instead of text
      embeddings.
    distillation: 'none', 'shared' or 'separate'.
    text_loss_weight, distill_loss_weight: ViLDLoss weights.
    paper_row: the row of the paper's LVIS table it corresponds to (VILD.md), if any.
  """
  name: str
  label: str
  records: str = "train"
  classes: str = "all"
  learned_classifier: bool = False
  distillation: str = "none"
  text_loss_weight: float = 1.0
  distill_loss_weight: float = 0.0
  paper_row: Optional[str] = None

  @property
  def distills(self) -> bool:
    return self.distillation != "none"

  def bindings(self, num_classes: int, embedding_dim: int, temperature: float
               ) -> Tuple[str, ...]:
    """Gin bindings of this method; `num_classes` is the size of its training vocabulary,
    `embedding_dim` the teacher's and `temperature` that of its cosine classifier."""
    bindings = [
        f"training_vocabulary.classes = '{self.classes}'",
        f"build_classifier.temperature = {temperature!r}",
        f"build_vild_model.distillation = '{self.distillation}'",
        f"ViLDLoss.text_loss_weight = {self.text_loss_weight}",
        f"ViLDLoss.distill_loss_weight = {self.distill_loss_weight}",
        # The official "mask rare": novel logits are zeroed in the ViLD-text loss. The
        # supervised models have no novel classes in their vocabulary (base) or learn them
        # from boxes (oracle).
        f"ViLDTrainer.mask_novel_logits = {not self.learned_classifier}",
    ]
    if self.learned_classifier:
      bindings += ["build_classifier.kind = 'learned'",
                   f"build_classifier.num_learned_classes = {num_classes}"]
    if self.distills:
      bindings.append(f"Parser.distill_feature_dim = {embedding_dim}")
    return tuple(bindings)


SUPERVISED_BASE = Method("supervised_base", "Supervised (base only)", classes="base",
                         learned_classifier=True)
ORACLE = Method("supervised_all", "Supervised (base+novel, oracle)", records="train_full",
                learned_classifier=True, paper_row="Supervised-RFS (base+novel)")
CLIP_ON_CROPS = "clip_on_crops"  # rows that train nothing: named stages, not Methods
VILD_TEXT_PLUS_CLIP = "vild_text_clip"
VILD_TEXT = Method("vild_text", "ViLD-text", paper_row="ViLD-text")
VILD_IMAGE = Method("vild_image", "ViLD-image", records="distill", distillation="shared",
                    text_loss_weight=0.0, distill_loss_weight=1.0, paper_row="ViLD-image")


def vild(weight: float) -> Method:
  """ViLD: ViLD-text + w * ViLD-image through one shared tower."""
  return Method(f"vild_w{weight:g}", f"ViLD (w={weight:g})", records="distill",
                distillation="shared", distill_loss_weight=weight,
                paper_row="ViLD (w=0.5)" if weight == 0.5 else None)


def vild_ensemble(weight: float) -> Method:
  """ViLD-ensemble: a separate distillation tower, fused with the text branch at inference."""
  return Method(f"vild_ensemble_w{weight:g}", f"ViLD-ensemble (w={weight:g})",
                records="distill", distillation="separate", distill_loss_weight=weight,
                paper_row="ViLD-ensemble (w=0.5)" if weight == 0.5 else None)


@dataclasses.dataclass(frozen=True)
class Variant:
  """What a row changes besides its method; every default is the demo's setting.

  Attributes:
    name: appended to the method's name ('l2' -> 'vild_w0.5_l2'); '' for the default.
    label: appended to the method's label.
    teacher_steps: pre-training steps of the teacher (None: the default teacher).
    templates: prompt templates of the text embeddings (None: BenchmarkSpec.templates).
    text_encoder: 'teacher' (the CLIP text tower) or 'glove' (word vectors of the captions,
      vild.synthetic_benchmark.word_vectors: the paper's GloVe baseline).
    num_proposals: M, distilled proposals per training image (None: BenchmarkSpec's).
    crop_scales: crop scales of the distillation targets (None: 1x and 1.5x).
    bindings: more gin bindings of the detector (e.g. the distillation loss type).
  """
  name: str = ""
  label: str = ""
  teacher_steps: Optional[int] = None
  templates: Optional[str] = None
  text_encoder: str = "teacher"
  num_proposals: Optional[int] = None
  crop_scales: Optional[Tuple[float, ...]] = None
  bindings: Tuple[str, ...] = ()

  def __post_init__(self):
    if self.text_encoder not in TEXT_ENCODERS:
      raise ValueError(f"Variant.text_encoder: {self.text_encoder!r} is not one of "
                       f"{TEXT_ENCODERS}.")


DEFAULT = Variant()


@dataclasses.dataclass(frozen=True)
class Row:
  """A row of a results table: a method trained (per seed) with a variant of the inputs."""
  method: Method
  variant: Variant = DEFAULT

  @property
  def name(self) -> str:
    return self.method.name + (f"_{self.variant.name}" if self.variant.name else "")

  @property
  def label(self) -> str:
    return self.method.label + (f", {self.variant.label}" if self.variant.label else "")

  @property
  def paper_row(self) -> Optional[str]:
    return self.method.paper_row if self.variant == DEFAULT else None
