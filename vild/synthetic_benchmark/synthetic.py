"""The synthetic benchmark: the paper's study, end to end, on the synthetic world.

  gin.parse_config_file("configs/synthetic/benchmark.gin")
  results = run_benchmark("runs/synthetic", force=False)

One function per stage, each writing into its own directory under the work dir (cached by
`vild.synthetic_benchmark.stages`):

  world             the synthetic world (vild.data.synthetic): base-only train, full val, crops
  records           TFRecords of train (base only), train_full (the oracle's) and val
  teacher           a tiny CLIP pre-trained on the captioned crops of ALL categories
  text_embeddings   the vocabulary embedded by the teacher, ViLD's prompt ensemble
  supervised_base   Mask R-CNN on base boxes (learned classes): a baseline, and the detector
                    whose class-agnostic RPN gives the proposals
  proposals         its top M proposals added to the training records
  region_embeddings the teacher's 1x + 1.5x crop embeddings of those proposals
  clip_on_crops     CLIP on cropped regions, evaluated (no training)
  <method>          each method of `vild.synthetic_benchmark.methods`: trained with the same detector
                    config and budget, then evaluated on val with the LVIS API
  report            RESULTS.md and the figures (vild.synthetic_benchmark.report)

Every detector stage parses `BenchmarkSpec.detector_gin` (a complete detector experiment:
model, input, schedule, evaluation) plus the spec's and the method's bindings, so the methods
differ only in their bindings; the stage key is the resulting gin config.
"""
import contextlib
import dataclasses
import glob
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple, Union

from absl import logging
import gin
import numpy as np
import tensorflow as tf
import tf_keras

from vild import text_embeddings as text_embeddings_lib
from vild import vocabulary as vocabulary_lib
from vild.synthetic_benchmark import clip_on_crops
from vild.synthetic_benchmark import methods as methods_lib
from vild.synthetic_benchmark import report as report_lib
from vild.synthetic_benchmark import stages
from vild.data import conversion
from vild.data import synthetic
from PIL import Image
from vild.distillation_data import proposals as proposals_lib
from vild.distillation_data import region_embeddings as region_embeddings_lib
from vild.evaluation import experiment as evaluation_experiment
from vild.inference import checkpoint as checkpoint_lib
from vild.inference import detector as detector_inference
from vild.inference import visualize
from vild.evaluation import lvis_metrics
from vild.teacher import clip_teacher
from vild.teacher import pretraining
from vild.teacher import vocabulary_embeddings
from vild.training import experiment as training_experiment

# Record sets: name -> (annotation file of the world, drop novel annotations).
RECORD_SETS = {"train": ("train.json", True), "train_full": ("train_full.json", False),
               "val": ("val.json", False)}
TEXT_EMBEDDINGS = "text_embeddings.npy"  # every category of the world
METRICS_FILE = "metrics.json"  # in each method's stage directory
GRID_FILE = "detection_grid.png"


@gin.configurable
@dataclasses.dataclass(frozen=True)
class BenchmarkSpec:
  """What the benchmark runs (the world and the teacher have their own gin specs).

  Attributes:
    detector_gin: the detector experiment every method trains (model, input pipeline,
      schedule, evaluation settings): the same budget for all.
    detector_bindings: more bindings on it (e.g. a shorter schedule for --quick).
    vild_weight: w of the ViLD and ViLD-ensemble rows (paper R50: 0.5).
    weight_sweep: further w of ViLD trained for the AP_novel-vs-w figure.
    num_proposals: M, proposals per training image for distillation (paper 300 per 1024 px
      LVIS image; the synthetic scenes hold 2-5 objects).
    templates: prompt templates of the text embeddings ('vild': the 63 of the release).
    temperature: T of every cosine classifier (the detectors' text head and ViLD-ensemble's
      image branch, the supervised baselines' learned rows, CLIP on cropped regions). None:
      the teacher's own, 1 / its learned logit scale, as the paper's 0.01 is CLIP's (logit
      scale 100). The tiny teacher learns a scale near 17 (T about 0.06): its class embeddings
      are spread for that scale, not for 100 (docs/synthetic_benchmark.md, "What we tried").
    clip_on_crops_proposals: proposals per validation image it classifies.
    grid_images: validation images in the detection grid figure.
    grid_methods: its rows, among 'vild_text', 'vild' and 'vild_ensemble' (at vild_weight).
  """
  detector_gin: str = "configs/synthetic/detector.gin"
  detector_bindings: Tuple[str, ...] = ()
  vild_weight: float = 0.5
  weight_sweep: Tuple[float, ...] = (2.0,)
  num_proposals: int = 32
  templates: str = "vild"
  temperature: Optional[float] = None
  clip_on_crops_proposals: int = 100
  grid_images: int = 4
  grid_methods: Tuple[str, ...] = ("vild_text", "vild", "vild_ensemble")

  def grid_rows(self) -> List[methods_lib.Method]:
    named = {"vild_text": methods_lib.VILD_TEXT, "vild": methods_lib.vild(self.vild_weight),
             "vild_ensemble": methods_lib.vild_ensemble(self.vild_weight)}
    unknown = set(self.grid_methods) - set(named)
    if unknown:
      raise ValueError(f"BenchmarkSpec.grid_methods: unknown {sorted(unknown)}; choose from "
                       f"{sorted(named)}.")
    return [named[name] for name in self.grid_methods]

  def methods(self) -> List[methods_lib.Method]:
    """Every trained method, in table order."""
    weights = sorted({self.vild_weight, *self.weight_sweep})
    return ([methods_lib.SUPERVISED_BASE, methods_lib.ORACLE, methods_lib.VILD_TEXT,
             methods_lib.VILD_IMAGE] + [methods_lib.vild(w) for w in weights] +
            [methods_lib.vild_ensemble(self.vild_weight)])


