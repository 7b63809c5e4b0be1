"""Benchmark: the LSTM stack alone of several models, timed side by side.

  python benchmarks/lstm_latency.py \
      --models=baseline=runs/ptb_small/model.keras,iss=runs/ptb_pipeline/variants/iss_keep50/model/model.keras \
      --output_json=docs/results/ptb_small_iss_lstm_latency.json

  python benchmarks/lstm_latency.py --presets=small,medium,large --iss_keep=0.5
  python benchmarks/lstm_latency.py --presets=small --iss_keep=0.04,0.25,0.5,0.75 --timer=native

Each model's LSTM layers are cut out as their own one-step ``.tflite`` (one
embedded token and the states in, top ``h`` and the states out) and timed in
interleaved rounds with the host benchmark; the first model is the reference
of the speedup and parameter-reduction columns.

``--presets`` instead times, per preset size, the LSTM stack of a model of
that architecture (random weights: latency does not depend on the values)
against the same model after ISS surgery keeping each ``--iss_keep``
fraction of each layer's units: how the speedup of the same relative cut
grows with the size once the fixed cost per op stops dominating, and, with
several fractions, how the latency of one size falls with the units kept.
"""

import tempfile

from absl import flags

import quiet_start  # noqa: F401  (first: quiet unless --verbose; see scripts/quiet_start.py)
import tflm_compress  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)
from tflm_compress import cli, io_utils
from tflm_compress.benchmark.components import compare_lstm_latency
from tflm_compress.benchmark.host import BenchmarkSettings
from tflm_compress.methods.iss import preset_iss_models
from tflm_compress.models import load_model

FLAGS = flags.FLAGS
flags.DEFINE_list("models", [], "NAME=model.keras pairs; the first is the reference.")
flags.DEFINE_list("presets", [], "Instead of --models: preset sizes (small, medium, large), each "
                  "timed against its ISS-shrunk self.")
flags.DEFINE_list("iss_keep", ["0.5"], "With --presets: fractions of each layer's units ISS "
                  "keeps, one shrunk model per fraction.")
cli.define_interleaved_timing_flags(runs=300, per="model")


def main(argv):
  cli.reject_extra_args(argv)
  if bool(FLAGS.models) == bool(FLAGS.presets):
    raise tflm_compress.UserError("give --models=NAME=model.keras,... or --presets=small,...")
  settings = BenchmarkSettings(num_threads=FLAGS.threads, num_runs=FLAGS.runs)
  if FLAGS.models:
    paths = cli.parse_named_paths(FLAGS.models)
    groups = [{name: load_model(path) for name, path in paths.items()}]
    result = {"models": paths}
  else:
    keeps = cli.parse_floats("iss_keep", FLAGS.iss_keep)
    groups = [preset_iss_models(name, keeps) for name in FLAGS.presets]
    result = {"presets": FLAGS.presets, "iss_keep": keeps}
  rows = []
  with tempfile.TemporaryDirectory() as workdir:
    for models in groups:
      rows += compare_lstm_latency(models, workdir, settings, rounds=FLAGS.rounds,
                                   timer=FLAGS.timer)
  result.update({"settings": settings.to_dict(), "rounds": FLAGS.rounds, "timer": FLAGS.timer,
                 "rows": rows})
  if FLAGS.output_json:
    io_utils.atomic_write_json(FLAGS.output_json, result)
  print("| model | LSTM hidden | LSTM params | param reduction | TFLite ops | XNNPACK partitions "
        "| LSTM ms/step p50 (median of rounds) | speedup | best round ms | speedup (best rounds) |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['name']} | {r['hidden_sizes']} | {r['lstm_params']:,} | "
          f"{r['param_reduction']:.2f}x | {r['tflite_ops']} | {r['delegate_partitions']} | "
          f"{r['lstm_ms_p50']:.4f} | {r['speedup']:.2f}x | {r['lstm_ms_best_round']:.4f} | "
          f"{r['speedup_best_round']:.2f}x |")


if __name__ == "__main__":
  cli.run(main)
