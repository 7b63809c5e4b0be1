"""Benchmark: one float FULLY_CONNECTED ``[1, K] x [K, N]`` over a range of widths ``N``.

  python benchmarks/fc_width_latency.py --input_size=300 --widths=256:1072:16 \\
      --output_json=docs/results/fc_width_latency.json

A one-step LSTM layer is one such matmul (``K = input + H``, ``N = 4H``), and
once its weights fit in the core's cache its time is the GEMM kernel's, not
memory's: this shows, per width, how long XNNPACK takes per weight (ps per
multiply-add), each width timed in interleaved rounds on fixed inputs (weights
seeded, values do not matter). Widths where the time per weight jumps are
hidden sizes a structured method (ISS's ``--iss_units_multiple``) should
avoid.
"""

import os
import statistics
import tempfile

from absl import flags

import quiet_start  # noqa: F401  (first: quiet unless --verbose; see scripts/quiet_start.py)
import tflm_compress  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)
from tflm_compress import cli, io_utils
from tflm_compress.benchmark import floor
from tflm_compress.benchmark.host import BenchmarkSettings, check_rounds, interleaved_p50s
from tflm_compress.errors import UserError

FLAGS = flags.FLAGS
flags.DEFINE_integer("input_size", 300, "K: inputs of the matmul.")
flags.DEFINE_string("widths", "256:1072:16", "N values: START:STOP:STEP (STOP excluded) or a "
                    "comma list.")
cli.define_interleaved_timing_flags(runs=200, per="width")


def parse_widths(text: str) -> list[int]:
  """``START:STOP:STEP`` or ``A,B,C`` as positive ints; a clear error otherwise."""
  try:
    if ":" in text:
      start, stop, step = (int(v) for v in text.split(":"))
      widths = list(range(start, stop, step))
    else:
      widths = [int(v) for v in text.split(",")]
  except ValueError:
    raise UserError(f"--widths={text!r}; use START:STOP:STEP or a comma list of ints") from None
  if not widths or min(widths) < 1:
    raise UserError(f"--widths={text!r} gives no positive widths")
  return widths


def main(argv):
  cli.reject_extra_args(argv)
  if FLAGS.input_size < 1:
    raise UserError(f"--input_size={FLAGS.input_size}; must be >= 1")
  check_rounds(FLAGS.rounds)
  widths = parse_widths(FLAGS.widths)
  settings = BenchmarkSettings(num_threads=FLAGS.threads, num_runs=FLAGS.runs, min_secs=0.2,
                               warmup_min_secs=0.05)
  with tempfile.TemporaryDirectory() as workdir:
    paths = {}
    for n in widths:
      paths[str(n)] = os.path.join(workdir, f"fc_{n}.tflite")
      io_utils.atomic_write_bytes(paths[str(n)], floor.build_reference_model(
          floor.FloorReference("float32", FLAGS.input_size, n)))
    p50s = interleaved_p50s(paths, settings, FLAGS.rounds, FLAGS.timer)
  rows = []
  for n in widths:
    ms = statistics.median(p50s[str(n)])
    rows.append({"width": n, "ms_p50": ms, "ps_per_mac": ms * 1e9 / (FLAGS.input_size * n),
                 "round_p50s": p50s[str(n)]})
  if FLAGS.output_json:
    io_utils.atomic_write_json(FLAGS.output_json, {
        "input_size": FLAGS.input_size, "settings": settings.to_dict(), "rounds": FLAGS.rounds,
        "timer": FLAGS.timer, "rows": rows})
  print("| N | N mod 32 | us p50 (median of rounds) | ps per multiply-add |")
  print("|---|---|---|---|")
  for r in rows:
    print(f"| {r['width']} | {r['width'] % 32} | {r['ms_p50'] * 1e3:.2f} | {r['ps_per_mac']:.0f} |")


if __name__ == "__main__":
  cli.run(main)
