"""GPTQ rounding for the sub-8-bit exports (``--algorithm=gptq``)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tflm_compress import export
from tflm_compress.errors import UserError
from tflm_compress.export import gptq, inspect_tflite, sub8bit
from tflm_compress.export.meta import ModelMeta
from tflm_compress.methods import int4_qat, low_rank
from tflm_compress.models import ModelConfig, build_language_model

from conftest import REPO_ROOT

CONFIG = ModelConfig(vocab_size=60, embedding_size=16, hidden_sizes=(16, 16), init_scale=0.5)


def _dense():
  return build_language_model(CONFIG, seed=3)


def _low_rank():
  return low_rank.compress(_dense(), low_rank.Config(rank=4))


def _ids(n=5000):
  return np.random.default_rng(0).integers(0, CONFIG.vocab_size, n)


def _correlated_inputs(rng, n=2000, width=64):
  return rng.normal(size=(n, width)) @ rng.normal(size=(width, width)) * 0.3


@pytest.mark.parametrize("block_size", [0, 32, 48, 64])
def test_nearest_is_the_grid_int4_qat_trains_on(block_size):
  w = np.random.default_rng(3).normal(size=(10, 64)).astype(np.float32)
  for bits in (2, 4, 8):
    np.testing.assert_allclose(gptq.nearest(w, bits, block_size),
                               int4_qat.grid_values([w], 1, bits, block_size)[0].numpy(),
                               atol=1e-6)


@pytest.mark.parametrize("block_size", [0, 32, 64])
def test_gptq_round_is_on_the_exports_grid_with_less_output_error(block_size):
  rng = np.random.default_rng(0)
  x = _correlated_inputs(rng)
  w = rng.normal(size=(48, 64)).astype(np.float32)
  q = gptq.gptq_round(w, x.T @ x, bits=4, block_size=block_size)
  nearest = int4_qat.grid_values([w], 1, 4, block_size)[0].numpy()
  # min_max's rounding of the result is the result: the export stores it as it is.
  again = int4_qat.grid_values([q], 1, 4, block_size)[0].numpy()
  np.testing.assert_allclose(again, q, atol=1e-6 * np.abs(w).max())
  if not block_size:  # Each row keeps its largest weight, so its scale.
    np.testing.assert_allclose(np.abs(q).max(axis=1), np.abs(w).max(axis=1), rtol=1e-6)
  # Measured 451 vs 612 per channel, 416 vs 565 in blocks of 32.
  assert np.linalg.norm(x @ (w - q).T) < 0.8 * np.linalg.norm(x @ (w - nearest).T)


def test_gptq_round_with_uncorrelated_inputs_is_rounding_to_nearest():
  """A diagonal Hessian gives no input another's error: GPTQ is plain rounding."""
  rng = np.random.default_rng(1)
  w = rng.normal(size=(8, 12)).astype(np.float32)
  q = gptq.gptq_round(w, np.diag(rng.uniform(0.5, 2.0, 12)), bits=4)
  np.testing.assert_allclose(q, int4_qat.grid_values([w], 1, 4)[0].numpy(), atol=1e-7)
  golden = gptq.gptq_round(np.array([[0.7, -0.1, 0.33]]), np.eye(3), bits=2)
  np.testing.assert_allclose(golden, [[0.7, 0.0, 0.0]], atol=1e-7)  # One level: 0.7.


def test_refit_absorbs_the_input_error_and_keeps_unvisited_directions():
  rng = np.random.default_rng(2)
  x_f = rng.normal(size=(4000, 6))
  x_f[:, 5] = 0.0  # Never visited.
  x_q = x_f * [1.1, 0.9, 1.2, 1.0, 0.8, 1.0]  # The layers below, rounded, scale each input.
  w = rng.normal(size=(6, 3))
  fitted = gptq.refit(w, x_q, x_f)
  assert (np.linalg.norm(x_q @ fitted - x_f @ w) < 0.1 * np.linalg.norm(x_q @ w - x_f @ w))
  np.testing.assert_allclose(fitted[5], w[5], atol=1e-6)


def _tied():
  return build_language_model(ModelConfig(**{**CONFIG.to_dict(), "tie_embeddings": True}),
                              seed=3)


@pytest.mark.parametrize("make", [_dense, _low_rank, _tied], ids=["dense", "low_rank", "tied"])
def test_gptq_export_stores_the_rounded_model(make):
  """The int4 file computes the GPTQ-rounded model's float logits (every weight, the table
  too, is on the export's grid); the model itself is left as it was."""
  model, ids = make(), _ids()
  before = [v.numpy() for v in model.weights]
  model_bytes, report = sub8bit.export_sub8bit(model, "int4", algorithm="gptq",
                                               compute="weight_only", calibration_ids=ids)
  assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, model.weights))
  assert report["algorithm"] == "gptq" and report["gptq"]["tokens"] == 78 * 64
  assert report["quantization"].startswith("int4 (GPTQ-rounded, ai-edge-quantizer ")
  assert any(g.startswith("embedding") for g in report["gptq"]["groups"])
  with gptq.rounded(model, report["bits"], ids) as rounded:
    reference = sub8bit.float_step_model(rounded)
  gap = np.abs(export.TFLiteStepModel(model_bytes).run(ids[:200]) -
               export.TFLiteStepModel(reference).run(ids[:200])).max()
  assert gap < 1e-5  # Measured 7e-8.


