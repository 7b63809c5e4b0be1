import os

import numpy as np
import pytest
import tf_keras as keras
from tensorflow_model_optimization.python.core.quantization.keras import quantize_wrapper

from tflm_compress import export, testing
from tflm_compress.errors import UserError
from tflm_compress.export import inspect_tflite
from tflm_compress.layers import LSTM, TiedEmbedding
from tflm_compress.methods import quantization as qat
from tflm_compress.models import ModelConfig, build_language_model, load_model, zero_states

from conftest import compress_tiny_run

CONFIG = ModelConfig(vocab_size=40, embedding_size=8, hidden_sizes=(8, 8))
TOKENS = np.arange(12, dtype=np.int32)[None] % 40


@pytest.fixture(scope="module")
def dense_model():
  return build_language_model(CONFIG, seed=0)


def _outputs(model, tokens=TOKENS):
  return [np.asarray(o) for o in model([tokens] + zero_states(CONFIG, 1))]


def test_quantizable_lstm_is_the_lstm():
  x = np.random.default_rng(0).normal(size=(2, 3, 5)).astype(np.float32)
  states = [np.zeros((2, 6), np.float32)] * 2
  layer = testing.run_layer_test(qat.QuantizableLSTM, {"units": 6}, [x] + states,
                                 [(2, 3, 6), (2, 6), (2, 6)])
  plain = LSTM(6)
  plain([x] + states)
  plain.set_weights(layer.get_weights())
  for a, b in zip(plain([x] + states), layer([x] + states)):
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_every_layer_is_wrapped_and_weight_ranges_start_right(dense_model):
  model = qat.compress(dense_model, qat.Config())
  inner = {l.layer.name: type(l.layer) for l in model.layers
           if isinstance(l, quantize_wrapper.QuantizeWrapperV2)}
  assert inner == {"embedding": keras.layers.Embedding, "lstm_0": qat.QuantizableLSTM,
                   "lstm_1": qat.QuantizableLSTM, "softmax": keras.layers.Dense}
  # No QuantizeLayer on the inputs: token ids and state go in as they are.
  assert [l.name for l in model.layers if isinstance(l, keras.layers.InputLayer)] == \
      ["tokens", "h0", "c0", "h1", "c1"]
  assert len(model.layers) == len(dense_model.layers)
  report = qat.report(model)
  assert report["quantized_layers"] == ["embedding", "lstm_0", "lstm_1", "softmax"]
  # Symmetric ranges from the weights themselves, before any training step.
  kernel = dense_model.get_layer("lstm_0").kernel.numpy()
  low, high = report["weight_ranges"]["lstm_0/kernel"]
  assert high == pytest.approx(np.abs(kernel).max(), rel=1e-6) and low == pytest.approx(-high)
  assert set(report["activation_ranges"]) == {
      "lstm_0/gate_preactivation", "lstm_0/cell_activation", "lstm_0/hidden_activation",
      "lstm_1/gate_preactivation", "lstm_1/cell_activation", "lstm_1/hidden_activation",
      "softmax/logits"}
  # Fake quantization only rounds weights to 255 levels: the logits barely move.
  np.testing.assert_allclose(_outputs(model)[0], _outputs(dense_model)[0], atol=1e-3)


def test_without_gates_the_lstm_stays_plain(dense_model):
  model = qat.compress(dense_model, qat.Config(qat_quantize_gates=False))
  assert type(model.get_layer("lstm_0").layer) is LSTM
  assert not any(k.startswith("lstm") for k in qat.report(model)["activation_ranges"])


@pytest.mark.parametrize("tied", [False, True])
def test_qat_model_round_trips_through_model_keras(tied):
  config = ModelConfig(vocab_size=40, embedding_size=8, hidden_sizes=(8, 8), tie_embeddings=tied)
  model = qat.compress(build_language_model(config, seed=0), qat.Config())
  if tied:
    assert type(model.get_layer("embedding").layer) is TiedEmbedding
  reloaded = testing.save_and_reload(model)
  assert [type(l) for l in reloaded.layers] == [type(l) for l in model.layers]
  for a, b in zip(_outputs(model), _outputs(reloaded)):
    np.testing.assert_array_equal(a, b)
  assert qat.report(reloaded) == qat.report(model)


def test_bad_configs_and_models(dense_model):
  with pytest.raises(UserError, match="--qat_quantize_gates='yes'; use true or false"):
    qat.Config(qat_quantize_gates="yes")
  model = qat.compress(dense_model, qat.Config())
  with pytest.raises(UserError, match="already quantization-aware"):
    qat.compress(model, qat.Config())
  from tflm_compress.methods import low_rank  # pylint: disable=g-import-not-at-top

  factored = low_rank.compress(dense_model, low_rank.Config(rank=2))
  with pytest.raises(UserError, match="qat found no embedding, LSTM or softmax"):
    qat.compress(factored, qat.Config())


@pytest.fixture(scope="module")
def qat_run(tiny_run, small_corpus, tmp_path_factory):
  """The tiny model after one epoch of QAT fine-tuning: (run dir, metrics)."""
  run_dir, _ = tiny_run
  out = str(tmp_path_factory.mktemp("qat"))
  metrics = compress_tiny_run(tiny_run, small_corpus, out, "qat", {})
  return out, metrics


def test_qat_run_is_a_run_dir(tiny_run, qat_run):
  out, metrics = qat_run
  assert metrics["test_ppl"] < 1.1 * tiny_run[1]["test_ppl"]
  report = metrics["method_report"]["qat"]
  assert report["quantized_layers"] == ["embedding", "lstm_0", "lstm_1", "softmax"]
  # The moving averages (decay 0.999) moved from TFMOT's [-6, 6] start most of
  # the way to h's range (-1, 1) in one tiny epoch (20 updates per batch).
  low, high = report["activation_ranges"]["lstm_1/hidden_activation"]
  assert -1.5 < low < -0.5 and 0.5 < high < 1.5
  model = load_model(os.path.join(out, "model.keras"))  # TFMOT classes are registered.
  assert isinstance(model.get_layer("lstm_0"), quantize_wrapper.QuantizeWrapperV2)


def test_qat_model_converts_to_int8_and_agrees_with_its_keras_twin(tiny_run, qat_run,
                                                                   small_corpus):
  tokens = small_corpus.split("test")[:300]
  calibration_ids = small_corpus.split("train")

  def int8_parity(model, fully_connected):
    calibration = export.representative_steps(model, calibration_ids, 300)
    model_bytes = export.convert_step_model(model, "int8", calibration)
    ops = inspect_tflite.quantization_report(inspect_tflite.parse(model_bytes))
    assert ops["FULLY_CONNECTED"] == {"int8": fully_connected}, ops
    return export.check_parity(model, export.TFLiteStepModel(model_bytes), tokens)

  # QAT: 2 per LSTM (kernel and recurrent kernel have their own learned ranges) + softmax;
  # the plain LSTM fuses its two matmuls into one per layer.
  qat_parity = int8_parity(load_model(os.path.join(qat_run[0], "model.keras")), 5)
  ptq_parity = int8_parity(load_model(os.path.join(tiny_run[0], "model.keras")), 3)
  print(f"int8 vs Keras twin: QAT {qat_parity}  PTQ {ptq_parity}")
  assert qat_parity["argmax_agreement"] >= 0.95
  assert ptq_parity["argmax_agreement"] >= 0.95
  # The float export of the QAT model computes what Keras does (QUANTIZE/DEQUANTIZE pairs).
  model = load_model(os.path.join(qat_run[0], "model.keras"))
  testing.assert_tflite_matches_keras(model, tokens[:50], atol=1e-3)
