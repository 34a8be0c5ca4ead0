"""README's "ViLD on LVIS, step by step", run as written (issue 18).

The commands are parsed out of the section's bash block, so the test changes with the README.
They run from a scratch directory laid out as the README's paths expect, holding:
  data/lvis/lvis_v1_{train,val}.json   an LVIS-format world of scripts/make_synthetic_dataset.py
  data/coco/{train,val}/               its images
  data/coco/instances_val2017.json     a COCO-format file of some of its categories (transfer)
  clip-b32/                            the README's random CLIP (its make_random_clip.py line)
  photos/                              two images to detect in
The only changes to the commands (`_as_run`): `python scripts/x.py` runs this interpreter on
the repository's script; a command naming a configs/laptop/ experiment gets TEST_SIZES (a few
steps at 128 px instead of 20k at 512); `detections_20000.json` (the laptop run's last step)
becomes the test run's last step. 20 commands; about 6 CPU minutes on the 2-core development
host (each script's start, mostly importing TensorFlow, is 7 of them; training 31-36 s).
"""
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.pipeline  # minutes: collected first (tests/conftest.py)

SECTION = "## ViLD on LVIS, step by step"
TRAIN_STEPS = 4
TEST_SIZES = [
    f"ViLDTrainer.train_steps = {TRAIN_STEPS}", "ViLDTrainer.steps_per_loop = 2",
    "ViLDTrainer.checkpoint_interval = 2", "train.global_batch_size = 2",
    "learning_rate_schedule.warmup_steps = 1", "learning_rate_schedule.decay_boundaries = (2, 3)",
    f"learning_rate_schedule.total_steps = {TRAIN_STEPS}", "Parser.output_size = (128, 128)",
]


def readme_commands():
  """(random-CLIP command, [commands]) of the section's bash block, continuations joined."""
  with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
    text = f.read()
  block = re.search(r"```bash\n(.*?)```", text[text.index(SECTION):], re.S).group(1)
  lines = block.replace("\\\n", " ").splitlines()
  clip = next(re.sub(r"^#\s*", "", l) for l in lines if "make_random_clip.py" in l)
  return clip, [l.strip() for l in lines if l.strip() and not l.lstrip().startswith("#")]


def _as_run(command: str):
  argv = shlex.split(command)
  assert argv[0] == "python" and argv[1].startswith("scripts/"), command
  argv = [sys.executable, os.path.join(REPO, argv[1])] + argv[2:]
  if any(a.startswith("--gin_file=configs/laptop/") for a in argv):
    argv += [f"--gin_param={b}" for b in TEST_SIZES]
  return [a.replace("detections_20000.json", f"detections_{TRAIN_STEPS}.json") for a in argv]


def _run(command: str, cwd: str) -> subprocess.CompletedProcess:
  env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"}
  result = subprocess.run(_as_run(command), cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)
  assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"
  return result


def _write_world(work: str) -> None:
  """The synthetic world where the README's paths expect LVIS and COCO."""
  world = os.path.join(work, "world")
  _run(f"python scripts/make_synthetic_dataset.py --output_dir={world} --num_train_images=8 "
       "--num_val_images=4 --num_crops=4", work)
  os.makedirs(os.path.join(work, "data", "lvis"))
  shutil.move(os.path.join(world, "images"), os.path.join(work, "data", "coco"))
  for split in ("train", "val"):
    shutil.copy(os.path.join(world, f"{split}.json"),
                os.path.join(work, "data", "lvis", f"lvis_v1_{split}.json"))
  with open(os.path.join(world, "val.json"), encoding="utf-8") as f:
    lvis_val = json.load(f)
  kept = [c for c in lvis_val["categories"] if c["shape"] in ("circle", "square")]
  kept_ids = {c["id"] for c in kept}
  coco = {"images": [{k: i[k] for k in ("id", "file_name", "height", "width")}
                     for i in lvis_val["images"]],
          "annotations": [a for a in lvis_val["annotations"] if a["category_id"] in kept_ids],
          "categories": [{"id": c["id"], "name": c["name"], "supercategory": c["shape"]}
                         for c in kept]}
  with open(os.path.join(work, "data", "coco", "instances_val2017.json"), "w") as f:
    json.dump(coco, f)
  os.makedirs(os.path.join(work, "photos"))
  for name in sorted(os.listdir(os.path.join(work, "data", "coco", "val")))[:2]:
    shutil.copy(os.path.join(work, "data", "coco", "val", name), os.path.join(work, "photos"))


def test_the_readme_lvis_section_runs_as_written(tmp_path):
  work = str(tmp_path)
  clip, commands = readme_commands()
  assert len(commands) >= 15, commands
  _write_world(work)
  _run(clip, work)
  printed = {}
  for command in commands:
    printed[command] = _run(command, work).stdout

  for run in ("vild_text", "vild", "vild_ens"):
    assert os.path.exists(os.path.join(work, "runs", run, "training_vocabulary.json"))
  for eval_dir in ("vild/eval", "vild_ens/eval", "vild_text/eval_clip", "vild_ens/eval_coco"):
    metrics = json.load(open(os.path.join(work, "runs", eval_dir,
                                          f"metrics_{TRAIN_STEPS}.json")))
    assert -1.0 <= metrics["bbox/AP"] <= 1.0 and "segm/AP" in metrics, eval_dir
  assert "bbox/APr" in json.load(open(os.path.join(work, "runs", "vild_ens", "eval",
                                                   f"metrics_{TRAIN_STEPS}.json")))
  coco_vocabulary = json.load(open(os.path.join(work, "data", "coco", "text_embeddings",
                                                "coco_clip_vitb32.json")))["vocabulary"]
  coco_names = json.load(open(os.path.join(work, "data", "coco", "instances_val2017.json")))
  assert len(coco_vocabulary["categories"]) == len(coco_names["categories"]) == 12  # not 30
  results_command = next(c for c in commands if "evaluate_results.py" in c)
  assert "bbox/AP " in printed[results_command]
  detect_command = next(c for c in commands if "detect.py" in c and "runs/vild_ens" in c)
  assert "base: none; novel: cat, red umbrella, koala" in printed[detect_command]
  for out in ("out", "out_export"):
    assert len(glob.glob(os.path.join(work, out, "*.json"))) >= 2, out
