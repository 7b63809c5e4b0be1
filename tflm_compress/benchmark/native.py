"""Timing a ``.tflite`` natively through LiteRT's C API: no Python in the timed runs.

The host benchmark (:mod:`host`) times ``Interpreter.invoke()`` from Python,
which adds ~0.4 us of call overhead to every run, the same for every model: at
a few microseconds per step that overhead alone flattens a speedup. This
module times the same file with ``litert_run_timer`` (``native/``), a small C
program that loads the ``libLiteRt.so`` shipped in ai-edge-litert, compiles
the model with LiteRT's CompiledModel API for the CPU accelerator (XNNPACK,
``num_threads`` threads) and times ``LiteRtRunCompiledModel`` alone with
``CLOCK_MONOTONIC``, in ``benchmark_model``'s run loop (minimum runs and
seconds, warm-up first). ai-edge-litert ships no C headers, so the program
declares the dozen entry points it uses and looks them up with ``dlsym``.

Inputs are set once, like :func:`host.benchmark_fixed_inputs`: float32 inputs
uniform in ``[-1, 1)`` from a seeded splitmix64 stream (:func:`harness_inputs`
reproduces it), everything else zero. The program is compiled on first use
with the C compiler (``$CC``, else ``cc``) into a cache directory
(``$TFLM_COMPRESS_CACHE``, else ``~/.cache/tflm_compress``), keyed by a hash
of its source.
"""

import hashlib
import json
import os
import shutil
import subprocess
import tempfile

import numpy as np

from tflm_compress.benchmark.schema import SOURCE_HOST_NATIVE, BenchmarkResult, LatencyStats
from tflm_compress.errors import UserError

HARNESS_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "native",
                              "litert_run_timer.c")
_HARNESS_NAME = "litert_run_timer"


def litert_library() -> str:
  """Path of the ``libLiteRt.so`` that ai-edge-litert ships."""
  import ai_edge_litert  # Located, not used: the harness loads the library itself.
  path = os.path.join(os.path.dirname(ai_edge_litert.__file__), "libLiteRt.so")
  if not os.path.isfile(path):
    raise UserError(f"native timing needs LiteRT's C library, not found at {path!r} "
                    "(ai-edge-litert ships it on Linux x86_64 and aarch64)")
  return path


def cache_dir() -> str:
  return os.environ.get("TFLM_COMPRESS_CACHE") or os.path.join(
      os.path.expanduser("~"), ".cache", "tflm_compress")


def harness_binary() -> str:
  """The compiled ``litert_run_timer``, compiled now if this source has no binary yet.

  Raises:
    UserError: no C compiler, or it rejected the source.
  """
  with open(HARNESS_SOURCE, "rb") as f:
    digest = hashlib.sha256(f.read()).hexdigest()[:16]
  directory = cache_dir()
  binary = os.path.join(directory, f"{_HARNESS_NAME}-{digest}")
  if os.path.isfile(binary) and os.access(binary, os.X_OK):
    return binary
  compiler = os.environ.get("CC", "cc")
  if shutil.which(compiler) is None:
    raise UserError(f"native timing compiles {HARNESS_SOURCE} and needs a C compiler: "
                    f"{compiler!r} not found (set CC)")
  os.makedirs(directory, exist_ok=True)
  # Compiled beside its final name, then renamed: a concurrent or interrupted
  # build never leaves a half-written binary under that name.
  fd, partial = tempfile.mkstemp(prefix=f".{_HARNESS_NAME}-", dir=directory)
  os.close(fd)
  try:
    build = subprocess.run([compiler, "-O2", "-std=c11", "-o", partial, HARNESS_SOURCE, "-ldl"],
                           capture_output=True, text=True)
    if build.returncode != 0:
      raise UserError(f"{compiler} could not compile {HARNESS_SOURCE}:\n{build.stderr.strip()}")
    os.chmod(partial, 0o755)
    os.replace(partial, binary)
  finally:
    if os.path.exists(partial):
      os.remove(partial)
  return binary


