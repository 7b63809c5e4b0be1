"""benchmarks/peer_latency.py: the stock Keras rebuild of a trained model, and the script."""

import importlib.util
import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest

import tflm_compress
from conftest import REPO_ROOT
from tflm_compress.benchmark.host import token_sequence

SCRIPT = os.path.join(REPO_ROOT, "benchmarks", "peer_latency.py")


def _import_benchmark():
  """The benchmark as a module, without running its ``quiet_start`` in the test process."""
  if "peer_latency" in sys.modules:
    return sys.modules["peer_latency"]
  # quiet_start would point this process's stderr at a filter: the scripts' business only.
  sys.modules.setdefault("quiet_start", types.ModuleType("quiet_start"))
  spec = importlib.util.spec_from_file_location("peer_latency", SCRIPT)
  module = importlib.util.module_from_spec(spec)
  sys.modules["peer_latency"] = module
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope="module")
def peer():
  return _import_benchmark()


@pytest.fixture(scope="module")
def tiny_pair(tiny_run, peer):
  """The tiny run's package model and its stock Keras rebuild."""
  model = tflm_compress.load_model(tiny_run[0])
  return model, peer.stock_keras_model(model)


def test_gate_columns_follow_the_package_gate_order(peer):
  # Both store (i, f, candidate, o): the identity permutation, block by block.
  assert peer.PACKAGE_GATES == peer.KERAS_GATES == ("i", "f", "g", "o")
  np.testing.assert_array_equal(peer.keras_gate_columns(3), np.arange(12))


def test_stock_keras_model_gives_the_package_logits(peer, tiny_pair):
  model, stock = tiny_pair
  assert [type(l).__name__ for l in stock.layers if type(l).__name__ != "InputLayer"] == [
      "Embedding", "LSTM", "LSTM", "Dense"]
  tokens = token_sequence(int(stock.outputs[0].shape[-1]), 30, seed=1)
  # The package model runs the stream as one sequence; the stock one a token at a time.
  assert peer.keras_logit_diff(model, stock, tokens) < 1e-5


def test_stock_fp32_tflite_matches_our_step_tflite(peer, tiny_pair, tmp_path):
  model, stock = tiny_pair
  stock_bytes, ops_set = peer.convert_stock(stock, "none")
  assert ops_set == "TFLITE_BUILTINS"
  tflm_compress.export_tflite(model, str(tmp_path / "ours"), quantize="none",
                              log=lambda _: None)
  tokens = token_sequence(int(stock.outputs[0].shape[-1]), 20, seed=2)
  diff = peer.tflite_logit_diff(stock_bytes, stock.output_names,
                                str(tmp_path / "ours" / "model.tflite"), tokens)
  assert diff < 1e-4


def _run(*args):
  return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                        cwd=REPO_ROOT, timeout=600)


def test_script_end_to_end(tiny_run, tmp_path):
  out_json = tmp_path / "peer.json"
  result = _run(f"--model_dir={tiny_run[0]}", f"--output_dir={tmp_path / 'peer'}",
                "--rounds=2", "--runs=20", "--parity_tokens=50", f"--output_json={out_json}")
  assert result.returncode == 0, result.stderr[-2000:]
  print(result.stdout)
  figures = json.loads(out_json.read_text())
  assert [m["mode"] for m in figures["modes"]] == ["none", "dynamic"]
  for entry in figures["modes"]:
    assert entry["stock_over_ours"] > 0
    assert entry["stock_ops_set"] == "TFLITE_BUILTINS"
  assert figures["modes"][0]["max_abs_logit_diff"] < 1e-4
  assert {r["name"] for r in figures["rows"]} == {"stock_none", "ours_none", "stock_dynamic",
                                                  "ours_dynamic"}
  assert all(r["tflite_ops"] > 0 and len(r["round_p50s"]) == 2 for r in figures["rows"])
  assert "| none | stock |" in result.stdout and "| dynamic | ours |" in result.stdout


def test_script_missing_model_dir_is_one_line(tmp_path):
  result = _run(f"--model_dir={tmp_path / 'nope'}", f"--output_dir={tmp_path / 'peer'}")
  assert result.returncode == 1
  assert result.stderr.startswith("error: --model_dir="), result.stderr[-2000:]
  assert "is not a directory" in result.stderr.splitlines()[0]
  assert "Traceback" not in result.stderr
  assert not (tmp_path / "peer").exists()
