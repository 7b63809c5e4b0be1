"""Layers and quantize configs for TF Model Optimization's quantization-aware training.

TFMOT's 8-bit registry leaves ``Embedding`` and every recurrent cell out and
knows nothing of the package's :class:`~tflm_compress.layers.LSTM`; the
``QuantizeConfig``s here cover them (see :mod:`tflm_compress.methods.quantization`
for how QAT uses them). A QAT ``model.keras`` keeps TFMOT's
``QuantizeWrapperV2`` layers and quantizers: importing this module registers
TFMOT's quantization classes with Keras deserialization, so such a file loads
after ``import tflm_compress`` with no ``quantize_scope``.
"""

import tensorflow as tf
import tf_keras as keras
import tensorflow_model_optimization as tfmot

from tflm_compress.layers.lstm import LSTM, PACKAGE

quantizers = tfmot.quantization.keras.quantizers


def _weight_quantizer():
  """TFLite's int8 weights: symmetric, narrow range [-127, 127], per tensor."""
  return quantizers.LastValueQuantizer(num_bits=8, per_axis=False, symmetric=True,
                                       narrow_range=True)


def _activation_quantizer():
  """TFLite's int8 activations: asymmetric, moving-average range."""
  return quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False,
                                           narrow_range=False)


@keras.utils.register_keras_serializable(package=PACKAGE)
class QuantizableLSTM(LSTM):
  """An :class:`LSTM` whose stored activations TFMOT can fake-quantize.

  The same layer, weights and math; ``gate_preactivation`` (on ``z``, the
  four gates before their nonlinearities), ``cell_activation`` (on the new
  ``c``) and ``hidden_activation`` (on the new ``h``) are identity functions
  (``keras.activations.linear``) that a ``QuantizeConfig`` replaces with
  TFMOT's ``QuantizeAwareActivation`` (a linear activation is quantized after
  it is applied). Same args as :class:`LSTM`.
  """

  # The TFLite ops this layer lowers to in the step graph (export.check_exportable).
  tflite_lowering = "FULLY_CONNECTED + elementwise"
  package_class = LSTM

  def __init__(self, units: int, **kwargs):
    super().__init__(units, **kwargs)
    self.gate_preactivation = keras.activations.linear
    self.cell_activation = keras.activations.linear
    self.hidden_activation = keras.activations.linear

  def cell(self, z_x, h, c):
    z = self.gate_preactivation(z_x + self.recurrent_projection(h))
    i, f, g, o = tf.split(z, 4, axis=-1)
    c = self.cell_activation(tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g))
    h = self.hidden_activation(tf.sigmoid(o) * tf.tanh(c))
    return h, c



ACTIVATION_ATTRS = ("gate_preactivation", "cell_activation", "hidden_activation")


@keras.utils.register_keras_serializable(package=PACKAGE)
class LSTMQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
  """Fake quantization of an LSTM's kernels, and of a QuantizableLSTM's z, c, h.

  Both kernels get TFLite's int8 weight quantization (symmetric, per tensor);
  the activations a moving-average asymmetric range each.

  Args:
    quantize_gates: quantize ``z``, ``c`` and ``h`` (a ``QuantizableLSTM`` only).
  """

  def __init__(self, quantize_gates: bool = True):
    self.quantize_gates = bool(quantize_gates)

  def _activation_attrs(self, layer):
    return ACTIVATION_ATTRS if self.quantize_gates and isinstance(layer, QuantizableLSTM) else ()

  def get_weights_and_quantizers(self, layer):
    return [(layer.kernel, _weight_quantizer()), (layer.recurrent_kernel, _weight_quantizer())]

  def get_activations_and_quantizers(self, layer):
    return [(getattr(layer, a), _activation_quantizer()) for a in self._activation_attrs(layer)]

  def set_quantize_weights(self, layer, quantize_weights):
    layer.kernel, layer.recurrent_kernel = quantize_weights

  def set_quantize_activations(self, layer, quantize_activations):
    for attr, activation in zip(self._activation_attrs(layer), quantize_activations):
      setattr(layer, attr, activation)

  def get_output_quantizers(self, layer):
    return []  # Three outputs; h and c are quantized inside (hidden/cell_activation).

  def get_config(self):
    return {"quantize_gates": self.quantize_gates}


@keras.utils.register_keras_serializable(package=PACKAGE)
class EmbeddingQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
  """Fake quantization of an embedding table (``Embedding`` or ``TiedEmbedding``).

  The lookup output is a row of the quantized table, so it needs no range of
  its own. A tied embedding's logits (``features @ table^T + bias``) use the
  same quantized table; their int8 range comes from calibration at export.
  """

  def get_weights_and_quantizers(self, layer):
    return [(layer.embeddings, _weight_quantizer())]

  def get_activations_and_quantizers(self, layer):
    return []

  def set_quantize_weights(self, layer, quantize_weights):
    (layer.embeddings,) = quantize_weights

  def set_quantize_activations(self, layer, quantize_activations):
    pass

  def get_output_quantizers(self, layer):
    return []

  def get_config(self):
    return {}


def register_tfmot_objects() -> None:
  """Makes TFMOT's quantization classes known to Keras deserialization.

  A QAT model keeps TFMOT's ``QuantizeWrapperV2`` layers and their
  quantizers (their ranges are what the TFLite converter uses), so loading its
  ``model.keras`` needs them, as ``tfmot.quantization.keras.quantize_scope``
  would provide. Registering them once, globally, lets
  :func:`tflm_compress.models.load_model` read such a file with no scope.
  """
  scope = tfmot.quantization.keras.quantize_scope()
  objects = keras.utils.get_custom_objects()
  for mapping in scope.custom_objects:
    for name, obj in mapping.items():
      objects.setdefault(name, obj)


register_tfmot_objects()
