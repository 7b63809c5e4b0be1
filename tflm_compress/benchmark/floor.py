"""The floor a step model's own arithmetic and weight bytes set, and a reference that meets it.

:func:`step_cost` counts, from the ``.tflite`` graph, what one step (one token)
must compute and read:

* ``FULLY_CONNECTED``, ``BATCH_MATMUL``, ``CONV_2D``, ``DEPTHWISE_CONV_2D``:
  2 FLOPs per multiply-accumulate, plus 1 per output element for a fused bias.
* Elementwise ops (``ADD``, ``MUL``, ``LOGISTIC``, ``TANH``, ``DEQUANTIZE``...):
  1 FLOP per output element.
* Data movement (``RESHAPE``, ``STRIDED_SLICE``, ``SPLIT``...): nothing; their
  constant inputs are shapes and indices, not weights.
* ``GATHER`` / ``EMBEDDING_LOOKUP`` of a constant table: 0 FLOPs, and the bytes
  of the rows gathered (one row per token), not of the table.
* Every other op's constant inputs are weight bytes read once per step.
* A ``DEQUANTIZE`` of a constant (float16 weights) runs once at init; the ops
  that read its output read float32, 4 bytes per weight.

Weight bytes are grouped by how the runtime computes with them:
``float32``, ``int8_weights`` (int8 weights, float activations: dynamic range),
``int4_weights`` / ``int2_weights`` (the same with packed 4- or 2-bit weights, as
ai-edge-quantizer writes them: half or a quarter of a byte each) and ``int8``
(int8 weights and activations).

:func:`plan_reference` / :func:`build_reference_model` make the floor: a
``.tflite`` with a single ``FULLY_CONNECTED`` ``[1, K] x [K, N]`` of the
model's main weight kind, streaming the same number of weight bytes per call
(``K * N * bytes_per_weight >= weight_bytes``, ``K`` a power of two near
``sqrt(K * N)``, at most 1024). Run with the same runtime and threads, its
latency is what streaming those bytes through the fastest kernel of that kind
costs; :func:`compare_to_floor` reports the model's latency as a ratio to it.
"""

import collections
import dataclasses
import math

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.tools import flatbuffer_utils

from tflm_compress.benchmark.schema import BenchmarkResult
from tflm_compress.errors import UserError
from tflm_compress.export import inspect_tflite

WEIGHT_KINDS = ("float32", "int8_weights", "int4_weights", "int2_weights", "int8")

_MATMUL_OPS = {"FULLY_CONNECTED", "BATCH_MATMUL", "CONV_2D", "DEPTHWISE_CONV_2D"}
_GATHER_OPS = {"GATHER", "EMBEDDING_LOOKUP"}
_MOVEMENT_OPS = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS", "STRIDED_SLICE", "SLICE", "SPLIT",
                 "SPLIT_V", "CONCATENATION", "PACK", "UNPACK", "TRANSPOSE", "SHAPE", "TILE",
                 "BROADCAST_TO", "PAD", "PADV2", "GATHER_ND", "ZEROS_LIKE", "FILL"}
_ELEMENTWISE_OPS = {"ADD", "SUB", "MUL", "DIV", "FLOOR_DIV", "LOGISTIC", "TANH", "RELU", "RELU6",
                    "RELU_N1_TO_1", "LEAKY_RELU", "PRELU", "ELU", "HARD_SWISH", "GELU", "EXP",
                    "LOG", "SQRT", "RSQRT", "SQUARE", "SQUARED_DIFFERENCE", "MAXIMUM", "MINIMUM",
                    "ABS", "NEG", "POW", "SIN", "COS", "SOFTMAX", "LOG_SOFTMAX", "QUANTIZE",
                    "DEQUANTIZE", "CAST", "ADD_N", "SELECT", "SELECT_V2", "LESS", "GREATER",
                    "EQUAL", "NOT_EQUAL", "LESS_EQUAL", "GREATER_EQUAL", "LOGICAL_AND",
                    "LOGICAL_OR", "LOGICAL_NOT", "SUM", "MEAN", "REDUCE_MAX", "REDUCE_MIN",
                    "REDUCE_PROD", "L2_NORMALIZATION", "ARG_MAX", "ARG_MIN"}
_REDUCTIONS = {"SUM", "MEAN", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD", "ARG_MAX", "ARG_MIN",
               "L2_NORMALIZATION", "SOFTMAX", "LOG_SOFTMAX"}

_ITEMSIZE = {schema.TensorType.FLOAT32: 4, schema.TensorType.FLOAT16: 2,
             schema.TensorType.INT32: 4, schema.TensorType.INT64: 8,
             schema.TensorType.INT16: 2, schema.TensorType.INT8: 1,
             schema.TensorType.UINT8: 1, schema.TensorType.BOOL: 1,
             schema.TensorType.INT4: 0.5, schema.TensorType.INT2: 0.25}