@pytest.mark.parametrize("make", [_dense, _low_rank], ids=["dense", "low_rank"])
def test_gptq_export_is_closer_to_float_than_min_max(make):
  model, ids = make(), _ids()
  float_logits = export.TFLiteStepModel(sub8bit.float_step_model(model)).run(ids[:200])

  def gap(algorithm):
    model_bytes, _ = sub8bit.export_sub8bit(model, "int4", algorithm=algorithm,
                                            compute="weight_only", calibration_ids=ids)
    return float(np.abs(export.TFLiteStepModel(model_bytes).run(ids[:200]) -
                        float_logits).mean())

  # Measured: dense 0.0041 vs 0.0067, low-rank 0.00058 vs 0.00097.
  assert gap("gptq") < 0.8 * gap("min_max")


def test_gptq_rounds_only_the_groups_below_8_bits():
  model = _dense()
  _, report = sub8bit.export_sub8bit(model, "mixed", bits="embedding:8,lstm:4,softmax:8",
                                     algorithm="gptq", calibration_ids=_ids())
  assert report["gptq"]["groups"] == ["lstm_0", "lstm_1"]
  assert set(report["gptq"]["output_error"]) == {"lstm_0", "lstm_1"}


def test_gptq_without_calibration_text_is_one_clear_error():
  with pytest.raises(UserError) as error:
    sub8bit.export_sub8bit(_dense(), "int4", algorithm="gptq")
  assert str(error.value) == ("--algorithm=gptq needs calibration text (the corpus's train "
                              "split: --data_dir)")


def test_convert_script_exports_gptq_with_the_runs_training_text(tiny_run, tmp_path):
  out = tmp_path / "gptq" / "model.tflite"
  result = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "scripts", "convert.py"),
                           f"--model_dir={tiny_run[0]}", "--quantize=int4", "--algorithm=gptq",
                           "--block_size=32", f"--output={out}"],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  summary = json.loads(result.stdout)
  assert summary["sub8bit"]["gptq"]["groups"] == ["embedding", "lstm_0", "lstm_1", "softmax"]
  assert summary["parity"]["max_abs_logit_diff"] <= 0.5  # min_max int4's tolerance.
  types = {row["type"] for row in inspect_tflite.weight_types(inspect_tflite.parse(
      out.read_bytes())) if row["op"] in ("FULLY_CONNECTED", "EMBEDDING_LOOKUP")}
  assert types == {"INT4"}
  meta = ModelMeta.load(str(tmp_path / "gptq" / "model_meta.json"))
  assert meta.quantization.startswith("int4 (GPTQ-rounded, ai-edge-quantizer ")


def test_rotating_factor_pairs_keeps_the_float_model():
  model, ids = _low_rank(), _ids()[:300]
  before = export.TFLiteStepModel(sub8bit.float_step_model(model)).run(ids)
  kernel_v = model.get_layer("softmax").kernel_v.numpy()
  turned = gptq.rotate_factor_pairs(model)
  assert turned == ["embedding.embeddings+projection", "lstm_0.kernel_u+kernel_v",
                    "lstm_0.recurrent_u+recurrent_v", "lstm_1.kernel_u+kernel_v",
                    "lstm_1.recurrent_u+recurrent_v", "softmax.kernel_u+kernel_v"]
  assert np.abs(model.get_layer("softmax").kernel_v.numpy() - kernel_v).max() > 0.01
  after = export.TFLiteStepModel(sub8bit.float_step_model(model)).run(ids)
  np.testing.assert_allclose(after, before, atol=1e-5)


def test_gptq_keeps_a_pruned_weights_zeros():
  rng = np.random.default_rng(4)
  x = _correlated_inputs(rng, width=32)
  w = rng.normal(size=(16, 32)).astype(np.float32)
  w[rng.random(w.shape) < 0.5] = 0.0
  q = gptq.gptq_round(w, x.T @ x, bits=4, clip_ratios=gptq.CLIP_RATIOS)
  np.testing.assert_array_equal(q[w == 0], 0.0)
  assert np.count_nonzero(q) <= np.count_nonzero(w)
  fitted = gptq._round_matmul(w.T, x * 1.1, x, 4, 0, True, (1.0,))  # Refitted, then rounded.
  np.testing.assert_array_equal(fitted.T[w == 0], 0.0)
