"""A model's benchmark report: results by source, its cost, and its distance from the floor.

Report (JSON-ready dict)::

  {"model": path, "model_bytes": n, "settings": {...},
   "cost": {flops_per_token, weight_bytes_per_token, ...},   # floor.StepCost
   "results": {source: BenchmarkResult.to_dict(), ...},
   "floor": {reference, result, ratio_statistic, ratio, ...} | {"unavailable": why} | null}

The host report runs, in one process and with the same threads: the host
benchmark of the model (first, so its init is a cold start), then
``litert-benchmark`` (a subprocess, given as many runs as the host timed),
then the floor reference.
"""

import os
import tempfile

from tflm_compress.benchmark import floor as floor_lib
from tflm_compress.benchmark import host, litert_tool
from tflm_compress.benchmark.schema import SOURCE_HOST, SOURCE_LITERT_TOOL, BenchmarkResult
from tflm_compress.export import inspect_tflite

# litert-benchmark has no minimum duration; cap the runs we hand it.
_MAX_TOOL_RUNS = 100_000


def model_cost(model_path: str) -> floor_lib.StepCost:
  with open(model_path, "rb") as f:
    return floor_lib.step_cost(inspect_tflite.parse(f.read(), model_path))


def build_floor_file(cost: floor_lib.StepCost, directory: str, seed: int = 0
                     ) -> tuple[floor_lib.FloorReference, str]:
  """Plans and converts the floor reference for ``cost``; writes ``floor_reference.tflite``."""
  reference = floor_lib.plan_reference(cost)
  path = os.path.join(directory, "floor_reference.tflite")
  with open(path, "wb") as f:
    f.write(floor_lib.build_reference_model(reference, seed))
  return reference, path


def host_report(model_path: str, settings: host.BenchmarkSettings = host.BenchmarkSettings(),
                floor: bool = True, litert_benchmark: bool = True) -> dict:
  """Benchmarks ``model_path`` on this machine (see the module doc).

  Raises:
    UserError: the model is missing, corrupt or not a step model.
  """
  model_result = host.benchmark_step_model(model_path, settings)
  cost = model_cost(model_path)
  results = {SOURCE_HOST: model_result.to_dict()}
  if litert_benchmark:
    tool_result = litert_tool.run_litert_benchmark(
        model_path, vocab_size=model_result.extra["vocab_size"],
        num_threads=settings.num_threads,
        num_runs=min(max(model_result.num_runs, settings.num_runs), _MAX_TOOL_RUNS),
        warmup_runs=max(model_result.warmup_runs, 1), seed=settings.seed)
    results[SOURCE_LITERT_TOOL] = tool_result.to_dict()
  floor_section = None
  if floor:
    floor_section = _host_floor(model_result, cost, settings)
  return {"model": model_path, "model_bytes": model_result.model_bytes,
          "settings": settings.to_dict(), "cost": cost.to_dict(), "results": results,
          "floor": floor_section}


def _host_floor(model_result: BenchmarkResult, cost: floor_lib.StepCost,
                settings: host.BenchmarkSettings) -> dict:
  with tempfile.TemporaryDirectory() as tmp:
    try:
      reference, path = build_floor_file(cost, tmp, settings.seed)
    except Exception as e:  # pylint: disable=broad-except  (the converter raises assorted errors)
      return {"unavailable": f"the floor reference could not be built: {e}"}
    floor_result = host.benchmark_fixed_inputs(path, settings)
  floor_result.model = "floor_reference.tflite"
  return floor_lib.compare_to_floor(model_result, floor_result, cost, reference)
