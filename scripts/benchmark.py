"""Latency and memory of a step model on this machine, and how far it is from its floor.

  python scripts/benchmark.py --model=runs/ptb_small/tflite_int8/model.tflite --threads=1

Runs, in one process with the same threads: the host benchmark of the model
with the LiteRT interpreter (benchmark_model's method: init, warm-up, timed
one-token steps with the LSTM state carried), LiteRT's litert-benchmark tool on
the same model, and the floor reference (a single FULLY_CONNECTED streaming as
many weight bytes per call as the model reads per token). Prints the report
as JSON and writes it to --output_json (default: MODEL's name with
_benchmark.json). On a phone, use scripts/android_benchmark.py.
"""

import json
import os

from absl import flags

import quiet_start  # noqa: F401  (first: quiet unless --verbose; see scripts/quiet_start.py)
import tflm_compress  # (sets TF_USE_LEGACY_KERAS before TensorFlow)
from tflm_compress import cli, io_utils
from tflm_compress.benchmark import host
from tflm_compress.errors import UserError

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "", "The step-model .tflite to benchmark.")
flags.DEFINE_integer("threads", 1, "Interpreter threads (1: one big core of a phone).",
                     lower_bound=1)
flags.DEFINE_integer("runs", 50, "Minimum number of timed runs (tokens).", lower_bound=1)
flags.DEFINE_float("min_secs", 1.0, "Minimum seconds of timed runs.", lower_bound=0.0)
flags.DEFINE_float("max_secs", 150.0, "No new run starts after this many seconds.",
                   lower_bound=0.001)
flags.DEFINE_integer("warmup_runs", 1, "Minimum number of warm-up runs.", lower_bound=0)
flags.DEFINE_float("warmup_min_secs", 0.5, "Minimum seconds of warm-up.", lower_bound=0.0)
flags.DEFINE_integer("seed", 0, "Seed of the token sequence and of random inputs.")
flags.DEFINE_bool("floor", True, "Also measure the floor reference and report the ratio.")
flags.DEFINE_bool("litert_benchmark", True, "Also run LiteRT's litert-benchmark tool.")
flags.DEFINE_string("output_json", "", "Where to write the report (default: beside MODEL).")


def main(argv):
  cli.reject_extra_args(argv)
  if not FLAGS.model:
    raise UserError("--model=FILE.tflite is required")
  if not FLAGS.model.lower().endswith(".tflite"):
    raise UserError(f"--model={FLAGS.model!r} must be a .tflite step model")
  if not os.path.isfile(FLAGS.model):
    raise UserError(f"TFLite model not found: {FLAGS.model!r}")
  output = FLAGS.output_json or os.path.splitext(FLAGS.model)[0] + "_benchmark.json"
  io_utils.makedirs(os.path.dirname(os.path.abspath(output)))
  settings = host.BenchmarkSettings(
      num_threads=FLAGS.threads, num_runs=FLAGS.runs, min_secs=FLAGS.min_secs,
      max_secs=FLAGS.max_secs, warmup_runs=FLAGS.warmup_runs,
      warmup_min_secs=FLAGS.warmup_min_secs, seed=FLAGS.seed)
  result = tflm_compress.benchmark(FLAGS.model, floor=FLAGS.floor,
                                  litert_benchmark=FLAGS.litert_benchmark, settings=settings)
  io_utils.atomic_write_json(output, result)
  print(json.dumps(result, indent=2, sort_keys=True))


if __name__ == "__main__":
  cli.run(main, stage="benchmark")
