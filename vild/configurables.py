"""Every vild module that declares gin configurables, imported before any config is parsed.

gin cannot bind a parameter of a module nobody has imported, and once a config is locked
(finalized) it refuses to register a configurable at all: `Attempted to add a new configurable
after the config was locked`. Scripts import some modules only when a flag asks for them (the
CLIP teacher for ViLD-text + CLIP evaluation, say), after parsing. So `register_all()` runs
before every parse (vild.utils.gin_config.parse); tests/test_gin_registration.py checks that
this list names every module of the package that declares a configurable.
"""
import importlib

MODULES = (
    "vild.anchors",
    "vild.data.input_pipeline",
    "vild.data.synthetic",
    "vild.data.targets",
    "vild.evaluation.evaluator",
    "vild.evaluation.experiment",
    "vild.losses",
    "vild.modeling.factory",
    "vild.synthetic_benchmark.ablations",
    "vild.synthetic_benchmark.clip_on_crops",
    "vild.synthetic_benchmark.synthetic",
    "vild.teacher.clip_teacher",
    "vild.teacher.crops",
    "vild.teacher.pretraining",
    "vild.teacher.vocabulary_embeddings",
    "vild.training.determinism",
    "vild.training.experiment",
    "vild.training.optimizer",
    "vild.training.strategy",
    "vild.training.trainer",
)


def register_all() -> None:
  """Imports every module in MODULES (cheap once TensorFlow is loaded: ~0.1 s)."""
  for name in MODULES:
    importlib.import_module(name)
