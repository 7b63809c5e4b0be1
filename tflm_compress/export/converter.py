"""Conversion of the step graph to ``.tflite`` with builtin ops only.

Post-training quantization modes (``QUANTIZE_MODES``):

* ``none``: float32.
* ``dynamic``: int8 weights, float activations (dynamic-range quantization).
* ``float16``: float16 weights, dequantized to float32 at load.
* ``int8``: full-integer int8 weights and activations, calibrated on
  ``representative_steps`` steps of the training corpus with carried state;
  inputs and outputs stay float32 (int32 for the token), so apps need no
  scale/zero-point bookkeeping.

Below 8 bits (``SUB8BIT_MODES``: ``int4``, ``mixed``, ``auto``) the float32
model is quantized after conversion by ai-edge-quantizer (see ``sub8bit``);
``EXPORT_MODES`` is every mode ``export_step_model`` writes.
"""

from typing import Iterable

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tflm_compress.errors import UserError
from tflm_compress.export import inspect_tflite
from tflm_compress.export.step_model import TOKEN_INPUT, make_step_function, state_layout
from tflm_compress.export.modes import EXPORT_MODES, QUANTIZE_MODES, SUB8BIT_MODES


def representative_steps(model: keras.Model, token_ids: np.ndarray,
                         num_steps: int = 500) -> list[dict[str, np.ndarray]]:
  """Step-model inputs ``{token, h0, c0, ...}`` met while streaming ``token_ids``.

  The states are the model's own, carried from step to step, so calibration
  sees the activation ranges of real use.
  """
  token_ids = np.asarray(token_ids[:num_steps], dtype=np.int32)
  if len(token_ids) < 2:
    raise UserError("int8 calibration needs at least 2 tokens of representative text")
  names, sizes = state_layout(model)
  step_fn = make_step_function(model)
  states = [np.zeros((1, s), np.float32) for s in sizes]
  samples = []
  for token in token_ids:
    samples.append({TOKEN_INPUT: np.array([token], np.int32), **dict(zip(names, states))})
    result = step_fn(tf.constant([token]), *[tf.constant(s) for s in states])
    states = [result[f"{n}_out"].numpy() for n in names]
  return samples


def convert_step_model(model: keras.Model, quantize: str = "none",
                       calibration: Iterable[dict[str, np.ndarray]] | None = None) -> bytes:
  """Converts ``model``'s step graph to ``.tflite`` bytes (builtin ops only).

  Args:
    model: a language model of this package (or one mapped onto it).
    quantize: one of ``QUANTIZE_MODES``.
    calibration: for ``int8``, the step inputs to calibrate on (see
      :func:`representative_steps`).

  Raises:
    UserError: unknown mode, missing calibration data, a layer that cannot be
      lowered, or an op outside the TFLite builtins.
  """
  if quantize in SUB8BIT_MODES:
    raise UserError(f"--quantize={quantize} is written by export_step_model (ai-edge-quantizer "
                    f"after conversion); convert_step_model takes {QUANTIZE_MODES}")
  if quantize not in QUANTIZE_MODES:
    raise UserError(f"--quantize={quantize!r}; use one of {EXPORT_MODES}")
  if quantize == "int8" and calibration is None:
    raise UserError("--quantize=int8 needs representative data (the training corpus)")
  # Full-integer int8 keeps one LOGISTIC per sigmoid gate (each quantized on its
  # own [0, 1] range); the float modes take the fewer-op TANH gates.
  concrete = make_step_function(model, gates="logistic" if quantize == "int8" else "tanh")
  converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
  converter.allow_custom_ops = False
  if quantize != "none":
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
  if quantize == "float16":
    converter.target_spec.supported_types = [tf.float16]
  if quantize == "int8":
    samples = list(calibration)
    converter.representative_dataset = lambda: iter(samples)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
  try:
    model_bytes = converter.convert()
  except Exception as e:  # The converter raises ConverterError and others.
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise UserError(f"TFLite conversion of {model.name!r} (quantize={quantize}) failed: "
                    f"{first}") from None
  bad = inspect_tflite.non_builtin_ops(inspect_tflite.parse(model_bytes))
  if bad:
    raise UserError(f"converted model uses non-builtin ops {bad}; only TFLite builtins are allowed")
  return model_bytes
