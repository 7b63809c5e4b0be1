"""Host benchmark of a ``.tflite`` with the LiteRT interpreter, measured like ``benchmark_model``.

The method follows TFLite's ``benchmark_model``
(``tensorflow/lite/tools/benchmark/benchmark_model.cc``):

1. Init: build the interpreter from the model file (memory-mapped, as apps
   load it from assets) and allocate tensors. ``load_ms`` and ``allocate_ms``
   are timed apart; ``init_ms`` is their sum, ``benchmark_model``'s "Init".
2. Warm-up: at least ``warmup_runs`` runs and at least ``warmup_min_secs``.
3. Timed runs: at least ``num_runs`` runs and at least ``min_secs`` seconds,
   starting no new run once ``max_secs`` have passed.

Only ``Invoke()`` is timed. Feeding the inputs between runs is not, as
``benchmark_model`` leaves ``ResetInputsAndOutputs`` out of its timings.

A step model runs one token per run with its state carried: the output states
of each run (warm-up included) are the input states of the next, and the
tokens cycle through a fixed sequence of ids drawn uniformly from ``[0, V)``
with ``seed``. Any other model (the floor reference) gets seeded random inputs
once, as ``benchmark_model`` does.

Memory: ``peak_memory_mb`` is the process's peak RSS (``ru_maxrss``), which
includes Python, TensorFlow (imported by :mod:`tflm_compress.export`) and
LiteRT; ``memory_delta_init_mb`` / ``memory_delta_overall_mb`` are the RSS the
process gained from just before loading to after allocating / after the last
run, the host's analogue of ``benchmark_model``'s "Memory footprint delta".
"""

import array
import dataclasses
import gc
import os
import resource
import statistics
import sys
import time
from typing import Callable

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from tflm_compress import progress
from tflm_compress.benchmark.schema import SOURCE_HOST, TIMERS, BenchmarkResult, LatencyStats
from tflm_compress.errors import UserError
from tflm_compress.export import inspect_tflite
from tflm_compress.export.runtime import TFLiteStepModel
from tflm_compress.export.step_model import SIGNATURE_KEY, TOKEN_INPUT

_MIB = float(2**20)


@dataclasses.dataclass(frozen=True)
class BenchmarkSettings:
  """How to run a benchmark; the defaults are ``benchmark_model``'s, but one thread.

  Attributes:
    num_threads: interpreter threads (1: one big core of a phone).
    num_runs: minimum number of timed runs.
    min_secs: minimum seconds of timed runs.
    max_secs: no new timed or warm-up run starts after this many seconds.
    warmup_runs: minimum number of warm-up runs.
    warmup_min_secs: minimum seconds of warm-up.
    seed: seed of the token sequence and of random inputs.
    token_sequence_length: length of the cycled token sequence.
  """

  num_threads: int = 1
  num_runs: int = 50
  min_secs: float = 1.0
  max_secs: float = 150.0
  warmup_runs: int = 1
  warmup_min_secs: float = 0.5
  seed: int = 0
  token_sequence_length: int = 1000

  def __post_init__(self):
    if self.num_threads < 1:
      raise UserError(f"--threads={self.num_threads}; must be >= 1")
    if self.num_runs < 1:
      raise UserError(f"--runs={self.num_runs}; must be >= 1")
    if self.warmup_runs < 0:
      raise UserError(f"--warmup_runs={self.warmup_runs}; must be >= 0")
    if self.min_secs < 0 or self.warmup_min_secs < 0:
      raise UserError(f"--min_secs={self.min_secs} and --warmup_min_secs="
                      f"{self.warmup_min_secs} must be >= 0")
    if self.max_secs <= 0:
      raise UserError(f"--max_secs={self.max_secs}; must be > 0")
    if self.token_sequence_length < 1:
      raise UserError(f"token_sequence_length={self.token_sequence_length}; must be >= 1")

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def rss_mb() -> float | None:
  """Current resident set size of this process in MiB (Linux), else None."""
  try:
    with open("/proc/self/statm") as f:
      resident_pages = int(f.read().split()[1])
  except (OSError, IndexError, ValueError):
    return None
  return resident_pages * os.sysconf("SC_PAGE_SIZE") / _MIB


