"""Quantization-aware training (QAT) with TF Model Optimization.

TFMOT's 8-bit registry quantizes ``Dense`` (our softmax) but leaves
``Embedding`` and every recurrent cell out, and knows nothing of our
:class:`~tflm_compress.layers.LSTM`. This module adds ``QuantizeConfig``s for
them (TFMOT's extension point, passed with ``quantize_annotate_layer``), so
the whole step graph trains with fake quantization:

* the embedding, plain or tied: the ``[V, E]`` table, 8-bit symmetric per
  tensor (as the int8 GATHER and, when tied, the logits FULLY_CONNECTED
  store it);
* each LSTM: ``kernel`` and ``recurrent_kernel``, 8-bit symmetric per tensor,
  and, with ``--qat_quantize_gates``, the activations the int8 step graph
  stores: the gate pre-activations ``z`` (all four gates share one range, as
  the SPLIT of an int8 tensor does), the cell state ``c`` and the output
  ``h`` at every time step (moving-average ranges). The layer is swapped for
  :class:`QuantizableLSTM`, the same LSTM with those three points exposed as
  identity activations for TFMOT to wrap;
* the softmax: TFMOT's default Dense config (kernel per tensor, logits range).

The model inputs (token ids, LSTM state) get no ``QuantizeLayer``
(:class:`LanguageModelQuantizeScheme`); the converter quantizes the state
inputs with calibrated ranges.

Export: ``quantize_apply`` wraps each layer in ``QuantizeWrapperV2`` (weights
and activations pass through ``FakeQuantWithMinMaxVars`` ops whose ranges
were learned). ``strip`` keeps those wrappers: the fake-quant ops *are* the
learned ranges, and the TFLite converter with ``Optimize.DEFAULT``
(``convert.py --quantize=int8``) turns them into the int8 scales and zero
points of the weights and activations they cover, calibrating the rest (the
few intermediate tensors of the gate arithmetic) on the representative
steps. ``--quantize=none`` gives a float model with the same
QUANTIZE/DEQUANTIZE pairs, which computes what the Keras QAT model computes.
The ``model.keras`` of a QAT run holds TFMOT's classes; importing
``tflm_compress`` registers them (:mod:`tflm_compress.layers.quantization`).
"""

import dataclasses

import tensorflow as tf
import tf_keras as keras
import tensorflow_model_optimization as tfmot
from tensorflow_model_optimization.python.core.quantization.keras import quantize_wrapper
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
    default_8bit_quantize_layout_transform, default_8bit_quantize_scheme)

from tflm_compress.errors import UserError
from tflm_compress.layers.lstm import LSTM
from tflm_compress.layers.quantization import (ACTIVATION_ATTRS, EmbeddingQuantizeConfig,
                                               LSTMQuantizeConfig, QuantizableLSTM)
from tflm_compress.layers.tied_embedding import TiedEmbedding
from tflm_compress.methods import tfmot_support
from tflm_compress.methods.base import CompressionContext, layer_kind

NAME = "qat"
# The public config class, ``tflm_compress.QAT``: ``Config`` with its fields' flag
# prefixes dropped (see :mod:`tflm_compress.api`).
API_NAME = "QAT"
FLAG_PREFIXES = ("qat_",)

FLAG_HELP = {
    "qat_quantize_gates": "QAT: also fake-quantize the LSTM gate pre-activations, cell state "
                          "and output at every step (as the int8 step graph stores them).",
}


@dataclasses.dataclass(frozen=True)
class Config:
  """What QAT fake-quantizes besides the weights (all per tensor, 8 bits).

  Per-channel weight ranges are not offered: the converter cannot lower them
  here. ``tf.matmul(x, kernel)`` becomes FULLY_CONNECTED with the kernel
  transposed to ``[4H, in]``, and a per-channel fake quant on the kernel's
  last axis fails with "'tfl.transpose' op has mismatched quantized axes"
  (TFMOT's own Dense config is per-tensor for the same reason).

  Attributes:
    qat_quantize_gates: fake-quantize the LSTM's internal activations too.
  """

  qat_quantize_gates: bool = True

  def __post_init__(self):
    if not isinstance(self.qat_quantize_gates, bool):
      raise UserError(f"--qat_quantize_gates={self.qat_quantize_gates!r}; use true or false")


