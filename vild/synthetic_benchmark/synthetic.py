"""The synthetic benchmark: the paper's study, end to end, on the synthetic world.

  gin.parse_config_file("configs/synthetic/benchmark.gin")
  results = run_benchmark("runs/synthetic", force=False)

One function per stage, each writing into its own directory under the work dir (cached by
`vild.synthetic_benchmark.stages`); `Pipeline` asks for them by name and variant:

  world             the synthetic world (vild.data.synthetic): base-only train, full val, crops
  records           TFRecords of train (base only), train_full (the oracle's) and val
  teacher           a tiny CLIP pre-trained on the captioned crops of ALL categories
  text_embeddings   the vocabulary embedded by the teacher, ViLD's prompt ensemble (or GloVe
                    vectors of the captions' words: text without vision)
  supervised_base_seed<s>
                    Mask R-CNN on base boxes (learned classes): a baseline, and the detector
                    whose class-agnostic RPN gives seed s its proposals
  proposals_seed<s> its top M proposals added to the training records
  region_embeddings_seed<s>
                    the teacher's 1x + 1.5x crop embeddings of those proposals
  clip_on_crops_seed<s>
                    CLIP on cropped regions with its proposals and heads, evaluated
  <row>_seed<s>     each row (`vild.synthetic_benchmark.methods`): trained with the same
                    detector config and budget and seed s, then evaluated on val (LVIS API)
  report            RESULTS.md and the figures (vild.synthetic_benchmark.report)

Every detector stage parses `BenchmarkSpec.detector_gin` (a complete detector experiment:
model, input, schedule, evaluation) plus the spec's, the row's and the seed's bindings, so
the methods differ only in their bindings; the stage key is the resulting gin config.
"""
import contextlib
import dataclasses
import json
import os
import time
from typing import Dict, List, Optional, Sequence, Tuple, Union

from absl import flags
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
from vild.synthetic_benchmark import word_vectors
from vild.data import conversion
from vild.data import input_pipeline
from vild.data import synthetic
from PIL import Image
from vild.distillation_data import proposals as proposals_lib
from vild.distillation_data import region_embeddings as region_embeddings_lib
from vild.evaluation import experiment as evaluation_experiment
from vild.inference import checkpoint as checkpoint_lib
from vild.inference import detector as detector_inference
from vild.inference import visualize
from vild.teacher import clip_teacher
from vild.teacher import crops
from vild.teacher import pretraining
from vild.teacher import vocabulary_embeddings
from vild.training import determinism
from vild.training import experiment as training_experiment
from vild.utils import cli

# Record sets: name -> (annotation file of the world, drop novel annotations).
RECORD_SETS = {"train": ("train.json", True), "train_full": ("train_full.json", False),
               "val": ("val.json", False)}
TEXT_EMBEDDINGS = "text_embeddings.npy"  # every category of the world
METRICS_FILE = "metrics.json"  # in each method's stage directory
GRID_FILE = "detection_grid.png"


