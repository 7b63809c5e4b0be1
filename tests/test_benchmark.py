"""tflm_compress.benchmark: log parser, result schema, floor arithmetic, host runs, scripts."""

import json
import os
import stat
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO_ROOT
from tflm_compress.benchmark import android, floor, host, litert_tool, report, schema
from tflm_compress.benchmark.schema import BenchmarkResult, LatencyStats
from tflm_compress.errors import UserError
from tflm_compress.export import TFLiteStepModel, inspect_tflite

LOGS = os.path.join(REPO_ROOT, "tests", "data", "benchmark_logs")
FAST = host.BenchmarkSettings(num_runs=200, min_secs=0.0, warmup_runs=5, warmup_min_secs=0.0)


def _log(name: str) -> str:
  with open(os.path.join(LOGS, name), encoding="utf-8") as f:
    return f.read()


# --- benchmark_model logs ----------------------------------------------------------------
# Expected values are the log's own numbers: microseconds / 1000 for times, MB as printed.
EXPECTED_LOGS = {
    "no_prefix_fixed_iterations.log": dict(
        model="/data/local/tmp/model.tflite", model_bytes=None, threads=1, num_runs=1000,
        warmup_runs=1, init_ms=3.871, first_inference_ms=1.342, warmup_avg_ms=1.342,
        latency_ms=dict(min=0.388, p5=None, p50=None, p95=None, max=1.21, avg=0.41562,
                        std=0.041),
        peak_memory_mb=None, memory_delta_init_mb=None, memory_delta_overall_mb=None),
    "no_prefix_min_secs_average_timings.log": dict(
        model="/data/local/tmp/ptb_small_dynamic.tflite", model_bytes=None, threads=4,
        num_runs=3299, warmup_runs=1622, init_ms=2.214, first_inference_ms=1.104,
        warmup_avg_ms=0.307913,
        latency_ms=dict(min=0.279, p5=None, p50=None, p95=None, max=0.845, avg=0.302711,
                        std=0.018),
        peak_memory_mb=None, memory_delta_init_mb=None, memory_delta_overall_mb=None),
    "info_prefix_inference_timings.log": dict(
        model="/data/local/tmp/ptb_small_none.tflite", model_bytes=18567200, threads=1,
        num_runs=913, warmup_runs=452, init_ms=31.042, first_inference_ms=4.127,
        warmup_avg_ms=1.10545,
        latency_ms=dict(min=1.049, p5=None, p50=None, p95=None, max=1.733, avg=1.0942,
                        std=0.047),
        peak_memory_mb=None, memory_delta_init_mb=22.1055, memory_delta_overall_mb=22.3672),
    "info_prefix_percentiles_peak_memory.log": dict(
        model="/data/local/tmp/ptb_small_int8.tflite", model_bytes=4842310, threads=4,
        num_runs=6141, warmup_runs=2960, init_ms=9.617, first_inference_ms=0.913,
        warmup_avg_ms=0.168531,
        latency_ms=dict(min=0.150, p5=0.153, p50=0.160, p95=0.183, max=0.702, avg=0.162874,
                        std=0.014),
        peak_memory_mb=13.9141, memory_delta_init_mb=7.94531, memory_delta_overall_mb=8.32422),
    "logcat_threadtime_benchmark_app.log": dict(
        model="/data/local/tmp/ptb_small_dynamic.tflite", model_bytes=4805990, threads=2,
        num_runs=2471, warmup_runs=1209, init_ms=18.35, first_inference_ms=1.288,
        warmup_avg_ms=0.41352,
        latency_ms=dict(min=0.371, p5=0.378, p50=0.399, p95=0.447, max=1.288, avg=0.404733,
                        std=0.036),
        peak_memory_mb=None, memory_delta_init_mb=12.7305, memory_delta_overall_mb=13.0117),
    "logcat_time_benchmark_app.log": dict(
        model="/data/local/tmp/ptb_small_none.tflite", model_bytes=18567200, threads=None,
        num_runs=803, warmup_runs=393, init_ms=636.918, first_inference_ms=2.817,
        warmup_avg_ms=1.27004,
        latency_ms=dict(min=1.16, p5=None, p50=None, p95=None, max=1.978, avg=1.24451,
                        std=0.061),
        peak_memory_mb=None, memory_delta_init_mb=151.883, memory_delta_overall_mb=152.004),
    "litert_compiled_model.log": dict(
        model="/data/local/tmp/ptb_small_dynamic.tflite", model_bytes=4805990, threads=1,
        num_runs=3021, warmup_runs=1488, init_ms=14.274, first_inference_ms=0.842,
        warmup_avg_ms=0.335925,
        latency_ms=dict(min=0.309, p5=0.313, p50=0.327, p95=0.360, max=0.911, avg=0.33061,
                        std=0.019),
        peak_memory_mb=11.02, memory_delta_init_mb=6.12, memory_delta_overall_mb=6.48),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_LOGS))