def peak_rss_mb() -> float:
  """Peak resident set size of this process so far, MiB."""
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  # ru_maxrss is in KiB on Linux and in bytes on macOS.
  return peak / _MIB if sys.platform == "darwin" else peak / 1024.0


def token_sequence(vocab_size: int, length: int, seed: int) -> np.ndarray:
  """The fixed token ids a step-model benchmark cycles through, int32 ``[length]``."""
  return np.random.default_rng(seed).integers(0, vocab_size, size=length, dtype=np.int32)


class _Loaded:
  """An interpreter built and allocated under the stopwatch."""

  def __init__(self, model_path: str, num_threads: int):
    self.rss_before_mb = rss_mb()
    start = time.perf_counter_ns()
    self.interpreter = Interpreter(model_path=model_path, num_threads=num_threads)
    loaded = time.perf_counter_ns()
    self.interpreter.allocate_tensors()
    allocated = time.perf_counter_ns()
    self.rss_after_mb = rss_mb()
    self.load_ms = (loaded - start) / 1e6
    self.allocate_ms = (allocated - loaded) / 1e6


def _load(model_path: str, num_threads: int) -> _Loaded:
  if not os.path.isfile(model_path):
    raise UserError(f"TFLite model not found: {model_path!r}")
  try:
    return _Loaded(model_path, num_threads)
  except (ValueError, RuntimeError) as e:
    with open(model_path, "rb") as f:
      inspect_tflite.parse(f.read(), model_path)  # Names what is wrong: not TFLite, corrupt...
    raise UserError(f"LiteRT cannot load {model_path}: {str(e).splitlines()[0]}") from None


def delegate_partitions(interpreter: Interpreter) -> int | None:
  """How many delegate (XNNPACK) partitions LiteRT cut the graph into.

  Each partition is one delegate call per run, with its own fixed cost; an op
  the delegate does not take splits the graph and runs on the builtin
  kernels. A step graph should be one partition. None when this LiteRT does
  not list its nodes.
  """
  try:
    nodes = interpreter._get_ops_details()  # pylint: disable=protected-access
  except (AttributeError, RuntimeError, ValueError):
    return None
  return sum(node.get("op_name") == "DELEGATE" for node in nodes)


def delegate_partitions_of(model_path: str, num_threads: int = 1) -> int | None:
  """:func:`delegate_partitions` of a ``.tflite`` file loaded as the benchmark loads it."""
  return delegate_partitions(_load(model_path, num_threads).interpreter)


def _run_phase(invoke: Callable[[], None], before: Callable[[], None],
               after: Callable[[], None], min_runs: int, min_secs: float,
               max_secs: float) -> array.array:
  """``BenchmarkModel::Run``: run times in ns (int64, as its vector), only ``invoke`` timed."""
  clock = time.perf_counter_ns
  now = clock()
  min_finish = now + int(min_secs * 1e9)
  max_finish = now + int(max_secs * 1e9)
  times = array.array("q")
  while (len(times) < min_runs or now < min_finish) and now <= max_finish:
    before()
    start = clock()
    invoke()
    end = clock()
    after()
    times.append(end - start)
    now = clock()
  return times


