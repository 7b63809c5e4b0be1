"""Layers for TF Model Optimization's weight clustering.

TFMOT asks a custom layer for its clusterable weights through
``ClusterableLayer``; the thin subclasses here implement it for the package
:class:`~tflm_compress.layers.LSTM` and
:class:`~tflm_compress.layers.TiedEmbedding` (same weights, config and math).
They live only while clustering wrappers are on; ``package_class`` names the
class they are mapped back to when the wrappers come off.
"""

import tf_keras as keras
from tensorflow_model_optimization.python.core.clustering.keras import clusterable_layer

from tflm_compress.layers.lstm import LSTM, PACKAGE
from tflm_compress.layers.tied_embedding import TiedEmbedding


@keras.utils.register_keras_serializable(package=PACKAGE)
class ClusterableLSTM(LSTM, clusterable_layer.ClusterableLayer):
  """An :class:`LSTM` that TFMOT's ``cluster_weights`` can wrap.

  Clusters ``kernel`` and ``recurrent_kernel`` (each with its own centroids);
  the bias stays as is. Same args as :class:`LSTM`. The wrapper sets the
  attributes ``kernel`` / ``recurrent_kernel`` to the clustered tensors before
  each call, which :meth:`LSTM.input_projection` and
  :meth:`LSTM.recurrent_projection` read.
  """

  package_class = LSTM

  def get_clusterable_weights(self):
    return [("kernel", self.kernel), ("recurrent_kernel", self.recurrent_kernel)]


@keras.utils.register_keras_serializable(package=PACKAGE)
class ClusterableTiedEmbedding(TiedEmbedding, clusterable_layer.ClusterableLayer):
  """A :class:`TiedEmbedding` whose shared matrix can be clustered."""

  package_class = TiedEmbedding

  def get_clusterable_weights(self):
    return [("embeddings", self.embeddings)]