def test_parse_shipped_logs_exactly(name):
  result = android.parse_benchmark_log(_log(name), name).to_dict()
  expected = EXPECTED_LOGS[name]
  for key, value in expected.items():
    if key == "latency_ms":
      for stat_name, stat_value in value.items():
        assert result["latency_ms"][stat_name] == pytest.approx(stat_value, abs=1e-9), stat_name
    elif value is None:
      assert result[key] is None, key
    else:
      assert result[key] == pytest.approx(value, abs=1e-9), key
  assert result["source"] == "android-benchmark_model"
  assert result["tokens_per_sec"] == pytest.approx(1000.0 / expected["latency_ms"]["avg"],
                                                   abs=0.01)
  assert result["unavailable"] is None


def test_parse_log_details_by_format():
  old = android.parse_benchmark_log(_log("no_prefix_fixed_iterations.log"))
  assert old.extra["summary_format"].startswith("Average inference timings")
  assert old.extra["params"]["Use nnapi"] == "0"  # The old "label : [v]" spacing.
  assert old.extra["run_settings"] == [{"min_runs": 1, "min_secs": None, "max_secs": None},
                                       {"min_runs": 1000, "min_secs": None, "max_secs": None}]
  new = android.parse_benchmark_log(_log("info_prefix_percentiles_peak_memory.log"))
  assert new.extra["summary_format"].startswith("Inference timings in us")
  assert new.extra["vm_rss_end_mb"] == 13.0
  assert new.extra["run_settings"][1] == {"min_runs": 1000, "min_secs": 1.0, "max_secs": 150.0}
  assert any("TfLiteXNNPackDelegate" in d for d in new.extra["delegates"])
  gpu = android.parse_benchmark_log(_log("logcat_time_benchmark_app.log"))
  assert gpu.extra["params"]["Use gpu"] == "1"
  assert any("GPU delegate" in d for d in gpu.extra["delegates"])
  litert = android.parse_benchmark_log(_log("litert_compiled_model.log"))
  assert litert.extra["summary_format"].startswith("LiteRT CompiledModel")


def test_parse_failed_run_quotes_the_error():
  with pytest.raises(UserError, match="no benchmark_model results.*gather index out of bounds"):
    android.parse_benchmark_log(_log("failed_gather_out_of_bounds.log"), "failed.log")
  with pytest.raises(UserError, match="empty.log holds no benchmark_model results"):
    android.parse_benchmark_log("", "empty.log")


def test_parse_two_runs_in_one_log_is_an_error():
  text = _log("info_prefix_inference_timings.log") + _log("logcat_time_benchmark_app.log")
  with pytest.raises(UserError, match="holds 2 benchmark_model runs"):
    android.parse_benchmark_log(text)


