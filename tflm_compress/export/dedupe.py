"""One copy of each distinct per-channel zero-point vector in a ``.tflite``.

A per-channel quantized weight stores, in its tensor's ``QuantizationParameters``,
one float32 scale and one **int64** zero point per output channel, and LiteRT
refuses a tensor whose zero-point count differs from its scale count. For the
symmetric int4/int8 weights ai-edge-quantizer writes, every zero point is 0:
a 10,000-word softmax or embedding factor carries 80 kB of zeros, 12% of a
low-rank r=32 PTB model at 4 bits. A FlatBuffer may point any number of tables
at one vector, and the interpreter copies the values out when it loads the
model, so :func:`share_zero_points` stores each distinct zero-point vector once
and points every tensor that has it there. Nothing else changes: the same
tensors, buffers and ops, the same outputs bit for bit.
"""

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.tools import flatbuffer_utils

# Vectors shorter than this are left inline: sharing saves less than it costs to find.
_MIN_SHARED = 2


class _SharedZeroPoints(schema.QuantizationParametersT):
  """``QuantizationParametersT`` that packs its zero points through ``cache``."""

  def __init__(self, source: schema.QuantizationParametersT, cache: dict):
    super().__init__()
    self.__dict__.update(vars(source))
    self._cache = cache

  def Pack(self, builder):  # pylint: disable=invalid-name  (the generated API's name)
    def floats(values):
      return None if values is None else builder.CreateNumpyVector(
          np.asarray(values, np.float32))

    minimum, maximum, scale = floats(self.min), floats(self.max), floats(self.scale)
    zero_point = None
    if self.zeroPoint is not None:
      values = np.asarray(self.zeroPoint, np.int64)
      key = values.tobytes()
      zero_point = self._cache.get(key)
      if zero_point is None:
        zero_point = builder.CreateNumpyVector(values)
        if len(values) >= _MIN_SHARED:
          self._cache[key] = zero_point
    details = self.details.Pack(builder) if self.details is not None else None
    schema.QuantizationParametersStart(builder)
    if minimum is not None:
      schema.QuantizationParametersAddMin(builder, minimum)
    if maximum is not None:
      schema.QuantizationParametersAddMax(builder, maximum)
    if scale is not None:
      schema.QuantizationParametersAddScale(builder, scale)
    if zero_point is not None:
      schema.QuantizationParametersAddZeroPoint(builder, zero_point)
    schema.QuantizationParametersAddDetailsType(builder, self.detailsType)
    if details is not None:
      schema.QuantizationParametersAddDetails(builder, details)
    schema.QuantizationParametersAddQuantizedDimension(builder, self.quantizedDimension)
    return schema.QuantizationParametersEnd(builder)


def share_zero_points(model_bytes: bytes) -> bytes:
  """``model_bytes`` with each distinct zero-point vector stored once (see module doc).

  Returns ``model_bytes`` itself when no two tensors have the same zero points.
  """
  model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
  seen, repeated, cache = set(), False, {}
  for subgraph in model.subgraphs:
    for tensor in subgraph.tensors:
      quantization = tensor.quantization
      if quantization is None or quantization.zeroPoint is None:
        continue
      if len(quantization.zeroPoint) >= _MIN_SHARED:
        key = np.asarray(quantization.zeroPoint, np.int64).tobytes()
        repeated |= key in seen
        seen.add(key)
      tensor.quantization = _SharedZeroPoints(quantization, cache)
  if not repeated:
    return model_bytes
  return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


__all__ = ["share_zero_points"]
