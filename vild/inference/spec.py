"""ModelSpec: what serving a ViLD needs besides its weights, saved as JSON beside a SavedModel.

A client of an exported model needs the input size, the embedding dimension its text
embeddings must have, the scoring head (background embedding, temperature, ensemble lambda) to
re-score stored detections, and the detection settings the graph was exported with.
"""
import dataclasses
import json
from typing import Any, Dict, Optional, Sequence, Tuple

from vild.inference import rescoring
from vild.modeling import vild_model
from vild.utils import io

DETECTION_SETTING_KEYS = ("pre_nms_top_k", "score_threshold", "nms_iou_threshold",
                          "max_num_detections", "box_regression_weights", "pre_nms_rule")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """Attributes:
    input_size: (height, width) of the model input; images are resized to fit it.
    embedding_dim: D of region and text embeddings.
    distillation: the model's mode ('none', 'shared', 'separate').
    has_masks: the model predicts masks.
    scoring: the scoring head (ensemble_lambda None = text branch only).
    detection_settings: ViLDDetectionGenerator arguments (NMS IoU, max detections, ...).
  """
  input_size: Tuple[int, int]
  embedding_dim: int
  distillation: str
  has_masks: bool
  scoring: rescoring.ScoringParams
  detection_settings: Dict[str, Any]

  @classmethod
  def from_model(cls, model: vild_model.ViLDModel, input_size: Sequence[int],
                 use_ensemble: Optional[bool] = None) -> "ModelSpec":
    return cls(input_size=tuple(int(s) for s in input_size),
               embedding_dim=model.embedding_dim,
               distillation=model.distillation,
               has_masks=model.mask_head is not None,
               scoring=rescoring.ScoringParams.from_model(model, use_ensemble),
               detection_settings=detection_settings(model.detection_generator))

  @property
  def uses_ensemble(self) -> bool:
    return self.scoring.ensemble_lambda is not None

  def to_dict(self) -> Dict[str, Any]:
    return {"input_size": list(self.input_size), "embedding_dim": self.embedding_dim,
            "distillation": self.distillation, "has_masks": self.has_masks,
            "scoring": self.scoring.to_dict(),
            "detection_settings": {k: (list(v) if isinstance(v, tuple) else v)
                                   for k, v in self.detection_settings.items()}}

  @classmethod
  def from_dict(cls, data: Dict[str, Any]) -> "ModelSpec":
    return cls(input_size=tuple(data["input_size"]), embedding_dim=int(data["embedding_dim"]),
               distillation=data["distillation"], has_masks=bool(data["has_masks"]),
               scoring=rescoring.ScoringParams.from_dict(data["scoring"]),
               detection_settings=dict(data["detection_settings"]))

  def save(self, path: str) -> None:
    io.write_text_atomic(path, json.dumps(self.to_dict(), indent=1) + "\n")

  @classmethod
  def load(cls, path: str) -> "ModelSpec":
    return cls.from_dict(io.read_json(path))


def detection_settings(generator) -> Dict[str, Any]:
  """The constructor arguments of a ViLDDetectionGenerator."""
  config = generator.get_config()
  return {k: config[k] for k in DETECTION_SETTING_KEYS}