@pytest.mark.parametrize("prefix", [
    "",
    "INFO: ",
    "INFO: [benchmark_model.cc:241] ",
    "I0708 15:34:26.202000   5395 benchmark_tflite_model.cc:241] ",
    "2024-07-08 15:34:26.202312: I tensorflow/lite/tools/benchmark/benchmark_model.cc:241] ",
    "07-08 15:34:26.202  5395  5410 I tflite  : ",
    "07-08 15:34:26.202 I/tflite  ( 5395): ",
])
def test_every_prefix_style_gives_the_same_numbers(prefix):
  # Doubles print in scientific notation past 6 digits; all-same runs print "(all same)".
  lines = ["Num threads: [1]",
           "Running benchmark for at least 1 iterations and at least 0.5 seconds but "
           "terminate if exceeding 150 seconds.",
           "count=1 curr=2512044",
           "Running benchmark for at least 5 iterations and at least 1 seconds but "
           "terminate if exceeding 150 seconds.",
           "count=5 curr=1210000(all same) p5=1210000 median=1210000 p95=1210000",
           "Inference timings in us: Init: 4511, First inference: 2512044, "
           "Warmup (avg): 2.51204e+06, Inference (avg): 1.21e+06"]
  result = android.parse_benchmark_log("\r\n".join(prefix + l for l in lines))
  assert result.threads == 1 and result.num_runs == 5 and result.warmup_runs == 1
  assert result.init_ms == pytest.approx(4.511)
  assert result.first_inference_ms == pytest.approx(2512.044)
  assert result.warmup_avg_ms == pytest.approx(2512.04)
  assert result.latency_ms.to_dict() == pytest.approx(
      dict(min=1210.0, p5=1210.0, p50=1210.0, p95=1210.0, max=1210.0, avg=1210.0, std=0.0))


# --- the result schema -------------------------------------------------------------------

def test_latency_stats_follow_benchmark_model():
  samples_ns = [i * 1000 for i in range(1, 101)]  # 1..100 us.
  stats = LatencyStats.from_samples_ns(samples_ns)
  # Element len*p//100 of the sorted values: p5 -> index 5 (6 us), p50 -> 51 us, p95 -> 96 us.
  assert stats.to_dict() == pytest.approx(dict(min=0.001, p5=0.006, p50=0.051, p95=0.096,
                                               max=0.1, avg=0.0505, std=0.028866), abs=1e-6)
  assert schema.percentile([], 50) is None and schema.percentile([3, 1], 100) == 1


def test_host_and_android_results_share_one_schema(tiny_step_model_path):
  host_dict = host.benchmark_step_model(tiny_step_model_path, FAST).to_dict()
  android_dict = android.parse_benchmark_log(
      _log("info_prefix_percentiles_peak_memory.log")).to_dict()
  unavailable = BenchmarkResult.unavailable_result("litert-benchmark", "m.tflite", "why").to_dict()
  assert list(host_dict) == list(android_dict) == list(unavailable) == schema.result_keys()
  assert list(host_dict["latency_ms"]) == list(android_dict["latency_ms"]) == list(
      schema.LATENCY_KEYS)
  json.dumps([host_dict, android_dict])  # JSON-ready.
  assert BenchmarkResult.from_dict(android_dict).to_dict() == android_dict
  with pytest.raises(ValueError, match="source="):
    BenchmarkResult(source="phone")


# --- floor arithmetic --------------------------------------------------------------------

def _convert(function, specs, optimize=False, float16=False) -> bytes:
  module = tf.Module()
  module.call = tf.function(function, input_signature=specs)
  converter = tf.lite.TFLiteConverter.from_concrete_functions(
      [module.call.get_concrete_function()], module)
  if optimize or float16:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
  if float16:
    converter.target_spec.supported_types = [tf.float16]
  return converter.convert()


@pytest.mark.parametrize("mode, bytes_per_weight, kind", [
    ("float32", 4, "float32"), ("dynamic", 1, "int8_weights"), ("float16", 4, "float32")])
def test_fc_plus_add_costs_2kn_plus_n(mode, bytes_per_weight, kind):
  k, n = 64, 32  # 2048 weights: enough for the converter to quantize them.
  kernel = tf.constant(np.random.default_rng(0).normal(size=(k, n)).astype(np.float32))
  model_bytes = _convert(lambda x, y: tf.matmul(x, kernel) + y,
                         [tf.TensorSpec([1, k], tf.float32), tf.TensorSpec([1, n], tf.float32)],
                         optimize=mode == "dynamic", float16=mode == "float16")
  ops = inspect_tflite.op_names(inspect_tflite.parse(model_bytes))
  assert "FULLY_CONNECTED" in ops and "ADD" in ops
  cost = floor.step_cost(inspect_tflite.parse(model_bytes))
  assert cost.flops == 2 * k * n + n
  assert cost.flops_by_op == {"FULLY_CONNECTED": 2 * k * n, "ADD": n}
  # float16 weights are dequantized once at init: the FC reads float32.
  assert cost.weight_bytes == bytes_per_weight * k * n
  assert cost.weight_bytes_by_kind == {kind: bytes_per_weight * k * n}


