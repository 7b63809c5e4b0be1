"""What the zeros of a pruned model are worth on disk: gzip and TFLite's sparse encoding.

A pruned model is as big as a dense one in a plain ``.tflite``. These convert
its step model in each flavour (dense and ``Optimize.EXPERIMENTAL_SPARSITY``,
float, dynamic-range and full-integer int8) and describe the files: bytes,
gzip bytes, how many tensors are stored sparse, and whether LiteRT loads it.
"""

import gzip
from typing import Callable

import tensorflow as tf
import tf_keras as keras

from tflm_compress.errors import UserError
from tflm_compress.export import inspect_tflite
from tflm_compress.export.converter import convert_step_model
from tflm_compress.export.runtime import TFLiteStepModel
from tflm_compress.export.step_model import make_step_function


def _gzip_size(data: bytes) -> int:
  return len(gzip.compress(data, compresslevel=9, mtime=0))


def _convert_sparse(model: keras.Model, int8: bool, calibration=None) -> bytes:
  """Step model with TFLite's sparse tensor encoding (builtin ops only)."""
  converter = tf.lite.TFLiteConverter.from_concrete_functions([make_step_function(model)], model)
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
  converter.allow_custom_ops = False
  converter.optimizations = ([tf.lite.Optimize.DEFAULT] if int8 else []) + [
      tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
  if calibration is not None:
    samples = list(calibration)
    converter.representative_dataset = lambda: iter(samples)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
  model_bytes = converter.convert()
  bad = inspect_tflite.non_builtin_ops(inspect_tflite.parse(model_bytes))
  if bad:
    raise UserError(f"sparse conversion used non-builtin ops {bad}")
  return model_bytes


def describe_tflite(model_bytes: bytes) -> dict:
  """``tflite_bytes``, ``gzip_bytes``, ``sparse_tensors`` and ``loads_in_litert`` of a file."""
  parsed = inspect_tflite.parse(model_bytes)
  sparse = sum(1 for g in parsed.subgraphs for t in g.tensors if t.sparsity is not None)
  try:
    TFLiteStepModel(model_bytes)
    loads = True
  except UserError:
    loads = False
  return {"tflite_bytes": len(model_bytes), "gzip_bytes": _gzip_size(model_bytes),
          "sparse_tensors": sparse, "loads_in_litert": loads}


def sparsity_flavours(model: keras.Model, calibration=None) -> dict[str, Callable[[], bytes]]:
  """The step model's ``.tflite`` flavours, dense and sparse-encoded: name -> converter.

  ``float``, ``float_sparse`` (``EXPERIMENTAL_SPARSITY``), ``dynamic``,
  ``dynamic_sparse``, and with ``calibration`` (step inputs, see
  ``export.representative_steps``) ``int8`` and ``int8_sparse``.
  """
  flavours = {
      "float": lambda: convert_step_model(model, "none"),
      "float_sparse": lambda: _convert_sparse(model, int8=False),
      "dynamic": lambda: convert_step_model(model, "dynamic"),
      "dynamic_sparse": lambda: _convert_sparse(model, int8=True),
  }
  if calibration is not None:
    samples = list(calibration)
    flavours["int8"] = lambda: convert_step_model(model, "int8", samples)
    flavours["int8_sparse"] = lambda: _convert_sparse(model, int8=True, calibration=samples)
  return flavours


def sparsity_sizes(model: keras.Model, calibration=None) -> dict[str, dict]:
  """What the zeros of ``model`` are worth on disk, per ``.tflite`` flavour.

  Args:
    model: a package model (stripped).
    calibration: step inputs for full-int8 variants (see
      ``export.representative_steps``); without it only float and
      dynamic-range int8 are measured.

  Returns:
    ``{variant: {'tflite_bytes', 'gzip_bytes', 'sparse_tensors',
    'loads_in_litert'}}`` for ``float`` (dense), ``float_sparse``
    (``EXPERIMENTAL_SPARSITY``), ``dynamic`` and ``dynamic_sparse``
    (``DEFAULT`` [+ sparsity]), and with ``calibration`` ``int8`` and
    ``int8_sparse``. ``sparse_tensors`` counts tensors stored in TFLite's
    sparse format (the converter encodes only FULLY_CONNECTED weights sparse
    enough to pay; GATHER tables stay dense); ``loads_in_litert`` says
    whether LiteRT with its default delegates accepts the file (XNNPACK
    refuses sparse hybrid FULLY_CONNECTED). A variant the converter refuses
    reads ``{'error': message}``.
  """
  return {name: convert_and_describe(convert)[1]
          for name, convert in sparsity_flavours(model, calibration).items()}


def convert_and_describe(convert: Callable[[], bytes]) -> tuple[bytes | None, dict]:
  """``(file, describe_tflite(file))``, or ``(None, {'error': first line})`` if the
  converter refuses."""
  try:
    model_bytes = convert()
  except Exception as e:  # pylint: disable=broad-except  (the converter raises many types)
    return None, {"error": (str(e).strip().splitlines() or [type(e).__name__])[0]}
  return model_bytes, describe_tflite(model_bytes)