@gin.configurable
@dataclasses.dataclass(frozen=True)
class BenchmarkSpec:
  """What the benchmark runs (the world, the teacher and CLIP on crops have their own specs).

  Attributes:
    detector_gin: the detector experiment every method trains (model, input pipeline,
      schedule, evaluation settings): the same budget for all.
    detector_bindings: more bindings on it (e.g. a shorter schedule for --quick).
    seeds: every detector row trains once per seed (train.seed), and so does the base-only
      detector that gives each seed its proposals, distillation data and CLIP on crops.
      The world and the teacher are shared: the paper's runs share CLIP and LVIS too.
    vild_weight: w of the ViLD and ViLD-ensemble rows (paper R50: 0.5).
    num_proposals: M, proposals per training image for distillation (paper 300 per 1024 px
      LVIS image; the synthetic scenes hold 2-5 objects).
    templates: prompt templates of the text embeddings ('vild': the 63 of the release).
    temperature: T of every cosine classifier (the detectors' text head and ViLD-ensemble's
      image branch, the supervised baselines' learned rows, CLIP on cropped regions). None:
      the teacher's own, 1 / its learned logit scale, as the paper's 0.01 is CLIP's (logit
      scale 100). The tiny teacher learns a scale near 17 (T about 0.06): its class embeddings
      are spread for that scale, not for 100 (docs/synthetic_benchmark.md, "What we tried").
    grid_images: validation images in the detection grid figure.
    grid_methods: its rows, among 'vild_text', 'vild' and 'vild_ensemble' (at vild_weight).
    parallel_jobs: worker processes that train and evaluate detectors at once (0: in this
      process, one after another, with TensorFlow's default threads).
    threads: TensorFlow threads of each worker (intra- and inter-op).
    deterministic: op determinism in the workers (tf.config.experimental.
      enable_op_determinism): with one thread, a seed's run is bitwise the same each time.
    The last three change how stages run, not what they compute (up to floating-point
    order), so they are not part of any stage's cache key.
  """
  detector_gin: str = "configs/synthetic/detector.gin"
  detector_bindings: Tuple[str, ...] = ()
  seeds: Tuple[int, ...] = (0, 1, 2)
  vild_weight: float = 0.5
  num_proposals: int = 32
  templates: str = "vild"
  temperature: Optional[float] = None
  grid_images: int = 4
  grid_methods: Tuple[str, ...] = ("vild_text", "vild", "vild_ensemble")
  parallel_jobs: int = 2
  threads: int = 1
  deterministic: bool = True

  def __post_init__(self):
    if not self.seeds or len(set(self.seeds)) != len(self.seeds):
      raise ValueError(f"BenchmarkSpec.seeds must be distinct seeds, at least one; got "
                       f"{self.seeds}.")
    if self.parallel_jobs < 0 or self.threads < 1:
      raise ValueError(f"BenchmarkSpec.parallel_jobs ({self.parallel_jobs}) must be 0 or more "
                       f"and threads ({self.threads}) at least 1.")

  def grid_rows(self) -> List[methods_lib.Row]:
    named = {"vild_text": methods_lib.VILD_TEXT, "vild": methods_lib.vild(self.vild_weight),
             "vild_ensemble": methods_lib.vild_ensemble(self.vild_weight)}
    unknown = set(self.grid_methods) - set(named)
    if unknown:
      raise ValueError(f"BenchmarkSpec.grid_methods: unknown {sorted(unknown)}; choose from "
                       f"{sorted(named)}.")
    return [methods_lib.Row(named[name]) for name in self.grid_methods]

  def rows(self) -> List[methods_lib.Row]:
    """The demo's trained rows, in table order (CLIP on crops goes after the first)."""
    return [methods_lib.Row(m) for m in (
        methods_lib.SUPERVISED_BASE, methods_lib.VILD_TEXT,
        methods_lib.vild(self.vild_weight), methods_lib.vild_ensemble(self.vild_weight))]


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
                                 "num_train_crops", "num_held_out_crops", "spec")}


def class_separation(matrix: np.ndarray, vocabulary: vocabulary_lib.Vocabulary) -> dict:
  """Mean and highest cosine between the class embeddings of different base categories: how
  far apart a text embedding puts the classes a detector must tell apart."""
  base = matrix[vocabulary.base_mask]
  cosine = base @ base.T
  off_diagonal = cosine[~np.eye(len(base), dtype=bool)]
  return {"mean_base_cosine": float(off_diagonal.mean()),
          "max_base_cosine": float(off_diagonal.max())}


def embed_vocabulary(directory: str, world_dir: str, teacher_dir: str,
                     template_set: str) -> dict:
  """The classifier: every category of the world embedded by the teacher."""
  teacher = clip_teacher.load_clip_teacher(teacher_dir)
  vocabulary = vocabulary_lib.Vocabulary.from_file(os.path.join(world_dir, "val.json"))
  matrix = vocabulary_embeddings.write_text_embeddings(
      os.path.join(directory, TEXT_EMBEDDINGS), teacher, vocabulary, template_set=template_set,
      progress=False)
  return {"vocabulary": vocabulary.describe(), "dim": teacher.embedding_dim,
          **class_separation(matrix, vocabulary)}