def test_gather_reads_one_row_and_bias_counts_once_per_output():
  vocab, depth, units = 1000, 16, 24
  rng = np.random.default_rng(0)
  table = tf.constant(rng.normal(size=(vocab, depth)).astype(np.float32))
  kernel = tf.constant(rng.normal(size=(depth, units)).astype(np.float32))
  bias = tf.constant(rng.normal(size=(units,)).astype(np.float32))
  model_bytes = _convert(lambda token: tf.matmul(tf.gather(table, token), kernel) + bias,
                         [tf.TensorSpec([1], tf.int32)])
  cost = floor.step_cost(inspect_tflite.parse(model_bytes))
  assert cost.weight_bytes_by_op == {"GATHER": 4 * depth,  # One row, not 4 * vocab * depth.
                                     "FULLY_CONNECTED": 4 * depth * units + 4 * units}
  assert cost.flops == 2 * depth * units + units


def test_step_model_cost_counts_every_lstm_matmul(tiny_step_model_path):
  with open(tiny_step_model_path, "rb") as f:
    cost = floor.step_cost(inspect_tflite.parse(f.read()))
  embedding, hidden, vocab = 8, 8, 50
  matmul_weights = 4 * hidden * embedding + 4 * hidden * hidden + vocab * hidden
  assert cost.flops_by_op["FULLY_CONNECTED"] == 2 * matmul_weights
  # The gates' scale and shift vectors ([4H] each) are constants the step reads too.
  gate_constants = 2 * 4 * hidden
  assert cost.weight_bytes_by_op["MUL"] == cost.weight_bytes_by_op["ADD"] == 4 * 4 * hidden
  assert cost.weight_bytes == 4 * (matmul_weights + embedding + gate_constants)
  assert cost.main_weight_kind == "float32" and not cost.unclassified_ops


@pytest.mark.parametrize("kind", floor.WEIGHT_KINDS)
def test_floor_reference_streams_the_models_bytes(kind):
  cost = floor.StepCost(weight_bytes=2_640_200, weight_bytes_by_kind={kind: 2_640_200})
  reference = floor.plan_reference(cost)
  bytes_per_weight = {"float32": 4, "int4_weights": 0.5, "int2_weights": 0.25}.get(kind, 1)
  # K: the power of two at most sqrt(weights): 660050 float32 weights -> 512; the other
  # kinds' 2.6M to 10.6M -> 1024 (the most).
  assert reference.weight_kind == kind
  assert reference.input_size == (512 if kind == "float32" else 1024)
  assert cost.weight_bytes <= reference.weight_bytes < cost.weight_bytes + 1024 * bytes_per_weight
  built = floor.step_cost(inspect_tflite.parse(floor.build_reference_model(
      floor.FloorReference(kind, 64, 48))))
  assert built.main_weight_kind == kind
  assert built.weight_bytes_by_op["FULLY_CONNECTED"] == 64 * 48 * bytes_per_weight
  assert built.weight_bytes_by_kind == {kind: 64 * 48 * bytes_per_weight}
  assert built.flops_by_op["FULLY_CONNECTED"] == 2 * 64 * 48


