"""Parsing the log of TFLite's official ``benchmark_model`` into a :class:`BenchmarkResult`.

Formats understood (from ``tensorflow/lite/tools/benchmark/benchmark_model.cc``,
``benchmark_tflite_model.cc``, ``tensorflow/core/util/stats_calculator.h`` and
LiteRT's ``litert/tools/benchmark_litert_model.h`` over the versions):

* Parameter lines ``<label>: [<value>]`` (``Graph: [...]``, ``Num threads: [4]``,
  ``#threads used for CPU inference: [4]``, old ``Use nnapi : [0]``).
* ``Loaded model <path>``, ``The input model file size (MB): <decimal MB>``,
  ``Initialized session in <ms>ms`` (with or without a final ``.``).
* ``Running benchmark for <n> iterations`` (old) or ``Running benchmark for at
  least <n> iterations and at least <s> seconds[ but terminate if exceeding
  <s> seconds].``, each followed by the run statistics in microseconds:
  ``count=<n> first=.. curr=.. min=.. max=.. avg=.. std=..``, newer ones with
  `` p5=.. median=.. p95=..``, and ``count=<n> curr=<v>[(all same)]`` when all
  runs took the same time. The first block is the warm-up, the second the
  timed runs.
* Summary in microseconds: ``Inference timings in us: Init: .., First
  inference: .., Warmup (avg): .., Inference (avg): ..`` (TF >= 2.3), or the
  older ``Average inference timings in us: Warmup: .., Init: .., Inference: ..``
  (``no stats:`` before that). Doubles may print in scientific notation.
* Memory: ``Memory footprint delta from the start of the tool (MB): init=..
  overall=..``, ``Overall peak memory footprint (MB) via periodic monitoring:
  ..`` and ``- VmRSS : .. MB`` (newer, with ``--report_peak_memory_footprint``).
* LiteRT's CompiledModel ``benchmark_model`` results block (``Model
  initialization: .. ms``, ``Inference (avg): .. ms (N runs)``, ``Peak memory:
  .. MB``...).

Each line may carry a prefix: ``INFO: `` / ``WARN: `` / ``ERROR: `` (TFLite
tools), ``INFO: [file.cc:12] `` (LiteRT), logcat ``07-08 15:34:26.202  5395
5410 I tflite  : `` or ``07-08 15:34:26.202 I/tflite  ( 5395): `` (the Android
benchmark app), glog/absl ``I0708 15:34:26.202000  5395 file.cc:12] `` or
TensorFlow's ``2024-07-08 15:34:26.202: I file.cc:12] ``; none is also fine.
Windows or ``adb shell`` line ends (``\\r\\n``) are fine.
"""

import re

from tflm_compress.benchmark.schema import SOURCE_ANDROID, BenchmarkResult, LatencyStats
from tflm_compress.errors import UserError

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)"

_PREFIXES = [
    # logcat -v threadtime (adb logcat's default): date time pid tid level tag:
    re.compile(r"^\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+\s+\d+\s+\d+\s+[VDIWEF]\s+\S+\s*:\s?"),
    # logcat -v time / brief: [date time] level/tag(pid):
    re.compile(r"^(?:\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+\s+)?[VDIWEF]/[^(:]+\(\s*\d+\):\s?"),
    # glog / absl: I0708 15:34:26.202000  5395 file.cc:12]
    re.compile(r"^[IWEF]\d{4}\s+\d\d:\d\d:\d\d\.\d+\s+\d+\s+[^\]\s]+:\d+\]\s?"),
    # TensorFlow platform logging: 2024-07-08 15:34:26.202: I file.cc:12]
    re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] [^\]\s]+:\d+\]\s?"),
    # TFLite tools' TFLITE_LOG and LiteRT's LITERT_LOG ("INFO: [file.cc:12] ").
    re.compile(r"^(?:INFO|WARN|WARNING|ERROR|VERBOSE|DEBUG|FATAL):\s(?:\[[^\]\s]+:\d+\]\s?)?"),
]
_ERROR_LINE = re.compile(r"^(?:ERROR|FATAL):|^[EF]/|^[EF]\d{4}\s"
                         r"|^\d\d-\d\d\s+\S+\s+\d+\s+\d+\s+[EF]\s")

