"""Latency and memory of a step model on an Android phone, with TFLite's benchmark_model.

  python scripts/android_benchmark.py --model=runs/ptb_small/tflite_int8/model.tflite \\
      --benchmark_binary=android_aarch64_benchmark_model --num_threads=1

Get the official benchmark_model binary for the phone from the LiteRT /
TensorFlow Lite "Performance measurement" page (the prebuilt nightly
android_aarch64 benchmark_model), or build it with Bazel:
  bazel build -c opt --config=android_arm64 //tensorflow/lite/tools/benchmark:benchmark_model
(in the LiteRT repository: //tflite/tools/benchmark:benchmark_model). It needs
adb (Android SDK platform-tools) and a phone with USB debugging on.

Pushes the binary and the model to /data/local/tmp, runs the binary on the
model through adb shell, parses its log into the same JSON schema as
scripts/benchmark.py, and with --floor (default) also builds and runs the
floor reference on the phone and reports the model's latency as a ratio to it.
Writes the report to --output_json and the raw logs beside it (.log).

  python scripts/android_benchmark.py --parse_log=saved_benchmark_model_output.txt

only parses a saved benchmark_model log (stdout of the binary, or `adb logcat`
lines of the benchmark app).
"""

import json
import os
import tempfile

from absl import flags

import quiet_start  # noqa: F401  (first: quiet unless --verbose; see scripts/quiet_start.py)
import tflm_compress  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)
from tflm_compress import cli
from tflm_compress.benchmark import adb as adb_lib
from tflm_compress.benchmark.android import parse_benchmark_log
from tflm_compress.benchmark.schema import SOURCE_ANDROID
from tflm_compress.errors import UserError

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "", "The step-model .tflite to benchmark on the phone.")
flags.DEFINE_string("benchmark_binary", "",
                    "TFLite's benchmark_model built for the phone (e.g. the prebuilt "
                    "android_aarch64_benchmark_model).")
flags.DEFINE_string("parse_log", "", "Only parse this saved benchmark_model log.")
flags.DEFINE_string("output_json", "",
                    "Where to write the report (default: beside MODEL, or beside the log).")
flags.DEFINE_string("adb", "adb", "The adb executable.")
flags.DEFINE_string("serial", "", "The device's serial (adb -s) when several are attached.")
flags.DEFINE_integer("num_threads", 1, "benchmark_model --num_threads.", lower_bound=1)
flags.DEFINE_integer("warmup_runs", 1, "benchmark_model --warmup_runs (minimum).",
                     lower_bound=0)
flags.DEFINE_integer("num_runs", 50, "benchmark_model --num_runs (minimum).", lower_bound=1)
flags.DEFINE_bool("use_xnnpack", None, "benchmark_model --use_xnnpack (unset: its default).")
flags.DEFINE_bool("use_gpu", False, "benchmark_model --use_gpu.")
flags.DEFINE_bool("use_nnapi", False, "benchmark_model --use_nnapi.")
flags.DEFINE_bool("report_peak_memory", True,
                  "benchmark_model --report_peak_memory_footprint (a sampling thread).")
flags.DEFINE_string("cpu_mask", "", "Run under `taskset MASK` (hex, e.g. f0 for big cores).")
flags.DEFINE_multi_string("benchmark_flag", [], "Extra benchmark_model flag (repeatable), "
                          "e.g. --benchmark_flag=--min_secs=5.")
flags.DEFINE_bool("floor", True, "Also run the floor reference and report the ratio.")
flags.DEFINE_integer("seed", 0, "Seed of the floor reference's weights.")


def _parse_only(log_path: str) -> None:
  if not os.path.isfile(log_path):
    raise UserError(f"--parse_log={log_path!r}: file not found")
  with open(log_path, encoding="utf-8", errors="replace") as f:
    result = parse_benchmark_log(f.read(), source=log_path)
  report = {"model": result.model, "model_bytes": result.model_bytes, "log": log_path,
            "results": {SOURCE_ANDROID: result.to_dict()}}
  _write(report, FLAGS.output_json or os.path.splitext(log_path)[0] + ".json")


