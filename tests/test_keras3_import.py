"""Models from today's Keras: Keras 3 ``.keras``/``.h5`` files and in-memory models come in exactly.

The user models are built and saved by Keras 3 in a clean subprocess (no
``TF_USE_LEGACY_KERAS``), the way a user writes them, once for the module;
the tests import them in this process, where ``tflm_compress`` is imported.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from conftest import REPO_ROOT
from tflm_compress import artifacts
from tflm_compress.errors import UserError
from tflm_compress.models import adapt, keras3_import, load_model
from tflm_compress.models.adapt import SUPPORTED, adapt_keras_model, is_package_model

V, E, H = 40, 12, 10
TOKENS = np.random.default_rng(0).integers(0, V, (2, 9)).astype(np.int32)
KINDS = ("sequential", "functional_softmax", "tied_custom", "time_distributed", "reversible")

# The user's own layers, for Keras 3: the build script imports this file and
# the tests pass it as --custom_objects. TiedEmbedding is not registered, so
# it is found by class name through the file.
USER_LAYERS = '''
import keras
from keras import ops


class TiedEmbedding(keras.layers.Embedding):
  """Lookup, and logits = h E^T + b with mode='logits' (one layer at both ends)."""

  def build(self, input_shape=None):
    super().build(input_shape)
    self.bias = self.add_weight(name="bias", shape=(self.input_dim,),
                                initializer="random_normal")

  @property
  def variable_serialization_spec(self):
    # Keras 3's Embedding saves only the variables named here.
    spec = dict(super().variable_serialization_spec)
    spec[None] = spec[None] + ["bias"]
    return spec

  def call(self, inputs, mode="embed"):
    if mode == "logits":
      return ops.matmul(inputs, ops.transpose(self.embeddings)) + self.bias
    return super().call(inputs)

  def compute_output_spec(self, inputs, mode="embed"):
    if mode == "logits":
      return keras.KerasTensor(inputs.shape[:-1] + (self.input_dim,), dtype=self.compute_dtype)
    return super().compute_output_spec(inputs)


class UnsavedBiasEmbedding(TiedEmbedding):
  """The same with Keras 3's default variable_serialization_spec: its bias is not saved."""

  @property
  def variable_serialization_spec(self):
    return keras.layers.Embedding.variable_serialization_spec.fget(self)


class DenseTranspose(keras.layers.Layer):
  """A separate output layer reading the embedding's matrix."""

  def __init__(self, embedding, scale=1.0, activation=None, **kwargs):
    super().__init__(**kwargs)
    self.embedding, self.scale = embedding, scale
    self.activation = keras.activations.get(activation)

  def build(self, input_shape):
    self.bias = self.add_weight(name="bias", shape=(self.embedding.input_dim,),
                                initializer="random_normal")

  def call(self, h):
    logits = self.scale * ops.matmul(h, ops.transpose(self.embedding.embeddings)) + self.bias
    return self.activation(logits)
'''

# Run by Keras 3 in a clean subprocess: OUT/<kind>.keras, .h5 and .npy (the
# model's outputs on OUT/tokens.npy), and the files the refusal tests need.
BUILD_SCRIPT = '''
import os
import sys

import numpy as np
import keras
import tensorflow as tf

out = sys.argv[1]
sys.path.insert(0, out)
from my_layers import TiedEmbedding, UnsavedBiasEmbedding  # noqa: E402

assert keras.__version__.startswith("3.") and tf.keras.__version__.startswith("3."), \\
    (keras.__version__, tf.keras.__version__)
V, E, H = 40, 12, 10
L = keras.layers


@keras.saving.register_keras_serializable(package="build")
class OrphanEmbedding(TiedEmbedding):
  """Registered here only: the tests' process never sees this class."""


def tokens_input():
  return keras.Input((None,), dtype="int32", name="tokens")


def sequential():
  return keras.Sequential([tokens_input(), L.Embedding(V, E), L.LSTM(H, return_sequences=True),
                           L.Dropout(0.3), L.LSTM(H, return_sequences=True),
                           L.Dense(V, bias_initializer="random_normal")])


def functional_softmax():
  tokens = tokens_input()
  x = L.Embedding(V, E)(tokens)
  x = L.LSTM(H, return_sequences=True, bias_initializer="random_normal")(x)
  return keras.Model(tokens, L.Dense(V, activation="softmax")(x))