_PARAM = re.compile(r"^(?P<label>[^:\[\]=]+?)\s*:\s*\[(?P<value>[^\]]*)\]$")
_LOADED = re.compile(r"^Loaded model (?P<path>\S.*)$")
_FILE_SIZE = re.compile(rf"^The input model file size \(MB\):\s*(?P<mb>{_NUM})$")
_INITIALIZED = re.compile(rf"^Initialized session in\s*(?P<ms>{_NUM})\s*ms\.?$")
_RUNNING = re.compile(
    rf"^Running benchmark for (?:at least )?(?P<runs>\d+) iterations"
    rf"(?: and at least (?P<min_secs>{_NUM}) seconds)?"
    rf"(?: but terminate if exceeding (?P<max_secs>{_NUM}) seconds)?\.?$")
_COUNT = re.compile(r"^count=(?P<count>\d+)(?P<rest>(?:\s.*)?)$")
_STAT_VALUE = re.compile(rf"(?P<key>[a-z0-9]+)=(?P<value>{_NUM})")
_TIMINGS = re.compile(
    rf"^Inference timings in us: Init: (?P<init>{_NUM}), First inference: (?P<first>{_NUM}), "
    rf"Warmup \(avg\): (?P<warmup>{_NUM}), Inference \(avg\): (?P<inference>{_NUM})")
_OLD_TIMINGS = re.compile(
    rf"^Average inference timings in us: Warmup: (?P<warmup>{_NUM}), Init: (?P<init>{_NUM}), "
    rf"(?:no stats|Inference): (?P<inference>{_NUM})")
_MEMORY_DELTA = re.compile(
    rf"^Memory footprint delta from the start of the tool \(MB\): init=(?P<init>{_NUM}) "
    rf"overall=(?P<overall>{_NUM})$")
_PEAK_MEMORY = re.compile(
    rf"^Overall peak memory footprint \(MB\) via periodic monitoring: (?P<mb>{_NUM})$")
_VM_RSS = re.compile(rf"^- VmRSS\s*:\s*(?P<mb>{_NUM}) MB$")
# LiteRT CompiledModel benchmark_model's results block (values in ms and MB).
_LITERT = {
    "init_ms": re.compile(rf"^Model initialization:\s*(?P<v>{_NUM}) ms$"),
    "first_inference_ms": re.compile(rf"^Warmup \(first\):\s*(?P<v>{_NUM}) ms$"),
    "warmup_avg_ms": re.compile(rf"^Warmup \(avg\):\s*(?P<v>{_NUM}) ms(?: \((?P<n>\d+) runs\))?$"),
    "avg": re.compile(rf"^Inference \(avg\):\s*(?P<v>{_NUM}) ms(?: \((?P<n>\d+) runs\))?$"),
    "min": re.compile(rf"^Inference \(min\):\s*(?P<v>{_NUM}) ms$"),
    "max": re.compile(rf"^Inference \(max\):\s*(?P<v>{_NUM}) ms$"),
    "std": re.compile(rf"^Inference \(std\):\s*(?P<v>{_NUM})(?: ms)?$"),
    "memory_delta_init_mb": re.compile(rf"^Init footprint:\s*(?P<v>{_NUM}) MB$"),
    "memory_delta_overall_mb": re.compile(rf"^Overall footprint:\s*(?P<v>{_NUM}) MB$"),
    "peak_memory_mb": re.compile(rf"^Peak memory:\s*(?P<v>{_NUM}) MB$"),
}
_THREAD_LABELS = ("#threads used for CPU inference", "Num threads")


def strip_prefix(line: str) -> str:
  """The message of one log line, without its logging prefix(es)."""
  line = line.rstrip("\r\n").rstrip()
  for _ in range(3):
    for prefix in _PREFIXES:
      match = prefix.match(line)
      if match and match.end() > 0:
        line = line[match.end():]
        break
    else:
      break
  return line.strip()


def _us_to_ms(value: float | None) -> float | None:
  return None if value is None else round(float(value) / 1000.0, 6)


