"""The native timer: litert_run_timer (C, LiteRT's CompiledModel API) driven from Python."""

import os
import shutil

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from tflm_compress.benchmark import floor, host, native, schema
from tflm_compress.errors import UserError

FAST = host.BenchmarkSettings(num_runs=100, min_secs=0.0, warmup_runs=3, warmup_min_secs=0.0)

pytestmark = pytest.mark.skipif(shutil.which(os.environ.get("CC", "cc")) is None,
                                reason="no C compiler to build litert_run_timer")


@pytest.fixture(scope="module", autouse=True)
def _own_cache(tmp_path_factory):
  """Each run compiles the harness afresh into its own cache directory."""
  old = os.environ.get("TFLM_COMPRESS_CACHE")
  os.environ["TFLM_COMPRESS_CACHE"] = str(tmp_path_factory.mktemp("native_cache"))
  yield
  if old is None:
    del os.environ["TFLM_COMPRESS_CACHE"]
  else:
    os.environ["TFLM_COMPRESS_CACHE"] = old


def _fc_model(tmp_path, size: int) -> str:
  path = str(tmp_path / f"fc{size}.tflite")
  with open(path, "wb") as f:
    f.write(floor.build_reference_model(floor.FloorReference("float32", size, size)))
  return path


def test_harness_runs_the_model_on_the_inputs_it_says(tiny_step_model_path):
  """Outputs of the C runs equal the Python interpreter's on the harness' own inputs."""
  report = native.run_harness(tiny_step_model_path, min_runs=3, min_secs=0.0, warmup_runs=1,
                              warmup_min_secs=0.0, seed=7)
  runner = Interpreter(model_path=tiny_step_model_path).get_signature_runner()
  details = runner.get_input_details()
  assert sorted(report["inputs"]) == sorted(details)
  shapes = [tuple(details[name]["shape"]) for name in report["inputs"]]
  dtypes = [details[name]["dtype"] for name in report["inputs"]]
  inputs = native.harness_inputs(shapes, dtypes, seed=7)
  floats = np.concatenate([v.ravel() for v in inputs if v.dtype == np.float32])
  assert floats.size > 0 and np.all((floats >= -1) & (floats < 1))
  assert np.std(floats) > 0.3  # Uniform on [-1, 1): std 0.577.
  expected = runner(**dict(zip(report["inputs"], inputs)))
  assert len(report["outputs"]) == len(expected) == len(report["output_sums"])
  for name, total in zip(report["outputs"], report["output_sums"]):
    assert total == pytest.approx(float(np.sum(expected[name], dtype=np.float64)),
                                  rel=1e-4, abs=1e-4), name
  assert len(report["timed_ns"]) >= 3 and all(t > 0 for t in report["timed_ns"])
  assert len(report["warmup_ns"]) >= 1 and report["init_ms"] > 0


def test_seed_changes_the_inputs_and_so_the_outputs(tiny_step_model_path):
  one = native.run_harness(tiny_step_model_path, min_runs=1, min_secs=0.0, warmup_runs=0,
                           warmup_min_secs=0.0, seed=1)
  two = native.run_harness(tiny_step_model_path, min_runs=1, min_secs=0.0, warmup_runs=0,
                           warmup_min_secs=0.0, seed=2)
  assert one["output_sums"] != two["output_sums"]


def test_benchmark_native_result_and_run_counts(tiny_step_model_path):
  result = native.benchmark_native(tiny_step_model_path, FAST)
  assert result.source == schema.SOURCE_HOST_NATIVE
  assert result.num_runs >= 100 and result.warmup_runs >= 3
  assert 0 < result.latency_ms.min <= result.latency_ms.p50 <= result.latency_ms.max
  assert result.model_bytes == os.path.getsize(tiny_step_model_path)
  assert list(result.to_dict()) == schema.result_keys()
  timed = host.BenchmarkSettings(num_runs=1, min_secs=0.2, warmup_runs=0, warmup_min_secs=0.0)
  # min_secs keeps it running past num_runs, as in benchmark_model.
  assert native.benchmark_native(tiny_step_model_path, timed).num_runs > 10


def test_native_compare_files_sees_a_bigger_matmul_take_longer(tmp_path):
  """A 1024x1024 float matmul (4 MiB of weights) is timed well above an 8x8 one."""
  small, big = _fc_model(tmp_path, 8), _fc_model(tmp_path, 1024)
  rows = host.compare_files({"small": small, "big": big}, FAST, rounds=2, timer="native")
  assert [r["name"] for r in rows] == ["small", "big"]
  assert rows[1]["ms_p50"] > 5 * rows[0]["ms_p50"]
  assert rows[1]["speedup"] < 0.2 and rows[0]["speedup"] == 1.0


def test_native_errors_name_the_problem(tmp_path, monkeypatch):
  with pytest.raises(UserError, match="TFLite model not found: .*missing.tflite"):
    native.run_harness(str(tmp_path / "missing.tflite"))
  junk = tmp_path / "junk.tflite"
  junk.write_bytes(b"not a flatbuffer")
  with pytest.raises(UserError, match=r"could not run .*junk.tflite: .*LiteRtCreateModelFromFile"):
    native.run_harness(str(junk))
  with pytest.raises(UserError, match="--timer='stopwatch'; use one of python, native"):
    host.compare_files({"a": str(junk)}, FAST, 1, timer="stopwatch")
  monkeypatch.setenv("TFLM_COMPRESS_CACHE", str(tmp_path / "fresh_cache"))
  monkeypatch.setenv("CC", "no-such-compiler")
  with pytest.raises(UserError, match="needs a C compiler: 'no-such-compiler' not found"):
    native.harness_binary()
  assert not (tmp_path / "fresh_cache").exists()  # Checked before anything is written.


def test_harness_is_compiled_once_per_source(tmp_path, monkeypatch):
  monkeypatch.setenv("TFLM_COMPRESS_CACHE", str(tmp_path / "cache"))
  first = native.harness_binary()
  assert os.access(first, os.X_OK)
  mtime = os.path.getmtime(first)
  assert native.harness_binary() == first and os.path.getmtime(first) == mtime
  assert os.listdir(tmp_path / "cache") == [os.path.basename(first)]  # No partial files left.


def test_non_finite_output_sums_are_null(tmp_path):
  """JSON has no NaN: an output whose sum is not finite is reported as null."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  module = tf.Module()

  @tf.function(input_signature=[tf.TensorSpec([1, 16], tf.float32, name="x")])
  def log_of(x):
    return {"log": tf.math.log(x), "square": x * x}  # Inputs in [-1, 1): log gives NaN.

  module.log_of = log_of
  converter = tf.lite.TFLiteConverter.from_concrete_functions([log_of.get_concrete_function()],
                                                              module)
  path = tmp_path / "log.tflite"
  path.write_bytes(converter.convert())
  report = native.run_harness(str(path), min_runs=1, min_secs=0.0, warmup_runs=0,
                              warmup_min_secs=0.0, seed=3)
  sums = dict(zip(report["outputs"], report["output_sums"]))
  assert sums["log"] is None
  assert sums["square"] > 0