def test_int4_floor_reference_of_a_large_model_counts_its_offset_buffer():
  """ai-edge-quantizer stores a large buffer after the flatbuffer (an offset, no inline
  data): it is still a constant weight of the step."""
  model_bytes = floor.build_reference_model(floor.FloorReference("int4_weights", 1024, 1024))
  model = inspect_tflite.parse(model_bytes)
  weight = next(t for t in model.subgraphs[0].tensors if list(t.shape) == [1024, 1024])
  assert not model.buffers[weight.buffer].data and model.buffers[weight.buffer].offset > 1
  cost = floor.step_cost(model)
  assert cost.weight_bytes_by_kind == {"int4_weights": 1024 * 1024 // 2}


def test_compare_to_floor_uses_p50_else_avg():
  cost = floor.StepCost(flops=2_000_000, weight_bytes=4_000_000)
  reference = floor.FloorReference("float32", 1024, 977)
  model = BenchmarkResult("host-litert", latency_ms=LatencyStats(p50=0.5, avg=0.6))
  fast = BenchmarkResult("host-litert", latency_ms=LatencyStats(p50=0.2, avg=0.25))
  out = floor.compare_to_floor(model, fast, cost, reference)
  assert out["ratio_statistic"] == "p50" and out["ratio"] == 2.5
  assert out["model_weight_gb_per_s"] == 8.0 and out["model_gflop_per_s"] == 4.0
  old_log = BenchmarkResult("android-benchmark_model", latency_ms=LatencyStats(avg=0.3))
  assert floor.compare_to_floor(old_log, fast, cost, reference)["ratio"] == 1.2


# --- host runs on a tiny step model ------------------------------------------------------

def test_run_phase_counts_like_benchmark_model():
  run_phase = host._run_phase  # pylint: disable=protected-access
  nothing = lambda: None
  calls = []
  times = run_phase(lambda: calls.append(1), nothing, nothing, min_runs=7, min_secs=0.0,
                    max_secs=10.0)
  assert len(times) == len(calls) == 7 and all(t >= 0 for t in times)
  # min_secs keeps it running past min_runs; max_secs stops it before min_runs.
  assert len(run_phase(nothing, nothing, nothing, min_runs=1, min_secs=0.05, max_secs=10.0)) > 1
  slow = run_phase(lambda: time.sleep(0.02), nothing, nothing, min_runs=1000, min_secs=0.0,
                   max_secs=0.05)
  assert 1 <= len(slow) <= 5


def test_host_benchmark_carries_state_over_a_seeded_token_stream(tiny_step_model_path):
  result, states = host.drive_step_model(tiny_step_model_path, FAST)
  assert result.num_runs == 200 and result.warmup_runs == 5 and result.threads == 1
  lat = result.latency_ms
  assert 0 < lat.min <= lat.p5 <= lat.p50 <= lat.p95 <= lat.max and lat.avg > 0
  assert result.tokens_per_sec == pytest.approx(1000.0 / lat.avg, rel=1e-3)
  assert result.model_bytes == os.path.getsize(tiny_step_model_path)
  assert result.init_ms > 0 and result.first_inference_ms > 0
  assert result.extra["vocab_size"] == 50 and result.extra["state_sizes"] == [8, 8]
  if sys.platform.startswith("linux"):
    assert result.peak_memory_mb > 0 and result.memory_delta_init_mb is not None
  # The last state is the one streaming the same 205 tokens from the zero state gives.
  tokens = host.token_sequence(50, FAST.token_sequence_length, FAST.seed)
  assert tokens.min() >= 0 and tokens.max() < 50
  np.testing.assert_array_equal(tokens, host.token_sequence(50, 1000, 0))
  reference = TFLiteStepModel(tiny_step_model_path)
  expected = reference.zero_states()
  for token in tokens[:205]:
    _, expected = reference.step(int(token), expected)
  for got, want in zip(states, expected):
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_host_benchmark_bad_files(tiny_step_model_path, tmp_path):
  truncated = tmp_path / "truncated.tflite"
  with open(tiny_step_model_path, "rb") as f:
    truncated.write_bytes(f.read()[:3000])
  with pytest.raises(UserError, match="truncated.tflite.*(corrupt or truncated|not a valid)"):
    host.benchmark_step_model(str(truncated), FAST)
  not_tflite = tmp_path / "zeros.tflite"
  not_tflite.write_bytes(b"\x00" * 100)
  with pytest.raises(UserError, match="not a TFLite model"):
    host.benchmark_step_model(str(not_tflite), FAST)
  with pytest.raises(UserError, match="not found"):
    host.benchmark_step_model(str(tmp_path / "nope.tflite"), FAST)
  with pytest.raises(UserError, match="--runs=0"):
    host.BenchmarkSettings(num_runs=0)


def test_litert_benchmark_runs_the_step_model_and_says_why_not(tiny_step_model_path,
                                                                 tmp_path, monkeypatch):
  result = litert_tool.run_litert_benchmark(tiny_step_model_path, vocab_size=50, num_runs=20,
                                            warmup_runs=2)
  assert result.unavailable is None, result.unavailable
  assert result.num_runs == 20 and result.warmup_runs == 2 and result.threads == 1
  assert result.latency_ms.max is not None and result.init_ms > 0
  assert "[0, 50)" in result.extra["invocation"]
  # A fused-LSTM sequence model (not our step graph) is refused: a clear "unavailable".
  sequence = tf.keras.Sequential([tf.keras.Input((5, 8), batch_size=1), tf.keras.layers.LSTM(4)])
  fused_path = str(tmp_path / "fused.tflite")
  with open(fused_path, "wb") as f:
    f.write(tf.lite.TFLiteConverter.from_keras_model(sequence).convert())
  assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in inspect_tflite.op_names(
      inspect_tflite.parse(open(fused_path, "rb").read()))
  refused = litert_tool.run_litert_benchmark(fused_path, vocab_size=50, num_runs=5)
  assert refused.unavailable.startswith("unavailable: litert-benchmark exited with 1: ERROR:")
  monkeypatch.setattr(litert_tool, "_tool_command", lambda *a: None)
  missing = litert_tool.run_litert_benchmark(tiny_step_model_path, vocab_size=50)
  assert missing.unavailable.startswith("unavailable: litert-benchmark not found")
  assert missing.to_dict()["latency_ms"]["p50"] is None


def test_host_report_measures_the_model_and_its_floor(tiny_step_model_path):
  out = report.host_report(tiny_step_model_path, FAST, floor=True, litert_benchmark=False)
  assert set(out["results"]) == {"host-litert"}
  # Matrices, the embedding row, and the gates' [4H] scale and shift vectors.
  assert out["cost"]["weight_bytes_per_token"] == 4 * (32 * 8 + 32 * 8 + 50 * 8 + 8 + 2 * 32)
  section = out["floor"]
  assert section["reference"]["weight_bytes"] >= out["cost"]["weight_bytes_per_token"]
  assert section["result"]["num_runs"] == 200 and section["ratio_statistic"] == "p50"
  assert section["ratio"] == pytest.approx(
      out["results"]["host-litert"]["latency_ms"]["p50"] / section["result"]["latency_ms"]["p50"],
      rel=1e-2)
  json.dumps(out)


# --- the scripts -------------------------------------------------------------------------

def _run(script, *args, env=None):
  return subprocess.run([sys.executable, os.path.join(REPO_ROOT, "scripts", script), *args],
                        capture_output=True, text=True, cwd=REPO_ROOT, timeout=300, env=env)


def _error_line(result):
  lines = [l for l in result.stderr.splitlines() if l.startswith(("error:", "FATAL Flags"))]
  assert result.returncode != 0
  assert len(lines) == 1, result.stderr[-2000:]
  assert "Traceback" not in result.stderr, result.stderr[-2000:]
  return lines[0]


def test_benchmark_script_writes_the_report(tiny_step_model_path, tmp_path):
  output = tmp_path / "report.json"
  done = _run("benchmark.py", f"--model={tiny_step_model_path}", "--runs=100", "--min_secs=0",
              "--warmup_min_secs=0", f"--output_json={output}")
  assert done.returncode == 0, done.stderr[-2000:]
  written = json.loads(output.read_text())
  assert json.loads(done.stdout) == written
  assert set(written["results"]) == {"host-litert", "litert-benchmark"}
  assert written["results"]["host-litert"]["num_runs"] == 100
  assert written["results"]["litert-benchmark"]["unavailable"] is None
  assert written["floor"]["ratio"] > 0
  assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]


