"""The compared methods: each a detector trained with the same budget, told apart by gin bindings.

Every method trains on the benchmark's detector config (model, input, schedule) plus its own
bindings below, which mirror the paper-row configs in configs/lvis/ (supervised_base,
supervised_rfs, vild_text, vild_image, vild, vild_ensemble). CLIP on cropped regions trains
nothing: it classifies the supervised base-only detector's proposals with the teacher.

  records  which training records: 'train' (base annotations only), 'train_full' (every
           annotation: the oracle's) or 'distill' (base annotations + proposals and their
           teacher embeddings)
"""
import dataclasses
from typing import Optional, Tuple


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
CLIP_ON_CROPS = "clip_on_crops"
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
