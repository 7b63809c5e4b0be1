"""What pruning, QAT and clustering share: our layers plugged into TFMOT.

TF Model Optimization wraps layers it knows (``Embedding``, ``Dense``) from its
registries; for custom layers it asks the layer itself, through interfaces a
layer implements. The package's TFMOT-facing subclasses live in
:mod:`tflm_compress.layers.pruning`, :mod:`~tflm_compress.layers.clustering`
and :mod:`~tflm_compress.layers.quantization`; each method's ``strip`` maps
them back to the package classes with :func:`to_package_layers`, so a
stripped model holds nothing but package layers.

Also here: which tensors each method targets (:func:`target_tensors`).
"""

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tflm_compress.layers.lstm import LSTM
from tflm_compress.layers.tied_embedding import TiedEmbedding
from tflm_compress.names import GROUPS, layer_kind  # noqa: F401  (GROUPS: the tensor groups)


def as_class(layer: keras.layers.Layer, cls: type) -> keras.layers.Layer:
  """A new, unbuilt ``cls`` with ``layer``'s config (same name and args)."""
  return cls.from_config(layer.get_config())


def targeted_copy(layer: keras.layers.Layer, lstm_class: type,
                  tied_class: type) -> keras.layers.Layer | None:
  """A fresh, unbuilt copy of a layer the TFMOT methods target, or None.

  Keras ``Embedding`` and ``Dense`` (the softmax) are copied as they are (TFMOT's
  registries know them); a package ``LSTM`` becomes ``lstm_class`` and a
  ``TiedEmbedding`` ``tied_class`` (the TFMOT-facing subclasses). Other layers,
  including other methods' subclasses, are not targeted.
  """
  kind = layer_kind(layer)
  if kind == "embedding" and type(layer) is keras.layers.Embedding:
    return as_class(layer, keras.layers.Embedding)
  if kind == "embedding" and type(layer) is TiedEmbedding:
    return as_class(layer, tied_class)
  if kind == "lstm" and type(layer) is LSTM:
    return as_class(layer, lstm_class)
  if kind == "softmax" and type(layer) is keras.layers.Dense:
    return as_class(layer, keras.layers.Dense)
  return None


def unwrap(layer: keras.layers.Layer) -> keras.layers.Layer:
  """The innermost layer of TFMOT (or any Keras) wrappers."""
  while isinstance(layer, keras.layers.Wrapper):
    layer = layer.layer
  return layer


def _package_class(layer: keras.layers.Layer) -> type:
  """The package class a TFMOT-facing subclass stands in for (its ``package_class``,
  declared on the subclass itself), else the layer's own class."""
  return type(layer).__dict__.get("package_class", type(layer))


def to_package_layers(model: keras.Model) -> keras.Model:
  """``model`` with this module's subclasses replaced by the package classes.

  Weights are copied exactly; other layers are copied as they are. The
  result converts and saves like any model of the package.
  """
  if not any(_package_class(l) is not type(l) for l in model.layers):
    return model

  def clone_function(layer):
    return _package_class(layer).from_config(layer.get_config())

  clone = keras.models.clone_model(model, clone_function=clone_function)
  for new in clone.layers:
    new.set_weights(model.get_layer(new.name).get_weights())
  return clone


def call_count(layer: keras.layers.Layer) -> int:
  """How many times the model calls ``layer`` per step (2 for a tied embedding)."""
  return max(1, len(layer._inbound_nodes))  # pylint: disable=protected-access


def targeted_weights(layer: keras.layers.Layer) -> dict[str, object]:
  """The weights compression targets in a (possibly wrapped) package layer.

  ``{short name: variable}``: ``embeddings`` of an embedding (tied or not),
  ``kernel`` and ``recurrent_kernel`` of an LSTM, ``kernel`` of a Dense
  softmax; empty for other layers (biases are never targeted).
  """
  inner = unwrap(layer)
  kind = layer_kind(inner)
  if kind == "embedding" and isinstance(inner, (keras.layers.Embedding, TiedEmbedding)):
    return {"embeddings": inner.embeddings}
  if kind == "lstm" and isinstance(inner, LSTM):
    # Subclasses of other methods may store a kernel factorized (no attribute).
    return {name: getattr(inner, name) for name in ("kernel", "recurrent_kernel")
            if getattr(inner, name, None) is not None}
  if kind == "softmax" and isinstance(inner, keras.layers.Dense):
    return {"kernel": inner.kernel}
  return {}


def target_tensors(model: keras.Model) -> dict[str, np.ndarray]:
  """Every targeted weight as ``{'<layer>/<weight>': array}`` (``lstm_0/kernel``...).

  For a stripped model, or one under pruning wrappers. TFMOT's clustering and
  QAT wrappers replace the layer's weight attributes by graph tensors once
  called; strip the model first.
  """
  out = {}
  for layer in model.layers:
    inner = unwrap(layer)
    for short, weight in targeted_weights(layer).items():
      if not isinstance(weight, tf.Variable) and not hasattr(weight, "numpy"):
        raise ValueError(f"{inner.name}/{short} is a graph tensor of a TFMOT wrapper; "
                         "strip the model before reading its weights")
      out[f"{inner.name}/{short}"] = np.asarray(weight.numpy())
  return out


def group_of(tensor_name: str) -> str:
  """``embedding`` / ``lstm`` / ``softmax`` for a :func:`target_tensors` key."""
  layer = tensor_name.split("/")[0]
  return "lstm" if layer.startswith("lstm_") else layer