# ------------------------------------------------------------------------------------------
# Data and teacher.
def make_world(directory: str, spec: synthetic.WorldSpec) -> dict:
  world = synthetic.generate(directory, spec)
  return {k: world[k] for k in ("novel", "num_train_annotations", "num_val_annotations",
                                "num_crops")}


def make_records(directory: str, world_dir: str) -> dict:
  """TFRecords of each record set (`RECORD_SETS`), with the converter used for LVIS."""
  summary = {}
  for name, (annotations, base_only) in RECORD_SETS.items():
    report = conversion.convert(os.path.join(world_dir, annotations),
                                os.path.join(world_dir, "images"), directory, name,
                                split="lvis_rare", base_only=base_only)
    summary[name] = {k: report[k] for k in ("num_images", "annotations_kept", "dropped_novel")}
  return summary


def record_pattern(directory: str, name: str) -> str:
  return os.path.join(directory, f"{name}-*.tfrecord")


def train_teacher(directory: str, world_dir: str, spec: pretraining.PretrainingSpec) -> dict:
  report = pretraining.pretrain_teacher(world_dir, directory, spec)
  return {k: report[k] for k in ("zero_shot_accuracy", "max_class_cosine", "temperature",
                                 "num_train_crops", "num_held_out_crops")}


def embed_vocabulary(directory: str, world_dir: str, teacher_dir: str,
                     template_set: str) -> dict:
  """The classifier: every category of the world embedded by the teacher."""
  teacher = clip_teacher.load_clip_teacher(teacher_dir)
  vocabulary = vocabulary_lib.Vocabulary.from_file(os.path.join(world_dir, "val.json"))
  vocabulary_embeddings.write_text_embeddings(
      os.path.join(directory, TEXT_EMBEDDINGS), teacher, vocabulary, template_set=template_set,
      progress=False)
  return {"vocabulary": vocabulary.describe(), "dim": teacher.embedding_dim}


# ------------------------------------------------------------------------------------------
# Detectors.
@contextlib.contextmanager
def gin_config(files: Sequence[str], bindings: Sequence[str]):
  """Gin holds exactly `files` + `bindings` inside the block; the caller's config after."""
  saved = gin.config_str()
  gin.clear_config()
  try:
    gin.parse_config_files_and_bindings(list(files), list(bindings), finalize_config=False)
    yield
  finally:
    gin.clear_config()
    gin.parse_config(saved)
    tf_keras.backend.clear_session()


def detector_config(spec: BenchmarkSpec, bindings: Sequence[str] = ()) -> str:
  """The full gin config a detector stage runs with (its cache key)."""
  with gin_config([spec.detector_gin], list(spec.detector_bindings) + list(bindings)):
    return gin.config_str()


