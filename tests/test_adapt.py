"""Bring your own model: users' Keras LSTM LMs map onto the package's model exactly."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from conftest import REPO_ROOT
from tflm_compress import testing
from tflm_compress.errors import UserError
from tflm_compress.methods import low_rank
from tflm_compress.models import load_model, zero_states
from tflm_compress.models import adapt
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


def test_masking_embedding_is_refused():
  tokens = keras.Input((None,), dtype="int32")
  x = keras.layers.Embedding(V, E, mask_zero=True, name="masked")(tokens)
  x = keras.layers.LSTM(H, return_sequences=True)(x)
  with pytest.raises(UserError, match=r"embedding 'masked' \(Embedding 'masked'\) has "
                                     r"mask_zero=True \(the package's model does not mask"):
    adapt_keras_model(keras.Model(tokens, keras.layers.Dense(V)(x)))


def test_a_misread_model_is_caught_by_the_output_check(monkeypatch):
  analyse = adapt.analyse

  def analyse_with_wrong_bias(model):
    parts = analyse(model)
    return {**parts, "bias": parts["bias"] + 1.0}

  monkeypatch.setattr(adapt, "analyse", analyse_with_wrong_bias)
  with pytest.raises(UserError, match=r"^the package's model does not reproduce the model's "
                                     r"output \(max \|difference\| 1 on a seeded token batch\)"):
    adapt_keras_model(sequential_with_dropout())


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


# A user's tied layers live in the user's own code: the tests write them to a
# file and load it the way the scripts' --custom_objects flag does.
USER_LAYERS = '''
import tensorflow as tf
import tf_keras as keras


class SharedEmbedding(keras.layers.Embedding):
  """One layer at both ends: lookup, and logits = h E^T + b with mode='logits'."""

  def build(self, input_shape):
    super().build(input_shape)
    self.bias = self.add_weight("bias", shape=(self.input_dim,), initializer="random_normal")

  def call(self, inputs, mode="embed"):
    if mode == "logits":
      return tf.einsum("bte,ve->btv", inputs, self.embeddings) + self.bias
    return super().call(inputs)


class DenseTranspose(keras.layers.Layer):
  """A separate output layer reading the embedding's matrix (Geron's pattern)."""

  def __init__(self, embedding, scale=1.0, activation=None, **kwargs):
    super().__init__(**kwargs)
    self.embedding, self.scale = embedding, scale
    self.activation = keras.activations.get(activation)

  def build(self, input_shape):
    self.bias = self.add_weight("bias", shape=(self.embedding.input_dim,),
                                initializer="random_normal")

  def call(self, h):
    logits = self.scale * tf.einsum("bte,ve->btv", h, self.embedding.embeddings) + self.bias
    return self.activation(logits)


class ProjectedTranspose(DenseTranspose):
  """Tied softmax after a learned projection [H, E] (hidden size != embedding size)."""

  def build(self, input_shape):
    super().build(input_shape)
    self.projection = self.add_weight("projection",
                                      shape=(input_shape[-1], self.embedding.output_dim))

  def call(self, h):
    return super().call(tf.einsum("bth,he->bte", h, self.projection))
'''


@pytest.fixture(name="user_layers")
def fixture_user_layers(tmp_path):
  path = tmp_path / "my_layers.py"
  path.write_text(USER_LAYERS)
  return adapt.register_custom_objects(str(path))


def functional_tied(classes, hidden=E):
  keras.utils.set_random_seed(4)
  tokens = keras.Input((None,), dtype="int32")
  shared = classes["SharedEmbedding"](V, E, name="shared")
  x = shared(tokens)
  x = keras.layers.Dropout(0.2)(x)
  x = keras.layers.LSTM(hidden, return_sequences=True)(x)
  x = keras.layers.LSTM(E, return_sequences=True)(x)
  return keras.Model(tokens, shared(x, mode="logits"))


def dense_transpose(classes, scale=1.0, activation="softmax"):
  keras.utils.set_random_seed(5)
  tokens = keras.Input((None,), dtype="int32")
  embedding = keras.layers.Embedding(V, E)
  x = keras.layers.LSTM(E, return_sequences=True)(embedding(tokens))
  return keras.Model(tokens, classes["DenseTranspose"](embedding, scale=scale,
                                                         activation=activation, name="out")(x))


def test_functional_tied_model_from_file_is_reproduced_compressed_and_exported(
    user_layers, tmp_path):
  user = functional_tied(user_layers)
  expected = np.asarray(user(TOKENS, training=False))
  path = str(tmp_path / "tied.keras")
  user.save(path)
  model = load_model(path)
  assert model.get_layer("embedding").__class__.__name__ == "TiedEmbedding"
  assert "softmax" not in [l.name for l in model.layers]  # One matrix, stored once.
  logits = np.asarray(model([TOKENS] + zero_states_of(model, 2))[0])
  np.testing.assert_allclose(logits, expected, atol=1e-5)
  compressed = low_rank.compress(model, low_rank.Config(lstm_rank=4))
  testing.assert_tflite_matches_keras(compressed, TOKENS[0], atol=1e-4)


def test_dense_transpose_softmax_output_is_recognised_as_tied(user_layers):
  user = dense_transpose(user_layers)
  model = adapt_keras_model(user)
  probs = tf.nn.softmax(model([TOKENS] + zero_states_of(model, 2))[0]).numpy()
  np.testing.assert_allclose(probs, np.asarray(user(TOKENS)), atol=1e-6)


@pytest.mark.parametrize("make, message", [
    (lambda c: dense_transpose(c, scale=2.0),
     r"tied output layer 'out' \(DenseTranspose 'out'\) uses the embedding's matrix E but does "
     r"not compute h E\^T \+ b"),
    (lambda c: _tied_wrong_width(c),
     r"last LSTM 'narrow' has 10 units; a tied softmax needs the last LSTM's units == the "
     r"embedding size"),
])
def test_tied_models_that_do_not_fit_are_described(user_layers, make, message):
  with pytest.raises(UserError, match=message):
    adapt_keras_model(make(user_layers))


def _tied_wrong_width(classes):
  tokens = keras.Input((None,), dtype="int32")
  embedding = keras.layers.Embedding(V, E)
  x = keras.layers.LSTM(H, return_sequences=True, name="narrow")(embedding(tokens))
  return keras.Model(tokens, classes["ProjectedTranspose"](embedding)(x))


def test_missing_custom_layer_names_the_flag(user_layers, tmp_path, monkeypatch):
  path = str(tmp_path / "tied.keras")
  functional_tied(user_layers).save(path)
  monkeypatch.setattr(adapt, "_USER_OBJECTS", {})
  with pytest.raises(UserError, match=r"it uses custom layers \['SharedEmbedding'\]; pass "
                                     r"--custom_objects=FILE.py"):
    load_model(path)


def test_custom_objects_file_errors_name_the_file(tmp_path):
  with pytest.raises(UserError, match=r"--custom_objects='.*nope.py' does not exist"):
    adapt.register_custom_objects(str(tmp_path / "nope.py"))
  broken = tmp_path / "broken.py"
  broken.write_text("import tensorflow\nraise RuntimeError('boom in user code')\n")
  with pytest.raises(UserError, match=r"broken.py' failed to import: RuntimeError: boom"):
    adapt.register_custom_objects(str(broken))


def test_convert_script_loads_a_tied_model_with_custom_objects(user_layers, tmp_path):
  model_path = str(tmp_path / "tied.keras")
  functional_tied(user_layers).save(model_path)
  (tmp_path / "vocab.txt").write_text("<eos>\n<unk>\n" + "".join(f"w{i}\n" for i in range(V - 2)))
  args = [sys.executable, os.path.join(REPO_ROOT, "scripts", "convert.py"),
          f"--model={model_path}", "--parity_steps=0", f"--output={tmp_path}/out/model.tflite"]
  missing = subprocess.run(args, capture_output=True, text=True, timeout=300)
  assert missing.returncode == 1 and "Traceback" not in missing.stderr
  assert "it uses custom layers ['SharedEmbedding']; pass --custom_objects" in missing.stderr
  assert not (tmp_path / "out" / "model.tflite").exists()
  done = subprocess.run(args + [f"--custom_objects={tmp_path}/my_layers.py"],
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  assert (tmp_path / "out" / "model.tflite").stat().st_size > V * E * 4