_INT8_TYPES = {schema.TensorType.INT8, schema.TensorType.UINT8, schema.TensorType.INT16}
_BYTES_PER_WEIGHT = {"float32": 4, "int8_weights": 1, "int4_weights": 0.5,
                     "int2_weights": 0.25, "int8": 1}
_SUB8BIT_KINDS = {schema.TensorType.INT4: "int4_weights", schema.TensorType.INT2: "int2_weights"}
# The ai-edge-quantizer recipe that gives a float FULLY_CONNECTED each sub-8-bit kind.
_SUB8BIT_RECIPES = {"int4_weights": "dynamic_wi4c_afp32", "int2_weights": "dynamic_wi2c_afp32"}
_BUILTIN_NAMES = inspect_tflite._BUILTIN_NAMES  # pylint: disable=protected-access


@dataclasses.dataclass
class StepCost:
  """Arithmetic and weight traffic of one step (one token) of a ``.tflite``.

  Attributes:
    flops: floating-point (or integer) operations per step.
    weight_bytes: constant bytes read per step.
    weight_bytes_by_kind: ``weight_bytes`` split by ``WEIGHT_KINDS`` (others
      as ``other``).
    flops_by_op: ``flops`` per op name.
    weight_bytes_by_op: ``weight_bytes`` per op name.
    unclassified_ops: op names counted as elementwise for want of a rule.
  """

  flops: int = 0
  weight_bytes: int = 0
  weight_bytes_by_kind: dict = dataclasses.field(default_factory=dict)
  flops_by_op: dict = dataclasses.field(default_factory=dict)
  weight_bytes_by_op: dict = dataclasses.field(default_factory=dict)
  unclassified_ops: list = dataclasses.field(default_factory=list)

  @property
  def main_weight_kind(self) -> str:
    """The weight kind with the most bytes (``float32`` when there are none)."""
    kinds = {k: v for k, v in self.weight_bytes_by_kind.items() if k in WEIGHT_KINDS and v}
    return max(kinds, key=kinds.get) if kinds else "float32"

  def to_dict(self) -> dict:
    return {"flops_per_token": self.flops, "weight_bytes_per_token": self.weight_bytes,
            "weight_bytes_by_kind": dict(sorted(self.weight_bytes_by_kind.items())),
            "flops_by_op": dict(sorted(self.flops_by_op.items())),
            "weight_bytes_by_op": dict(sorted(self.weight_bytes_by_op.items())),
            "main_weight_kind": self.main_weight_kind,
            "unclassified_ops": sorted(set(self.unclassified_ops))}


def _shape(tensor) -> list[int]:
  return [int(d) for d in (tensor.shape if tensor.shape is not None else [])]


def _numel(tensor) -> int:
  return int(np.prod(_shape(tensor), dtype=np.int64))


def _bytes(tensor, bytes_per_element: float) -> int:
  """Bytes of a tensor whose elements take ``bytes_per_element`` (packed 4- and 2-bit
  values: a fraction of a byte, rounded up per tensor)."""
  return math.ceil(_numel(tensor) * bytes_per_element)


def _has_data(model, tensor) -> bool:
  return inspect_tflite.const_bytes(model, tensor) > 0


def _op_name(model, op) -> str:
  code = model.operatorCodes[op.opcodeIndex]
  builtin = flatbuffer_utils.get_builtin_code_from_operator_code(code)
  return _BUILTIN_NAMES.get(builtin, f"BUILTIN_{builtin}")