class _NoInputQuantizeTransform(
    default_8bit_quantize_layout_transform.Default8BitQuantizeLayoutTransform):
  """TFMOT's default layout transform, minus ``QuantizeLayer``s on model inputs.

  ``quantize_apply`` puts a ``QuantizeLayer`` after every model input that
  feeds a quantized layer. On the int32 token ids that is a float fake-quant
  of integers (a type error). On the LSTM state inputs it is redundant (the
  state a QuantizableLSTM passes on is already fake-quantized at every step,
  and the converter quantizes the graph's float inputs itself) and harmful:
  TFMOT's ``QuantizeLayer.build`` does not mark the layer built, so a
  ``model.keras`` load builds it twice and fails. Inputs are left as they are.
  """

  def apply(self, model, layer_quantize_map):
    inputs = {l.name for l in model._input_layers}  # pylint: disable=protected-access
    kept = {k: v for k, v in layer_quantize_map.items() if k not in inputs}
    return super().apply(model, kept)


class LanguageModelQuantizeScheme(default_8bit_quantize_scheme.Default8BitQuantizeScheme):
  """TFMOT's default 8-bit scheme, with no ``QuantizeLayer`` on the model inputs."""

  def get_layout_transformer(self):
    return _NoInputQuantizeTransform()


def _scope():
  """TFMOT's classes for its own (de)serialization; ours are registered by name."""
  return tfmot.quantization.keras.quantize_scope()


def _annotated_copy(layer: keras.layers.Layer, config: Config):
  """A fresh copy of a layer QAT targets, annotated with its QuantizeConfig; else None."""
  annotate = tfmot.quantization.keras.quantize_annotate_layer
  kind = layer_kind(layer)
  if kind == "embedding" and type(layer) in (keras.layers.Embedding, TiedEmbedding):
    return annotate(tfmot_support.as_class(layer, type(layer)), EmbeddingQuantizeConfig())
  if kind == "lstm" and type(layer) is LSTM:
    cls = QuantizableLSTM if config.qat_quantize_gates else LSTM
    new = tfmot_support.as_class(layer, cls)
    return annotate(new, LSTMQuantizeConfig(config.qat_quantize_gates))
  if kind == "softmax" and type(layer) is keras.layers.Dense:
    return annotate(tfmot_support.as_class(layer, keras.layers.Dense))  # TFMOT's registry.
  return None


def compress(model: keras.Model, config: Config,
             context: CompressionContext | None = None) -> keras.Model:
  """The QAT model of ``model``: annotated layers wrapped by ``quantize_apply``."""
  del context
  if any(isinstance(l, quantize_wrapper.QuantizeWrapper) for l in model.layers):
    raise UserError("qat: the model is already quantization-aware (it holds QuantizeWrapper "
                    "layers); apply qat once")
  targets = {l.name for l in model.layers if _annotated_copy(l, config) is not None}
  if not targets:
    raise UserError("qat found no embedding, LSTM or softmax layer it can quantize (layers of "
                    "other methods are left to post-training quantization)")

  def clone_function(layer):
    annotated = _annotated_copy(layer, config) if layer.name in targets else None
    return annotated if annotated is not None else layer.__class__.from_config(layer.get_config())

  annotated = keras.models.clone_model(model, clone_function=clone_function)
  for new in annotated.layers:
    new.set_weights(model.get_layer(tfmot_support.unwrap(new).name).get_weights())
  with _scope():
    # No "quant_" prefix: wrappers keep the layer names (embedding, lstm_0...),
    # which tensor groups in the .tflite size report and layer_kind go by.
    quantized = tfmot.quantization.keras.quantize_apply(
        annotated, LanguageModelQuantizeScheme(), quantized_layer_name_prefix="")
  for layer in quantized.layers:
    if isinstance(layer, quantize_wrapper.QuantizeWrapperV2):
      _match_loaded_variables(layer)
      _init_weight_ranges(layer)
  return quantized