def embed_vocabulary_with_glove(directory: str, world_dir: str, dim: int) -> dict:
  """Text embeddings without vision: GloVe vectors of the captions' words (word_vectors)."""
  _, items = synthetic.load_captions(world_dir)
  vocabulary = vocabulary_lib.Vocabulary.from_file(os.path.join(world_dir, "val.json"))
  matrix, summary = word_vectors.category_embeddings([i["caption"] for i in items],
                                                     vocabulary, dim)
  text_embeddings_lib.save(os.path.join(directory, TEXT_EMBEDDINGS), matrix, vocabulary,
                           model="glove_on_captions")
  return {"vocabulary": vocabulary.describe(), **summary,
          **class_separation(matrix, vocabulary)}


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


def train_and_evaluate(directory: str, spec: BenchmarkSpec, bindings: Sequence[str],
                       paths: Dict[str, str], records: str) -> dict:
  """Trains a detector in directory/model and evaluates it on val; writes metrics.json.

  Args:
    bindings: the row's gin bindings (method, variant, seed) on `spec.detector_gin`.
    paths: 'text_embeddings', the record patterns by name, 'val' (record pattern),
      'val_json'.
    records: the training record set (a key of `paths`).
  """
  model_dir = os.path.join(directory, "model")
  bindings = list(spec.detector_bindings) + list(bindings) + [
      f"training_vocabulary.text_embeddings_path = '{paths['text_embeddings']}'",
      f"train.train_file_pattern = '{paths[records]}'",
      f"evaluate.eval_file_pattern = '{paths['val']}'",
      f"evaluate.annotation_file = '{paths['val_json']}'",
      "evaluate.metric = 'lvis'",
  ]
  with gin_config([spec.detector_gin], bindings):
    start = time.process_time()
    history = training_experiment.train(model_dir)
    train_cpu = time.process_time() - start
    (step, metrics), = evaluation_experiment.evaluate(model_dir).items()
    eval_cpu = time.process_time() - start - train_cpu
  summary = {"step": step, "cpu_seconds": {"train": train_cpu, "evaluate": eval_cpu},
             "final_losses": {k: float(np.mean(v[-20:])) for k, v in history.items()
                              if k != "step"},
             "metrics": metrics}
  with open(os.path.join(directory, METRICS_FILE), "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=1)
  return {"metrics": metrics, "cpu_seconds": summary["cpu_seconds"],
          "novel_category_ap": novel_category_ap(directory, paths["val_json"])}


def novel_category_ap(directory: str, val_json: str) -> Dict[str, float]:
  """{novel category: mask AP (box AP without masks)} of the stage's saved detections."""
  path = report_lib.detection_file(directory)
  with open(path, encoding="utf-8") as f:
    has_masks = '"segmentation"' in f.read(4096)
  return report_lib.novel_category_ap(val_json, {"stage": path},
                                      "segm" if has_masks else "bbox")["stage"]


def evaluate_with_teacher(directory: str, model_dir: str, teacher_dir: str,
                          val_json: str) -> dict:
  """ViLD-text + CLIP: a trained ViLD-text evaluated with the teacher's scores of every
  proposal's 1x + 1.5x crops fused in (vild.evaluation: evaluate.clip_checkpoint_dir)."""
  with gin_config([os.path.join(model_dir, "config.gin")], []):
    (step, metrics), = evaluation_experiment.evaluate(
        model_dir, output_dir=os.path.join(directory, "eval"),
        clip_checkpoint_dir=teacher_dir).items()
  return {"metrics": metrics, "step": step,
          "novel_category_ap": novel_category_ap(directory, val_json)}


def add_proposals(directory: str, records_dir: str, detector_dir: str,
                  num_proposals: int) -> dict:
  """The base-only detector's top `num_proposals` proposals on each training image."""
  with gin_config([], []):  # the detector's own config.gin is all it needs
    result = proposals_lib.generate_proposals(
        record_pattern(records_dir, "train"), directory, os.path.join(detector_dir, "model"),
        gin_files=[os.path.join(detector_dir, "model", "config.gin")],
        num_proposals=num_proposals)
  return {"shards": len(result["written"])}


def add_region_embeddings(directory: str, proposals_dir: str, teacher_dir: str,
                          scales: Sequence[float]) -> dict:
  result = region_embeddings_lib.compute_region_embeddings(
      record_pattern(proposals_dir, "train"), directory, checkpoint_dir=teacher_dir,
      scales=scales)
  return {"shards": len(result["written"])}


@contextlib.contextmanager
def clip_on_crops_evaluation(detector_dir: str, teacher, clip_spec: clip_on_crops.ClipOnCropsSpec,
                             paths: Dict[str, str], temperature: float):
  """(ClipOnCropsEvaluator, val dataset) over a base-only detector's run, inside its gin."""
  matrix, vocabulary = text_embeddings_lib.load(paths["text_embeddings"])
  with gin_config([], []):
    loaded = checkpoint_lib.load_model(os.path.join(detector_dir, "model"))
    evaluator = clip_on_crops.ClipOnCropsEvaluator(
        loaded.model, vocabulary, matrix, teacher, clip_spec, temperature, metric="lvis",
        annotation_file=paths["val_json"])
    yield evaluator, input_pipeline.build_dataset(paths["val"], vocabulary, is_training=False,
                                                  batch_size=10)


def run_clip_on_crops(directory: str, clip_spec: clip_on_crops.ClipOnCropsSpec,
                      detector_dir: str, teacher_dir: str, paths: Dict[str, str],
                      temperature: float) -> dict:
  """CLIP on cropped regions over val with the base-only detector's proposals and heads."""
  teacher = clip_teacher.load_clip_teacher(teacher_dir)
  with clip_on_crops_evaluation(detector_dir, teacher, clip_spec, paths,
                                temperature) as (evaluator, dataset):
    metrics = evaluator.evaluate(dataset, os.path.join(directory, "eval"), step=0)
  with open(os.path.join(directory, METRICS_FILE), "w", encoding="utf-8") as f:
    json.dump({"clip_on_crops": dataclasses.asdict(clip_spec), "metrics": metrics}, f,
              indent=1)
  return {"metrics": metrics, "novel_category_ap": novel_category_ap(directory,
                                                                      paths["val_json"])}


def draw_detection_grid(directory: str, spec: BenchmarkSpec, stage_dirs: Dict[str, str],
                        world_dir: str, text_path: str) -> dict:
  """GRID_FILE: a row per `spec.grid_rows()` (its first seed), a column per validation scene
  among those richest in novel objects; detections over every category above
  GRID_SCORE_THRESHOLD."""
  scenes = report_lib.novel_rich_images(os.path.join(world_dir, "val.json"), spec.grid_images)
  images = []
  for file_name, _ in scenes:
    image = Image.open(os.path.join(world_dir, "images", file_name)).convert("RGB")
    images.append(np.asarray(image.resize(
        (image.width * report_lib.GRID_SCALE, image.height * report_lib.GRID_SCALE),
        Image.NEAREST)))
  rows = []
  for row in spec.grid_rows():
    with gin_config([], []):
      detector = detector_inference.Detector.from_checkpoint(
          os.path.join(stage_dirs[row.name], "model"),
          score_threshold=report_lib.GRID_SCORE_THRESHOLD)
      detections = detector.detect(images, text_path)
    rows.append((row.label, [visualize.draw_detections(image, d)
                             for image, d in zip(images, detections)]))
  novel = "; ".join(f"{chr(ord('a') + i)}: {', '.join(names)}"
                    for i, (_, names) in enumerate(scenes))
  rows[0] = (f"{rows[0][0]}   (novel objects, columns {novel})", rows[0][1])
  report_lib.draw_grid(os.path.join(directory, GRID_FILE), rows)
  return {"scenes": [file_name for file_name, _ in scenes]}


# ------------------------------------------------------------------------------------------
def worker_setup(threads: int, deterministic: bool, search_paths: Sequence[str]) -> None:
  """Runs first in each worker process of a pipeline (`stages.StageRunner.run_all`)."""
  logging.set_verbosity(logging.INFO)  # the training's progress lines, as in the main process
  cli.quiet_worker_logs()  # grappler's cost-model warnings, as in the main process
  if deterministic:
    determinism.set_determinism(deterministic=True, num_threads=threads)
    # Random ops must then have a seed, also outside training (building a restored model
    # runs a training step); trainings seed themselves with train.seed.
    tf_keras.utils.set_random_seed(0)
  else:
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
  for path in search_paths:
    gin.add_config_file_search_path(path)


class Pipeline:
  """The benchmark's stages under one work dir, each computed once (and cached across runs).

  Every stage a row needs is asked for by name and variant; a stage already run in this
  process is returned as is, one finished by an earlier run with the same key is reused
  (`stages.StageRunner`). The demo (`run_benchmark`) and the ablations
  (vild.synthetic_benchmark.ablations) share one work dir, so the ablations reuse the demo's
  world, teacher, detectors and distillation data.

  Cheap stages run here, in order. Detector trainings and evaluations are `jobs`: a batch of
  them runs in `BenchmarkSpec.parallel_jobs` worker processes of `BenchmarkSpec.threads`
  TensorFlow threads each (`run_jobs`), with op determinism when `BenchmarkSpec.deterministic`;
  asking for one (`detector`) runs a batch of one.

  Stage names: world, records, teacher[_steps<n>], text_embeddings[_<variant>],
  <row>_seed<s> (detectors), proposals[_m<M>]_seed<s>,
  region_embeddings[_<variant>]_seed<s>, clip_on_crops[_<variant>]_seed<s>.
  """

  def __init__(self, work_dir: str, spec: Optional[BenchmarkSpec] = None,
               force: Union[bool, Sequence[str]] = False):
    self.spec = spec or BenchmarkSpec()
    self.work_dir = os.path.abspath(work_dir)
    self.runner = stages.StageRunner(self.work_dir, force)
    self.world_spec = synthetic.WorldSpec()
    self.teacher_spec = pretraining.PretrainingSpec()

  @property
  def results(self) -> Dict[str, stages.StageResult]:
    return self.runner.results

  def stage(self, name, config, fn, inputs=()) -> stages.StageResult:
    """`StageRunner.run`, but a stage already run by this pipeline is returned as is."""
    if name in self.runner.results:
      return self.runner.results[name]
    return self.runner.run(name, config, fn, inputs)

  def run_jobs(self, jobs: Sequence[stages.Job]) -> List[stages.StageResult]:
    """Results of `jobs`, the unfinished ones run in the spec's worker processes."""
    todo = [job for job in jobs if job.name not in self.runner.results]
    self.runner.run_all(todo, self.spec.parallel_jobs, worker_setup,
                        (self.spec.threads, self.spec.deterministic, gin_search_paths()))
    return [self.runner.results[job.name] for job in jobs]

  # ----------------------------------------------------------------------------------------
  def world(self) -> stages.StageResult:
    return self.stage("world", dataclasses.asdict(self.world_spec),
                      lambda d: make_world(d, self.world_spec))

  def records(self) -> stages.StageResult:
    world = self.world()
    return self.stage("records", {}, lambda d: make_records(d, world.directory), [world])

  def paths(self) -> Dict[str, str]:
    """Record patterns of every record set, and the validation annotations."""
    records = self.records()
    return {"val_json": os.path.join(self.world().directory, "val.json"),
            **{name: record_pattern(records.directory, name) for name in RECORD_SETS}}

  def teacher_job(self, steps: Optional[int] = None) -> stages.Job:
    """The teacher pre-trained for `steps` (None: PretrainingSpec.steps, the default)."""
    spec, name = self.teacher_spec, "teacher"
    if steps is not None and steps != spec.steps:
      spec, name = dataclasses.replace(spec, steps=steps), f"teacher_steps{steps}"
    world = self.world()
    return stages.Job(name, {"spec": dataclasses.asdict(spec),
                             "model": pretraining.teacher_config().to_dict()},
                      train_teacher, (world.directory, spec), [world])

  def teacher(self, steps: Optional[int] = None) -> stages.StageResult:
    """The default teacher trains here, with every thread: nothing else can run yet."""
    job = self.teacher_job(steps)
    return self.stage(job.name, job.config, lambda d: job.fn(d, *job.args), job.inputs)

  def temperature(self, teacher_steps: Optional[int] = None) -> float:
    """Every cosine classifier's temperature: BenchmarkSpec.temperature or the teacher's."""
    return self.spec.temperature or float(self.teacher(teacher_steps).summary["temperature"])

  def text_embeddings(self, variant: methods_lib.Variant = methods_lib.DEFAULT
                      ) -> stages.StageResult:
    """The vocabulary's text embeddings for `variant` (its encoder, teacher, templates)."""
    world = self.world()
    if variant.text_encoder == "glove":
      dim = pretraining.teacher_config().embed_dim  # the detector's embedding size
      return self.stage("text_embeddings_glove", {"dim": dim},
                        lambda d: embed_vocabulary_with_glove(d, world.directory, dim),
                        [world])
    templates = variant.templates or self.spec.templates
    teacher = self.teacher(variant.teacher_steps)
    name = "text_embeddings" + "".join(
        f"_{part}" for part in (templates if templates != self.spec.templates else "",
                                teacher.name[len("teacher_"):]) if part)
    return self.stage(name, {"templates": templates},
                      lambda d: embed_vocabulary(d, world.directory, teacher.directory,
                                                 templates), [world, teacher])

  # ----------------------------------------------------------------------------------------
  def detector_job(self, row: methods_lib.Row, seed: int) -> stages.Job:
    """`row` trained with `seed` and evaluated on val (its distillation data made first)."""
    method, variant = row.method, row.variant
    text = self.text_embeddings(variant)
    text_path = os.path.join(text.directory, TEXT_EMBEDDINGS)
    vocabulary = text_embeddings_lib.load(text_path)[1]
    num_classes = (len(vocabulary) if method.classes == "all"
                   else int(vocabulary.base_mask.sum()))
    embedding_dim = pretraining.teacher_config().embed_dim
    bindings = list(method.bindings(num_classes, embedding_dim,
                                    self.temperature(variant.teacher_steps)))
    bindings += [f"train.seed = {seed}", *variant.bindings]
    paths = dict(self.paths(), text_embeddings=text_path)
    inputs = [self.records(), text]
    if method.distills:
      distill = self.region_embeddings(seed, variant)
      paths["distill"] = record_pattern(distill.directory, "train")
      inputs.append(distill)
      bindings.append(f"Parser.max_num_distill_rois = "
                      f"{variant.num_proposals or self.spec.num_proposals}")
    config = {"detector": detector_config(self.spec, bindings),
              "method": dataclasses.asdict(method)}
    return stages.Job(methods_lib.seeded(row.name, seed), config, train_and_evaluate,
                      (self.spec, bindings, paths, method.records), inputs)

  def detector(self, row: methods_lib.Row, seed: int) -> stages.StageResult:
    return self.run_jobs([self.detector_job(row, seed)])[0]

  def base_detector(self, seed: int) -> stages.StageResult:
    """The supervised base-only detector: a row, and the source of proposals."""
    return self.detector(methods_lib.Row(methods_lib.SUPERVISED_BASE), seed)

  def proposals(self, seed: int, num_proposals: Optional[int] = None) -> stages.StageResult:
    count = num_proposals or self.spec.num_proposals
    base, records = self.base_detector(seed), self.records()
    suffix = f"_m{count}" if count != self.spec.num_proposals else ""
    return self.stage(methods_lib.seeded("proposals" + suffix, seed), {"num_proposals": count},
                      lambda d: add_proposals(d, records.directory, base.directory, count),
                      [records, base])

  def region_embeddings(self, seed: int, variant: methods_lib.Variant = methods_lib.DEFAULT
                        ) -> stages.StageResult:
    """The teacher's crop embeddings of the proposals: the distillation data of `variant`."""
    count = variant.num_proposals or self.spec.num_proposals
    scales = tuple(variant.crop_scales or crops.VILD_SCALES)
    proposals, teacher = self.proposals(seed, count), self.teacher(variant.teacher_steps)
    parts = [f"m{count}" if count != self.spec.num_proposals else "",
             "crops" + "_".join(f"{s:g}x" for s in scales) if scales != crops.VILD_SCALES
             else "",
             teacher.name[len("teacher_"):]]
    name = methods_lib.seeded("region_embeddings" + "".join(f"_{p}" for p in parts if p),
                              seed)
    return self.stage(name, {"scales": scales},
                      lambda d: add_region_embeddings(d, proposals.directory,
                                                      teacher.directory, scales),
                      [proposals, teacher])

  def clip_on_crops_job(self, seed: int,
                        clip_spec: Optional[clip_on_crops.ClipOnCropsSpec] = None,
                        variant: methods_lib.Variant = methods_lib.DEFAULT, name: str = ""
                        ) -> stages.Job:
    """CLIP on cropped regions with seed's base-only detector; `name` tells variants apart."""
    clip_spec = clip_spec or clip_on_crops.ClipOnCropsSpec()
    base, teacher, text = (self.base_detector(seed), self.teacher(variant.teacher_steps),
                           self.text_embeddings(variant))
    paths = dict(self.paths(), text_embeddings=os.path.join(text.directory, TEXT_EMBEDDINGS))
    temperature = self.temperature(variant.teacher_steps)
    return stages.Job(
        methods_lib.seeded(methods_lib.CLIP_ON_CROPS + (f"_{name}" if name else ""), seed),
        {"spec": dataclasses.asdict(clip_spec), "temperature": temperature},
        run_clip_on_crops, (clip_spec, base.directory, teacher.directory, paths, temperature),
        [self.records(), base, teacher, text])

  def vild_text_plus_clip_job(self, seed: int) -> stages.Job:
    """ViLD-text + CLIP: seed's ViLD-text evaluated with the teacher's crop scores fused in."""
    text_row = self.detector(methods_lib.Row(methods_lib.VILD_TEXT), seed)
    teacher = self.teacher()
    return stages.Job(methods_lib.seeded(methods_lib.VILD_TEXT_PLUS_CLIP, seed), {},
                      evaluate_with_teacher,
                      (os.path.join(text_row.directory, "model"), teacher.directory,
                       self.paths()["val_json"]),
                      [text_row, teacher])

  def detection_grid(self) -> stages.StageResult:
    world, text = self.world(), self.text_embeddings()
    shown = [self.detector(row, self.spec.seeds[0]) for row in self.spec.grid_rows()]
    stage_dirs = {row.name: result.directory
                  for row, result in zip(self.spec.grid_rows(), shown)}
    return self.stage("detection_grid", {"images": self.spec.grid_images,
                                         "rows": [r.name for r in shown]},
                      lambda d: draw_detection_grid(
                          d, self.spec, stage_dirs, world.directory,
                          os.path.join(text.directory, TEXT_EMBEDDINGS)),
                      [world, text] + shown)


def gin_search_paths() -> List[str]:
  """Where 'configs/...' resolves: the repository holding this package."""
  return [os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))]


