"""The one result schema shared by every benchmark source.

A :class:`BenchmarkResult` is what a host run with the LiteRT interpreter
(``host-litert``), a native host run through LiteRT's C API
(``host-litert-native``), a run of LiteRT's ``litert-benchmark`` tool
(``litert-benchmark``) and a parsed log of TFLite's ``benchmark_model`` on a
phone (``android-benchmark_model``) all turn into, so reports compare them key
for key. A figure a source does not give is ``None`` (``null`` in JSON), never
left out.

Units: times in milliseconds, memory in MiB (2**20 bytes, what
``benchmark_model`` prints as "MB"), model size in bytes.
"""

import dataclasses
from typing import Iterable

import numpy as np

SOURCE_HOST = "host-litert"
SOURCE_LITERT_TOOL = "litert-benchmark"
SOURCE_ANDROID = "android-benchmark_model"
SOURCE_HOST_NATIVE = "host-litert-native"
SOURCES = (SOURCE_HOST, SOURCE_HOST_NATIVE, SOURCE_LITERT_TOOL, SOURCE_ANDROID)

# How the side-by-side host benchmarks time a run: Interpreter.invoke() from
# Python (host-litert), or LiteRtRunCompiledModel from C (host-litert-native).
TIMERS = ("python", "native")

LATENCY_KEYS = ("min", "p5", "p50", "p95", "max", "avg", "std")


def percentile(sorted_values: list, p: int):
  """The ``p``-th percentile as ``benchmark_model`` computes it.

  ``StatWithPercentiles::percentile`` takes element ``len * p // 100`` of the
  ordered values (the last one for ``p == 100``), no interpolation; using the
  same rule keeps host and phone figures comparable.
  """
  if len(sorted_values) == 0:
    return None
  if p >= 100:
    return sorted_values[-1]
  return sorted_values[len(sorted_values) * p // 100]


@dataclasses.dataclass
class LatencyStats:
  """Latency of one run (one token step), in ms. ``std`` is the population std."""

  min: float | None = None
  p5: float | None = None
  p50: float | None = None
  p95: float | None = None
  max: float | None = None
  avg: float | None = None
  std: float | None = None

  @classmethod
  def from_samples_ns(cls, samples_ns: Iterable[int]) -> "LatencyStats":
    """Statistics of run times given in nanoseconds (int64)."""
    values = np.sort(np.asarray(samples_ns, dtype=np.int64))
    if not values.size:
      return cls()
    as_float = values.astype(np.float64)
    to_ms = lambda ns: _round(float(ns) / 1e6)
    return cls(min=to_ms(values[0]), p5=to_ms(percentile(values, 5)),
               p50=to_ms(percentile(values, 50)), p95=to_ms(percentile(values, 95)),
               max=to_ms(values[-1]), avg=to_ms(as_float.mean()), std=to_ms(as_float.std()))

  def to_dict(self) -> dict:
    return {k: getattr(self, k) for k in LATENCY_KEYS}


@dataclasses.dataclass
class BenchmarkResult:
  """Latency and memory of one model under one runtime.

  Attributes:
    source: ``host-litert``, ``host-litert-native``, ``litert-benchmark`` or
      ``android-benchmark_model``.
    model: the model file as the source named it.
    model_bytes: size of the ``.tflite`` in bytes.
    threads: CPU threads the runtime was given (``None``: the runtime's default).
    num_runs: timed runs behind ``latency_ms``.
    warmup_runs: warm-up runs before them.
    init_ms: loading the model and allocating tensors (``benchmark_model``'s
      "Init").
    first_inference_ms: the first warm-up run.
    warmup_avg_ms: mean of the warm-up runs.
    latency_ms: per-run (per-token) latency statistics.
    tokens_per_sec: ``1000 / latency_ms.avg``: steady-state tokens per second.
    peak_memory_mb: peak memory of the benchmarking process, MiB.
    memory_delta_init_mb: memory the process gained while loading the model.
    memory_delta_overall_mb: memory gained from before loading to the end.
    unavailable: why this source gave no figures (``None`` when it did).
    extra: source-specific details (tool parameters, invocation, resolution).
  """

  source: str
  model: str | None = None
  model_bytes: int | None = None
  threads: int | None = None
  num_runs: int | None = None
  warmup_runs: int | None = None
  init_ms: float | None = None
  first_inference_ms: float | None = None
  warmup_avg_ms: float | None = None
  latency_ms: LatencyStats = dataclasses.field(default_factory=LatencyStats)
  tokens_per_sec: float | None = None
  peak_memory_mb: float | None = None
  memory_delta_init_mb: float | None = None
  memory_delta_overall_mb: float | None = None
  unavailable: str | None = None
  extra: dict = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if self.source not in SOURCES:
      raise ValueError(f"source={self.source!r}; use one of {SOURCES}")
    if self.tokens_per_sec is None and self.latency_ms.avg:
      self.tokens_per_sec = _round(1000.0 / self.latency_ms.avg, 2)

  @classmethod
  def unavailable_result(cls, source: str, model: str | None, reason: str,
                         **extra) -> "BenchmarkResult":
    """A result with no figures, saying why (``"unavailable": reason``)."""
    return cls(source=source, model=model, unavailable=reason, extra=dict(extra))

  def to_dict(self) -> dict:
    out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
    out["latency_ms"] = self.latency_ms.to_dict()
    out["extra"] = dict(self.extra)
    return out

  @classmethod
  def from_dict(cls, d: dict) -> "BenchmarkResult":
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - fields
    if unknown:
      raise ValueError(f"unknown BenchmarkResult keys {sorted(unknown)}")
    values = dict(d)
    values["latency_ms"] = LatencyStats(**(d.get("latency_ms") or {}))
    return cls(**values)


def result_keys() -> list[str]:
  """Top-level keys of ``BenchmarkResult.to_dict()``, in order."""
  return [f.name for f in dataclasses.fields(BenchmarkResult)]


def _round(value: float | None, digits: int = 6) -> float | None:
  return None if value is None else round(float(value), digits)
