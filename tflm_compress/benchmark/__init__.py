"""Latency and memory of step models: on this machine, through litert-benchmark, on a phone.

Modules:

* ``schema``: :class:`BenchmarkResult`, the one result schema of every source.
* ``host``: the host benchmark with the LiteRT interpreter, measured the way
  TFLite's ``benchmark_model`` measures (imports TensorFlow).
* ``native``: the same fixed-inputs timing without Python in the timed runs:
  a small C program (``native/litert_run_timer.c``, compiled on first use)
  times ``LiteRtRunCompiledModel`` through the ``libLiteRt.so`` of ai-edge-litert.
* ``litert_tool``: LiteRT's ``litert-benchmark`` tool on the same model.
* ``floor``: FLOPs and weight bytes per token from the graph, and a
  single-``FULLY_CONNECTED`` reference of the same cost (imports TensorFlow to
  build it).
* ``android``: parser of ``benchmark_model`` logs (several versions' formats).
* ``adb``: runs ``benchmark_model`` on a phone through ``adb``.
* ``report``: the host report (host + litert-benchmark + floor).

Only the light modules (``schema``, ``android``) are imported here.
"""

from tflm_compress.benchmark.android import parse_benchmark_log
from tflm_compress.benchmark.schema import (SOURCE_ANDROID, SOURCE_HOST, SOURCE_LITERT_TOOL,
                                            BenchmarkResult, LatencyStats, result_keys)

__all__ = ["BenchmarkResult", "LatencyStats", "SOURCE_ANDROID", "SOURCE_HOST",
           "SOURCE_LITERT_TOOL", "parse_benchmark_log", "result_keys"]