def test_benchmark_script_corrupt_model(tmp_path):
  bad = tmp_path / "model.tflite"
  bad.write_bytes(b"\x00" * 100)
  assert "not a TFLite model" in _error_line(_run("benchmark.py", f"--model={bad}"))


def _fake_adb(directory, devices: str, log_name: str = "") -> str:
  """An ``adb`` that lists ``devices`` and answers ``shell`` with a shipped log."""
  path = os.path.join(directory, "adb")
  with open(path, "w") as f:
    f.write(textwrap.dedent(f"""\
        #!{sys.executable}
        import sys
        args = sys.argv[1:]
        with open({os.path.join(directory, "calls.txt")!r}, "a") as f:
          f.write(" ".join(args) + "\\n")
        if args[:1] == ["-s"]:
          args = args[2:]
        if args[0] == "devices":
          print("List of devices attached")
          print({devices!r})
        elif args[0] == "shell" and args[1].startswith("getprop"):
          print("Pixel 7" if "model" in args[1] else "arm64-v8a")
        elif args[0] == "shell" and "--graph=" in args[1]:
          sys.stdout.write(open({os.path.join(LOGS, log_name or "none")!r}).read())
        """))
  os.chmod(path, os.stat(path).st_mode | stat.S_IEXEC)
  return path


