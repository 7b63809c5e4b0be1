"""Bring your own model: map a user's Keras LSTM language model onto the package's.

Recognised: ``Embedding -> LSTM (return_sequences=True) x N -> Dense`` (or
``TimeDistributed(Dense)``), with optional ``Dropout``/``SpatialDropout1D``
between them, built with ``Sequential`` or the functional API, with a linear
or softmax output. The weights are carried over exactly
(``keras.layers.LSTM`` uses the same layout and gate order as
:class:`tflm_compress.layers.LSTM`), so the package's model gives the same
logits (for a softmax output: the same probabilities). Anything else gets a
:class:`UserError` saying what was found and what is supported.

The model may be a ``tf_keras`` model or a Keras 3 one (``import keras``,
what ``pip install tensorflow`` gives since TF 2.16): every ``isinstance``
check uses the classes of the Keras that built the model (:func:`keras_of`),
because a Keras 3 ``Embedding`` is no ``tf_keras`` ``Embedding``. Keras 3
files are read by :mod:`tflm_compress.models.keras3_import`.

Tied models (the softmax reuses the input embedding's ``[V, E]`` matrix) have
no standard Keras layer, so they are recognised by what they share and what
they compute: the output is produced either by the embedding layer itself,
called a second time (a shared layer, e.g. an ``Embedding`` subclass with a
``logits`` mode, or Keras 3's ``ReversibleEmbedding(tie_weights=True)`` called
with ``reverse=True``), or by a custom layer whose weights include the
embedding's matrix (a "DenseTranspose"). That output layer is then probed with
random features ``h``: it must compute ``h E^T + b`` (or its softmax) to 1e-5,
with ``b`` read off at ``h = 0``. The result is the package's model with
``tie_embeddings=True`` (:class:`~tflm_compress.layers.TiedEmbedding`).
Loading such a model from a file needs its custom layer classes:
:func:`register_custom_objects` (``--custom_objects=my_layers.py``).

Finally the package's model and the user's are run on one token batch and must
agree (:func:`_check_reproduced`), so a structure this module misreads is an
error, not a silently different model.
"""

import importlib.util
import inspect
import json
import os
import sys
import types
import zipfile

import h5py
import numpy as np
import tensorflow as tf
import tf_keras as keras

from tflm_compress.errors import UserError
from tflm_compress.models.config import ModelConfig
from tflm_compress.models.lstm_lm import build_language_model, lstm_name

SUPPORTED = ("Embedding -> one or more LSTM(return_sequences=True) -> Dense or "
             "TimeDistributed(Dense), or tied to the Embedding's matrix (e.g. "
             "ReversibleEmbedding(tie_weights=True)), with optional Dropout between, Sequential "
             "or functional")

# Classes found by register_custom_objects, by class name (tf_keras and Keras 3
# ones together; user_objects() hands each Keras its own), and per file.
_USER_OBJECTS: dict = {}
_USER_FILES: dict = {}


def keras3_module() -> types.ModuleType | None:
  """Keras 3 (``import keras``) if this process has imported it, else None.

  A Keras 3 model or layer class can only exist once ``keras`` is imported, so
  checking ``sys.modules`` answers "is this Keras 3?" without importing it.
  """
  module = sys.modules.get("keras")
  version = str(getattr(module, "__version__", ""))
  return module if version.split(".")[0].isdigit() and int(version.split(".")[0]) >= 3 else None


def keras_of(model) -> types.ModuleType:
  """The Keras that built ``model``: ``tf_keras``, or the Keras 3 module.

  Raises:
    UserError: ``model`` is not a Keras model.
  """
  if isinstance(model, keras.Model):
    return keras
  keras3 = keras3_module()
  if keras3 is not None and isinstance(model, keras3.Model):
    return keras3
  raise UserError(f"expected a Keras model (tf_keras or Keras 3); got {type(model).__name__}")


def keras_name(api: types.ModuleType) -> str:
  """``tf_keras`` or ``Keras 3``, for messages."""
  return "tf_keras" if api is keras else "Keras 3"


