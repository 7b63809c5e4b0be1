"""What pruning, QAT and clustering share: our layers plugged into TFMOT.

TF Model Optimization wraps layers it knows (``Embedding``, ``Dense``) from its
registries; for custom layers it asks the layer itself, through interfaces a
layer implements: ``PrunableLayer.get_prunable_weights`` (sparsity) and
``ClusterableLayer.get_clusterable_weights`` (clustering). Our
:class:`~tflm_compress.layers.LSTM` and
:class:`~tflm_compress.layers.TiedEmbedding` implement neither, so the thin
subclasses here do, with the same weights, config and math. They live only
while a method's wrappers are on (fine-tuning); each method's ``strip`` maps
them back to the package classes with :func:`to_package_layers`, so a
stripped model holds nothing but package layers.

Also here: which tensors each method targets (:func:`target_tensors`), and
the registration of TFMOT's own classes so a ``model.keras`` that still holds
TFMOT wrappers (a QAT model) loads with :func:`tflm_compress.models.load_model`.
"""

import numpy as np
import tensorflow as tf
import tf_keras as keras
from tensorflow_model_optimization.python.core.clustering.keras import clusterable_layer
from tensorflow_model_optimization.python.core.sparsity.keras import prunable_layer

from tflm_compress.layers.lstm import LSTM, PACKAGE
from tflm_compress.layers.tied_embedding import TiedEmbedding
from tflm_compress.methods.base import layer_kind

# Which weights of which layer class a method targets, by tensor group.
GROUPS = ("embedding", "lstm", "softmax")


@keras.utils.register_keras_serializable(package=PACKAGE)
class PrunableLSTM(LSTM, prunable_layer.PrunableLayer):
  """An :class:`LSTM` that TFMOT's ``prune_low_magnitude`` can wrap.

  Prunes ``kernel`` ``[input_dim, 4H]`` and ``recurrent_kernel`` ``[H, 4H]``
  (all four gates together); the bias stays dense. Same args as :class:`LSTM`.
  """

  def get_prunable_weights(self):
    return [self.kernel, self.recurrent_kernel]


@keras.utils.register_keras_serializable(package=PACKAGE)
class PrunableTiedEmbedding(TiedEmbedding, prunable_layer.PrunableLayer):
  """A :class:`TiedEmbedding` whose shared ``[V, E]`` matrix can be pruned.

  One mask serves the lookup and the softmax (the matrix is stored once).
  Same args as :class:`TiedEmbedding`.
  """

  def get_prunable_weights(self):
    return [self.embeddings]


@keras.utils.register_keras_serializable(package=PACKAGE)
class ClusterableLSTM(LSTM, clusterable_layer.ClusterableLayer):
  """An :class:`LSTM` that TFMOT's ``cluster_weights`` can wrap.

  Clusters ``kernel`` and ``recurrent_kernel`` (each with its own centroids);
  the bias stays as is. Same args as :class:`LSTM`. The wrapper sets the
  attributes ``kernel`` / ``recurrent_kernel`` to the clustered tensors before
  each call, which :meth:`LSTM.input_projection` and
  :meth:`LSTM.recurrent_projection` read.
  """

  def get_clusterable_weights(self):
    return [("kernel", self.kernel), ("recurrent_kernel", self.recurrent_kernel)]


@keras.utils.register_keras_serializable(package=PACKAGE)
class ClusterableTiedEmbedding(TiedEmbedding, clusterable_layer.ClusterableLayer):
  """A :class:`TiedEmbedding` whose shared matrix can be clustered."""

  def get_clusterable_weights(self):
    return [("embeddings", self.embeddings)]


# Subclass -> the package class it stands in for.
_PACKAGE_CLASS: dict[type, type] = {
    PrunableLSTM: LSTM,
    PrunableTiedEmbedding: TiedEmbedding,
    ClusterableLSTM: LSTM,
    ClusterableTiedEmbedding: TiedEmbedding,
}


def register_package_subclass(subclass: type, package_class: type) -> None:
  """Declares that :func:`to_package_layers` maps ``subclass`` to ``package_class``."""
  _PACKAGE_CLASS[subclass] = package_class


def as_class(layer: keras.layers.Layer, cls: type) -> keras.layers.Layer:
  """A new, unbuilt ``cls`` with ``layer``'s config (same name and args)."""
  return cls.from_config(layer.get_config())


def targeted_copy(layer: keras.layers.Layer, lstm_class: type,
                  tied_class: type) -> keras.layers.Layer | None:
  """A fresh, unbuilt copy of a layer the TFMOT methods target, or None.

  Keras ``Embedding`` and ``Dense`` (the softmax) are copied as they are (TFMOT's
  registries know them); a package ``LSTM`` becomes ``lstm_class`` and a
  ``TiedEmbedding`` ``tied_class`` (the subclasses above). Other layers,
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


def to_package_layers(model: keras.Model) -> keras.Model:
  """``model`` with this module's subclasses replaced by the package classes.

  Weights are copied exactly; other layers are copied as they are. The
  result converts and saves like any model of the package.
  """
  if not any(type(l) in _PACKAGE_CLASS for l in model.layers):
    return model

  def clone_function(layer):
    cls = _PACKAGE_CLASS.get(type(layer), layer.__class__)
    return cls.from_config(layer.get_config())

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


def register_tfmot_objects() -> None:
  """Makes TFMOT's quantization classes known to Keras deserialization.

  A QAT model keeps TFMOT's ``QuantizeWrapperV2`` layers and their
  quantizers (their ranges are what the TFLite converter uses), so loading its
  ``model.keras`` needs them, as ``tfmot.quantization.keras.quantize_scope``
  would provide. Registering them once, globally, lets
  :func:`tflm_compress.models.load_model` read such a file with no scope.
  """
  import tensorflow_model_optimization as tfmot  # pylint: disable=g-import-not-at-top

  scope = tfmot.quantization.keras.quantize_scope()
  objects = keras.utils.get_custom_objects()
  for mapping in scope.custom_objects:
    for name, obj in mapping.items():
      objects.setdefault(name, obj)