def _env_without_adb(extra_dir: str = "") -> dict:
  dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep)
          if d and not os.path.exists(os.path.join(d, "adb"))]
  return {**os.environ, "PATH": os.pathsep.join(([extra_dir] if extra_dir else []) + dirs)}


def test_android_script_without_adb_or_device(tiny_step_model_path, tmp_path):
  binary = tmp_path / "benchmark_model"
  binary.write_bytes(b"\x7fELF")
  args = [f"--model={tiny_step_model_path}", f"--benchmark_binary={binary}"]
  line = _error_line(_run("android_benchmark.py", *args, env=_env_without_adb()))
  assert line.startswith("error: adb not found")
  fake_dir = tmp_path / "bin"
  fake_dir.mkdir()
  _fake_adb(str(fake_dir), devices="")
  line = _error_line(_run("android_benchmark.py", *args, env=_env_without_adb(str(fake_dir))))
  assert line == ("error: no Android device attached (`adb devices` lists none); connect a "
                  "phone with USB debugging on")
  (fake_dir / "adb").unlink()
  _fake_adb(str(fake_dir), devices="R58M123\tunauthorized")
  line = _error_line(_run("android_benchmark.py", *args, env=_env_without_adb(str(fake_dir))))
  assert "R58M123 is unauthorized" in line


def test_android_script_runs_through_adb_and_parses(tiny_step_model_path, tmp_path):
  binary = tmp_path / "benchmark_model"
  binary.write_bytes(b"\x7fELF")
  fake_dir = tmp_path / "bin"
  fake_dir.mkdir()
  _fake_adb(str(fake_dir), devices="emulator-5554\tdevice",
            log_name="info_prefix_percentiles_peak_memory.log")
  output = tmp_path / "phone.json"
  done = _run("android_benchmark.py", f"--model={tiny_step_model_path}",
              f"--benchmark_binary={binary}", "--num_threads=4", "--num_runs=1000",
              "--warmup_runs=10", "--use_xnnpack", "--floor=false", f"--output_json={output}",
              env=_env_without_adb(str(fake_dir)))
  assert done.returncode == 0, done.stderr[-2000:]
  written = json.loads(output.read_text())
  result = written["results"]["android-benchmark_model"]
  assert result["latency_ms"]["p50"] == 0.16 and result["threads"] == 4
  assert result["model_bytes"] == os.path.getsize(tiny_step_model_path)  # The real size.
  assert written["device"]["model"] == "Pixel 7" and written["device"]["serial"] == "emulator-5554"
  assert (tmp_path / "phone.log").read_text() == _log("info_prefix_percentiles_peak_memory.log")
  calls = (fake_dir / "calls.txt").read_text()
  assert f"-s emulator-5554 push {binary} /data/local/tmp/benchmark_model" in calls
  assert f"push {tiny_step_model_path} /data/local/tmp/model.tflite" in calls
  assert ("/data/local/tmp/benchmark_model --graph=/data/local/tmp/model.tflite "
          "--num_threads=4 --warmup_runs=10 --num_runs=1000 --use_xnnpack=true "
          "--report_peak_memory_footprint=true") in calls


