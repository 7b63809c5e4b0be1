"""Bring your own model: map a user's Keras LSTM language model onto the package's.

Recognised: ``Embedding -> LSTM (return_sequences=True) x N -> Dense`` (or
``TimeDistributed(Dense)``), with optional ``Dropout``/``SpatialDropout1D``
between them, built with ``Sequential`` or the functional API, untied, with a
linear or softmax output. The weights are carried over exactly
(``keras.layers.LSTM`` uses the same layout and gate order as
:class:`tflm_compress.layers.LSTM`), so the package's model gives the same
logits (for a softmax output: the same probabilities). Anything else gets a
:class:`UserError` saying what was found and what is supported.
"""

import numpy as np
import tf_keras as keras

from tflm_compress.errors import UserError
from tflm_compress.models.config import ModelConfig
from tflm_compress.models.lstm_lm import build_language_model, lstm_name

SUPPORTED = ("Embedding -> one or more LSTM(return_sequences=True) -> Dense or "
             "TimeDistributed(Dense), with optional Dropout between, Sequential or functional, "
             "untied")
_DROPOUT_TYPES = (keras.layers.Dropout, keras.layers.SpatialDropout1D)


def is_package_model(model: keras.Model) -> bool:
  """True for a model built by this package (tokens + state inputs)."""
  names = [t.name.split(":")[0] for t in getattr(model, "inputs", []) or []]
  return len(names) >= 3 and names[0] == "tokens" and names[1] == "h0"


def _main_path(model: keras.Model) -> list[keras.layers.Layer]:
  """The layers from input to output, refusing branches."""
  layers = [l for l in model.layers if not isinstance(l, keras.layers.InputLayer)]
  if len(getattr(model, "inputs", []) or []) > 1 or len(model.outputs) > 1:
    raise UserError(f"the model has {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
                    f"supported: one token input and one output ({SUPPORTED})")
  return layers


def _describe(layer) -> str:
  inner = getattr(layer, "layer", None)
  return f"{type(layer).__name__}" + (f"({type(inner).__name__})" if inner is not None else "") + \
      f" {layer.name!r}"


def analyse(model: keras.Model) -> dict:
  """The structure of a user model: embedding, LSTMs, output, or a clear error."""
  layers = _main_path(model)
  found = ", ".join(_describe(l) for l in layers)
  it = iter(layers)
  embedding = next(it, None)
  if not isinstance(embedding, keras.layers.Embedding):
    raise UserError(f"expected the first layer to be an Embedding; found: {found}. "
                    f"Supported: {SUPPORTED}")
  lstms, dropouts, output = [], [], None
  for layer in it:
    if isinstance(layer, _DROPOUT_TYPES):
      dropouts.append(float(layer.rate))
      continue
    if isinstance(layer, keras.layers.LSTM) and output is None:
      _check_lstm(layer, found)
      lstms.append(layer)
      continue
    dense = layer.layer if isinstance(layer, keras.layers.TimeDistributed) else layer
    if type(dense) is keras.layers.Dense and output is None and lstms:
      output = (layer, dense)
      continue
    raise UserError(f"layer {layer.name!r} ({_describe(layer)}) is not supported here; "
                    f"found: {found}. Supported: {SUPPORTED}")
  if not lstms or output is None:
    raise UserError(f"found: {found}; supported: {SUPPORTED}")
  dense = output[1]
  activation = keras.activations.serialize(dense.activation)
  activation = activation if isinstance(activation, str) else activation.get("config", activation)
  if activation not in ("linear", "softmax"):
    raise UserError(f"output layer {dense.name!r} has activation {activation!r}; supported: "
                    "linear (logits) or softmax")
  if dense.units != embedding.input_dim:
    raise UserError(f"output layer {dense.name!r} has {dense.units} units but the embedding has "
                    f"{embedding.input_dim} words; a language model predicts its own vocabulary")
  return {"embedding": embedding, "lstms": lstms, "dense": dense, "activation": activation,
          "dropout": max(dropouts, default=0.0)}


def _check_lstm(layer: keras.layers.LSTM, found: str) -> None:
  problems = []
  if not layer.return_sequences:
    problems.append("return_sequences=False")
  if layer.stateful and (layer.input_spec and layer.input_spec[0].shape and
                         (layer.input_spec[0].shape[0] or 0) > 1):
    problems.append("stateful=True with batch > 1")
  if layer.go_backwards:
    problems.append("go_backwards=True")
  if keras.activations.serialize(layer.activation) != "tanh":
    problems.append(f"activation={keras.activations.serialize(layer.activation)!r}")
  if keras.activations.serialize(layer.recurrent_activation) != "sigmoid":
    problems.append(f"recurrent_activation={keras.activations.serialize(layer.recurrent_activation)!r}")
  if problems:
    raise UserError(f"LSTM {layer.name!r} has {', '.join(problems)}; supported: "
                    "return_sequences=True, tanh/sigmoid, forward, not stateful across a batch "
                    f"> 1. Found: {found}")


def adapt_keras_model(user_model: keras.Model) -> keras.Model:
  """The package's model with the user model's weights (same outputs, as logits).

  Raises:
    UserError: the structure is not supported (the message says what was found).
  """
  parts = analyse(user_model)
  embedding, lstms, dense = parts["embedding"], parts["lstms"], parts["dense"]
  config = ModelConfig(vocab_size=embedding.input_dim, embedding_size=embedding.output_dim,
                       hidden_sizes=tuple(l.units for l in lstms), dropout=parts["dropout"])
  model = build_language_model(config)
  model.get_layer("embedding").set_weights(embedding.get_weights())
  for i, lstm in enumerate(lstms):
    weights = lstm.get_weights()
    if len(weights) == 2:  # use_bias=False
      weights.append(np.zeros(4 * lstm.units, np.float32))
    model.get_layer(lstm_name(i)).set_weights(weights)
  dense_weights = dense.get_weights()
  if len(dense_weights) == 1:
    dense_weights.append(np.zeros(dense.units, np.float32))
  model.get_layer("softmax").set_weights(dense_weights)
  return model
