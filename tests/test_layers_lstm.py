import collections

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tflm_compress import testing
from tflm_compress.layers import LSTM, TiedEmbedding


def _numpy_lstm(x, h, c, kernel, recurrent, bias):
  """Reference: gate order i, f, c, o like keras.layers.LSTM."""
  sig = lambda v: 1 / (1 + np.exp(-v))
  outs = []
  for t in range(x.shape[1]):
    z = x[:, t] @ kernel + h @ recurrent + bias
    i, f, g, o = np.split(z, 4, axis=-1)
    c = sig(f) * c + sig(i) * np.tanh(g)
    h = sig(o) * np.tanh(c)
    outs.append(h)
  return np.stack(outs, 1), h, c


def _inputs(batch=3, steps=6, dim=5, units=7, seed=0):
  rng = np.random.default_rng(seed)
  return [rng.normal(size=(batch, steps, dim)).astype(np.float32),
          rng.normal(size=(batch, units)).astype(np.float32),
          rng.normal(size=(batch, units)).astype(np.float32)]


def test_layer_contract():
  testing.run_layer_test(LSTM, {"units": 7, "name": "lstm_x"}, _inputs(),
                         [(3, 6, 7), (3, 7), (3, 7)])


def test_matches_numpy_reference_and_keras_lstm():
  x, h, c = _inputs()
  layer = LSTM(7, bias_initializer="random_normal")
  out, h1, c1 = layer([x, h, c])
  kernel, recurrent, bias = [w.numpy() for w in (layer.kernel, layer.recurrent_kernel, layer.bias)]
  ref = _numpy_lstm(x.astype(np.float64), h, c, kernel, recurrent, bias)
  for a, b in zip((out, h1, c1), ref):
    np.testing.assert_allclose(a, b, atol=1e-5)
  # Same weights in keras.layers.LSTM give the same sequence and states.
  keras_lstm = keras.layers.LSTM(7, return_sequences=True, return_state=True)
  x, h, c = tf.constant(x), tf.constant(h), tf.constant(c)
  keras_lstm(x, initial_state=[h, c])
  keras_lstm.set_weights([kernel, recurrent, bias])
  for a, b in zip((out, h1, c1), keras_lstm(x, initial_state=[h, c])):
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_dynamic_length_while_loop_equals_unrolled():
  x, h, c = _inputs()
  layer = LSTM(7)
  unrolled = layer([x, h, c])
  dynamic = tf.function(lambda *a: layer(list(a)), input_signature=[
      tf.TensorSpec([None, None, 5]), tf.TensorSpec([None, 7]), tf.TensorSpec([None, 7])])
  for a, b in zip(unrolled, dynamic(x, h, c)):
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_carried_state_equals_one_long_sequence():
  x, h, c = _inputs(steps=8)
  layer = LSTM(7)
  full, h_full, c_full = layer([x, h, c])
  first, h_mid, c_mid = layer([x[:, :3], h, c])
  second, h_end, c_end = layer([x[:, 3:], h_mid, c_mid])
  np.testing.assert_allclose(np.concatenate([first, second], 1), full, atol=1e-6)
  np.testing.assert_allclose(h_end, h_full, atol=1e-6)


def test_tied_embedding_shares_one_matrix():
  layer = TiedEmbedding(11, 4)
  ids = np.array([[1, 2, 3]])
  rows = layer(ids)
  np.testing.assert_allclose(rows[0], layer.embeddings.numpy()[[1, 2, 3]])
  feats = np.ones((1, 2, 4), np.float32)
  logits = layer(feats, mode="logits")
  np.testing.assert_allclose(logits[0, 0], layer.embeddings.numpy().sum(1), atol=1e-6)
  assert len(layer.trainable_weights) == 2  # The matrix and the softmax bias.
  assert TiedEmbedding.from_config(layer.get_config()).get_config() == layer.get_config()
  with pytest.raises(ValueError, match="mode="):
    layer(feats, mode="bogus")


def test_bad_units():
  with pytest.raises(ValueError, match="units=0"):
    LSTM(0)


