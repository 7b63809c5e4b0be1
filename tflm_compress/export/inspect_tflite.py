"""Reading a ``.tflite`` flatbuffer: ops, quantization, bytes per tensor group."""

import collections

from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.tools import flatbuffer_utils

from tflm_compress.errors import UserError

_TYPE_NAMES = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
_BUILTIN_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def parse(model_bytes: bytes, source: str = "<bytes>"):
  """The flatbuffer as a ``ModelT``; a clear error if it is not a TFLite model."""
  if len(model_bytes) < 8 or model_bytes[4:8] != b"TFL3":
    raise UserError(f"{source} is not a TFLite model (no TFL3 identifier)")
  try:
    return flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
  except Exception as e:  # The flatbuffer library raises assorted errors.
    raise UserError(f"{source} is a corrupt or truncated TFLite model: {e}") from None


def op_names(model) -> list[str]:
  """Operator names of every subgraph, in execution order.

  Builtins by their schema name; custom ops (Flex included) as ``CUSTOM:<code>``.
  """
  names = []
  for subgraph in model.subgraphs:
    for op in subgraph.operators:
      code = model.operatorCodes[op.opcodeIndex]
      builtin = flatbuffer_utils.get_builtin_code_from_operator_code(code)
      if builtin == schema.BuiltinOperator.CUSTOM:
        custom = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
        names.append(f"CUSTOM:{custom}")
      else:
        names.append(_BUILTIN_NAMES.get(builtin, f"BUILTIN_{builtin}"))
  return names


def type_name(tensor_type: int) -> str:
  """The schema name of a tensor type (``FLOAT32``, ``INT8``, ``INT4``...)."""
  return _TYPE_NAMES.get(tensor_type, str(tensor_type))


def non_builtin_ops(model) -> list[str]:
  return sorted({n for n in op_names(model) if n.startswith("CUSTOM:") or n.startswith("Flex")})


def const_bytes(model, tensor) -> int:
  """Bytes of a constant tensor's buffer: inline, or stored after the flatbuffer at an
  offset (as ai-edge-quantizer writes large buffers); 0 for a non-constant."""
  buffer = model.buffers[tensor.buffer]
  if buffer is None:
    return 0
  if buffer.data is not None and len(buffer.data):
    return len(buffer.data)
  return int(buffer.size or 0) if (buffer.offset or 0) > 1 else 0


def tensor_group(name: str) -> str:
  """The Keras layer a converted tensor came from (``embedding``, ``lstm_0``...).

  Converted names look like ``lstm_lm/lstm_0/MatMul;...``; the second path
  component is the layer. Constants with no layer path go to ``other``.
  """
  first = name.split(";")[0]
  parts = first.split("/")
  return parts[1] if len(parts) > 2 else "other"


def bytes_by_group(model) -> dict[str, int]:
  """Bytes of constant tensors (weights) per layer, from the file itself."""
  groups = collections.Counter()
  for subgraph in model.subgraphs:
    for tensor in subgraph.tensors:
      size = const_bytes(model, tensor)
      if size:
        name = tensor.name.decode() if isinstance(tensor.name, bytes) else tensor.name
        groups[tensor_group(name)] += size
  return dict(sorted(groups.items()))


def quantization_report(model) -> dict[str, dict[str, int]]:
  """How each op computes: ``{op: {kind: count}}``.

  kind is ``int8`` (int8 activations), ``int8_weights`` (float activations,
  int8 constant weights: dynamic range), ``int4_weights`` / ``int2_weights``
  (the same with 4- or 2-bit weights, or a DEQUANTIZE of them: weight-only),
  ``float16_weights`` (a DEQUANTIZE of fp16 constants) or ``float32``.
  """
  report = collections.defaultdict(collections.Counter)
  names = op_names(model)
  index = 0
  for subgraph in model.subgraphs:
    for op in subgraph.operators:
      name = names[index]
      index += 1
      inputs = [subgraph.tensors[i] for i in op.inputs if i >= 0]
      consts = [t for t in inputs if const_bytes(model, t)]
      acts = [t for t in inputs if not const_bytes(model, t)]
      act_types = {t.type for t in acts}
      const_types = {t.type for t in consts}
      if act_types & {schema.TensorType.INT8, schema.TensorType.INT16} and name != "QUANTIZE":
        kind = "int8"
      elif schema.TensorType.INT8 in const_types:
        kind = "int8_weights"
      elif schema.TensorType.INT4 in const_types:
        kind = "int4_weights"
      elif schema.TensorType.INT2 in const_types:
        kind = "int2_weights"
      elif schema.TensorType.FLOAT16 in const_types:
        kind = "float16_weights"
      else:
        kind = "float32"
      report[name][kind] += 1
  return {k: dict(v) for k, v in sorted(report.items())}


def weight_types(model) -> list[dict]:
  """The constant weight of every op that has one (input 1 of FULLY_CONNECTED,
  EMBEDDING_LOOKUP, BATCH_MATMUL; input 0 of GATHER and DEQUANTIZE), in graph
  order: ``{op, tensor, group, type, shape, per_channel, blockwise}``."""
  weight_input = {"FULLY_CONNECTED": 1, "EMBEDDING_LOOKUP": 1, "BATCH_MATMUL": 1,
                  "GATHER": 0, "DEQUANTIZE": 0}
  rows = []
  names = op_names(model)
  index = 0
  for subgraph in model.subgraphs:
    for op in subgraph.operators:
      name = names[index]
      index += 1
      position = weight_input.get(name)
      if position is None or len(op.inputs) <= position or op.inputs[position] < 0:
        continue
      tensor = subgraph.tensors[op.inputs[position]]
      if not const_bytes(model, tensor):
        continue
      quant = tensor.quantization
      scales = 0 if quant is None or quant.scale is None else len(quant.scale)
      blockwise = (quant is not None
                   and quant.detailsType == schema.QuantizationDetails.BlockwiseQuantization)
      tensor_name = tensor.name.decode() if isinstance(tensor.name, bytes) else tensor.name
      rows.append({"op": name, "tensor": tensor_name, "group": tensor_group(tensor_name),
                   "type": type_name(tensor.type), "shape": [int(s) for s in tensor.shape],
                   "per_channel": scales > 1, "blockwise": bool(blockwise)})
  return rows


def weight_dtypes(model) -> dict[str, int]:
  """Bytes of constant tensors by dtype name."""
  out = collections.Counter()
  for subgraph in model.subgraphs:
    for tensor in subgraph.tensors:
      size = const_bytes(model, tensor)
      if size:
        out[type_name(tensor.type)] += size
  return dict(out)


def summarize(model_bytes: bytes, source: str = "<bytes>") -> dict:
  """Size accounting and op list of a ``.tflite`` (JSON-ready)."""
  model = parse(model_bytes, source)
  names = op_names(model)
  return {
      "tflite_bytes": len(model_bytes),
      "weight_bytes_by_group": bytes_by_group(model),
      "weight_bytes_by_dtype": weight_dtypes(model),
      "ops": dict(sorted(collections.Counter(names).items())),
      "non_builtin_ops": non_builtin_ops(model),
      "quantization": quantization_report(model),
      "num_subgraphs": len(model.subgraphs),
  }