def register_custom_objects(path: str) -> dict:
  """Imports a Python file defining a user model's custom layers for loading.

  Every Keras layer subclass the file defines (``tf_keras`` or Keras 3: a file
  that does ``import keras`` defines Keras 3 layers) becomes available by class
  name (as Keras' ``custom_objects``) to the loader of its Keras; classes it
  registers with ``keras.utils.register_keras_serializable`` (or
  ``keras.saving.register_keras_serializable``) are found by Keras itself.

  Returns:
    The classes found, by name.

  Raises:
    UserError: the file is missing or fails to import (the message has the
      first line of the error).
  """
  if not os.path.isfile(path):
    raise UserError(f"--custom_objects={path!r} does not exist (a .py file defining the model's "
                    "custom layers)")
  name = "tflm_compress_user_objects_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  if spec is None or spec.loader is None:
    raise UserError(f"--custom_objects={path!r} is not an importable Python file")
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except Exception as e:  # pylint: disable=broad-except  (user code: report, do not crash)
    raise UserError(f"--custom_objects={path!r} failed to import: "
                    f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
  found = {n: c for n, c in vars(module).items()
           if inspect.isclass(c) and layer_class_keras(c) is not None
           and c.__module__ == module.__name__}
  _USER_OBJECTS.update(found)
  _USER_FILES[path] = dict(found)
  return found


def layer_class_keras(cls) -> types.ModuleType | None:
  """The Keras whose ``Layer`` ``cls`` subclasses (``tf_keras`` or Keras 3), or None."""
  if issubclass(cls, keras.layers.Layer):
    return keras
  keras3 = keras3_module()
  if keras3 is not None and issubclass(cls, keras3.layers.Layer):
    return keras3
  return None


def user_objects(api: types.ModuleType = keras) -> dict:
  """The classes registered by :func:`register_custom_objects` for Keras ``api``.

  The default, ``tf_keras``, is what the package's loader passes to
  ``tf_keras.models.load_model``; Keras 3 files get the Keras 3 classes.
  """
  return {n: c for n, c in _USER_OBJECTS.items() if layer_class_keras(c) is api}


def custom_objects_files() -> dict:
  """``{path: {class name: class}}`` of every file :func:`register_custom_objects` read."""
  return {path: dict(classes) for path, classes in _USER_FILES.items()}


def unknown_layer_classes(path: str, known: dict) -> list[str]:
  """Layer classes a saved model names that neither Keras nor ``known`` has.

  Reads the architecture of a ``.keras`` (zip) or ``.h5`` file; ``[]`` when
  it cannot tell (e.g. a SavedModel dir).
  """
  try:
    if zipfile.is_zipfile(path):
      with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    elif h5py.is_hdf5(path):
      with h5py.File(path, "r") as f:
        config = json.loads(f.attrs["model_config"])
    else:
      return []
  except (OSError, KeyError, ValueError):
    return []
  names = set()

  def walk(node):
    if isinstance(node, dict):
      inner = node.get("config")
      if "class_name" in node and isinstance(inner, dict) and "trainable" in inner:
        name = node.get("registered_name") or node["class_name"]
        if (name not in known and node["class_name"] not in known and
            not hasattr(keras.layers, node["class_name"]) and
            node["class_name"] not in ("Functional", "Sequential", "Model") and
            keras.saving.get_registered_object(name) is None):
          names.add(node["class_name"])
      for value in node.values():
        walk(value)
    elif isinstance(node, list):
      for value in node:
        walk(value)

  walk(config)
  return sorted(names)


def is_package_model(model) -> bool:
  """True for a model built by this package (tokens + state inputs)."""
  names = [t.name.split(":")[0] for t in getattr(model, "inputs", []) or []]
  return len(names) >= 3 and names[0] == "tokens" and names[1] == "h0"


def _main_path(api, model) -> list:
  """The layers from input to output, refusing branches."""
  layers = [l for l in model.layers if not isinstance(l, api.layers.InputLayer)]
  if len(getattr(model, "inputs", []) or []) > 1 or len(model.outputs) > 1:
    raise UserError(f"the model has {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
                    f"supported: one token input and one output ({SUPPORTED})")
  return layers


def _describe(layer) -> str:
  """``Class 'name'``, with a wrapper's inner class: ``Bidirectional(LSTM) 'bi'``."""
  # tf_keras wrappers keep the inner layer in .layer; Keras 3's Bidirectional
  # keeps it in .forward_layer.
  inner = getattr(layer, "layer", None) or getattr(layer, "forward_layer", None)
  return f"{type(layer).__name__}" + (f"({type(inner).__name__})" if inner is not None else "") + \
      f" {layer.name!r}"


def _output_layer(model):
  """The layer call that produces the model's output: ``(layer, node)``."""
  history = getattr(model.outputs[0], "_keras_history", None)
  if history is None:
    return None, None
  layer, node_index = history[0], history[1]
  return layer, layer._inbound_nodes[node_index]  # pylint: disable=protected-access


def _is_dense(api, layer) -> bool:
  dense = layer.layer if isinstance(layer, api.layers.TimeDistributed) else layer
  return type(dense) is api.layers.Dense


def _activation_name(api, activation) -> str:
  """``'linear'``, ``'softmax'``, ... of an activation function (either Keras)."""
  name = api.activations.serialize(activation)
  return name if isinstance(name, str) else name.get("config", name)


def _check_embedding(api, embedding, found: str) -> None:
  """Refuses embedding options the package's model does not reproduce."""
  problems = []
  if getattr(embedding, "mask_zero", False):
    problems.append("mask_zero=True (the package's model does not mask token 0)")
  reversible = getattr(api.layers, "ReversibleEmbedding", None)  # Keras 3 only.
  if reversible is not None and isinstance(embedding, reversible):
    if not embedding.tie_weights:
      problems.append("tie_weights=False (supported: tie_weights=True)")
    if embedding.logit_soft_cap is not None:
      problems.append(f"logit_soft_cap={embedding.logit_soft_cap} (supported: None)")
  if problems:
    raise UserError(f"embedding {embedding.name!r} ({_describe(embedding)}) has "
                    f"{', '.join(problems)}. Found: {found}")


def analyse(model) -> dict:
  """The structure of a user model: embedding, LSTMs, output, or a clear error.

  Args:
    model: a ``tf_keras`` or Keras 3 model.
  """
  api = keras_of(model)
  layers = _main_path(api, model)
  found = ", ".join(_describe(l) for l in layers)
  embedding = layers[0] if layers else None
  if not isinstance(embedding, api.layers.Embedding):
    raise UserError(f"expected the first layer to be an Embedding; found: {found}. "
                    f"Supported: {SUPPORTED}")
  _check_embedding(api, embedding, found)
  for layer in layers:
    if getattr(layer, "quantization_mode", None):  # Keras 3 layers quantized in place.
      raise UserError(f"layer {layer.name!r} ({_describe(layer)}) is quantized "
                      f"({layer.quantization_mode}); supported: float layers. Found: {found}")
  out_layer, out_node = _output_layer(model)
  tied = out_layer is not None and not _is_dense(api, out_layer) and (
      out_layer is embedding or any(w is embedding.embeddings for w in out_layer.weights))
  dropout_types = (api.layers.Dropout, api.layers.SpatialDropout1D)
  batch_size = model.inputs[0].shape[0] if getattr(model, "inputs", None) else None
  lstms, dropouts, output = [], [], None
  for layer in layers[1:]:
    if tied and layer is out_layer:
      continue
    if isinstance(layer, dropout_types):
      dropouts.append(float(layer.rate))
      continue
    if isinstance(layer, api.layers.LSTM) and output is None:
      _check_lstm(api, layer, found, batch_size)
      lstms.append(layer)
      continue
    dense = layer.layer if isinstance(layer, api.layers.TimeDistributed) else layer
    if type(dense) is api.layers.Dense and output is None and lstms and not tied:
      output = (layer, dense)
      continue
    raise UserError(f"layer {layer.name!r} ({_describe(layer)}) is not supported here; "
                    f"found: {found}. Supported: {SUPPORTED}")
  if not lstms or (output is None and not tied):
    raise UserError(f"found: {found}; supported: {SUPPORTED}")
  parts = {"embedding": embedding, "lstms": lstms, "dropout": max(dropouts, default=0.0)}
  if tied:
    return {**parts, **_tied_output(api, model, out_layer, out_node, embedding, lstms[-1])}
  dense = output[1]
  activation = _activation_name(api, dense.activation)
  if activation not in ("linear", "softmax"):
    raise UserError(f"output layer {dense.name!r} has activation {activation!r}; supported: "
                    "linear (logits) or softmax")
  if dense.units != embedding.input_dim:
    raise UserError(f"output layer {dense.name!r} has {dense.units} units but the embedding has "
                    f"{embedding.input_dim} words; a language model predicts its own vocabulary")
  weights = dense.get_weights()
  bias = weights[1] if len(weights) > 1 else np.zeros(dense.units, np.float32)
  return {**parts, "tied": False, "kernel": weights[0], "bias": bias, "activation": activation}


def _tied_output(api, model, layer, node, embedding, last_lstm) -> dict:
  """Checks that a tied output computes ``h E^T + b`` (or its softmax); its bias."""
  name = f"tied output layer {layer.name!r} ({_describe(layer)})"
  vocab_size, size = embedding.input_dim, embedding.output_dim
  if last_lstm.units != size:
    raise UserError(f"{name} shares the embedding's [{vocab_size}, {size}] matrix but the last "
                    f"LSTM {last_lstm.name!r} has {last_lstm.units} units; a tied softmax needs "
                    "the last LSTM's units == the embedding size")
  matrix = np.asarray(embedding.embeddings)
  ids = np.arange(vocab_size, dtype=np.int32)[None, :]
  if not np.allclose(np.asarray(embedding(ids)), matrix[None], atol=1e-6):
    raise UserError(f"embedding {embedding.name!r} ({_describe(embedding)}) does not return the "
                    "rows of its matrix for token ids; supported: a plain lookup")
  inputs = node.input_tensors
  # One tensor, not a list of one: Keras 3 warns when the call's structure
  # differs from the inputs'.
  inputs = inputs[0] if isinstance(inputs, (list, tuple)) and len(inputs) == 1 else inputs
  try:
    head = api.Model(inputs, model.outputs[0])
  except (ValueError, TypeError) as e:
    raise UserError(f"{name}: cannot isolate it from the model ({str(e).splitlines()[0]}); "
                    f"supported: {SUPPORTED}") from None
  features = np.random.default_rng(0).normal(0, 0.5, (2, 3, size)).astype(np.float32)
  outputs = np.asarray(head(features), np.float64)
  at_zero = np.asarray(head(np.zeros((1, 1, size), np.float32)), np.float64)[0, 0]
  scores = features.astype(np.float64) @ matrix.T.astype(np.float64)
  if outputs.shape == scores.shape:
    if np.allclose(outputs, scores + at_zero, rtol=1e-5, atol=1e-5):
      return {"tied": True, "kernel": None, "bias": at_zero.astype(np.float32),
              "activation": "linear"}
    if np.all(at_zero > 0) and abs(at_zero.sum() - 1) < 1e-4:
      bias = np.log(at_zero)  # Softmax is shift-invariant: log p(0) is a valid bias.
      if np.allclose(outputs, tf.nn.softmax(scores + bias).numpy(), rtol=1e-4, atol=1e-6):
        return {"tied": True, "kernel": None, "bias": bias.astype(np.float32),
                "activation": "softmax"}
  raise UserError(f"{name} uses the embedding's matrix E but does not compute h E^T + b (or its "
                  f"softmax) from the last LSTM's output h; supported: {SUPPORTED}")


def _check_lstm(api, layer, found: str, batch_size: int | None) -> None:
  """Refuses LSTM options the package's LSTM does not reproduce.

  Args:
    batch_size: the model's static batch size (None: dynamic); a stateful
      LSTM needs one.
  """
  problems = []
  if not layer.return_sequences:
    problems.append("return_sequences=False")
  if layer.stateful and (batch_size or 0) > 1:
    problems.append("stateful=True with batch > 1")
  if layer.go_backwards:
    problems.append("go_backwards=True")
  activation = _activation_name(api, layer.activation)
  if activation != "tanh":
    problems.append(f"activation={activation!r}")
  recurrent_activation = _activation_name(api, layer.recurrent_activation)
  if recurrent_activation != "sigmoid":
    problems.append(f"recurrent_activation={recurrent_activation!r}")
  if problems:
    raise UserError(f"LSTM {layer.name!r} has {', '.join(problems)}; supported: "
                    "return_sequences=True, tanh/sigmoid, forward, not stateful across a batch "
                    f"> 1. Found: {found}")


def adapt_keras_model(user_model) -> keras.Model:
  """The package's model with the user model's weights (same outputs, as logits).

  Args:
    user_model: a ``tf_keras`` model or a Keras 3 (``import keras``) one, in
      memory (Keras 3 files: :func:`tflm_compress.models.keras3_import.load_keras3_model`).

  Returns:
    The package's (``tf_keras``) model: ``tokens`` ``[B, T]`` and states in,
    logits ``[B, T, V]`` and states out.

  Raises:
    UserError: the structure is not supported (the message says what was found).
  """
  parts = analyse(user_model)
  embedding, lstms = parts["embedding"], parts["lstms"]
  config = ModelConfig(vocab_size=embedding.input_dim, embedding_size=embedding.output_dim,
                       hidden_sizes=tuple(l.units for l in lstms), dropout=parts["dropout"],
                       tie_embeddings=parts["tied"])
  model = build_language_model(config)
  matrix = np.asarray(embedding.embeddings)
  if parts["tied"]:
    model.get_layer("embedding").set_weights([matrix, parts["bias"]])
  else:
    model.get_layer("embedding").set_weights([matrix])
    model.get_layer("softmax").set_weights([parts["kernel"], parts["bias"]])
  for i, lstm in enumerate(lstms):
    weights = [np.asarray(w) for w in lstm.get_weights()]
    if len(weights) == 2:  # use_bias=False
      weights.append(np.zeros(4 * lstm.units, np.float32))
    model.get_layer(lstm_name(i)).set_weights(weights)
  if not any(l.stateful for l in lstms):  # Running a stateful model would move its state.
    _check_reproduced(user_model, model, parts["activation"])
  return model


def _check_reproduced(user_model, model: keras.Model, activation: str) -> None:
  """Both models on one seeded token batch: the outputs must agree to 1e-4.

  Args:
    activation: the user model's output, ``'linear'`` (logits) or ``'softmax'``.

  Raises:
    UserError: they differ (a structure :func:`analyse` misread).
  """
  shape = tuple(user_model.inputs[0].shape)
  batch_size, num_steps = shape[0] or 1, (shape[1] if len(shape) > 1 else None) or 8
  vocab_size = model.get_layer("embedding").input_dim
  tokens = np.random.default_rng(0).integers(0, vocab_size, (batch_size, num_steps), np.int32)
  expected = np.asarray(user_model(tokens, training=False), np.float64)
  states = [np.zeros((batch_size, int(t.shape[-1])), np.float32) for t in model.inputs[1:]]
  logits = np.asarray(model([tokens] + states)[0], np.float64)
  actual = tf.nn.softmax(logits).numpy() if activation == "softmax" else logits
  difference = float(np.max(np.abs(actual - expected))) if actual.shape == expected.shape else None
  if difference is None or not np.allclose(actual, expected, rtol=1e-4, atol=1e-4):
    what = (f"output shape {list(expected.shape)} for tokens {list(tokens.shape)}"
            if difference is None else f"max |difference| {difference:.3g}")
    raise UserError(f"the package's model does not reproduce the model's output ({what} on a "
                    f"seeded token batch); supported: {SUPPORTED}")
