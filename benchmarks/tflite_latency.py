"""Benchmark: several ``.tflite`` files timed side by side (A/B of two exports).

  python benchmarks/tflite_latency.py \\
      --models=before=/tmp/before/model.tflite,after=runs/ptb_small/tflite_none/model.tflite

Each file is timed in interleaved rounds (A, B, A, B, ...) with the host
benchmark on fixed inputs (``host.benchmark_fixed_inputs``: seeded floats,
zero integers, set once), so machine noise hits all of them alike; the figures
are the median and the minimum over rounds of each round's p50 (each round is
a new interpreter, and interpreters of one file differ by up to ~20% here).
Also printed per file: bytes, TFLite ops, and the XNNPACK partitions LiteRT
cut it into. The first file is the reference of the speedup columns.
"""

from absl import flags

import quiet_start  # noqa: F401  (first: quiet unless --verbose; see scripts/quiet_start.py)
import tflm_compress  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)
from tflm_compress import cli, io_utils
from tflm_compress.benchmark.host import BenchmarkSettings, compare_files
from tflm_compress.errors import UserError

FLAGS = flags.FLAGS
flags.DEFINE_list("models", [], "NAME=FILE.tflite pairs; the first is the reference.")
cli.define_interleaved_timing_flags(runs=1000, per="file")


def main(argv):
  cli.reject_extra_args(argv)
  if not FLAGS.models:
    raise UserError("give --models=NAME=FILE.tflite,...")
  settings = BenchmarkSettings(num_threads=FLAGS.threads, num_runs=FLAGS.runs)
  rows = compare_files(cli.parse_named_paths(FLAGS.models), settings, FLAGS.rounds, FLAGS.timer)
  if FLAGS.output_json:
    io_utils.atomic_write_json(FLAGS.output_json, {"settings": settings.to_dict(),
                                                   "rounds": FLAGS.rounds, "timer": FLAGS.timer,
                                                   "rows": rows})
  print("| model | bytes | TFLite ops | XNNPACK partitions | ms p50 (median of rounds) | speedup "
        "| best round ms | speedup (best rounds) |")
  print("|---|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['name']} | {r['bytes']:,} | {r['tflite_ops']} | {r['delegate_partitions']} | "
          f"{r['ms_p50']:.4f} | {r['speedup']:.2f}x | {r['ms_best_round']:.4f} | "
          f"{r['speedup_best_round']:.2f}x |")


if __name__ == "__main__":
  cli.run(main)
