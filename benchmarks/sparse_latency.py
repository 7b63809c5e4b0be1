"""Benchmark: a pruned model's step graph, dense vs TFLite's sparse tensor encoding.

  python benchmarks/sparse_latency.py \\
      --model=runs/ptb_pipeline/variants/prune_90_kd/model/model.keras \\
      --output_json=docs/results/ptb_small_sparse_latency.json

Converts the model to each ``.tflite`` flavour of ``sparsity.sparsity_flavours``
(float and dynamic-range int8, dense and ``EXPERIMENTAL_SPARSITY``), and times
every flavour LiteRT loads in interleaved rounds (A, B, A, B, ...) on the same
fixed inputs; a flavour LiteRT refuses is listed with the reason.
"""

import os
import statistics
import tempfile

from absl import flags

import quiet_start  # noqa: F401  (first: quiet unless --verbose; see scripts/quiet_start.py)
import tflm_compress  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)
from tflm_compress import cli, io_utils
from tflm_compress.benchmark.host import BenchmarkSettings, check_rounds, interleaved_p50s
from tflm_compress.export import sparsity
from tflm_compress.models import load_model

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "A pruned (stripped) model.keras.")
cli.define_interleaved_timing_flags(runs=300, per="flavour")
flags.mark_flag_as_required("model")


def main(argv):
  cli.reject_extra_args(argv)
  check_rounds(FLAGS.rounds)
  model = load_model(FLAGS.model)
  settings = BenchmarkSettings(num_threads=FLAGS.threads, num_runs=FLAGS.runs)
  rows, paths = {}, {}
  with tempfile.TemporaryDirectory() as workdir:
    for name, convert in sparsity.sparsity_flavours(model).items():
      model_bytes, rows[name] = sparsity.convert_and_describe(convert)
      if rows[name].get("loads_in_litert"):
        paths[name] = os.path.join(workdir, f"{name}.tflite")
        io_utils.atomic_write_bytes(paths[name], model_bytes)
    p50s = interleaved_p50s(paths, settings, FLAGS.rounds, FLAGS.timer)
  for name, values in p50s.items():
    rows[name].update(ms_p50=statistics.median(values), round_p50s=values)
  result = {"model": FLAGS.model, "settings": settings.to_dict(), "rounds": FLAGS.rounds,
            "timer": FLAGS.timer,
            "flavours": rows}
  if FLAGS.output_json:
    io_utils.atomic_write_json(FLAGS.output_json, result)
  print("| flavour | .tflite bytes | gzip bytes | sparse tensors | ms/step p50 |")
  print("|---|---|---|---|---|")
  for name, r in rows.items():
    if "error" in r:
      print(f"| {name} | — | — | — | converter refused: {r['error']} |")
      continue
    latency = f"{r['ms_p50']:.4f}" if "ms_p50" in r else "does not load in LiteRT"
    print(f"| {name} | {r['tflite_bytes']:,} | {r['gzip_bytes']:,} | {r['sparse_tensors']} | "
          f"{latency} |")


if __name__ == "__main__":
  cli.run(main)