def test_one_step_fuses_matmuls_and_gates_with_the_same_numbers():
  # Large pre-activations too: the gates saturate the same way as sigmoid/tanh.
  x, h, c = [10 * v for v in _inputs(steps=1)]
  layer = LSTM(7, bias_initializer="random_normal")
  fused = layer([x, h, c])
  kernel, recurrent, bias = [w.numpy() for w in (layer.kernel, layer.recurrent_kernel, layer.bias)]
  for a, b in zip(fused, _numpy_lstm(x.astype(np.float64), h, c, kernel, recurrent, bias)):
    np.testing.assert_allclose(a, b, atol=1e-5)
  # Same numbers as the general path (two matmuls, three sigmoids) at two steps.
  two = layer([np.concatenate([x, x], 1), h, c])
  one_h, one_c = layer([x, h, c])[1:]
  np.testing.assert_allclose(two[0][:, 1], layer([x, one_h, one_c])[1], atol=1e-5)
  # A step model of the layer: one FULLY_CONNECTED (the weight concat and the
  # gate scaling fold away), one TANH for the four gates and one for the cell,
  # no LOGISTIC, no slicing glue.
  from tflm_compress.export import inspect_tflite  # pylint: disable=g-import-not-at-top

  step = tf.function(lambda *a: layer(list(a))[1:], input_signature=[
      tf.TensorSpec([1, 1, 5]), tf.TensorSpec([1, 7]), tf.TensorSpec([1, 7])])
  converter = tf.lite.TFLiteConverter.from_concrete_functions([step.get_concrete_function()],
                                                              layer)
  ops = collections.Counter(inspect_tflite.op_names(inspect_tflite.parse(converter.convert())))
  assert ops == {"RESHAPE": 1, "CONCATENATION": 1, "FULLY_CONNECTED": 1, "TANH": 2, "MUL": 4,
                 "ADD": 2, "SPLIT": 1}, ops


def test_subclasses_that_change_a_projection_are_not_fused():
  class Doubled(LSTM):
    def recurrent_projection(self, h):
      return 2.0 * super().recurrent_projection(h)

  x, h, c = _inputs(steps=1)
  layer = Doubled(7)
  out, h1, c1 = layer([x, h, c])
  kernel, recurrent, bias = [w.numpy() for w in (layer.kernel, layer.recurrent_kernel, layer.bias)]
  ref = _numpy_lstm(x.astype(np.float64), h, c, kernel, 2.0 * recurrent, bias)
  np.testing.assert_allclose(h1, ref[1], atol=1e-5)


def test_dropout_only_in_training_and_output_dropout_zeroes_and_rescales():
  x, h, c = _inputs(batch=8, steps=6, units=64)
  plain = LSTM(64)
  reference = [t.numpy() for t in plain([x, h, c])]
  dropped = LSTM(64, output_dropout=0.5)
  dropped([x, h, c])
  dropped.set_weights(plain.get_weights())
  inference = [t.numpy() for t in dropped([x, h, c], training=False)]
  for got, want in zip(inference, reference):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
  out, h1, c1 = [t.numpy() for t in dropped([x, h, c], training=True)]
  np.testing.assert_allclose(h1, reference[1], rtol=1e-6, atol=1e-6)  # The state is never dropped.
  np.testing.assert_allclose(c1, reference[2], rtol=1e-6, atol=1e-6)
  kept = out != 0
  assert 0.4 < kept.mean() < 0.6
  np.testing.assert_allclose(out[kept], 2 * reference[0][kept], rtol=1e-5)


def test_input_dropout_changes_training_outputs_and_round_trips():
  x, h, c = _inputs()
  layer = LSTM(7, input_dropout=0.3, name="lstm_d")
  train_out = layer([x, h, c], training=True)[0].numpy()
  infer_out = layer([x, h, c], training=False)[0].numpy()
  assert not np.allclose(train_out, infer_out)
  clone = LSTM.from_config(layer.get_config())
  assert (clone.input_dropout, clone.output_dropout) == (0.3, 0.0)
  with pytest.raises(ValueError, match="input_dropout=1.0"):
    LSTM(7, input_dropout=1.0)
