r"""Region embeddings as an Apache Beam pipeline (needs: pip install 'vild[beam]').

  # One machine (DirectRunner, several worker processes):
  python scripts/compute_region_embeddings_beam.py --checkpoint_dir=clip-b32 \
      --input_pattern='tfrecords/lvis_proposals/train-*.tfrecord' \
      --output_dir=tfrecords/lvis_distill -- \
      --runner=DirectRunner --direct_num_workers=2 --direct_running_mode=multi_processing
  # Dataflow: everything after '--' is a Beam pipeline option.
  python scripts/compute_region_embeddings_beam.py --checkpoint_dir=/opt/clip-b32 \
      --input_pattern='gs://BUCKET/lvis_proposals/train-*.tfrecord' \
      --output_dir=gs://BUCKET/lvis_distill -- \
      --runner=DataflowRunner --project=PROJECT --region=REGION \
      --temp_location=gs://BUCKET/tmp --sdk_container_image=IMAGE_WITH_VILD_AND_CLIP

Writes {output_dir}/{name}-SSSSS-of-NNNNN.tfrecord with the same features the local tool
(scripts/compute_region_embeddings.py) computes. --checkpoint_dir must be readable as a local
path on every worker. See vild.distillation_data.beam_pipeline and docs/distillation_data.md.
"""
from vild.utils import cli

cli.quiet_native_logs()  # before TensorFlow loads: it reads its C++ log level once

from absl import flags  # noqa: E402

from vild.teacher import crops  # noqa: E402
from vild.utils import gin_config  # noqa: E402

flags.DEFINE_string("input_pattern", None, "Glob of TFRecord shards with proposals.")
flags.DEFINE_string("output_dir", None, "Where the output shards go.")
flags.DEFINE_string("checkpoint_dir", None, "CLIP checkpoint directory, a local path on every "
                    "worker.")
flags.DEFINE_string("name", None, "Output shard name; default the input shards' name.")
flags.DEFINE_integer("num_output_shards", 0, "Output shards; 0 = as many as the input has.")
flags.DEFINE_list("scales", [str(s) for s in crops.VILD_SCALES], "Crop scales (ViLD: 1.0,1.5).")
flags.DEFINE_integer("batch_size", 64, "Crops per teacher forward pass.")
flags.DEFINE_integer("records_per_batch", 16, "Most records per worker call.")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the image tower.")
flags.mark_flags_as_required(["input_pattern", "output_dir", "checkpoint_dir"])
FLAGS = flags.FLAGS


def main(argv):
  import apache_beam as beam  # pylint: disable=g-import-not-at-top
  from apache_beam.options import pipeline_options  # pylint: disable=g-import-not-at-top
  from vild.distillation_data import beam_pipeline  # pylint: disable=g-import-not-at-top

  gin_config.parse_flags()
  # Everything after '--' is a Beam pipeline option (runner, project, workers, ...).
  with beam.Pipeline(options=pipeline_options.PipelineOptions(argv[1:])) as pipeline:
    beam_pipeline.add_region_embeddings(
        pipeline, FLAGS.input_pattern, FLAGS.output_dir, FLAGS.checkpoint_dir, name=FLAGS.name,
        num_shards=FLAGS.num_output_shards or None, scales=[float(s) for s in FLAGS.scales],
        batch_size=FLAGS.batch_size, records_per_batch=FLAGS.records_per_batch,
        jit_compile=FLAGS.jit_compile)


if __name__ == "__main__":
  cli.run(main)