def train_and_evaluate(directory: str, spec: BenchmarkSpec, method: methods_lib.Method,
                       paths: Dict[str, str], num_classes: int, embedding_dim: int,
                       temperature: float) -> dict:
  """Trains `method` in directory/model and evaluates it on val; writes metrics.json.

  Args:
    paths: 'text_embeddings', 'train', 'train_full', 'distill' (record patterns), 'val'
      (record pattern), 'val_json'.
    num_classes, embedding_dim, temperature: see `Method.bindings`.
  """
  model_dir = os.path.join(directory, "model")
  bindings = list(spec.detector_bindings) + list(
      method.bindings(num_classes, embedding_dim, temperature))
  bindings += [
      f"training_vocabulary.text_embeddings_path = '{paths['text_embeddings']}'",
      f"train.train_file_pattern = '{paths[method.records]}'",
      f"evaluate.eval_file_pattern = '{paths['val']}'",
      f"evaluate.annotation_file = '{paths['val_json']}'",
      "evaluate.metric = 'lvis'",
  ]
  with gin_config([spec.detector_gin], bindings):
    history = training_experiment.train(model_dir)
    (step, metrics), = evaluation_experiment.evaluate(model_dir).items()
  summary = {"method": dataclasses.asdict(method), "step": step,
             "final_losses": {k: float(np.mean(v[-20:])) for k, v in history.items()
                              if k != "step"},
             "metrics": metrics}
  with open(os.path.join(directory, METRICS_FILE), "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=1)
  return {"metrics": metrics}


def add_proposals(directory: str, spec: BenchmarkSpec, records_dir: str,
                  detector_dir: str) -> dict:
  """The base-only detector's top `num_proposals` proposals on each training image."""
  with gin_config([], []):  # the detector's own config.gin is all it needs
    result = proposals_lib.generate_proposals(
        record_pattern(records_dir, "train"), directory, os.path.join(detector_dir, "model"),
        gin_files=[os.path.join(detector_dir, "model", "config.gin")],
        num_proposals=spec.num_proposals)
  return {"shards": len(result["written"])}


def add_region_embeddings(directory: str, proposals_dir: str, teacher_dir: str) -> dict:
  result = region_embeddings_lib.compute_region_embeddings(
      record_pattern(proposals_dir, "train"), directory, checkpoint_dir=teacher_dir)
  return {"shards": len(result["written"])}


def run_clip_on_crops(directory: str, spec: BenchmarkSpec, records_dir: str,
                      detector_dir: str, teacher_dir: str, text_path: str,
                      val_json: str, temperature: float) -> dict:
  """CLIP on cropped regions over val: proposals of the base-only detector, teacher crops."""
  matrix, vocabulary = text_embeddings_lib.load(text_path)
  teacher = clip_teacher.load_clip_teacher(teacher_dir)
  records = [r.numpy() for r in tf.data.TFRecordDataset(
      sorted(glob.glob(record_pattern(records_dir, "val"))))]
  with gin_config([], []):
    base = checkpoint_lib.load_model(os.path.join(detector_dir, "model"))
    generator = proposals_lib.ProposalGenerator(base.model, base.input_size,
                                                num_proposals=spec.clip_on_crops_proposals)
    results = clip_on_crops.detect(generator, teacher, records, vocabulary, matrix, temperature)
  metrics = lvis_metrics.evaluate_lvis(val_json, results, iou_types=("bbox",))
  with open(os.path.join(directory, METRICS_FILE), "w", encoding="utf-8") as f:
    json.dump({"method": {"name": methods_lib.CLIP_ON_CROPS}, "metrics": metrics}, f, indent=1)
  return {"metrics": metrics}


def draw_detection_grid(directory: str, spec: BenchmarkSpec, stage_dirs: Dict[str, str],
                        world_dir: str, text_path: str) -> dict:
  """GRID_FILE: a row per `spec.grid_rows()`, a column per validation scene among those
  richest in novel objects; detections over every category above GRID_SCORE_THRESHOLD."""
  scenes = report_lib.novel_rich_images(os.path.join(world_dir, "val.json"), spec.grid_images)
  images = []
  for file_name, _ in scenes:
    image = Image.open(os.path.join(world_dir, "images", file_name)).convert("RGB")
    images.append(np.asarray(image.resize(
        (image.width * report_lib.GRID_SCALE, image.height * report_lib.GRID_SCALE),
        Image.NEAREST)))
  rows = []
  for method in spec.grid_rows():
    with gin_config([], []):
      detector = detector_inference.Detector.from_checkpoint(
          os.path.join(stage_dirs[method.name], "model"),
          score_threshold=report_lib.GRID_SCORE_THRESHOLD)
      detections = detector.detect(images, text_path)
    rows.append((method.label, [visualize.draw_detections(image, d)
                                for image, d in zip(images, detections)]))
  novel = "; ".join(f"{chr(ord('a') + i)}: {', '.join(names)}"
                    for i, (_, names) in enumerate(scenes))
  rows[0] = (f"{rows[0][0]}   (novel objects, columns {novel})", rows[0][1])
  report_lib.draw_grid(os.path.join(directory, GRID_FILE), rows)
  return {"scenes": [file_name for file_name, _ in scenes]}


# ------------------------------------------------------------------------------------------
def run_benchmark(work_dir: str, results_dir: Optional[str] = None,
                  force: Union[bool, Sequence[str]] = False,
                  spec: Optional[BenchmarkSpec] = None,
                  command: str = "python scripts/run_synthetic_benchmark.py") -> dict:
  """Runs (or reuses) every stage under `work_dir`; writes the report to `results_dir`.

  Args:
    work_dir: one directory per stage (see the module docstring).
    results_dir: RESULTS.md, metrics.json and the figures; None: work_dir/results.
    force: True, or names of stages to recompute (stages downstream follow).
    spec: default BenchmarkSpec() from gin.
    command: how the run was started, for the report.

  Returns:
    The metrics written to results_dir/metrics.json.
  """
  spec = spec or BenchmarkSpec()
  work_dir = os.path.abspath(work_dir)
  world_spec, teacher_spec = synthetic.WorldSpec(), pretraining.PretrainingSpec()
  runner = stages.StageRunner(work_dir, force)
  world = runner.run("world", dataclasses.asdict(world_spec),
                     lambda d: make_world(d, world_spec))
  records = runner.run("records", {}, lambda d: make_records(d, world.directory), [world])
  teacher = runner.run(
      "teacher", {"spec": dataclasses.asdict(teacher_spec),
                  "model": pretraining.teacher_config().to_dict()},
      lambda d: train_teacher(d, world.directory, teacher_spec), [world])
  text = runner.run("text_embeddings", {"templates": spec.templates},
                    lambda d: embed_vocabulary(d, world.directory, teacher.directory,
                                               spec.templates), [world, teacher])

  text_path = os.path.join(text.directory, TEXT_EMBEDDINGS)
  vocabulary = text_embeddings_lib.load(text_path)[1]
  embedding_dim = int(text.summary["dim"])
  temperature = spec.temperature or float(teacher.summary["temperature"])
  val_json = os.path.join(world.directory, "val.json")
  paths = {"text_embeddings": text_path, "val_json": val_json,
           **{name: record_pattern(records.directory, name) for name in RECORD_SETS}}

  def method_stage(method: methods_lib.Method, inputs) -> stages.StageResult:
    num_classes = (len(vocabulary) if method.classes == "all"
                   else int(vocabulary.base_mask.sum()))
    config = detector_config(spec, method.bindings(num_classes, embedding_dim, temperature))
    return runner.run(method.name, {"detector": config, "method": dataclasses.asdict(method)},
                      lambda d: train_and_evaluate(d, spec, method, paths, num_classes,
                                                   embedding_dim, temperature), inputs)

  base = method_stage(methods_lib.SUPERVISED_BASE, [records, text])
  proposals = runner.run(
      "proposals", {"num_proposals": spec.num_proposals, "detector": detector_config(spec)},
      lambda d: add_proposals(d, spec, records.directory, base.directory), [records, base])
  distill = runner.run("region_embeddings", {},
                       lambda d: add_region_embeddings(d, proposals.directory,
                                                       teacher.directory),
                       [proposals, teacher])
  paths["distill"] = record_pattern(distill.directory, "train")
  runner.run("clip_on_crops", {"temperature": temperature,
                               "proposals": spec.clip_on_crops_proposals,
                               "detector": detector_config(spec)},
             lambda d: run_clip_on_crops(d, spec, records.directory, base.directory,
                                         teacher.directory, text_path, val_json,
                                         temperature),
             [records, base, teacher, text])
  for method in spec.methods()[1:]:
    method_stage(method, [records, text, distill] if method.distills else [records, text])

  shown = spec.grid_rows()
  stage_dirs = {m.name: runner.results[m.name].directory for m in shown}
  grid = runner.run("detection_grid", {"images": spec.grid_images,
                                       "rows": [m.name for m in shown]},
                    lambda d: draw_detection_grid(d, spec, stage_dirs, world.directory,
                                                  text_path),
                    [world, text] + [runner.results[m.name] for m in shown])
  results_dir = results_dir or os.path.join(work_dir, "results")
  return report_lib.write_report(results_dir, spec, runner.results, paths,
                                 os.path.join(grid.directory, GRID_FILE), command=command)
