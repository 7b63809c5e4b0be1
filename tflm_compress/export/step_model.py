"""The streaming one-token step graph of a language model.

The step function takes one token id and the LSTM states and returns the
next-word logits and the new states, all with static batch 1. It calls the
trained Keras model itself on a ``[1, 1]`` token tensor: the package's LSTM
unrolls a static length-1 sequence into plain ops, so the graph lowers to
GATHER / FULLY_CONNECTED / elementwise builtins, for every layer class that
implements the same contract (compressed layers included).

Signature (``serving_default``): inputs ``token`` int32 ``[1]``, then ``h{i}``,
``c{i}`` float32 ``[1, H_i]`` per LSTM layer; outputs ``logits`` ``[1, V]`` and
``h{i}_out``, ``c{i}_out``.
"""

import contextlib

import tensorflow as tf
import tf_keras as keras
from tensorflow_model_optimization.python.core.quantization.keras import quantize_wrapper

from tflm_compress.errors import UserError
from tflm_compress.layers import LSTM

SIGNATURE_KEY = "serving_default"
TOKEN_INPUT = "token"
LOGITS_OUTPUT = "logits"

# Layer classes that are not the package's, which the step graph lowers: Keras's
# own and TF Model Optimization's QAT wrapper (a QAT model keeps it at export).
# The package's layers declare their lowering themselves (``tflite_lowering``).
_FOREIGN_LOWERINGS: dict[type, str] = {
    keras.layers.InputLayer: "input",
    keras.layers.Embedding: "GATHER",
    keras.layers.Dropout: "identity at inference",
    keras.layers.Dense: "FULLY_CONNECTED",
    quantize_wrapper.QuantizeWrapperV2: "the wrapped layer's ops with QUANTIZE/DEQUANTIZE (int8 "
                                        "ranges)",
}


def tflite_lowering(layer_class: type) -> str | None:
  """How the step graph lowers ``layer_class``, or None if it cannot.

  A package layer says so in its own class body (``tflite_lowering``); the
  attribute is not inherited, since a subclass may compute something its
  parent's lowering does not cover (e.g. TFMOT's pruning-only subclasses).
  """
  return _FOREIGN_LOWERINGS.get(layer_class) or layer_class.__dict__.get("tflite_lowering")


def exportable_layer_classes() -> list[type]:
  """Every layer class registered with Keras (and Keras's own) that lowers, by name."""
  classes = set(_FOREIGN_LOWERINGS)
  classes.update(c for c in keras.utils.get_custom_objects().values()
                 if isinstance(c, type) and tflite_lowering(c))
  return sorted(classes, key=lambda c: c.__name__)


def check_exportable(model: keras.Model) -> None:
  """Raises a UserError naming the first layer the step graph cannot lower."""
  for layer in model.layers:
    if tflite_lowering(type(layer)) is None:
      supported = sorted({cls.__name__ for cls in exportable_layer_classes()})
      raise UserError(
          f"layer {layer.name!r} ({type(layer).__name__}) cannot be exported to the TFLite step "
          f"model; supported layers: {', '.join(supported)}")
  if len(model.inputs) < 3 or model.inputs[0].dtype != tf.int32:
    raise UserError(
        f"model {model.name!r} is not a tflm_compress language model: expected inputs "
        "[tokens int32, h0, c0, ...], got "
        f"{[(t.name, t.dtype.name) for t in model.inputs]}")


def state_layout(model: keras.Model) -> tuple[list[str], list[int]]:
  """State names (``h0, c0, h1, ...``) and sizes, in the model's input order."""
  sizes = [int(t.shape[-1]) for t in model.inputs[1:]]
  names = [f"{kind}{i}" for i in range(len(sizes) // 2) for kind in ("h", "c")]
  return names, sizes


def vocab_size_of(model: keras.Model) -> int:
  return int(model.outputs[0].shape[-1])


STEP_GATES = ("tanh", "logistic")


@contextlib.contextmanager
def _lstm_step_gates(model: keras.Model, gates: str):
  """Sets ``step_gates`` on every package LSTM of ``model`` while tracing."""
  if gates not in STEP_GATES:
    raise UserError(f"gates={gates!r}; use one of {STEP_GATES}")
  lstms = [m for m in model.submodules if isinstance(m, LSTM)]
  for layer in lstms:
    layer.step_gates = gates
  try:
    yield
  finally:
    for layer in lstms:
      del layer.step_gates  # Back to the class default.


def make_step_function(model: keras.Model, gates: str = "tanh"
                       ) -> tf.types.experimental.ConcreteFunction:
  """The step graph of ``model`` as a concrete function with stable names.

  ``gates``: how plain LSTM layers compute their gates (``LSTM.step_gates``):
  ``"tanh"`` (fewest ops, float exports) or ``"logistic"`` (int8).
  """
  check_exportable(model)
  names, sizes = state_layout(model)
  specs = [tf.TensorSpec([1], tf.int32, TOKEN_INPUT)]
  specs += [tf.TensorSpec([1, s], tf.float32, n) for n, s in zip(names, sizes)]

  @tf.function(input_signature=specs)
  def step(token, *states):
    outputs = model([tf.reshape(token, [1, 1])] + list(states), training=False)
    result = {LOGITS_OUTPUT: tf.reshape(outputs[0], [1, vocab_size_of(model)])}
    for name, state in zip(names, outputs[1:]):
      result[f"{name}_out"] = state
    return result

  with _lstm_step_gates(model, gates):
    return step.get_concrete_function()