def _init_weight_ranges(wrapper: quantize_wrapper.QuantizeWrapperV2) -> None:
  """Sets each weight quantizer's range from the weight itself.

  TFMOT creates every range as [-6, 6] and a weight's ``LastValueQuantizer``
  sets it only in a training call; until then inference quantizes weights of
  magnitude ~0.1 on a 12/254 grid. A training-mode call of the quantizer on
  the weight is exactly what the first fine-tuning step would do. Activation
  ranges keep TFMOT's start and follow their moving averages (decay 0.999)
  during fine-tuning.
  """
  for weight, quantizer, quantizer_vars in wrapper._weight_vars:  # pylint: disable=protected-access
    quantizer(weight, True, weights=quantizer_vars)


def _short_name(weight) -> str:
  return weight.name.split("/")[-1].split(":")[0]


def _match_loaded_variables(wrapper: quantize_wrapper.QuantizeWrapperV2) -> None:
  """Makes ``wrapper`` own the variable list a ``model.keras`` load gives it.

  The ``.keras`` format stores each layer's own variables as a list and
  loading requires the same list. ``QuantizeWrapperV2.build`` lists as its
  own the wrapped layer's trainable weights *if that layer is already built*,
  then each quantized weight again. On load, deserializing the wrapped layer
  builds some layers (our LSTM) and not others (Keras' Embedding, Dense); after
  ``quantize_apply`` it always is, and the wrapper's first call has replaced
  the quantized weights' attributes by tensors (so the layer no longer lists
  them). Unfixed, saving a QAT model works and loading it fails ("expected 16
  variables, but received 14"). This rebuilds the list the load will make:
  the layer's weights in build order if deserializing it builds it, then the
  quantized ones.
  """
  inner = wrapper.layer
  quantized = [weight for weight, _, _ in wrapper._weight_vars]  # pylint: disable=protected-access
  # Deserialize the wrapped layer the way QuantizeWrapper.from_config does on load.
  with _scope():
    fresh = keras.layers.deserialize(wrapper.get_config()["layer"])
  prebuilt = []
  if fresh.built:
    by_name = {_short_name(w): w for w in list(inner.trainable_weights) + quantized}
    prebuilt = [by_name[_short_name(w)] for w in fresh.trainable_weights]
  wrapper._trainable_weights = prebuilt + quantized  # pylint: disable=protected-access


def strip(model: keras.Model, config: Config | None = None) -> keras.Model:
  """The QAT model itself: its fake-quant wrappers carry the ranges int8 export uses.

  Nothing is trained-only in a QAT model: ``QuantizeWrapperV2`` at inference
  applies the learned ranges (no updates), and the TFLite converter reads
  them (see the module docstring).
  """
  del config
  return model


def _range(quantizer_vars) -> list[float] | None:
  low, high = quantizer_vars["min_var"].numpy(), quantizer_vars["max_var"].numpy()
  return [float(low.min()), float(high.max())]


def report(model: keras.Model) -> dict:
  """The fake-quantized layers and their ranges (``[min, max]``, the int8 span).

  ``weight_ranges``: per quantized weight; ``activation_ranges``: the learned
  moving-average ranges of the LSTM's ``z`` / ``c`` / ``h`` and of the
  softmax logits.
  """
  out = {"quantized_layers": [], "weight_ranges": {}, "activation_ranges": {}}
  for layer in model.layers:
    if not isinstance(layer, quantize_wrapper.QuantizeWrapper):
      continue
    inner = tfmot_support.unwrap(layer)
    out["quantized_layers"].append(inner.name)
    for weight, _, quantizer_vars in layer._weight_vars:  # pylint: disable=protected-access
      out["weight_ranges"][f"{inner.name}/{_short_name(weight)}"] = _range(quantizer_vars)
    activations = layer._quantize_activations  # pylint: disable=protected-access
    names = (ACTIVATION_ATTRS if isinstance(inner, QuantizableLSTM)
             else [f"activation_{i}" for i in range(len(activations))])
    if isinstance(inner, keras.layers.Dense):
      names = ["logits"]
    for name, activation in zip(names, activations):
      quantizer_vars = getattr(activation, "_post_activation_vars", None)
      if quantizer_vars is not None:
        out["activation_ranges"][f"{inner.name}/{name}"] = _range(quantizer_vars)
  return out