def step_cost(model) -> StepCost:
  """Counts FLOPs and weight bytes per step of a parsed ``.tflite`` (see the module doc).

  Args:
    model: the flatbuffer as ``inspect_tflite.parse`` returns it (``ModelT``).
  """
  if len(model.subgraphs) != 1:
    raise UserError(f"the floor needs a single-subgraph step model; this one has "
                    f"{len(model.subgraphs)} (control flow?)")
  subgraph = model.subgraphs[0]
  tensors = subgraph.tensors
  # Tensor index -> (bytes_per_element, dtype) for constants as the kernels read them.
  constants = {i: (_ITEMSIZE.get(t.type, 4), t.type) for i, t in enumerate(tensors)
               if _has_data(model, t)}
  cost = StepCost()
  flops_by_op = collections.Counter()
  bytes_by_op = collections.Counter()
  bytes_by_kind = collections.Counter()
  for op in subgraph.operators:
    name = _op_name(model, op)
    inputs = [i for i in op.inputs if i >= 0]
    outputs = [i for i in op.outputs if i >= 0]
    out_numel = sum(_numel(tensors[i]) for i in outputs)
    const_inputs = [i for i in inputs if i in constants]
    act_inputs = [i for i in inputs if i not in constants]
    if name == "DEQUANTIZE" and const_inputs and not act_inputs:
      for i in outputs:  # Folded at init: its output is a float32 constant.
        constants[i] = (4, schema.TensorType.FLOAT32)
      continue
    flops = 0
    weight_bytes = 0
    if name in _MATMUL_OPS:
      flops = 2 * _macs(name, op, tensors, inputs)
      if name != "BATCH_MATMUL" and len(inputs) > 2:
        flops += out_numel  # The fused bias: one add per output element.
      weight_bytes = sum(_bytes(tensors[i], constants[i][0]) for i in const_inputs)
    elif name in _GATHER_OPS:
      table = op.inputs[1] if name == "EMBEDDING_LOOKUP" else op.inputs[0]
      if table in constants:
        const_inputs = [table]
        weight_bytes = math.ceil(out_numel * constants[table][0])  # The rows, not the table.
    elif name in _MOVEMENT_OPS:
      const_inputs = []
    else:
      if name in _REDUCTIONS:
        flops = sum(_numel(tensors[i]) for i in act_inputs) or out_numel
      else:
        flops = out_numel
        if name not in _ELEMENTWISE_OPS:
          cost.unclassified_ops.append(name)
      weight_bytes = sum(_bytes(tensors[i], constants[i][0]) for i in const_inputs)
    flops_by_op[name] += flops
    if weight_bytes:
      bytes_by_op[name] += weight_bytes
      bytes_by_kind[_weight_kind(tensors, constants, const_inputs, act_inputs)] += weight_bytes
  cost.flops = int(sum(flops_by_op.values()))
  cost.weight_bytes = int(sum(bytes_by_op.values()))
  cost.flops_by_op = {k: int(v) for k, v in flops_by_op.items() if v}
  cost.weight_bytes_by_op = {k: int(v) for k, v in bytes_by_op.items()}
  cost.weight_bytes_by_kind = {k: int(v) for k, v in bytes_by_kind.items()}
  return cost


def _macs(name: str, op, tensors, inputs: list[int]) -> int:
  lhs, rhs = tensors[inputs[0]], tensors[inputs[1]]
  out = tensors[op.outputs[0]]
  if name == "FULLY_CONNECTED":
    if len(_shape(rhs)) < 2:  # Weights computed at run time with no static shape (QAT).
      return _numel(out) * (_shape(lhs)[-1] if _shape(lhs) else 0)
    units, depth = _shape(rhs)[0], _shape(rhs)[-1]
    rows = _numel(lhs) // max(depth, 1)
    return rows * units * depth
  if name == "BATCH_MATMUL":
    adj_x = bool(getattr(op.builtinOptions, "adjX", False))
    depth = _shape(lhs)[-2] if adj_x else _shape(lhs)[-1]
    return _numel(out) * depth
  if name == "CONV_2D":  # Filter [O, KH, KW, I].
    filter_shape = _shape(rhs)
    return _numel(out) * filter_shape[1] * filter_shape[2] * filter_shape[3]
  filter_shape = _shape(rhs)  # DEPTHWISE_CONV_2D filter [1, KH, KW, O].
  return _numel(out) * filter_shape[1] * filter_shape[2]


def _weight_kind(tensors, constants, const_inputs, act_inputs) -> str:
  biggest = max(const_inputs, key=lambda i: _numel(tensors[i]) * constants[i][0])
  weight_type = constants[biggest][1]
  if weight_type == schema.TensorType.FLOAT32:
    return "float32"
  if weight_type in _SUB8BIT_KINDS:
    return _SUB8BIT_KINDS[weight_type]
  if weight_type in _INT8_TYPES:
    act_types = {tensors[i].type for i in act_inputs}
    return "int8" if act_types & _INT8_TYPES else "int8_weights"
  return "other"


@dataclasses.dataclass(frozen=True)
class FloorReference:
  """A single ``FULLY_CONNECTED`` ``[1, K] x [K, N]`` streaming a model's weight bytes.

  Attributes:
    weight_kind: one of ``WEIGHT_KINDS``.
    input_size: ``K``.
    output_size: ``N``.
  """

  weight_kind: str
  input_size: int
  output_size: int

  @property
  def weight_bytes(self) -> int:
    return math.ceil(self.input_size * self.output_size * _BYTES_PER_WEIGHT[self.weight_kind])

  @property
  def flops(self) -> int:
    return 2 * self.input_size * self.output_size

  def to_dict(self) -> dict:
    return {"op": "FULLY_CONNECTED", "weight_kind": self.weight_kind,
            "input_size": self.input_size, "output_size": self.output_size,
            "weight_bytes": self.weight_bytes, "flops": self.flops}