def harness_inputs(shapes: list[tuple[int, ...]], dtypes: list, seed: int) -> list[np.ndarray]:
  """The inputs the harness sets, in its (signature) input order: float32 from
  its splitmix64 stream, drawn input after input, everything else zero."""
  state = seed & 0xFFFFFFFFFFFFFFFF
  mask = 0xFFFFFFFFFFFFFFFF
  values = []
  for shape, dtype in zip(shapes, dtypes):
    if np.dtype(dtype) != np.float32:
      values.append(np.zeros(shape, dtype))
      continue
    draws = []
    for _ in range(int(np.prod(shape))):
      state = (state + 0x9E3779B97F4A7C15) & mask
      z = state
      z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
      z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
      z ^= z >> 31
      draws.append(2.0 * ((z >> 11) / 9007199254740992.0) - 1.0)
    values.append(np.asarray(draws, np.float64).astype(np.float32).reshape(shape))
  return values


def run_harness(model_path: str, num_threads: int = 1, min_runs: int = 50, min_secs: float = 1.0,
                warmup_runs: int = 1, warmup_min_secs: float = 0.5, max_secs: float = 150.0,
                seed: int = 0) -> dict:
  """Runs ``litert_run_timer`` on one file; its JSON (see the C source's doc).

  Raises:
    UserError: the file is missing, or LiteRT could not load, compile or run it.
  """
  if not os.path.isfile(model_path):
    raise UserError(f"TFLite model not found: {model_path!r}")
  command = [harness_binary(), litert_library(), model_path, str(num_threads), str(min_runs),
             repr(float(min_secs)), str(warmup_runs), repr(float(warmup_min_secs)),
             repr(float(max_secs)), str(seed)]
  done = subprocess.run(command, capture_output=True, text=True)
  if done.returncode != 0:
    ours = [line for line in done.stderr.splitlines() if line.startswith(_HARNESS_NAME)]
    reason = ours[-1] if ours else (done.stderr.strip().splitlines() or ["no message"])[-1]
    raise UserError(f"LiteRT (native) could not run {model_path}: {reason}")
  try:
    return json.loads(done.stdout)
  except json.JSONDecodeError as e:
    raise UserError(f"{_HARNESS_NAME} printed no JSON for {model_path}: {e}") from None


def benchmark_native(model_path: str, settings) -> BenchmarkResult:
  """:func:`host.benchmark_fixed_inputs`' measurement, timed natively.

  Args:
    model_path: any ``.tflite``; its first signature runs.
    settings: a :class:`host.BenchmarkSettings` (threads, runs, seconds, seed).

  Returns:
    A ``host-litert-native`` :class:`BenchmarkResult`.
  """
  report = run_harness(model_path, settings.num_threads, settings.num_runs, settings.min_secs,
                       settings.warmup_runs, settings.warmup_min_secs, settings.max_secs,
                       settings.seed)
  warmup, timed = report["warmup_ns"], report["timed_ns"]
  return BenchmarkResult(
      source=SOURCE_HOST_NATIVE, model=model_path, model_bytes=os.path.getsize(model_path),
      threads=settings.num_threads, num_runs=len(timed), warmup_runs=len(warmup),
      init_ms=report["init_ms"],
      first_inference_ms=round(warmup[0] / 1e6, 6) if warmup else None,
      warmup_avg_ms=round(sum(warmup) / len(warmup) / 1e6, 6) if warmup else None,
      latency_ms=LatencyStats.from_samples_ns(timed),
      extra={"kind": "fixed inputs", "timed": "LiteRtRunCompiledModel only (C, CompiledModel API)",
             "clock": "CLOCK_MONOTONIC",
             "inputs": f"uniform [-1, 1) float32 (splitmix64, seed={settings.seed}), zero "
                       "integers, set once",
             "min_secs": settings.min_secs, "warmup_min_secs": settings.warmup_min_secs})