def run_demo_rows(pipeline: Pipeline) -> None:
  """Every seed of every demo row and of CLIP on crops, in two batches of jobs: the rows
  that need no distillation data (the base-only detectors, ViLD-text), then the rest."""
  spec = pipeline.spec
  first = [row for row in spec.rows() if not row.method.distills]
  pipeline.run_jobs([pipeline.detector_job(row, seed) for row in first for seed in spec.seeds])
  pipeline.run_jobs([pipeline.detector_job(row, seed) for row in spec.rows()
                     if row not in first for seed in spec.seeds] +
                    [pipeline.clip_on_crops_job(seed) for seed in spec.seeds])


def define_run_flags(outputs: str) -> None:
  """The flags of scripts/run_synthetic_benchmark.py and scripts/run_ablations.py.

  Args:
    outputs: what the script writes into --results_dir, for --help.
  """
  from vild.utils import gin_config  # pylint: disable=g-import-not-at-top
  flags.DEFINE_bool("quick", False, "Tiny world, teacher and schedule "
                    "(configs/synthetic/quick.gin); checks the mechanics, not the findings.")
  flags.DEFINE_string("work_dir", None, "Stage directories (the demo and the ablations share "
                      "them); default runs/synthetic (runs/synthetic_quick with --quick).")
  flags.DEFINE_string("results_dir", None, f"{outputs}; default results/synthetic "
                      "(<work_dir>/results with --quick).")
  flags.DEFINE_list("force", [], "Stages to recompute ('all' for every stage); the stages "
                    "after them follow.")
  gin_config.define_flags()  # --gin_file (default configs/synthetic/benchmark.gin, quick.gin
  # with --quick), --gin_param (e.g. 'BenchmarkSpec.seeds = (0, 1, 2, 3, 4)')


