r"""Evaluates an existing results file (official LVIS/COCO results format) against an annotation
file, with vild's LVIS and COCO metric code (the one scripts/evaluate.py uses).

  python scripts/evaluate_results.py --results=runs/vild/eval/detections_20000.json \
      --annotations=data/lvis/lvis_v1_val.json [--output=metrics.json]
  # COCO-format data, with OV-COCO's novel/base AP50:
  python scripts/evaluate_results.py --results=dets.json \
      --annotations=instances_val2017.json --metric=coco --split=ov_coco

Detections: a JSON list of {image_id, category_id, score, bbox [x, y, w, h] and/or
segmentation (compressed or uncompressed RLE, or polygons)}. Box AP needs a bbox in every
detection, mask AP a segmentation in every one. Mask AP's small/medium/large split uses MASK
areas (the bbox is dropped, detectron2's convention): LVISEval run directly on a file that
keeps the bbox splits by box area, so its APs/APm/APl differ.
"""
from vild.utils import cli

cli.quiet_native_logs()  # before TensorFlow loads: it reads its C++ log level once

import json  # noqa: E402

from absl import flags  # noqa: E402

from vild.evaluation import results_file  # noqa: E402
from vild.utils import gin_config  # noqa: E402
from vild.utils import io  # noqa: E402

flags.DEFINE_string("results", None, "The results JSON (a list of detections).")
flags.DEFINE_string("annotations", None, "The split's LVIS or COCO annotation JSON.")
flags.DEFINE_enum("metric", "auto", results_file.METRICS, "'auto': LVIS when the categories "
                  "carry a frequency, else COCO.")
flags.DEFINE_list("iou_types", None, "bbox and/or segm; default every type the detections have.")
flags.DEFINE_enum("split", "none", ["none", "ov_coco"], "COCO metric: 'ov_coco' adds AP50 over "
                  "the novel and base categories.")
flags.DEFINE_string("output", None, "Also write the metrics to this JSON file.")
flags.mark_flags_as_required(["results", "annotations"])
FLAGS = flags.FLAGS


def main(argv):
  del argv
  gin_config.parse_flags()
  metrics = results_file.evaluate_results_file(
      FLAGS.results, FLAGS.annotations, metric=FLAGS.metric, iou_types=FLAGS.iou_types,
      split=FLAGS.split)
  for name, value in metrics.items():
    print(f"{name:<20} {value:8.4f}")
  if FLAGS.output:
    io.write_text_atomic(FLAGS.output, json.dumps(metrics, indent=1) + "\n")
    print(f"wrote {FLAGS.output}")


if __name__ == "__main__":
  cli.run(main)
