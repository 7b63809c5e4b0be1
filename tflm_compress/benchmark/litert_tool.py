"""Running LiteRT's own ``litert-benchmark`` tool on a model, in a subprocess.

``litert-benchmark`` (``ai_edge_litert/tools/benchmark_litert_model.py``, the
Python twin of LiteRT's C++ ``benchmark_model`` for the CompiledModel API)
fills every input with random values once, integers in ``[-128, 127]``. A
step model's ``token`` input feeds a ``GATHER``, which rejects negative ids,
so the unmodified tool fails at its first run on most seeds. We therefore run
the tool's own ``main()`` in a subprocess with one change: integer inputs get
seeded ids in ``[0, V)``. Everything else (CompiledModel, XNNPACK CPU
accelerator, warm-up then timed runs, its statistics) is the tool's. Its
figures come from its ``--result_json`` file, rounded by the tool to 0.01 ms.

Where the tool is missing or refuses the model (a fused LSTM op, say) the
result says ``unavailable: <reason>``.
"""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from tflm_compress.benchmark.schema import SOURCE_LITERT_TOOL, BenchmarkResult, LatencyStats

TOOL_MODULE = "ai_edge_litert.tools.benchmark_litert_model"
TOOL_SCRIPT = "litert-benchmark"

# Runs the tool's main() with in-range integer inputs: argv = vocab_size seed tool-args...
_DRIVER = """
import sys
import numpy as np
from ai_edge_litert.tools import benchmark_litert_model as tool
vocab_size, seed = int(sys.argv[1]), int(sys.argv[2])
np.random.seed(seed)
rng = np.random.default_rng(seed)
tool_fill = tool.fill_random_input
def fill_in_range(buffer, details):
  dtype = tool.get_numpy_dtype(details.get("dtype", "float32"))
  if np.issubdtype(dtype, np.integer):
    buffer.write(rng.integers(0, vocab_size, details.get("shape", [1])).astype(dtype))
  else:
    tool_fill(buffer, details)
tool.fill_random_input = fill_in_range
sys.argv = ["litert-benchmark"] + sys.argv[3:]
tool.main()
"""


def _tool_command(vocab_size: int, seed: int) -> tuple[list[str], str] | None:
  """The command prefix and how it runs the tool, or None when it is missing."""
  try:
    spec = importlib.util.find_spec(TOOL_MODULE)
  except ModuleNotFoundError:
    spec = None
  if spec is not None:
    return ([sys.executable, "-c", _DRIVER, str(vocab_size), str(seed)],
            f"{TOOL_MODULE}.main() with integer inputs drawn in [0, {vocab_size}) "
            f"(seed={seed}); the tool's own fill gives ids in [-128, 127], which GATHER rejects")
  script = shutil.which(TOOL_SCRIPT)
  if script:
    return [script], f"{TOOL_SCRIPT} console script, unmodified"
  return None


def _failure_reason(output: str, returncode: int) -> str:
  """The tool's own error lines (the first two) and the exception it ended with."""
  lines = [l.strip() for l in output.splitlines() if l.strip()]
  errors = [l for l in lines if l.startswith("ERROR")][:2]
  raised = [l for l in lines if re.match(r"^\w+(Error|Exception)\b", l)][-1:]
  detail = " / ".join(errors + raised) or (lines[-1] if lines else "no output")
  return f"{TOOL_SCRIPT} exited with {returncode}: {detail[:400]}"


def run_litert_benchmark(model_path: str, vocab_size: int, num_threads: int = 1,
                         num_runs: int = 50, warmup_runs: int = 5, seed: int = 0,
                         timeout_s: float = 600.0) -> BenchmarkResult:
  """Runs ``litert-benchmark`` on ``model_path`` on the CPU.

  Args:
    model_path: the ``.tflite``.
    vocab_size: ``V``; integer inputs (the token) get ids in ``[0, V)``.
    num_threads: CPU threads (``--num_threads``).
    num_runs: timed runs (``--num_runs``; the tool has no minimum duration).
    warmup_runs: warm-up runs (``--warmup_runs``).
    seed: seed of the inputs.
    timeout_s: give up after this many seconds.

  Returns:
    A ``litert-benchmark`` result, or one with ``unavailable`` set.
  """
  command = _tool_command(vocab_size, seed)
  if command is None:
    return BenchmarkResult.unavailable_result(
        SOURCE_LITERT_TOOL, model_path,
        f"unavailable: {TOOL_SCRIPT} not found (neither {TOOL_MODULE} nor the console script; "
        "pip install ai-edge-litert)")
  prefix, invocation = command
  with tempfile.TemporaryDirectory() as tmp:
    result_json = os.path.join(tmp, "result.json")
    args = ["--model", model_path, "--num_threads", str(num_threads), "--num_runs",
            str(num_runs), "--warmup_runs", str(warmup_runs), "--result_json", result_json]
    try:
      done = subprocess.run(prefix + args, capture_output=True, text=True, timeout=timeout_s,
                            check=False)
    except subprocess.TimeoutExpired:
      return BenchmarkResult.unavailable_result(
          SOURCE_LITERT_TOOL, model_path,
          f"unavailable: {TOOL_SCRIPT} ran past {timeout_s:.0f} s", invocation=invocation)
    except OSError as e:
      return BenchmarkResult.unavailable_result(
          SOURCE_LITERT_TOOL, model_path, f"unavailable: cannot run {TOOL_SCRIPT}: {e}",
          invocation=invocation)
    output = done.stdout + "\n" + done.stderr
    if done.returncode != 0 or not os.path.exists(result_json):
      return BenchmarkResult.unavailable_result(
          SOURCE_LITERT_TOOL, model_path,
          f"unavailable: {_failure_reason(output, done.returncode)}", invocation=invocation)
    with open(result_json) as f:
      report = json.load(f)
  return result_from_tool_json(report, model_path, invocation)


def result_from_tool_json(report: dict, model_path: str, invocation: str = "") -> BenchmarkResult:
  """A :class:`BenchmarkResult` from the tool's ``--result_json`` contents."""
  latency = report.get("latency", {})
  get = latency.get
  return BenchmarkResult(
      source=SOURCE_LITERT_TOOL, model=model_path,
      model_bytes=os.path.getsize(model_path) if os.path.exists(model_path) else None,
      threads=report.get("num_threads"), num_runs=get("num_runs"),
      warmup_runs=get("num_warmup_runs"), init_ms=get("init_ms"),
      first_inference_ms=get("warmup_first_ms"), warmup_avg_ms=get("warmup_avg_ms"),
      latency_ms=LatencyStats(min=get("min_ms"), p5=get("p5_ms"), p50=get("median_ms"),
                              p95=get("p95_ms"), max=get("max_ms"), avg=get("avg_ms"),
                              std=get("std_ms")),
      extra={"invocation": invocation, "accelerators": report.get("accelerators"),
             "fully_accelerated": report.get("fully_accelerated"),
             "signature": report.get("signature"), "resolution_ms": 0.01,
             "init": "CompiledModel.from_file (load, compile, allocate)",
             "inputs": "random, set once; no state carried"})