def plan_reference(cost: StepCost) -> FloorReference:
  """The floor for ``cost``: its main weight kind, at least its weight bytes."""
  kind = cost.main_weight_kind
  weights = max(1, math.ceil(cost.weight_bytes / _BYTES_PER_WEIGHT[kind]))
  input_size = 2 ** int(math.log2(math.sqrt(weights))) if weights > 1 else 1
  input_size = min(max(input_size, 8), 1024)
  output_size = max(1, math.ceil(weights / input_size))
  if kind != "float32":
    # The converter leaves weights under 1024 elements in float32.
    output_size = max(output_size, math.ceil(1024 / input_size))
  return FloorReference(kind, input_size, output_size)


def build_reference_model(reference: FloorReference, seed: int = 0) -> bytes:
  """Converts the reference to ``.tflite`` bytes with ``tf.lite.TFLiteConverter``.

  ``float32``: plain conversion; ``int8_weights``: dynamic-range quantization
  (``Optimize.DEFAULT``); ``int4_weights`` / ``int2_weights``: the float model
  through ai-edge-quantizer's ``dynamic_wi4c_afp32`` / ``dynamic_wi2c_afp32`` (the
  exports' sub-8-bit kernels, per channel); ``int8``: full-integer quantization
  calibrated on seeded random inputs, float input and output as in the exported
  models.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(seed)
  kernel = tf.constant(rng.uniform(-0.1, 0.1, (reference.input_size, reference.output_size))
                       .astype(np.float32))
  module = tf.Module()
  module.kernel = kernel

  @tf.function(input_signature=[tf.TensorSpec([1, reference.input_size], tf.float32, name="x")])
  def call(x):
    return {"y": tf.matmul(x, module.kernel)}

  module.call = call
  concrete = call.get_concrete_function()
  converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
  if reference.weight_kind in ("int8_weights", "int8"):
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
  if reference.weight_kind == "int8":
    samples = [rng.uniform(-1.0, 1.0, (1, reference.input_size)).astype(np.float32)
               for _ in range(16)]
    converter.representative_dataset = lambda: ([s] for s in samples)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
  model_bytes = converter.convert()
  if reference.weight_kind in _SUB8BIT_RECIPES:
    model_bytes = _quantize_sub8bit(model_bytes, _SUB8BIT_RECIPES[reference.weight_kind])
  built = step_cost(inspect_tflite.parse(model_bytes, "<floor reference>"))
  if built.main_weight_kind != reference.weight_kind:
    raise UserError(f"the floor reference converted to {built.main_weight_kind} weights, "
                    f"not {reference.weight_kind}")
  return model_bytes


def _quantize_sub8bit(float_bytes: bytes, recipe_name: str) -> bytes:
  from ai_edge_quantizer import quantizer, recipe  # pylint: disable=g-import-not-at-top

  engine = quantizer.Quantizer(bytearray(float_bytes), getattr(recipe, recipe_name)())
  return bytes(engine.quantize(enable_progress_report=False).quantized_model)


def compare_to_floor(model_result: BenchmarkResult, floor_result: BenchmarkResult,
                     cost: StepCost, reference: FloorReference) -> dict:
  """How far the model is from its floor (JSON-ready).

  ``ratio`` is the model's latency over the floor's, by ``ratio_statistic``
  (``p50``; ``avg`` for sources with no median, such as old
  ``benchmark_model`` logs). Achieved rates use the same statistic.
  """
  statistic = "p50"
  model_ms = model_result.latency_ms.p50
  floor_ms = floor_result.latency_ms.p50
  if model_ms is None or floor_ms is None:
    statistic = "avg"
    model_ms, floor_ms = model_result.latency_ms.avg, floor_result.latency_ms.avg
  rate = lambda amount, ms: None if not ms else round(amount / (ms * 1e-3) / 1e9, 4)
  return {
      "reference": reference.to_dict(),
      "result": floor_result.to_dict(),
      "ratio_statistic": statistic,
      "ratio": None if not model_ms or not floor_ms else round(model_ms / floor_ms, 3),
      "model_ms": model_ms,
      "floor_ms": floor_ms,
      "model_weight_gb_per_s": rate(cost.weight_bytes, model_ms),
      "model_gflop_per_s": rate(cost.flops, model_ms),
      "floor_weight_gb_per_s": rate(reference.weight_bytes, floor_ms),
      "floor_gflop_per_s": rate(reference.flops, floor_ms),
  }