def configure_run(repo: str) -> Tuple[str, str, Union[bool, List[str]]]:
  """Parses the run's gin config from the flags of `define_run_flags`; returns (work_dir,
  results_dir, force) with the defaults filled in: configs/synthetic/benchmark.gin (quick.gin
  with --quick), <repo>/runs/synthetic (synthetic_quick), results in <repo>/results/synthetic
  (<work_dir>/results with --quick).
  """
  from vild.utils import gin_config  # pylint: disable=g-import-not-at-top
  run_flags = flags.FLAGS
  quick = run_flags.quick
  gin_files = list(run_flags.gin_file or
                   [f"configs/synthetic/{'quick' if quick else 'benchmark'}.gin"])
  work_dir = run_flags.work_dir or os.path.join(repo, "runs",
                                                "synthetic_quick" if quick else "synthetic")
  results_dir = run_flags.results_dir or (os.path.join(work_dir, "results") if quick
                                          else os.path.join(repo, "results", "synthetic"))
  gin.add_config_file_search_path(repo)  # configs/... resolve from any working directory
  gin_config.parse(gin_files, run_flags.gin_param)
  return work_dir, results_dir, (True if "all" in run_flags.force else run_flags.force)


def run_benchmark(work_dir: str, results_dir: Optional[str] = None,
                  force: Union[bool, Sequence[str]] = False,
                  spec: Optional[BenchmarkSpec] = None,
                  command: str = "python scripts/run_synthetic_benchmark.py") -> dict:
  """Runs (or reuses) the demo's stages under `work_dir`; writes the report to `results_dir`.

  Shared: the world, the records, the teacher and the text embeddings. Per seed: the
  base-only detector, its proposals and distillation data, CLIP on crops and every row of
  `BenchmarkSpec.rows()`. Detectors run in two batches of jobs: those that need no
  distillation data (the base-only detectors, ViLD-text), then the rest.

  Args:
    work_dir: one directory per stage (see `Pipeline`).
    results_dir: RESULTS.md, metrics.json and the figures; None: work_dir/results.
    force: True, or names of stages to recompute (stages downstream follow).
    spec: default BenchmarkSpec() from gin.
    command: how the run was started, for the report.

  Returns:
    The metrics written to results_dir/metrics.json.
  """
  start = time.time()
  pipeline = Pipeline(work_dir, spec, force)
  spec = pipeline.spec
  with stages.work_dir_lock(pipeline.work_dir):
    run_demo_rows(pipeline)
    grid = pipeline.detection_grid()
    results_dir = results_dir or os.path.join(pipeline.work_dir, "results")
    return report_lib.write_report(results_dir, spec, pipeline,
                                   os.path.join(grid.directory, GRID_FILE), command=command,
                                   run_seconds=time.time() - start)
