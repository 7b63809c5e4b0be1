"""The LSTM stack cut out of a model: same numbers as in the model, timed side by side."""

import numpy as np
import pytest
import tf_keras as keras
from ai_edge_litert.interpreter import Interpreter

from tflm_compress.benchmark import components
from tflm_compress.benchmark.host import BenchmarkSettings
from tflm_compress.errors import UserError
from tflm_compress.export import inspect_tflite
from tflm_compress.methods import iss, low_rank
from tflm_compress.models import ModelConfig, build_language_model

CONFIG = ModelConfig(vocab_size=30, embedding_size=5, hidden_sizes=(8, 6))


def _run_tflite(model_bytes, feeds):
  interpreter = Interpreter(model_content=model_bytes)
  runner = interpreter.get_signature_runner()
  return runner(**feeds)


@pytest.mark.parametrize("compress", [
    lambda m: m,
    lambda m: iss.compress(m, iss.Config(iss_keep=0.5)),
    lambda m: low_rank.compress(m, low_rank.Config(lstm_rank=2)),
])
def test_lstm_stack_matches_the_model_layers(compress):
  model = compress(build_language_model(CONFIG, seed=0))
  sizes = components.lstm_state_sizes(model)
  rng = np.random.default_rng(0)
  x = rng.normal(size=(1, 1, 5)).astype(np.float32)
  states = [rng.normal(size=(1, h)).astype(np.float32) for h in sizes for _ in range(2)]
  # Reference: the model's own layers on an embedded token.
  expected, new_states = x, []
  for i, layer in enumerate(components.lstm_stack_layers(model)):
    expected, h, c = layer([expected, states[2 * i], states[2 * i + 1]])
    new_states += [np.asarray(h), np.asarray(c)]
  flat = components.lstm_stack_tflite(model)
  assert not inspect_tflite.non_builtin_ops(inspect_tflite.parse(flat))
  names = [f"{k}{i}" for i in range(len(sizes)) for k in ("h", "c")]
  out = _run_tflite(flat, {"x": x, **dict(zip(names, states))})
  assert sorted(out) == sorted(["top"] + [f"{n}_out" for n in names])
  np.testing.assert_allclose(out["top"], np.asarray(expected).reshape(1, -1), atol=1e-5)
  for name, want in zip(names, new_states):
    np.testing.assert_allclose(out[f"{name}_out"], want, atol=1e-5)
  assert components.lstm_params(model) == sum(
      int(np.prod(w.shape)) for l in components.lstm_stack_layers(model)
      for w in l.trainable_weights)


def test_compare_reports_params_and_speedup_relative_to_the_first(tmp_path):
  base = build_language_model(CONFIG, seed=0)
  smaller = iss.compress(base, iss.Config(iss_keep=0.5))
  settings = BenchmarkSettings(num_runs=5, min_secs=0.0, warmup_min_secs=0.0)
  rows = components.compare_lstm_latency({"base": base, "iss": smaller}, str(tmp_path),
                                         settings, rounds=2)
  assert [r["name"] for r in rows] == ["base", "iss"]
  assert rows[0]["hidden_sizes"] == [8, 6] and rows[1]["hidden_sizes"] == [4, 3]
  # 4 * (h * (e + h) + h) per layer.
  assert rows[0]["lstm_params"] == 4 * (8 * 13 + 8) + 4 * (6 * 14 + 6)
  assert rows[1]["lstm_params"] == 4 * (4 * 9 + 4) + 4 * (3 * 7 + 3)
  assert rows[0]["param_reduction"] == 1.0 and rows[0]["speedup"] == 1.0
  assert rows[1]["param_reduction"] == pytest.approx(
      rows[0]["lstm_params"] / rows[1]["lstm_params"])
  assert all(len(r["round_p50s"]) == 2 and r["lstm_ms_p50"] > 0 for r in rows)
  # 11 ops per layer and the input reshape; XNNPACK takes all of them in one partition.
  assert [(r["tflite_ops"], r["delegate_partitions"]) for r in rows] == [(23, 1), (23, 1)]
  assert rows[1]["speedup"] == pytest.approx(rows[0]["lstm_ms_p50"] / rows[1]["lstm_ms_p50"])
  assert all(r["lstm_ms_best_round"] == min(r["round_p50s"]) for r in rows)
  assert rows[1]["speedup_best_round"] == pytest.approx(
      rows[0]["lstm_ms_best_round"] / rows[1]["lstm_ms_best_round"])


def test_a_model_without_lstm_layers_is_refused(tmp_path):
  tokens = keras.Input((None,), dtype="int32")
  model = keras.Model(tokens, keras.layers.Embedding(5, 3, name="embedding")(tokens))
  with pytest.raises(UserError, match="has no layer named 'lstm_0'"):
    components.lstm_params(model)
  with pytest.raises(UserError, match="--rounds=0"):
    components.compare_lstm_latency({"m": model}, str(tmp_path), rounds=0)


def test_preset_iss_models_shrink_each_layer_of_the_preset():
  models = iss.preset_iss_models("small", [0.5, 0.25])
  assert list(models) == ["small", "small_iss0.5", "small_iss0.25"]
  assert [components.lstm_state_sizes(m) for m in models.values()] == [
      [200, 200], [100, 100], [50, 50]]
  # 4H(input + H + 1) per layer: input E = 200 for the first, the first's H for the second.
  assert components.lstm_params(models["small_iss0.5"]) == 4 * 100 * 301 + 4 * 100 * 201
  with pytest.raises(UserError, match="iss_keep=0"):
    iss.preset_iss_models("small", [0.0])
  with pytest.raises(UserError, match="at least one --iss_keep"):
    iss.preset_iss_models("small", [])
  with pytest.raises(UserError, match="--iss_keep=0.5,0.5 repeats a fraction"):
    iss.preset_iss_models("small", [0.5, 0.5])