def _measure(model_path: str, settings: BenchmarkSettings, loaded: _Loaded,
             before: Callable[[], None], after: Callable[[], None], extra: dict) -> BenchmarkResult:
  invoke = loaded.interpreter.invoke
  gc_was_enabled = gc.isenabled()
  gc.disable()  # A collection inside a timed run is Python's cost, not the model's.
  try:
    warmup = _run_phase(invoke, before, after, settings.warmup_runs, settings.warmup_min_secs,
                        settings.max_secs)
    timed = _run_phase(invoke, before, after, settings.num_runs, settings.min_secs,
                       settings.max_secs)
  except RuntimeError as e:
    raise UserError(f"LiteRT failed to run {model_path}: {str(e).splitlines()[0]}") from None
  finally:
    if gc_was_enabled:
      gc.enable()
  rss_end = rss_mb()
  peak_mb = peak_rss_mb()
  delta = lambda after_mb: (None if after_mb is None or loaded.rss_before_mb is None
                            else round(after_mb - loaded.rss_before_mb, 3))
  extra = {"load_ms": round(loaded.load_ms, 4), "allocate_ms": round(loaded.allocate_ms, 4),
           "rss_before_load_mb": (None if loaded.rss_before_mb is None
                                  else round(loaded.rss_before_mb, 3)),
           "timed": "Interpreter.invoke() only", "clock": "time.perf_counter_ns",
           "percentiles": "benchmark_model's: element len*p//100 of the sorted runs",
           "min_secs": settings.min_secs, "warmup_min_secs": settings.warmup_min_secs,
           "delegate_partitions": delegate_partitions(loaded.interpreter), **extra}
  return BenchmarkResult(
      source=SOURCE_HOST, model=model_path, model_bytes=os.path.getsize(model_path),
      threads=settings.num_threads, num_runs=len(timed), warmup_runs=len(warmup),
      init_ms=round(loaded.load_ms + loaded.allocate_ms, 4),
      first_inference_ms=round(warmup[0] / 1e6, 6) if warmup else None,
      warmup_avg_ms=round(sum(warmup) / len(warmup) / 1e6, 6) if warmup else None,
      latency_ms=LatencyStats.from_samples_ns(timed), peak_memory_mb=round(peak_mb, 3),
      memory_delta_init_mb=delta(loaded.rss_after_mb), memory_delta_overall_mb=delta(rss_end),
      extra=extra)


def benchmark_step_model(model_path: str, settings: BenchmarkSettings = BenchmarkSettings()
                         ) -> BenchmarkResult:
  """Benchmarks a step model one token per run, state carried (see the module doc).

  Args:
    model_path: a step-model ``.tflite`` (the export's signature).
    settings: runs, threads, seed.

  Returns:
    A ``host-litert`` :class:`BenchmarkResult`; ``latency_ms`` is per token.

  Raises:
    UserError: the file is missing, not TFLite, corrupt, or not a step model.
  """
  return drive_step_model(model_path, settings)[0]


def drive_step_model(model_path: str, settings: BenchmarkSettings
                     ) -> tuple[BenchmarkResult, list[np.ndarray]]:
  """:func:`benchmark_step_model`, also returning the states after the last run."""
  # The stopwatch interpreter is built first, in a process that has not run
  # LiteRT yet when called from a script, so init_ms includes the runtime's
  # one-time setup as benchmark_model's (one process per model) does.
  loaded = _load(model_path, settings.num_threads)
  # TFLiteStepModel checks the signature and gives the state layout; its own
  # interpreter is only for that. Tensor indices come from the file, so they
  # hold for the stopwatch interpreter too.
  step_model = TFLiteStepModel(model_path, settings.num_threads)
  indices = step_model.tensor_indices
  token_index, state_in, state_out = (indices["token"], indices["state_inputs"],
                                      indices["state_outputs"])
  vocab_size = step_model.vocab_size
  runner_inputs = loaded.interpreter.get_signature_runner(SIGNATURE_KEY).get_input_details()
  if runner_inputs[TOKEN_INPUT]["index"] != token_index:
    raise UserError(f"{model_path}: signature tensor indices differ between two loads")
  carried = [step_model.zero_states()]
  del step_model
  gc.collect()

  tokens = [np.array([t], np.int32)
            for t in token_sequence(vocab_size, settings.token_sequence_length, settings.seed)]
  interpreter = loaded.interpreter
  set_tensor, get_tensor = interpreter.set_tensor, interpreter.get_tensor
  position = [0]

  def before():
    set_tensor(token_index, tokens[position[0] % len(tokens)])
    for index, state in zip(state_in, carried[0]):
      set_tensor(index, state)

  def after():
    carried[0] = [get_tensor(i) for i in state_out]
    position[0] += 1

  result = _measure(model_path, settings, loaded, before, after, extra={
      "kind": "step model", "vocab_size": vocab_size,
      "state_sizes": [int(s.shape[-1]) for s in carried[0]],
      "inputs": f"one token per run, state carried; {len(tokens)} seeded token ids cycled "
                f"(seed={settings.seed})"})
  return result, carried[0]