class _RunStats:
  """One ``count=...`` line, values in microseconds."""

  def __init__(self, count: int, rest: str):
    self.count = count
    self.all_same = "(all same)" in rest or " min=" not in f" {rest}"
    self.values = {m["key"]: float(m["value"]) for m in _STAT_VALUE.finditer(rest)}

  def get(self, key: str) -> float | None:
    if key in self.values:
      return self.values[key]
    if self.all_same and key in ("first", "min", "max", "avg", "p5", "median", "p95"):
      return self.values.get("curr")
    if self.all_same and key == "std" and self.count:
      return 0.0
    return None

  def latency(self) -> LatencyStats:
    return LatencyStats(min=_us_to_ms(self.get("min")), p5=_us_to_ms(self.get("p5")),
                        p50=_us_to_ms(self.get("median")), p95=_us_to_ms(self.get("p95")),
                        max=_us_to_ms(self.get("max")), avg=_us_to_ms(self.get("avg")),
                        std=_us_to_ms(self.get("std")))


def split_runs(text: str) -> list[str]:
  """The log cut at each ``STARTING!`` line (one piece per benchmark run)."""
  pieces, current = [], []
  for line in text.splitlines():
    if strip_prefix(line) == "STARTING!" and any(strip_prefix(l) for l in current):
      pieces.append("\n".join(current))
      current = []
    current.append(line)
  pieces.append("\n".join(current))
  return [p for p in pieces if p.strip()]