def _write(report: dict, output: str, logs: dict[str, str] | None = None) -> None:
  # io_utils imports TensorFlow: only here, so that parse errors and adb checks stay quick.
  from tflm_compress import io_utils  # pylint: disable=g-import-not-at-top

  io_utils.makedirs(os.path.dirname(os.path.abspath(output)))
  io_utils.atomic_write_json(output, report)
  for suffix, text in (logs or {}).items():
    io_utils.atomic_write_text(os.path.splitext(output)[0] + suffix, text)
  print(json.dumps(report, indent=2, sort_keys=True))


def main(argv):
  cli.reject_extra_args(argv)
  if FLAGS.parse_log:
    _parse_only(FLAGS.parse_log)
    return
  if not FLAGS.model or not FLAGS.benchmark_binary:
    raise UserError("pass --model=FILE.tflite and --benchmark_binary=PATH (benchmark_model "
                    "for the phone), or --parse_log=FILE")
  if not FLAGS.model.lower().endswith(".tflite") or not os.path.isfile(FLAGS.model):
    raise UserError(f"--model={FLAGS.model!r} is not an existing .tflite file")
  if not os.path.isfile(FLAGS.benchmark_binary):
    raise UserError(f"--benchmark_binary={FLAGS.benchmark_binary!r}: file not found")
  settings = adb_lib.DeviceSettings(
      num_threads=FLAGS.num_threads, warmup_runs=FLAGS.warmup_runs, num_runs=FLAGS.num_runs,
      use_xnnpack=FLAGS.use_xnnpack, use_gpu=FLAGS.use_gpu, use_nnapi=FLAGS.use_nnapi,
      report_peak_memory=FLAGS.report_peak_memory, cpu_mask=FLAGS.cpu_mask,
      extra_flags=tuple(FLAGS.benchmark_flag))
  output = FLAGS.output_json or os.path.splitext(FLAGS.model)[0] + "_android_benchmark.json"
  device = adb_lib.Adb(FLAGS.adb, FLAGS.serial)  # No adb or no phone: the error comes here.
  report = {"model": FLAGS.model, "model_bytes": os.path.getsize(FLAGS.model),
            "device": device.device_info(), "settings": settings.to_dict()}
  with tempfile.TemporaryDirectory() as tmp:
    floor_plan = None
    if FLAGS.floor:
      from tflm_compress.benchmark import report as report_lib  # pylint: disable=g-import-not-at-top

      cost = report_lib.model_cost(FLAGS.model)
      try:
        reference, floor_path = report_lib.build_floor_file(cost, tmp, FLAGS.seed)
      except Exception as e:  # pylint: disable=broad-except  (the converter raises assorted errors)
        raise UserError(f"the floor reference could not be built ({e}); rerun with "
                        "--floor=false") from None
      floor_plan = (cost, reference, floor_path)
      report["cost"] = cost.to_dict()
    remote_binary = adb_lib.push_binary(device, FLAGS.benchmark_binary)
    result, log = adb_lib.benchmark_on_device(device, remote_binary, FLAGS.model, settings)
    report["results"] = {SOURCE_ANDROID: result.to_dict()}
    logs = {".log": log}
    report["floor"] = None
    if floor_plan:
      from tflm_compress.benchmark import floor as floor_lib  # pylint: disable=g-import-not-at-top

      cost, reference, floor_path = floor_plan
      floor_result, floor_log = adb_lib.benchmark_on_device(device, remote_binary, floor_path,
                                                            settings)
      floor_result.model = "floor_reference.tflite"
      report["floor"] = floor_lib.compare_to_floor(result, floor_result, cost, reference)
      logs[".floor.log"] = floor_log
  _write(report, output, logs)


if __name__ == "__main__":
  cli.run(main, stage="android benchmark")