def tied(cls, size=E):
  tokens = tokens_input()
  shared = cls(V, size, name="tied")
  x = L.Dropout(0.2)(shared(tokens))
  x = L.LSTM(H, return_sequences=True)(x)
  x = L.LSTM(size, return_sequences=True)(x)
  return keras.Model(tokens, shared(x, mode="logits"))


def time_distributed():
  tokens = tokens_input()
  x = L.Embedding(V, E)(tokens)
  x = L.LSTM(H, return_sequences=True, use_bias=False)(x)
  x = L.SpatialDropout1D(0.2)(x)
  return keras.Model(tokens, L.TimeDistributed(L.Dense(V, bias_initializer="random_normal"))(x))


def reversible():
  tokens = tokens_input()
  embedding = L.ReversibleEmbedding(V, E, tie_weights=True)
  x = L.LSTM(E, return_sequences=True)(embedding(tokens))
  return keras.Model(tokens, embedding(x, reverse=True))


def gru():
  return keras.Sequential([tokens_input(), L.Embedding(V, E, name="embedding"),
                           L.GRU(H, return_sequences=True, name="my_gru"),
                           L.Dense(V, name="dense")])


tokens = np.load(os.path.join(out, "tokens.npy"))
kinds = {"sequential": sequential, "functional_softmax": functional_softmax,
         "tied_custom": lambda: tied(TiedEmbedding), "time_distributed": time_distributed,
         "reversible": reversible, "orphan": lambda: tied(OrphanEmbedding),
         # Wide enough ([V, 48], [48, 192]) that dynamic quantization quantizes it.
         "tied_wide": lambda: tied(TiedEmbedding, size=48)}
for seed, (kind, make) in enumerate(kinds.items()):
  keras.utils.set_random_seed(seed)
  model = make()
  np.save(os.path.join(out, kind + ".npy"), np.asarray(model(tokens, training=False)))
  model.save(os.path.join(out, kind + ".keras"))
  model.save(os.path.join(out, kind + ".h5"))
