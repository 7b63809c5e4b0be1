"""Bring your own model: users' Keras LSTM LMs map onto the package's model exactly."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tflm_compress import testing
from tflm_compress.errors import UserError
from tflm_compress.methods import low_rank
from tflm_compress.models import load_model, zero_states
from tflm_compress.models.adapt import adapt_keras_model, is_package_model

V, E, H = 40, 12, 10
TOKENS = np.random.default_rng(0).integers(0, V, (2, 9)).astype(np.int32)


def sequential_with_dropout():
  keras.utils.set_random_seed(1)
  return keras.Sequential([
      keras.layers.Embedding(V, E),
      keras.layers.Dropout(0.3),
      keras.layers.LSTM(H, return_sequences=True),
      keras.layers.Dropout(0.3),
      keras.layers.LSTM(H, return_sequences=True),
      keras.layers.Dense(V),
  ])


def functional_softmax():
  keras.utils.set_random_seed(2)
  tokens = keras.Input((None,), dtype="int32")
  x = keras.layers.Embedding(V, E)(tokens)
  x = keras.layers.LSTM(H, return_sequences=True, bias_initializer="random_normal")(x)
  probs = keras.layers.Dense(V, activation="softmax")(x)
  return keras.Model(tokens, probs)


def time_distributed():
  keras.utils.set_random_seed(3)
  tokens = keras.Input((None,), dtype="int32")
  x = keras.layers.Embedding(V, E)(tokens)
  x = keras.layers.LSTM(H, return_sequences=True, use_bias=False)(x)
  x = keras.layers.SpatialDropout1D(0.2)(x)
  logits = keras.layers.TimeDistributed(keras.layers.Dense(V))(x)
  return keras.Model(tokens, logits)


@pytest.mark.parametrize("make, suffix", [(sequential_with_dropout, ".keras"),
                                          (functional_softmax, ".h5"),
                                          (time_distributed, "")])
def test_user_models_are_reproduced_compressed_and_exported(make, suffix, tmp_path):
  user = make()
  expected = np.asarray(user(TOKENS, training=False))
  path = str(tmp_path / f"user_model{suffix}")
  user.save(path)  # .keras, .h5, or a SavedModel dir.
  model = load_model(path)
  assert is_package_model(model)
  logits = np.asarray(model([TOKENS] + zero_states_of(model, 2))[0])
  if user.layers[-1].get_config().get("activation") == "softmax":
    logits = tf.nn.softmax(logits).numpy()
  np.testing.assert_allclose(logits, expected, atol=1e-5)
  compressed = low_rank.compress(model, low_rank.Config(softmax_rank=4))
  testing.assert_tflite_matches_keras(compressed, TOKENS[0], atol=1e-4)


def zero_states_of(model, batch):
  return [np.zeros((batch, int(t.shape[-1])), np.float32) for t in model.inputs[1:]]


def _with(layer):
  tokens = keras.Input((None,), dtype="int32")
  x = keras.layers.Embedding(V, E)(tokens)
  x = layer(x)
  return keras.Model(tokens, keras.layers.Dense(V)(x))


@pytest.mark.parametrize("make, message", [
    (lambda: _with(keras.layers.GRU(H, return_sequences=True, name="my_gru")),
     r"layer 'my_gru' \(GRU 'my_gru'\) is not supported.*Supported: Embedding -> one or more LSTM"),
    (lambda: _with(keras.layers.Bidirectional(keras.layers.LSTM(H, return_sequences=True),
                                              name="bi")),
     r"layer 'bi' \(Bidirectional\(LSTM\) 'bi'\) is not supported"),
    (lambda: _with(keras.layers.LSTM(H, name="last_only")),
     r"LSTM 'last_only' has return_sequences=False"),
    (lambda: keras.Sequential([keras.layers.Dense(V, input_shape=(E,))]),
     r"expected the first layer to be an Embedding; found: Dense"),
])
def test_unsupported_models_are_described(make, message):
  with pytest.raises(UserError, match=message):
    adapt_keras_model(make())


def test_attention_model_is_refused():
  tokens = keras.Input((None,), dtype="int32")
  x = keras.layers.Embedding(V, E)(tokens)
  x = keras.layers.LSTM(H, return_sequences=True)(x)
  x = keras.layers.MultiHeadAttention(2, 4, name="attention")(x, x)
  model = keras.Model(tokens, keras.layers.Dense(V)(x))
  with pytest.raises(UserError, match="attention"):
    adapt_keras_model(model)


def test_stateful_batch_above_one_is_refused():
  model = keras.Sequential([
      keras.layers.Embedding(V, E, batch_input_shape=(4, 5)),
      keras.layers.LSTM(H, return_sequences=True, stateful=True, name="s"),
      keras.layers.Dense(V)])
  with pytest.raises(UserError, match="stateful=True with batch > 1"):
    adapt_keras_model(model)


def test_package_models_load_unchanged(tiny_run):
  model = load_model(os.path.join(tiny_run[0], "model.keras"))
  assert is_package_model(model) and model.get_layer("lstm_0").__class__.__name__ == "LSTM"