def test_android_script_parse_log(tmp_path):
  output = tmp_path / "parsed.json"
  log = os.path.join(LOGS, "logcat_threadtime_benchmark_app.log")
  done = _run("android_benchmark.py", f"--parse_log={log}", f"--output_json={output}")
  assert done.returncode == 0, done.stderr[-2000:]
  written = json.loads(output.read_text())
  parsed = android.parse_benchmark_log(_log("logcat_threadtime_benchmark_app.log"), log)
  assert written["results"]["android-benchmark_model"] == parsed.to_dict()
  assert "holds no benchmark_model results" in _error_line(
      _run("android_benchmark.py",
           f"--parse_log={os.path.join(LOGS, 'failed_gather_out_of_bounds.log')}",
           f"--output_json={tmp_path / 'x.json'}"))


def test_interleaved_p50s_times_every_file_once_per_round(tiny_step_model_path):
  settings = host.BenchmarkSettings(num_runs=5, warmup_runs=1)
  p50s = host.interleaved_p50s({"a": tiny_step_model_path, "b": tiny_step_model_path},
                               settings, rounds=3)
  assert list(p50s) == ["a", "b"]
  assert all(len(v) == 3 and all(x > 0 for x in v) for v in p50s.values())
  with pytest.raises(UserError, match="--rounds=0; must be >= 1"):
    host.interleaved_p50s({"a": tiny_step_model_path}, settings, rounds=0)


def test_compare_files_times_side_by_side_and_counts_partitions(tiny_step_model_path, tmp_path):
  rows = host.compare_files({"a": tiny_step_model_path, "b": tiny_step_model_path}, FAST,
                            rounds=2)
  assert [r["name"] for r in rows] == ["a", "b"]
  for row in rows:
    assert row["bytes"] == os.path.getsize(tiny_step_model_path)
    assert row["tflite_ops"] == len(inspect_tflite.op_names(
        inspect_tflite.parse(open(tiny_step_model_path, "rb").read())))
    assert row["delegate_partitions"] == 1 and len(row["round_p50s"]) == 2
    assert row["ms_p50"] == pytest.approx(np.median(row["round_p50s"]))
    assert row["ms_best_round"] == min(row["round_p50s"])
  assert rows[0]["speedup"] == rows[0]["speedup_best_round"] == 1.0
  assert rows[1]["speedup"] == pytest.approx(rows[0]["ms_p50"] / rows[1]["ms_p50"])
  assert rows[1]["speedup_best_round"] == pytest.approx(
      rows[0]["ms_best_round"] / rows[1]["ms_best_round"])
  with pytest.raises(UserError, match="b: TFLite model not found"):
    host.compare_files({"a": tiny_step_model_path, "b": str(tmp_path / "no.tflite")}, FAST, 1)
  with pytest.raises(UserError, match="--rounds=0"):
    host.compare_files({"a": tiny_step_model_path}, FAST, 0)


def test_named_paths_flag_parsing():
  from tflm_compress import cli  # pylint: disable=g-import-not-at-top

  assert cli.parse_named_paths(["b=x.tflite", "a=y=z"]) == {"b": "x.tflite", "a": "y=z"}
  assert list(cli.parse_named_paths(["b=1", "a=2"])) == ["b", "a"]
  for bad, message in ((["a"], "entry 'a'; use NAME=PATH"), (["=x"], "entry '=x'"),
                       (["a="], "entry 'a='"), (["a=1", "a=2"], "names 'a' twice")):
    with pytest.raises(UserError, match=message):
      cli.parse_named_paths(bad)


def test_float_list_flag_parsing():
  from tflm_compress import cli  # pylint: disable=g-import-not-at-top

  assert cli.parse_floats("iss_keep", ["0.5", "1e-1", "2"]) == [0.5, 0.1, 2.0]
  with pytest.raises(UserError, match="--iss_keep entry 'half' is not a number"):
    cli.parse_floats("iss_keep", ["0.5", "half"])