gru().save(os.path.join(out, "gru.keras"))
tied(UnsavedBiasEmbedding).save(os.path.join(out, "unsaved_bias.keras"))
sequential().export(os.path.join(out, "export"), verbose=False)
'''


def _clean_env() -> dict:
  """The environment of a user's own process: Keras 3 behind tf.keras."""
  env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
  env["TF_CPP_MIN_LOG_LEVEL"] = "2"
  return env


@pytest.fixture(name="saved", scope="module")
def fixture_saved(tmp_path_factory):
  """The folder holding the Keras 3 models' files, built by one Keras 3 subprocess."""
  out = tmp_path_factory.mktemp("keras3_models")
  (out / "my_layers.py").write_text(USER_LAYERS)
  (out / "build.py").write_text(BUILD_SCRIPT)
  np.save(out / "tokens.npy", TOKENS)
  done = subprocess.run([sys.executable, str(out / "build.py"), str(out)], env=_clean_env(),
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  return out


@pytest.fixture(name="no_user_objects")
def fixture_no_user_objects(monkeypatch):
  """No --custom_objects file read yet in this test (the registry is per process)."""
  monkeypatch.setattr(adapt, "_USER_OBJECTS", {})
  monkeypatch.setattr(adapt, "_USER_FILES", {})


@pytest.fixture(name="user_layers")
def fixture_user_layers(saved, no_user_objects):  # pylint: disable=unused-argument
  """The Keras 3 user layers, read as --custom_objects reads them: ``{name: class}``."""
  return adapt.register_custom_objects(str(saved / "my_layers.py"))


def _outputs(model: tf_keras.Model, tokens: np.ndarray, softmax: bool) -> np.ndarray:
  """The package model's logits ``[B, T, V]`` from zero state (probabilities if ``softmax``)."""
  states = [np.zeros((len(tokens), int(t.shape[-1])), np.float32) for t in model.inputs[1:]]
  logits = model([tokens] + states)[0]
  return (tf.nn.softmax(logits) if softmax else logits).numpy()


@pytest.mark.usefixtures("no_user_objects")
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
@pytest.mark.parametrize("kind", KINDS)
def test_keras3_files_give_the_same_outputs(saved, kind, suffix):
  path = str(saved / f"{kind}{suffix}")
  assert keras3_import.saved_keras_version(path).startswith("3.")
  if kind == "tied_custom":  # ReversibleEmbedding, a Keras 3 built-in, needs no file.
    adapt.register_custom_objects(str(saved / "my_layers.py"))
  model = keras3_import.load_keras3_model(path)
  assert is_package_model(model)
  expected = np.load(saved / f"{kind}.npy")
  actual = _outputs(model, TOKENS, softmax=kind == "functional_softmax")
  print(f"{kind}{suffix}: max |difference| {np.abs(actual - expected).max():.3g}")
  np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=0)
  tied = kind in ("tied_custom", "reversible")
  assert (type(model.get_layer("embedding")).__name__ == "TiedEmbedding") == tied
  assert ("softmax" in [l.name for l in model.layers]) != tied  # A tied matrix is stored once.
  if kind == "reversible":  # ReversibleEmbedding has no output bias.
    np.testing.assert_array_equal(model.get_layer("embedding").get_weights()[1], np.zeros(V))


def _keras3():
  import keras  # pylint: disable=g-import-not-at-top  (Keras 3, beside tf_keras)

  assert keras.__version__.startswith("3.")
  return keras


def _keras3_model(middle, output=None, embedding=None):
  """Keras 3: tokens -> ``embedding`` -> ``middle`` layers -> ``output`` (default Dense(V)).

  ``output="reverse"`` calls ``embedding`` (a ReversibleEmbedding) with ``reverse=True``.
  """
  keras = _keras3()
  keras.utils.set_random_seed(7)
  tokens = keras.Input((None,), dtype="int32", name="tokens")
  embedding = embedding or keras.layers.Embedding(V, E, name="embedding")
  x = embedding(tokens)
  for layer in middle:
    x = layer(x)
  output = output or keras.layers.Dense(V, name="dense")
  if isinstance(output, str):  # A ReversibleEmbedding's tied output.
    return keras.Model(tokens, embedding(x, reverse=True))
  return keras.Model(tokens, output(x))


def test_in_memory_keras3_models_are_adapted(user_layers):
  keras = _keras3()
  sequential = keras.Sequential([keras.Input((None,), dtype="int32"),
                                 keras.layers.Embedding(V, E), keras.layers.Dropout(0.1),
                                 keras.layers.LSTM(H, return_sequences=True),
                                 keras.layers.Dense(V, bias_initializer="random_normal")])
  model = adapt_keras_model(sequential)
  np.testing.assert_allclose(_outputs(model, TOKENS, softmax=False),
                             np.asarray(sequential(TOKENS)), atol=1e-5, rtol=0)
  # A separate output layer reading the embedding's matrix, softmax: tied.
  embedding = keras.layers.Embedding(V, E, name="embedding")
  transpose = user_layers["DenseTranspose"](embedding, activation="softmax", name="out")
  user = _keras3_model([keras.layers.LSTM(E, return_sequences=True)], transpose, embedding)
  model = adapt_keras_model(user)
  assert type(model.get_layer("embedding")).__name__ == "TiedEmbedding"
  np.testing.assert_allclose(_outputs(model, TOKENS, softmax=True), np.asarray(user(TOKENS)),
                             atol=1e-6, rtol=0)


LSTM_SUPPORTED = ("supported: return_sequences=True, tanh/sigmoid, forward, not stateful across a "
                  "batch > 1")


@pytest.mark.parametrize("make, message", [
    (lambda k: _keras3_model([k.layers.GRU(H, return_sequences=True, name="my_gru")]),
     "layer 'my_gru' (GRU 'my_gru') is not supported here; found: Embedding 'embedding', "
     f"GRU 'my_gru', Dense 'dense'. Supported: {SUPPORTED}"),
    (lambda k: _keras3_model([k.layers.Bidirectional(k.layers.LSTM(H, return_sequences=True),
                                                     name="bi")]),
     "layer 'bi' (Bidirectional(LSTM) 'bi') is not supported here; found: Embedding "
     f"'embedding', Bidirectional(LSTM) 'bi', Dense 'dense'. Supported: {SUPPORTED}"),
    (lambda k: _keras3_model([k.layers.LSTM(H, name="last_only")]),
     f"LSTM 'last_only' has return_sequences=False; {LSTM_SUPPORTED}. Found: Embedding "
     "'embedding', LSTM 'last_only', Dense 'dense'"),
    (lambda k: _keras3_model([k.layers.LSTM(H, return_sequences=True, activation="relu",
                                            name="relu")]),
     f"LSTM 'relu' has activation='relu'; {LSTM_SUPPORTED}. Found: Embedding 'embedding', "
     "LSTM 'relu', Dense 'dense'"),
    (lambda k: _keras3_model([k.layers.LSTM(H, return_sequences=True, name="lstm")],
                             k.layers.Dense(V, activation="relu", name="dense")),
     "output layer 'dense' has activation 'relu'; supported: linear (logits) or softmax"),
    (lambda k: _keras3_model([k.layers.LSTM(E, return_sequences=True, name="lstm")], "reverse",
                             k.layers.ReversibleEmbedding(V, E, tie_weights=False,
                                                          name="embedding")),
     "embedding 'embedding' (ReversibleEmbedding 'embedding') has tie_weights=False "
     "(supported: tie_weights=True). Found: ReversibleEmbedding 'embedding', LSTM 'lstm'"),
    (lambda k: _keras3_model([k.layers.LSTM(E, return_sequences=True, name="lstm")], "reverse",
                             k.layers.ReversibleEmbedding(V, E, logit_soft_cap=30.0,
                                                          name="embedding")),
     "embedding 'embedding' (ReversibleEmbedding 'embedding') has logit_soft_cap=30.0 "
     "(supported: None). Found: ReversibleEmbedding 'embedding', LSTM 'lstm'"),
    (lambda k: _keras3_model([k.layers.LSTM(H, return_sequences=True, name="lstm")], None,
                             k.layers.Embedding(V, E, mask_zero=True, name="embedding")),
     "embedding 'embedding' (Embedding 'embedding') has mask_zero=True (the package's model "
     "does not mask token 0). Found: Embedding 'embedding', LSTM 'lstm', Dense 'dense'"),
])
def test_keras3_models_that_do_not_fit_are_described(make, message):
  with pytest.raises(UserError) as caught:
    adapt_keras_model(make(_keras3()))
  assert str(caught.value) == message


def test_keras3_attention_and_wrong_tied_outputs_are_refused(user_layers):
  keras = _keras3()
  tokens = keras.Input((None,), dtype="int32")
  x = keras.layers.Embedding(V, E, name="embedding")(tokens)
  x = keras.layers.LSTM(H, return_sequences=True, name="lstm")(x)
  x = keras.layers.MultiHeadAttention(2, 4, name="attention")(x, x)
  attention = keras.Model(tokens, keras.layers.Dense(V, name="dense")(x))
  with pytest.raises(UserError) as caught:
    adapt_keras_model(attention)
  assert str(caught.value) == (
      "layer 'attention' (MultiHeadAttention 'attention') is not supported here; found: "
      "Embedding 'embedding', LSTM 'lstm', MultiHeadAttention 'attention', Dense 'dense'. "
      f"Supported: {SUPPORTED}")
  embedding = keras.layers.Embedding(V, E, name="embedding")
  scaled = user_layers["DenseTranspose"](embedding, scale=2.0, name="out")
  with pytest.raises(UserError) as caught:
    adapt_keras_model(_keras3_model([keras.layers.LSTM(E, return_sequences=True)], scaled,
                                    embedding))
  assert str(caught.value) == (
      "tied output layer 'out' (DenseTranspose 'out') uses the embedding's matrix E but does not "
      f"compute h E^T + b (or its softmax) from the last LSTM's output h; supported: {SUPPORTED}")


def test_keras3_file_refusal_is_one_line_naming_file_and_version(saved):
  path = str(saved / "gru.keras")
  with pytest.raises(UserError) as caught:
    keras3_import.load_keras3_model(path)
  assert str(caught.value) == (
      f"cannot import {path!r} (saved with Keras {_keras3().__version__}): layer 'my_gru' "
      "(GRU 'my_gru') is not supported here; found: Embedding 'embedding', GRU 'my_gru', "
      f"Dense 'dense'. Supported: {SUPPORTED}")


@pytest.mark.usefixtures("no_user_objects")
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_missing_custom_layers_name_the_classes_and_the_file(saved, suffix):
  path = str(saved / f"orphan{suffix}")
  where = f"cannot import {path!r} (saved with Keras {_keras3().__version__})"
  with pytest.raises(UserError) as caught:
    keras3_import.load_keras3_model(path)
  assert str(caught.value) == (
      f"{where}: it uses custom layers ['OrphanEmbedding']; pass --custom_objects=FILE.py, a "
      "Python file defining them (Keras 3 classes: subclasses of keras.layers.Layer after "
      "`import keras`)")
  layers_file = str(saved / "my_layers.py")
  adapt.register_custom_objects(layers_file)
  with pytest.raises(UserError) as caught:
    keras3_import.load_keras3_model(path)
  assert str(caught.value) == (
      f"{where}: it uses custom layers ['OrphanEmbedding'], which no --custom_objects file "
      f"defines: --custom_objects={layers_file!r} defines Keras 3 layers ['DenseTranspose', "
      "'TiedEmbedding', 'UnsavedBiasEmbedding']")


@pytest.mark.usefixtures("no_user_objects")
def test_custom_layers_written_for_tf_keras_are_named_as_such(saved, tmp_path):
  legacy = tmp_path / "legacy_layers.py"
  legacy.write_text("import tensorflow as tf\n\n\n"
                    "class TiedEmbedding(tf.keras.layers.Embedding):\n  pass\n")
  assert adapt.layer_class_keras(adapt.register_custom_objects(str(legacy))["TiedEmbedding"]) \
      is not adapt.keras3_module()  # tf.keras is tf_keras once tflm_compress is imported.
  path = str(saved / "tied_custom.keras")
  with pytest.raises(UserError) as caught:
    keras3_import.load_keras3_model(path)
  assert str(caught.value).endswith(
      f"it uses custom layers ['TiedEmbedding'], which no --custom_objects file defines: "
      f"--custom_objects={str(legacy)!r} defines Keras 3 layers [] and tf_keras layers "
      "['TiedEmbedding'], which cannot rebuild a Keras 3 model (after `import tflm_compress`, "
      "tf.keras is tf_keras: use `import keras`)")


def test_embedding_weight_left_out_of_variable_serialization_spec_is_explained(user_layers,
                                                                               saved):
  path = str(saved / "unsaved_bias.keras")
  with pytest.raises(UserError) as caught:
    keras3_import.load_keras3_model(path)
  message = str(caught.value)
  assert "\n" not in message and len(message) < 800
  assert message.startswith(f"cannot import {path!r} (saved with Keras 3.")
  assert "Layer 'tied' expected 2 variables, but received 1 variables during loading" in message
  assert message.endswith("a Keras 3 Embedding subclass that adds a weight must list it in "
                          "variable_serialization_spec)")


def test_export_dir_is_refused_in_one_line(saved, tmp_path):
  (tmp_path / "vocab.txt").write_text("<eos>\n<unk>\n")
  export = str(saved / "export")
  with pytest.raises(UserError) as caught:
    artifacts.resolve(model=export, vocab=str(tmp_path / "vocab.txt"))
  assert str(caught.value) == (
      f"cannot import {export!r}: it is a Keras 3 model.export() artifact, with no Keras graph "
      "(only the serving functions ['serve', 'serving_default'] and variables), so its layers "
      "cannot be mapped reliably; supported: a .keras or .h5 model file: save the model with "
      "model.save('lm.keras')")


def _user_folder(saved, tmp_path, *names) -> str:
  """A user's folder: copies of ``names`` from the saved models, and a vocab.txt of V words."""
  for name in names:
    shutil.copy(saved / name, tmp_path / name)
  (tmp_path / "vocab.txt").write_text("<eos>\n<unk>\n" + "".join(f"w{i}\n" for i in range(V - 2)))
  return str(tmp_path)


@pytest.mark.usefixtures("no_user_objects")
def test_resolve_imports_a_keras3_file_beside_it_and_writes_nothing_on_failure(saved, tmp_path):
  folder = _user_folder(saved, tmp_path, "reversible.h5", "gru.keras")
  source = artifacts.resolve(model=f"{folder}/reversible.h5")
  assert source.imported_from == f"{folder}/reversible.h5"
  assert source.model_path == f"{folder}/reversible.h5.tflm.keras"
  assert source.vocab_path == f"{folder}/vocab.txt"
  np.testing.assert_allclose(_outputs(load_model(source.model_path), TOKENS, softmax=False),
                             np.load(saved / "reversible.npy"), atol=1e-5, rtol=0)
  with pytest.raises(UserError, match=r"GRU 'my_gru'"):
    artifacts.resolve(model=f"{folder}/gru.keras")
  assert sorted(os.listdir(folder)) == ["gru.keras", "reversible.h5", "reversible.h5.tflm.keras",
                                        "vocab.txt"]


def _run_script(script, *args):
  return subprocess.run([sys.executable, os.path.join(REPO_ROOT, "scripts", script), *args],
                        capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)


def test_compress_and_convert_a_keras3_tied_model_end_to_end(saved, tmp_path):
  folder = _user_folder(saved, tmp_path, "tied_wide.keras")
  data = tmp_path / "data"
  data.mkdir()
  words = np.random.default_rng(1).integers(0, V - 2, 600)
  for split in ("train", "valid", "test"):
    (data / f"ptb.{split}.txt").write_text(
        "\n".join(" ".join(f"w{i}" for i in line) for line in words.reshape(-1, 20)) + "\n")
  compressed = _run_script("compress.py", f"--model={folder}/tied_wide.keras",
                           f"--custom_objects={saved}/my_layers.py", f"--data_dir={data}",
                           "--method=low_rank", "--lstm_rank=4", "--finetune_epochs=0",
                           f"--output_dir={tmp_path}/low_rank", "--progress=false")
  assert compressed.returncode == 0, compressed.stderr[-3000:]
  converted = _run_script("convert.py", f"--model_dir={tmp_path}/low_rank", "--quantize=dynamic",
                          f"--data_dir={data}", "--parity_steps=40")
  assert converted.returncode == 0, converted.stderr[-3000:]
  report = json.loads(converted.stdout)
  parity = report["parity"]
  print(f"low_rank + dynamic .tflite vs Keras: {parity}, weight bytes "
        f"{report['weight_bytes_by_dtype']}")
  assert report["weight_bytes_by_dtype"].get("INT8", 0) > 0  # Quantized, not float passed on.
  assert parity["steps"] == 40
  # Measured: 3.8e-6 (int8 weights, float activations; small random-init logits).
  assert parity["max_abs_logit_diff"] < 1e-3 and parity["argmax_agreement"] >= 0.95


def test_script_refusing_a_keras3_file_prints_one_line_and_writes_nothing(saved, tmp_path):
  folder = _user_folder(saved, tmp_path, "gru.keras")
  output = tmp_path / "out" / "model.tflite"
  refused = _run_script("convert.py", f"--model={folder}/gru.keras", f"--output={output}")
  lines = [l for l in refused.stderr.splitlines() if l.startswith("error:")]
  assert refused.returncode == 1 and "Traceback" not in refused.stderr
  assert lines == [f"error: cannot import '{folder}/gru.keras' (saved with Keras "
                   f"{_keras3().__version__}): layer 'my_gru' (GRU 'my_gru') is not supported "
                   "here; found: Embedding 'embedding', GRU 'my_gru', Dense 'dense'. Supported: "
                   f"{SUPPORTED}"]
  assert sorted(os.listdir(folder)) == ["gru.keras", "vocab.txt"]  # No out/, no import.


def test_keras3_keeps_working_for_user_code_after_importing_the_package():
  code = ("import tflm_compress\n"
          "import keras\n"
          "import numpy as np\n"
          "import tensorflow as tf\n"
          "model = keras.Sequential([keras.layers.Dense(3)])\n"
          "print(keras.__version__, tf.keras.__name__, model(np.ones((2, 4))).shape)\n")
  env = _clean_env()
  done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                        cwd=REPO_ROOT, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  keras_version, tf_keras_module, shape = done.stdout.split(maxsplit=2)
  assert keras_version.startswith("3.")  # Keras 3 works for the user's own code,
  assert tf_keras_module.startswith("tf_keras")  # while tf.keras means tf_keras (documented).
  assert shape.strip() == "(2, 3)"


@pytest.mark.usefixtures("no_user_objects")
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_public_load_model_reads_a_keras3_file(saved, suffix):
  import tflm_compress as tc  # pylint: disable=g-import-not-at-top

  path = str(saved / f"sequential{suffix}")
  for model in (tc.load_model(path), load_model(path)):  # The API and models.load_model.
    assert is_package_model(model)
    np.testing.assert_allclose(_outputs(model, TOKENS, softmax=False),
                               np.load(saved / "sequential.npy"), atol=1e-5, rtol=0)
