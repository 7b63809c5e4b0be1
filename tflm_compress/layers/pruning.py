"""Layers for TF Model Optimization's magnitude pruning.

TFMOT wraps layers it knows (``Embedding``, ``Dense``) from its registry; for
custom layers it asks the layer itself through ``PrunableLayer``. The package
:class:`~tflm_compress.layers.LSTM` and
:class:`~tflm_compress.layers.TiedEmbedding` do not implement it, so the thin
subclasses here do, with the same weights, config and math. They live only
while pruning wrappers are on (fine-tuning); ``package_class`` names the
class :func:`tflm_compress.methods.tfmot_support.to_package_layers` maps each
back to when the wrappers come off.
"""

import tensorflow as tf
import tf_keras as keras
from tensorflow_model_optimization.python.core.sparsity.keras import prunable_layer
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

from tflm_compress.layers.lstm import LSTM, PACKAGE
from tflm_compress.layers.tied_embedding import TiedEmbedding


@keras.utils.register_keras_serializable(package=PACKAGE)
class PrunableLSTM(LSTM, prunable_layer.PrunableLayer):
  """An :class:`LSTM` that TFMOT's ``prune_low_magnitude`` can wrap.

  Prunes ``kernel`` ``[input_dim, 4H]`` and ``recurrent_kernel`` ``[H, 4H]``
  (all four gates together); the bias stays dense. Same args as :class:`LSTM`.
  """

  package_class = LSTM

  def get_prunable_weights(self):
    return [self.kernel, self.recurrent_kernel]


@keras.utils.register_keras_serializable(package=PACKAGE)
class PrunableTiedEmbedding(TiedEmbedding, prunable_layer.PrunableLayer):
  """A :class:`TiedEmbedding` whose shared ``[V, E]`` matrix can be pruned.

  One mask serves the lookup and the softmax (the matrix is stored once).
  Same args as :class:`TiedEmbedding`.
  """

  package_class = TiedEmbedding

  def get_prunable_weights(self):
    return [self.embeddings]


class PruneLowMagnitude(pruning_wrapper.PruneLowMagnitude):
  """TFMOT's pruning wrapper, callable outside the strategy that built it.

  Every call of TFMOT's wrapper re-applies the mask to the weights
  (``weight_mask_op``), through a ``merge_call`` in the current replica
  context. The package's loop evaluates on one device under the *default*
  strategy when the eval batch does not split over the replicas (e.g.
  ``eval_batch_size=1`` with two GPUs); that path cannot assign mirrored
  variables. Such a call here enters the scope of the strategy the wrapper
  was built under (cross-replica context: a plain assign of every copy);
  calls inside ``strategy.run`` (training) or with no strategy at all take
  TFMOT's path unchanged.
  """

  def build(self, input_shape):
    self._built_under = tf.distribute.get_strategy() if tf.distribute.has_strategy() else None
    super().build(input_shape)

  def call(self, inputs, training=None, **kwargs):
    strategy = getattr(self, "_built_under", None)
    if strategy is not None and not tf.distribute.has_strategy():
      with strategy.scope():
        return super().call(inputs, training=training, **kwargs)
    return super().call(inputs, training=training, **kwargs)