def parse_benchmark_log(text: str, source: str = "<log>") -> BenchmarkResult:
  """Parses one ``benchmark_model`` run's log (see the module doc for formats).

  Args:
    text: the tool's output (stdout and stderr), or logcat lines of the app.
    source: where the text came from, for error messages.

  Returns:
    An ``android-benchmark_model`` :class:`BenchmarkResult`; figures the log
    lacks are None. ``extra`` holds the tool's parameters, delegate lines,
    run-length settings and which summary format the log used.

  Raises:
    UserError: the text holds no benchmark results (the first error line is
      quoted), or several runs.
  """
  runs = [r for r in split_runs(text) if _has_results(r)]
  if len(runs) > 1:
    raise UserError(f"{source} holds {len(runs)} benchmark_model runs (STARTING! appears "
                    f"{len(runs)} times); keep one run per log")
  lines = [(raw, strip_prefix(raw)) for raw in text.splitlines()]
  params: dict[str, str] = {}
  delegates: list[str] = []
  errors: list[str] = []
  blocks: list[dict] = []  # Running-benchmark settings, each with its stats line.
  stats: list[_RunStats] = []
  found: dict = {}
  litert: dict = {}
  for raw, message in lines:
    if not message:
      continue
    if _ERROR_LINE.match(raw.strip()):
      errors.append(message)
    if "delegate" in message.lower() and message not in delegates:
      delegates.append(message)
    if m := _COUNT.match(message):
      stats.append(_RunStats(int(m["count"]), m["rest"]))
      continue
    if m := _RUNNING.match(message):
      blocks.append({"min_runs": int(m["runs"]),
                     "min_secs": float(m["min_secs"]) if m["min_secs"] else None,
                     "max_secs": float(m["max_secs"]) if m["max_secs"] else None})
      continue
    if m := _TIMINGS.match(message):
      found["timings"] = {k: float(v) for k, v in m.groupdict().items()}
      continue
    if m := _OLD_TIMINGS.match(message):
      found["old_timings"] = {k: float(v) for k, v in m.groupdict().items()}
      continue
    if m := _FILE_SIZE.match(message):
      found["model_size_mb"] = float(m["mb"])
      continue
    if m := _INITIALIZED.match(message):
      found["initialized_ms"] = float(m["ms"])
      continue
    if m := _MEMORY_DELTA.match(message):
      found["memory_delta"] = (float(m["init"]), float(m["overall"]))
      continue
    if m := _PEAK_MEMORY.match(message):
      found["peak_memory_mb"] = float(m["mb"])
      continue
    if m := _VM_RSS.match(message):
      found["vm_rss_end_mb"] = float(m["mb"])
      continue
    if m := _LOADED.match(message):
      found.setdefault("loaded_model", m["path"].strip())
      continue
    matched_litert = False
    for key, pattern in _LITERT.items():
      if m := pattern.match(message):
        litert[key] = float(m["v"])
        if m.groupdict().get("n"):
          litert[f"{key}_runs"] = int(m["n"])
        matched_litert = True
        break
    if matched_litert:
      continue
    if m := _PARAM.match(message):
      params.setdefault(m["label"].strip(), m["value"])

  if not stats and "timings" not in found and "old_timings" not in found and "avg" not in litert:
    first_error = f"; first error line: {errors[0]!r}" if errors else ""
    raise UserError(f"{source} holds no benchmark_model results (no 'count=' or 'Inference "
                    f"timings' line){first_error}")

  warmup = stats[0] if len(stats) >= 2 else None
  timed = stats[1] if len(stats) >= 2 else (stats[0] if stats else None)
  timings = found.get("timings", {})
  old = found.get("old_timings", {})
  latency = timed.latency() if timed else LatencyStats()
  if latency.avg is None:
    avg_us = timings.get("inference", old.get("inference"))
    latency.avg = _us_to_ms(avg_us) if avg_us is not None else litert.get("avg")
  for key in ("min", "max", "std"):
    if getattr(latency, key) is None and key in litert:
      setattr(latency, key, litert[key])

  def first_of(*values):
    return next((v for v in values if v is not None), None)

  init_ms = first_of(_us_to_ms(timings.get("init")), _us_to_ms(old.get("init")),
                     found.get("initialized_ms"), litert.get("init_ms"))
  first_ms = first_of(_us_to_ms(timings.get("first")),
                      _us_to_ms(warmup.get("first")) if warmup else None,
                      litert.get("first_inference_ms"))
  warmup_ms = first_of(_us_to_ms(timings.get("warmup")), _us_to_ms(old.get("warmup")),
                       _us_to_ms(warmup.get("avg")) if warmup else None,
                       litert.get("warmup_avg_ms"))
  memory_delta = found.get("memory_delta", (litert.get("memory_delta_init_mb"),
                                            litert.get("memory_delta_overall_mb")))
  threads = None
  for label in _THREAD_LABELS:
    if label in params:
      try:
        threads = int(params[label])
      except ValueError:
        threads = None
      break
  if threads is not None and threads < 1:
    threads = None  # -1: the runtime's default.
  size_mb = found.get("model_size_mb")
  if "timings" in found:
    summary_format = "Inference timings in us (TFLite >= 2.3)"
  elif "old_timings" in found:
    summary_format = "Average inference timings in us (TFLite < 2.3)"
  elif litert:
    summary_format = "LiteRT CompiledModel BENCHMARK RESULTS block"
  else:
    summary_format = "run statistics only"
  extra = {"params": params, "delegates": delegates, "errors": errors,
           "summary_format": summary_format, "model_size_mb": size_mb,
           "run_settings": blocks, "vm_rss_end_mb": found.get("vm_rss_end_mb"),
           "latency_resolution_us": 1, "log": source}
  return BenchmarkResult(
      source=SOURCE_ANDROID,
      model=params.get("Graph") or found.get("loaded_model"),
      model_bytes=None if size_mb is None else int(round(size_mb * 1e6)),
      threads=threads,
      num_runs=timed.count if timed else litert.get("avg_runs"),
      warmup_runs=warmup.count if warmup else litert.get("warmup_avg_ms_runs"),
      init_ms=init_ms, first_inference_ms=first_ms, warmup_avg_ms=warmup_ms,
      latency_ms=latency,
      peak_memory_mb=first_of(found.get("peak_memory_mb"), litert.get("peak_memory_mb")),
      memory_delta_init_mb=memory_delta[0], memory_delta_overall_mb=memory_delta[1],
      extra=extra)


def _has_results(text: str) -> bool:
  for line in text.splitlines():
    message = strip_prefix(line)
    if (_COUNT.match(message) or _TIMINGS.match(message) or _OLD_TIMINGS.match(message)
        or _LITERT["avg"].match(message)):
      return True
  return False