def benchmark_fixed_inputs(model_path: str, settings: BenchmarkSettings = BenchmarkSettings()
                           ) -> BenchmarkResult:
  """Benchmarks any ``.tflite`` on seeded random inputs set once (``benchmark_model``'s way)."""
  loaded = _load(model_path, settings.num_threads)
  interpreter = loaded.interpreter
  rng = np.random.default_rng(settings.seed)
  for detail in interpreter.get_input_details():
    dtype = np.dtype(detail["dtype"])
    shape = detail["shape"]
    if np.issubdtype(dtype, np.floating):
      value = rng.uniform(-1.0, 1.0, shape).astype(dtype)
    else:
      value = np.zeros(shape, dtype)
    interpreter.set_tensor(detail["index"], value)
  nothing = lambda: None
  return _measure(model_path, settings, loaded, nothing, nothing, extra={
      "kind": "fixed inputs", "inputs": f"uniform [-1, 1) floats (seed={settings.seed}), "
                                        "zero integers, set once"})


def fixed_inputs_benchmark(timer: str) -> Callable[[str, BenchmarkSettings], BenchmarkResult]:
  """The fixed-inputs benchmark of ``timer``: ``python`` times ``Interpreter.invoke()``
  from Python (:func:`benchmark_fixed_inputs`), ``native`` times
  ``LiteRtRunCompiledModel`` from C (:func:`native.benchmark_native`)."""
  if timer == "python":
    return benchmark_fixed_inputs
  if timer == "native":
    from tflm_compress.benchmark import native
    return native.benchmark_native
  raise UserError(f"--timer={timer!r}; use one of {', '.join(TIMERS)}")


def interleaved_p50s(paths: dict[str, str], settings: BenchmarkSettings = BenchmarkSettings(),
                     rounds: int = 3, timer: str = "python") -> dict[str, list[float]]:
  """Per-round p50 (ms) of each ``.tflite`` of ``paths`` (name -> file), timed in
  interleaved rounds (A, B, A, B, ...) with :func:`fixed_inputs_benchmark`
  of ``timer``, so machine noise hits all of them alike."""
  check_rounds(rounds)
  benchmark = fixed_inputs_benchmark(timer)
  p50s = {name: [] for name in paths}
  # Drawn between timings only (on a terminal), never inside a timed phase.
  with progress.Bar(rounds * len(paths), "benchmark rounds") as bar:
    for _ in range(rounds):
      for name, path in paths.items():
        p50s[name].append(benchmark(path, settings).latency_ms.p50)
        bar.advance()
  return p50s


def check_rounds(rounds: int) -> None:
  if rounds < 1:
    raise UserError(f"--rounds={rounds}; must be >= 1")


def compare_files(paths: dict[str, str], settings: BenchmarkSettings, rounds: int,
                  timer: str = "python") -> list[dict]:
  """Times ``.tflite`` files (name -> path) side by side with :func:`interleaved_p50s`.

  One row per file, in order: ``name``, ``path``, ``bytes``, ``tflite_ops``,
  ``delegate_partitions``, ``round_p50s``, ``ms_p50`` (their median),
  ``ms_best_round`` (their minimum), ``speedup`` and ``speedup_best_round``
  (the first file's figure / this one's). Each round builds a new
  interpreter, and the same file's p50 differs between interpreters by up to
  ~20% on this host (probably where its buffers land), so the median and the
  best round are both reported. ``timer``: see :func:`fixed_inputs_benchmark`.
  """
  check_rounds(rounds)
  fixed_inputs_benchmark(timer)  # Checked before any file is read.
  rows = []
  for name, path in paths.items():
    if not os.path.isfile(path):
      raise UserError(f"{name}: TFLite model not found: {path!r}")
    with open(path, "rb") as f:
      ops = inspect_tflite.op_names(inspect_tflite.parse(f.read(), path))
    rows.append({"name": name, "path": path, "bytes": os.path.getsize(path), "tflite_ops": len(ops),
                 "delegate_partitions": delegate_partitions_of(path, settings.num_threads)})
  p50s = interleaved_p50s(paths, settings, rounds, timer)
  for row in rows:
    row["round_p50s"] = p50s[row["name"]]
    row["ms_p50"] = statistics.median(row["round_p50s"])
    row["ms_best_round"] = min(row["round_p50s"])
  for row in rows:
    row["speedup"] = rows[0]["ms_p50"] / row["ms_p50"]
    row["speedup_best_round"] = rows[0]["ms_best_round"] / row["ms_best_round"]
  return rows
