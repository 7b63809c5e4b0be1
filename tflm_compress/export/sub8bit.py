"""Below 8 bits: int4 and per-group mixed-precision step models through ai-edge-quantizer.

The float step model (``convert_step_model(model, "none")``) is quantized after
conversion by Google's ``ai-edge-quantizer`` with one recipe entry per weight
group, each anchored on the output tensor of the op that reads the weight.
Modes (``SUB8BIT_MODES``):

* ``int4``: every FULLY_CONNECTED weight and the embedding table at 4 bits.
* ``mixed``: a bit width per weight group, from a spec such as
  ``embedding:8,lstm:8,softmax:4`` (:func:`parse_bits`).
* ``auto``: the bit widths chosen on validation text: every group starts at
  8 bits; each group's sensitivity is the validation perplexity of the
  ``.tflite`` with only that group lowered to 4 bits; groups are then lowered
  greedily, cheapest perplexity increase per byte saved first, each kept only
  if the whole model stays within ``max_ppl_increase`` of the float32
  ``.tflite`` (:func:`greedy_order`, :func:`choose_bits`).

Weight groups (:func:`weight_groups`) are the Keras layers the weights come from
(``embedding``, ``lstm_0``, ``lstm_1``, ``softmax``, ...); a layer holding
several quantizable weights (the factors of a compressed layer) has one group
per weight, ``LAYER.WEIGHT`` (``softmax.kernel_u``, ``lstm_0.recurrent_v``).

Compute (``COMPUTE_KINDS``): ``dynamic`` (ai-edge-quantizer's ``dynamic_wi*``
recipes: integer weights, activations quantized on the fly by the kernel) or
``weight_only`` (``weight_only_wi*``: a DEQUANTIZE feeds float kernels: float
speed and float32 weights in memory at run time, only the file shrinks).

The embedding (``EMBEDDING_OPS``): the converter lowers a lookup to GATHER,
which ai-edge-quantizer quantizes only in its static (integer activation)
recipes. ``lookup`` (the default) rewrites each GATHER of a constant table
into RESHAPE + EMBEDDING_LOOKUP + RESHAPE (same values, bit for bit), an op
the dynamic and weight-only recipes quantize per row to 8, 4 or 2 bits;
``gather`` keeps GATHER and a float32 table. Neither op runs inside XNNPACK:
both sit before the first delegate partition.

Every model is loaded and invoked in LiteRT, with and without its default
XNNPACK delegate, before it is returned (:func:`check_runs`).
"""

import dataclasses
import importlib.metadata
import math
import re
from typing import Callable

import numpy as np
import tf_keras as keras
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from ai_edge_litert.tools import flatbuffer_utils

from tflm_compress.errors import UserError
from tflm_compress.export import dedupe, gptq, inspect_tflite
from tflm_compress.export.modes import SUB8BIT_MODES

BIT_WIDTHS = (2, 4, 8, 32)  # 32: the group stays float32.
BLOCK_SIZES = (0, 32, 64, 128, 256)  # 0: one scale per output channel (per row).
COMPUTE_KINDS = ("dynamic", "weight_only")
EMBEDDING_OPS = ("lookup", "gather")
# How each weight's scales are chosen: ai-edge-quantizer's algorithm keys. min_max: the
# largest |w| per channel (or block); mse / octav: a clipping range that minimizes the
# rounding + clipping error (per channel only); hadamard: min-max after a block-diagonal
# Hadamard rotation of the input (blocks of the largest power of 2 dividing it); gptq:
# the Keras weights GPTQ-rounded on calibration text onto min_max's grid first
# (:mod:`.gptq`), then min_max, which stores them as they are.
ALGORITHMS = {"min_max": "min_max_uniform_quantize", "mse": "MSE", "octav": "OCTAV",
              "hadamard": "DECOMPOSED_HADAMARD_ROTATION", "gptq": "min_max_uniform_quantize"}
_ALGORITHM_SUFFIX = {"min_max": "", "mse": "_mse", "octav": "_octav", "hadamard": "_hr",
                     "gptq": ""}
# The default: on PTB small, all-int4 is +1.89% test ppl with it and +6.06% with min_max
# (mse +5.90%), at 0.1% more bytes and within the host's noise in latency
# (docs/RESULTS.md, "Below 8 bits"; docs/notes/2026-12-04-sub8bit.md).
DEFAULT_ALGORITHM = "hadamard"
AUTO_LEVELS = (8, 4)  # auto: where every group starts, and the one step down it may take.
LSTM_ALIAS = "lstm"  # In a bits spec: every LSTM layer (lstm_0, lstm_1, ...).
DEFAULT_ALIAS = "*"  # In a bits spec: every group not named otherwise.
BITS_EXAMPLE = "embedding:8,lstm:8,softmax:4"

_OPS = schema.BuiltinOperator
_TYPES = schema.TensorType
# Ops whose constant weight (input 1) ai-edge-quantizer's dynamic / weight-only recipes
# quantize, by their name in ai_edge_quantizer.qtyping.TFLOperationName.
_QUANTIZABLE_OPS = {_OPS.FULLY_CONNECTED: "FULLY_CONNECTED",
                    _OPS.EMBEDDING_LOOKUP: "EMBEDDING_LOOKUP"}


def quantizer_version() -> str:
  try:
    return importlib.metadata.version("ai-edge-quantizer")
  except importlib.metadata.PackageNotFoundError:
    return "not installed"


def _name(tensor) -> str:
  return tensor.name.decode() if isinstance(tensor.name, bytes) else (tensor.name or "")


def _builtin(model, op) -> int:
  return flatbuffer_utils.get_builtin_code_from_operator_code(model.operatorCodes[op.opcodeIndex])


def _const_array(model, tensor) -> np.ndarray | None:
  """A float32 constant's values, or None for activations and other types."""
  data = model.buffers[tensor.buffer].data
  if data is None or not len(data) or tensor.type != _TYPES.FLOAT32:
    return None
  return np.frombuffer(bytes(data), np.float32).reshape([int(s) for s in tensor.shape])


# --- The float model: GATHER -> EMBEDDING_LOOKUP ---------------------------------------------


def _opcode_index(model, builtin: int) -> int:
  for i, code in enumerate(model.operatorCodes):
    if flatbuffer_utils.get_builtin_code_from_operator_code(code) == builtin:
      return i
  code = schema.OperatorCodeT()
  code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 1
  model.operatorCodes.append(code)
  return len(model.operatorCodes) - 1


def _add_tensor(model, subgraph, name: str, shape, dtype: int,
                values: np.ndarray | None = None) -> int:
  tensor = schema.TensorT()
  tensor.shape, tensor.type, tensor.name, tensor.buffer = list(shape), dtype, name, 0
  if values is not None:
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(values.tobytes(), np.uint8)
    model.buffers.append(buffer)
    tensor.buffer = len(model.buffers) - 1
  subgraph.tensors.append(tensor)
  return len(subgraph.tensors) - 1


def _reshape_op(model, subgraph, source: int, target: int, shape: list[int], name: str):
  op = schema.OperatorT()
  op.opcodeIndex = _opcode_index(model, _OPS.RESHAPE)
  shape_tensor = _add_tensor(model, subgraph, name, [len(shape)], _TYPES.INT32,
                             np.asarray(shape, np.int32))
  op.inputs, op.outputs = [source, shape_tensor], [target]
  op.builtinOptionsType = schema.BuiltinOptions.ReshapeOptions
  op.builtinOptions = schema.ReshapeOptionsT()
  op.builtinOptions.newShape = list(shape)
  return op


def _is_table_gather(model, subgraph, op) -> bool:
  if _builtin(model, op) != _OPS.GATHER:
    return False
  table, ids = subgraph.tensors[op.inputs[0]], subgraph.tensors[op.inputs[1]]
  options = op.builtinOptions
  return (_const_array(model, table) is not None and len(table.shape) == 2
          and ids.type == _TYPES.INT32 and not (options and (options.axis or options.batchDims)))


def gather_to_embedding_lookup(model_bytes: bytes) -> bytes:
  """Each GATHER of a constant float32 ``[V, D]`` table as EMBEDDING_LOOKUP.

  ``gather(table, ids)`` with ``ids`` of any shape ``S`` becomes
  ``reshape(embedding_lookup(reshape(ids, [n]), table), S + [D])``: the same
  rows, copied the same way (EMBEDDING_LOOKUP takes 1-D ids only). Other ops
  are untouched. Tensor names are made unique, as the quantizer's recipes
  address ops by their output tensor's name.
  """
  model = inspect_tflite.parse(model_bytes)
  for subgraph in model.subgraphs:
    operators = []
    for op in subgraph.operators:
      if not _is_table_gather(model, subgraph, op):
        operators.append(op)
        continue
      table = subgraph.tensors[op.inputs[0]]
      out = subgraph.tensors[op.outputs[0]]
      count = int(np.prod(subgraph.tensors[op.inputs[1]].shape))
      base = _name(out)
      flat_ids = _add_tensor(model, subgraph, f"{base}/ids", [count], _TYPES.INT32)
      rows = _add_tensor(model, subgraph, f"{base}/rows", [count, int(table.shape[1])],
                         _TYPES.FLOAT32)
      lookup = schema.OperatorT()
      lookup.opcodeIndex = _opcode_index(model, _OPS.EMBEDDING_LOOKUP)
      lookup.inputs, lookup.outputs = [flat_ids, op.inputs[0]], [rows]
      operators += [_reshape_op(model, subgraph, op.inputs[1], flat_ids, [count],
                                f"{base}/ids_shape"),
                    lookup,
                    _reshape_op(model, subgraph, rows, op.outputs[0],
                                [int(s) for s in out.shape], f"{base}/rows_shape")]
    subgraph.operators = operators
    seen = {}
    for tensor in subgraph.tensors:
      name = _name(tensor)
      if name in seen:
        seen[name] += 1
        tensor.name = f"{name}#{seen[name]}"
      else:
        seen[name] = 0
  return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def float_step_model(model: keras.Model, embedding_op: str = "lookup") -> bytes:
  """The float32 step model the sub-8-bit recipes start from (see module doc)."""
  from tflm_compress.export.converter import convert_step_model  # pylint: disable=g-import-not-at-top

  if embedding_op not in EMBEDDING_OPS:
    raise UserError(f"--embedding_op={embedding_op!r}; use one of {EMBEDDING_OPS}")
  model_bytes = convert_step_model(model, "none")
  return gather_to_embedding_lookup(model_bytes) if embedding_op == "lookup" else model_bytes


# --- Weight groups ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class WeightGroup:
  """One constant weight tensor of the float step model and the ops reading it.

  Attributes:
    name: ``LAYER`` or, for a layer with several weights, ``LAYER.WEIGHT``.
    layer: the Keras layer it comes from (``other`` if none is found).
    ops: names of the ops reading it (``FULLY_CONNECTED``, ``EMBEDDING_LOOKUP``, ``GATHER``).
    scopes: output tensor names of those ops (what the recipe entries match).
    tensor: the weight's tensor name.
    shape: its shape, ``[out, in]`` for FULLY_CONNECTED, ``[V, D]`` for a table.
    quantizable: False for a GATHER table (ai-edge-quantizer's dynamic and
      weight-only recipes do not quantize GATHER: it stays float32).
    zero_blocks: the block sizes (of ``BLOCK_SIZES``) at which some block of the
      weight is all zeros (a pruned model's); it gets no blocks of those sizes.
    zero_rows: some row (output channel) is all zeros: no Hadamard rotation for it.
  """

  name: str
  layer: str
  ops: tuple[str, ...]
  scopes: tuple[str, ...]
  tensor: str
  shape: tuple[int, ...]
  quantizable: bool = True
  zero_blocks: tuple[int, ...] = ()
  zero_rows: bool = False

  @property
  def params(self) -> int:
    return int(np.prod(self.shape))

  @property
  def float_bytes(self) -> int:
    return 4 * self.params

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d["ops"], d["scopes"], d["shape"] = list(self.ops), list(self.scopes), list(self.shape)
    d["zero_blocks"] = list(self.zero_blocks)
    return d


def _matches_up_to_row_scale(weight: np.ndarray, candidate: np.ndarray) -> bool:
  """``weight[i] == s_i * candidate[i]`` for every row ``i``: the converter folds
  per-output scales (the LSTM's tanh-form sigmoid gates) into FC weights."""
  if weight.shape != candidate.shape:
    return False
  if weight.shape[1] < 2:  # A scalar per row matches any row up to scale.
    return bool(np.array_equal(weight, candidate))
  norms = (candidate * candidate).sum(axis=1)
  scale = np.where(norms > 0, (weight * candidate).sum(axis=1) / np.maximum(norms, 1e-30), 0.0)
  tolerance = 1e-5 * max(float(np.abs(weight).max()), 1e-30)
  return float(np.abs(weight - scale[:, None] * candidate).max()) <= tolerance


def _keras_weight_name(weight: np.ndarray, model: keras.Model | None,
                       layers: list[str]) -> tuple[str, str] | None:
  """``(layer, weight)`` of the Keras weight ``weight`` is (or is the transpose of)."""
  if model is None:
    return None
  names = {layer.name for layer in model.layers}
  for layer_name in [l for l in layers if l in names] or sorted(names):
    for variable in model.get_layer(layer_name).weights:
      value = np.asarray(variable.numpy(), np.float32)
      if value.ndim != 2:
        continue
      short = variable.name.split("/")[-1].split(":")[0]
      if _matches_up_to_row_scale(weight, value) or _matches_up_to_row_scale(weight, value.T):
        return layer_name, short
  return None


def _has_zero_block(weight: np.ndarray, size: int) -> bool:
  """Whether a row of ``weight`` (``[out, in]``; ``size`` divides ``in``) has ``size``
  consecutive zeros starting at a multiple of ``size`` (``size = in``: an all-zero row)."""
  rows = np.abs(weight.reshape(-1, weight.shape[-1]))
  return bool(np.any(rows.reshape(len(rows), -1, size).max(axis=2) == 0))


def _zero_blocks(weight: np.ndarray) -> tuple[int, ...]:
  """The block sizes at which a row of ``weight`` (``[out, in]``) has an all-zero block."""
  width = weight.shape[-1]
  return tuple(b for b in BLOCK_SIZES if b and width % b == 0 and _has_zero_block(weight, b))


def weight_groups(model_bytes: bytes, keras_model: keras.Model | None = None
                  ) -> list[WeightGroup]:
  """The weight groups of a float step model, by layer (in ``keras_model``'s order).

  A group is one constant float32 weight read by FULLY_CONNECTED, by
  EMBEDDING_LOOKUP or by a table GATHER. Its layer comes from the tensor's
  name (``lstm_lm/softmax/...``) or, for a name without a layer path (a tied
  table), from the Keras weight it equals; with ``keras_model``, the weights
  of a layer with several of them are named after the Keras weights.
  """
  model = inspect_tflite.parse(model_bytes)
  subgraph = model.subgraphs[0]
  found = {}  # tensor index -> [ops, scopes]
  for op in subgraph.operators:
    code = _builtin(model, op)
    if code in _QUANTIZABLE_OPS:
      index, op_name = op.inputs[1], _QUANTIZABLE_OPS[code]
    elif code == _OPS.GATHER and _is_table_gather(model, subgraph, op):
      index, op_name = op.inputs[0], "GATHER"
    else:
      continue
    tensor = subgraph.tensors[index]
    if _const_array(model, tensor) is None:
      continue
    entry = found.setdefault(int(index), [[], []])
    entry[0].append(op_name)
    entry[1].append(_name(subgraph.tensors[op.outputs[0]]))
  layer_names = [] if keras_model is None else [layer.name for layer in keras_model.layers]
  rows = []
  for index, (ops, scopes) in found.items():
    tensor = subgraph.tensors[index]
    weight = _const_array(model, tensor)
    layer = inspect_tflite.tensor_group(_name(tensor))
    match = _keras_weight_name(weight, keras_model, [layer])
    if layer not in layer_names and match:
      layer = match[0]
    rows.append((layer, match[1] if match and match[0] == layer else "", index, ops, scopes,
                 weight))
  per_layer = {}
  for layer, *_ in rows:
    per_layer[layer] = per_layer.get(layer, 0) + 1
  order = {name: i for i, name in enumerate(layer_names)}
  rows.sort(key=lambda row: order.get(row[0], len(order)))  # Stable: graph order within a layer.
  groups, counters = [], {}
  for layer, weight_name, index, ops, scopes, weight in rows:
    tensor = subgraph.tensors[index]
    if per_layer[layer] == 1:
      name = layer
    else:
      counters[layer] = counters.get(layer, 0) + 1
      name = f"{layer}.{weight_name or counters[layer] - 1}"
      if any(g.name == name for g in groups):  # Two tensors equal to one Keras weight.
        name = f"{name}.{counters[layer] - 1}"
    groups.append(WeightGroup(name=name, layer=layer, ops=tuple(ops), scopes=tuple(scopes),
                              tensor=_name(tensor),
                              shape=tuple(int(s) for s in tensor.shape),
                              quantizable="GATHER" not in ops,
                              zero_blocks=_zero_blocks(weight),
                              zero_rows=_has_zero_block(weight, weight.shape[-1])))
  return groups


# --- Bit-width specs -------------------------------------------------------------------------


def _bits_choices() -> str:
  return ", ".join(str(b) for b in BIT_WIDTHS)


def parse_bits(spec: str) -> dict[str, int]:
  """``"embedding:8,lstm:8,softmax:4"`` -> ``{"embedding": 8, "lstm": 8, "softmax": 4}``.

  Names are group names (:func:`weight_groups`), ``lstm`` for every LSTM
  layer, or ``*`` for every group not named otherwise; bits are one of
  ``BIT_WIDTHS`` (32 keeps the group float32). Only the format is checked
  here; :func:`resolve_bits` checks the names against a model.
  """
  if not spec.strip():
    raise UserError(f"--bits is empty; give GROUP:BITS pairs, e.g. --bits={BITS_EXAMPLE}")
  parsed = {}
  for entry in spec.split(","):
    entry = entry.strip()
    name, sep, bits = entry.partition(":")
    name, bits = name.strip(), bits.strip()
    if not sep or not name or not bits:
      raise UserError(f"--bits entry {entry!r} is not GROUP:BITS (e.g. embedding:8)")
    if bits not in {str(b) for b in BIT_WIDTHS}:
      raise UserError(f"--bits entry {entry!r}: bits must be one of {_bits_choices()} "
                      "(32 keeps the group float32)")
    if name in parsed:
      raise UserError(f"--bits names {name!r} twice")
    parsed[name] = int(bits)
  return parsed


def _is_lstm_layer(layer: str) -> bool:
  return re.fullmatch(rf"{LSTM_ALIAS}_\d+", layer) is not None


def resolve_bits(spec: dict[str, int], groups: list[WeightGroup]) -> dict[str, int]:
  """Bits of every group: its own entry, else its layer's, else ``lstm``'s
  (LSTM layers), else ``*``'s.

  Raises:
    UserError: a name that is no group, layer or alias of this model; a
      group left without bits; a bit width below 32 for a table read by GATHER.
  """
  layers = {g.layer for g in groups}
  known = {g.name for g in groups} | layers | {DEFAULT_ALIAS}
  if any(_is_lstm_layer(layer) for layer in layers):
    known.add(LSTM_ALIAS)
  listing = ", ".join(g.name for g in groups)
  for name in spec:
    if name not in known:
      raise UserError(f"--bits names {name!r}, which is not a weight group of this model; "
                      f"groups: {listing} (also {LSTM_ALIAS} for every LSTM layer, "
                      f"{DEFAULT_ALIAS} for the rest)")
  bits, missing = {}, []
  for group in groups:
    explicit = [n for n in (group.name, group.layer) if n in spec]
    if not explicit and _is_lstm_layer(group.layer) and LSTM_ALIAS in spec:
      explicit = [LSTM_ALIAS]
    if explicit:
      value = spec[explicit[0]]
      if value < 32 and not group.quantizable:
        raise UserError(
            f"--bits={explicit[0]}:{value}: the {group.name} table is read by GATHER, which "
            "ai-edge-quantizer quantizes only in its static recipes; use "
            f"--embedding_op=lookup (EMBEDDING_LOOKUP) or {explicit[0]}:32")
    elif DEFAULT_ALIAS in spec:
      value = spec[DEFAULT_ALIAS] if group.quantizable else 32
    else:
      missing.append(group.name)
      continue
    bits[group.name] = value
  if missing:
    raise UserError(f"--bits gives no bit width for {', '.join(missing)}; add them or a "
                    f"default such as {DEFAULT_ALIAS}:8")
  return bits


def format_bits(bits: dict[str, int], groups: list[WeightGroup] | None = None) -> str:
  """``bits`` as a spec; with ``groups``, a layer whose weights share their bits is
  written once (``softmax:4`` for ``softmax.kernel_u:4,softmax.kernel_v:4``)."""
  if groups is None:
    return ",".join(f"{name}:{value}" for name, value in bits.items())
  entries = {}
  for group in groups:
    entries.setdefault(group.layer, []).append((group.name, bits[group.name]))
  parts = []
  for layer, members in entries.items():
    values = {value for _, value in members}
    if len(values) == 1:
      parts.append(f"{layer}:{values.pop()}")
    else:
      parts += [f"{name}:{value}" for name, value in members]
  return ",".join(parts)


# --- Recipes ---------------------------------------------------------------------------------


def _add_config(target, op: str, scope: str, bits: int, granularity: str, compute: str,
                algorithm: str = DEFAULT_ALGORITHM) -> None:
  """One recipe entry on ``target`` (a Quantizer or RecipeManager); ValueError if
  ai-edge-quantizer's policy has no such config for ``op``."""
  from ai_edge_quantizer import qtyping  # pylint: disable=g-import-not-at-top

  add = target.add_dynamic_config if compute == "dynamic" else target.add_weight_only_config
  add(regex=f"^{re.escape(scope)};$", operation_name=qtyping.TFLOperationName(op),
      num_bits=bits, granularity=qtyping.QuantGranularity(granularity),
      algorithm_key=ALGORITHMS[algorithm])


def group_algorithm(group: "WeightGroup", algorithm: str) -> str:
  """``algorithm`` for ``group``, or ``min_max`` where a Hadamard rotation cannot apply.

  ai-edge-quantizer 0.10.0 rotates along a weight's input width by the largest
  power of two dividing it; an odd width (a GroupReduce block of odd rank) has
  none and its quantize fails, so that group keeps plain min-max scales; so does a
  group with an all-zero row (pruned), which the rotation gives scale 0 (XNNPACK then
  refuses the file).
  """
  if algorithm == "hadamard" and (group.shape[-1] % 2 or group.zero_rows):
    return "min_max"
  return algorithm


def lookup_safe_bits(groups: list[WeightGroup], bits: dict[str, int]
                     ) -> tuple[dict[str, int], list[str]]:
  """``bits`` with every EMBEDDING_LOOKUP table of odd row width below 8 bits raised to 8,
  and the names of the groups raised.

  LiteRT 2.3.0 reads wrong rows from a 4-bit EMBEDDING_LOOKUP table whose row
  width is odd (two values a byte; a row then ends mid-byte): measured on
  GroupReduce's embedding blocks (odd ranks), one 125x5 block at 4 bits moves
  the logits by 4.7 while a 125x4 block at 4 bits moves them by 0.8, the
  rounding alone. The quantizer writes the file without complaint, so the
  rule lives here.
  """
  raised = [g.name for g in groups
            if bits[g.name] < 8 and g.shape[-1] % 2 and "EMBEDDING_LOOKUP" in g.ops]
  return {name: (8 if name in raised else value) for name, value in bits.items()}, raised


def plan_granularity(groups: list[WeightGroup], bits: dict[str, int], block_size: int = 0,
                     compute: str = "dynamic", algorithm: str = DEFAULT_ALGORITHM) -> dict[str, str]:
  """Group -> ``CHANNELWISE`` or ``BLOCKWISE_<block_size>`` (``float32`` for 32 bits).

  Blocks run along the input of a FULLY_CONNECTED weight (along the row of a
  table). A group gets blocks where ``block_size`` divides that width and
  ai-edge-quantizer has a block-wise config for its op at its bits (0.10.0:
  dynamic 4 and 2 bits; 2 bits for FULLY_CONNECTED only); otherwise a scale
  per output channel (per row). A weight with an all-zero block (pruned) keeps a
  scale per channel: ai-edge-quantizer 0.10.0 gives that block scale 0, which
  XNNPACK refuses to load.

  Raises:
    UserError: a bad ``compute`` or ``block_size``, or no config at all for a
      group's op at its bits.
  """
  from ai_edge_quantizer import recipe_manager  # pylint: disable=g-import-not-at-top

  if compute not in COMPUTE_KINDS:
    raise UserError(f"--compute={compute!r}; use one of {COMPUTE_KINDS}")
  if block_size not in BLOCK_SIZES:
    raise UserError(f"--block_size={block_size}; use one of {BLOCK_SIZES} (0 = per channel)")
  if algorithm not in ALGORITHMS:
    raise UserError(f"--algorithm={algorithm!r}; use one of {tuple(ALGORITHMS)}")
  plan = {}
  for group in groups:
    if bits[group.name] == 32:
      plan[group.name] = "float32"
      continue
    options = ["CHANNELWISE"]
    if (block_size and group.shape[-1] % block_size == 0
        and block_size not in group.zero_blocks):
      options.insert(0, f"BLOCKWISE_{block_size}")
    for granularity in options:
      try:
        for op, scope in zip(group.ops, group.scopes):
          _add_config(recipe_manager.RecipeManager(), op, scope, bits[group.name], granularity,
                      compute, group_algorithm(group, algorithm))
      except ValueError:
        continue
      plan[group.name] = granularity
      break
    else:
      raise UserError(
          f"ai-edge-quantizer {quantizer_version()} has no {compute} {algorithm} recipe for "
          f"{'/'.join(group.ops)} at {bits[group.name]} bits (group {group.name}); "
          f"choose other bits for it")
  return plan


def _no_block_fits(block_size: int, groups: list[WeightGroup], compute: str) -> UserError:
  """The error for a ``--block_size`` that gives none of ``groups`` blocks."""
  widths = sorted({g.shape[-1] for g in groups})
  return UserError(
      f"--block_size={block_size} fits no weight of this model (input widths "
      f"{', '.join(map(str, widths))}; ai-edge-quantizer {quantizer_version()} blocks "
      f"{compute} 4- and 2-bit weights whose width it divides); use --block_size=0 "
      "(per channel)")


def recipe_name(bits: int, granularity: str, compute: str, algorithm: str = DEFAULT_ALGORITHM) -> str:
  """ai-edge-quantizer's name of a uniform recipe (``dynamic_wi4c_afp32``,
  ``dynamic_wi4b32_afp32``, ``dynamic_wi4c_hr_afp32``; ``_mse`` / ``_octav`` for those)."""
  if granularity == "float32":
    return "float32"
  suffix = "c" if granularity == "CHANNELWISE" else f"b{granularity.rsplit('_', 1)[1]}"
  return f"{compute}_wi{bits}{suffix}{_ALGORITHM_SUFFIX[algorithm]}_afp32"


def build_quantizer(float_bytes: bytes, groups: list[WeightGroup], bits: dict[str, int],
                    plan: dict[str, str], compute: str = "dynamic", algorithm: str = DEFAULT_ALGORITHM):
  """An ``ai_edge_quantizer.Quantizer`` with one recipe entry per op reading a lowered
  group, at the granularity of ``plan`` (:func:`plan_granularity`)."""
  from ai_edge_quantizer import quantizer  # pylint: disable=g-import-not-at-top

  engine = quantizer.Quantizer(bytearray(float_bytes))
  for group in groups:
    if plan[group.name] != "float32":
      for op, scope in zip(group.ops, group.scopes):
        _add_config(engine, op, scope, bits[group.name], plan[group.name], compute,
                    group_algorithm(group, algorithm))
  return engine


def _failing_op(model_bytes: bytes, message: str) -> str:
  """``OP 'group' (TYPE weights)`` of the op a LiteRT error message points at."""
  model = inspect_tflite.parse(model_bytes)
  subgraph = model.subgraphs[0]
  names = inspect_tflite.op_names(model)
  tensor = re.search(r"tensor #?(\d+)", message)
  node = re.search(r"Node number (\d+) \(([A-Z_0-9]+)\)", message)
  candidates = []
  if tensor:
    index = int(tensor.group(1))
    candidates = [i for i, op in enumerate(subgraph.operators) if index in list(op.inputs)]
  elif node and node.group(2) in names:
    candidates = [int(node.group(1))]
  for i in candidates:
    op = subgraph.operators[i]
    for index in op.inputs:
      if index >= 0 and subgraph.tensors[index].type in (_TYPES.INT8, _TYPES.INT4, _TYPES.INT2):
        weight = subgraph.tensors[index]
        return (f"{names[i]} {inspect_tflite.tensor_group(_name(weight))!r} "
                f"({inspect_tflite.type_name(weight.type)} weights)")
    return names[i]
  return "an op"


def check_runs(model_bytes: bytes, recipe: str) -> None:
  """Loads ``model_bytes`` in LiteRT and invokes it once, with the default XNNPACK
  delegate and on the builtin kernels alone.

  Raises:
    UserError: naming the op, the recipe and LiteRT's reason, if either fails.
  """
  from tflm_compress.export.step_model import SIGNATURE_KEY  # pylint: disable=g-import-not-at-top

  for label, resolver in (("XNNPACK", OpResolverType.AUTO),
                          ("builtin kernels", OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)):
    try:
      interpreter = Interpreter(model_content=model_bytes,
                                experimental_op_resolver_type=resolver)
      interpreter.allocate_tensors()
      runner = interpreter.get_signature_runner(SIGNATURE_KEY)
      inputs = {name: np.zeros(d["shape"], d["dtype"])
                for name, d in runner.get_input_details().items()}
      runner(**inputs)
    except (RuntimeError, ValueError) as e:
      message = " ".join(str(e).split())
      raise UserError(
          f"LiteRT {_litert_version()} ({label}) cannot run recipe {recipe}: "
          f"{_failing_op(model_bytes, message)} is not supported ({message[:300]}); "
          "choose other bits, --block_size or --compute") from None


def _litert_version() -> str:
  try:
    return importlib.metadata.version("ai-edge-litert")
  except importlib.metadata.PackageNotFoundError:
    return "(unknown version)"


def quantize_groups(float_bytes: bytes, groups: list[WeightGroup], bits: dict[str, int],
                    block_size: int = 0, compute: str = "dynamic",
                    algorithm: str = DEFAULT_ALGORITHM) -> tuple[bytes, dict]:
  """``float_bytes`` with each group at its bits: ``(model bytes, recipe)``.

  The recipe is ``{"per_group": {group: recipe name}, "entries": ai-edge-quantizer's
  recipe}``. The result uses builtin ops only and runs in LiteRT (:func:`check_runs`);
  equal per-channel zero-point vectors are stored once (:mod:`.dedupe`).
  """
  plan = plan_granularity(groups, bits, block_size, compute, algorithm)
  by_name = {g.name: g for g in groups}
  per_group = {name: recipe_name(bits[name], plan[name], compute,
                                 group_algorithm(by_name[name], algorithm)) for name in bits}
  label = ", ".join(f"{g}={r}" for g, r in per_group.items())
  if all(value == 32 for value in bits.values()):
    check_runs(float_bytes, label)
    return float_bytes, {"per_group": per_group, "entries": []}
  engine = build_quantizer(float_bytes, groups, bits, plan, compute, algorithm)
  try:
    result = engine.quantize(enable_progress_report=False)
  except (ValueError, RuntimeError, KeyError) as e:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise UserError(f"ai-edge-quantizer {quantizer_version()} cannot apply recipe {label}: "
                    f"{first}") from None
  # Each distinct per-channel zero-point vector once (all zeros: symmetric weights).
  model_bytes = dedupe.share_zero_points(bytes(result.quantized_model))
  bad = inspect_tflite.non_builtin_ops(inspect_tflite.parse(model_bytes))
  if bad:
    raise UserError(f"recipe {label} gave non-builtin ops {bad}; only TFLite builtins are allowed")
  check_runs(model_bytes, label)
  return model_bytes, {"per_group": per_group, "entries": list(result.recipe)}


# --- auto: sensitivity and greedy lowering ---------------------------------------------------


def greedy_order(sensitivity: dict[str, dict]) -> list[str]:
  """Groups to lower, cheapest first: perplexity increase per byte saved, ascending.

  Args:
    sensitivity: ``{group: {"ppl_increase": relative increase (0.01 = 1%),
      "bytes_saved": bytes}}``; a negative increase counts as 0; groups that save
      no bytes are left out. Ties go to the group saving more bytes, then by name.
  """
  rows = [(max(row["ppl_increase"], 0.0) / row["bytes_saved"], -row["bytes_saved"], name)
          for name, row in sensitivity.items() if row["bytes_saved"] > 0]
  return [name for _, _, name in sorted(rows)]


def choose_bits(start: dict[str, int], order: list[str], lowered: int,
                evaluate: Callable[[dict[str, int]], float], reference_ppl: float,
                max_ppl_increase: float) -> tuple[dict[str, int], list[dict]]:
  """Lowers the groups of ``order`` to ``lowered`` bits one at a time, keeping each
  step only if ``evaluate(bits)`` stays within ``max_ppl_increase`` of ``reference_ppl``.

  Returns:
    The chosen bits and the steps ``[{group, ppl, ppl_increase, kept}]``.
  """
  bits, steps = dict(start), []
  limit = reference_ppl * (1.0 + max_ppl_increase)
  for name in order:
    trial = {**bits, name: lowered}
    ppl = evaluate(trial)
    kept = ppl <= limit
    steps.append({"group": name, "ppl": ppl, "ppl_increase": ppl / reference_ppl - 1.0,
                  "kept": kept})
    if kept:
      bits = trial
  return bits, steps


def parse_ppl_increase(value: str | float) -> float:
  """``"1%"`` or ``0.01`` -> 0.01 (a relative perplexity increase, in (0, 1))."""
  text = str(value).strip()
  try:
    fraction = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
  except ValueError:
    fraction = math.nan
  if not 0.0 < fraction < 1.0:
    raise UserError(f"--max_ppl_increase={value}; give a percent such as 1% or a fraction "
                    "such as 0.01 (above 0, below 100%)")
  return fraction


def auto_bits(float_bytes: bytes, groups: list[WeightGroup], validation_ids: np.ndarray,
              max_ppl_increase: float, block_size: int = 0, compute: str = "dynamic",
              algorithm: str = DEFAULT_ALGORITHM, log=print,
              prepare: Callable[[dict[str, int]], bytes] | None = None) -> dict:
  """``auto``: the bits per group, chosen on ``validation_ids`` (see module doc).

  Perplexities are of the ``.tflite`` streaming the validation tokens with the
  state carried; the reference is the float32 ``.tflite``. ``prepare(bits)``,
  when given, is the float model to quantize for those bits (``gptq``: rounded
  for them); else ``float_bytes``.

  Returns:
    ``{"bits", "reference_ppl", "start", "sensitivity", "order", "steps", "valid_ppl",
    "max_ppl_increase", "tokens"}`` (bytes and perplexities per step).
  """
  from tflm_compress.export.runtime import TFLiteStepModel  # pylint: disable=g-import-not-at-top

  start_level, lowered = AUTO_LEVELS
  cache = {}

  def measure(bits: dict[str, int]) -> tuple[float, int]:
    key = tuple(sorted(bits.items()))
    if key not in cache:
      source = float_bytes if prepare is None else prepare(bits)
      model_bytes, _ = quantize_groups(source, groups, bits, block_size, compute, algorithm)
      cache[key] = (TFLiteStepModel(model_bytes).perplexity(validation_ids)["ppl"],
                    len(model_bytes))
    return cache[key]

  reference_ppl = TFLiteStepModel(float_bytes).perplexity(validation_ids)["ppl"]
  log(f"auto: float32 valid ppl {reference_ppl:.3f}")
  start = {g.name: start_level if g.quantizable else 32 for g in groups}
  start_ppl, start_bytes = measure(start)
  log(f"auto: every group at {start_level} bits: {start_bytes:,} B, valid ppl {start_ppl:.3f}")
  if start_ppl > reference_ppl * (1.0 + max_ppl_increase):
    raise UserError(
        f"--quantize=auto: every group at {start_level} bits already raises validation "
        f"perplexity by {100 * (start_ppl / reference_ppl - 1):.2f}% (> --max_ppl_increase="
        f"{100 * max_ppl_increase:g}%); allow more or use --quantize=dynamic")
  sensitivity = {}
  for group in groups:
    if not group.quantizable:
      continue
    ppl, size = measure({**start, group.name: lowered})
    sensitivity[group.name] = {"bits": lowered, "valid_ppl": ppl,
                               "ppl_increase": ppl / start_ppl - 1.0,
                               "bytes_saved": start_bytes - size}
    log(f"auto: only {group.name} at {lowered} bits: valid ppl {ppl:.3f} "
        f"({100 * (ppl / start_ppl - 1):+.3f}%), saves {start_bytes - size:,} B")
  order = greedy_order(sensitivity)
  sizes = []

  def evaluate(bits: dict[str, int]) -> float:
    ppl, size = measure(bits)
    sizes.append(size)
    log(f"auto: try {format_bits(bits)}: {size:,} B, valid ppl {ppl:.3f}")
    return ppl

  bits, steps = choose_bits(start, order, lowered, evaluate, reference_ppl, max_ppl_increase)
  for step, size in zip(steps, sizes):
    step["tflite_bytes"] = size
  final_ppl, final_bytes = measure(bits)
  log(f"auto: chosen {format_bits(bits, groups)}: {final_bytes:,} B, valid ppl {final_ppl:.3f} "
      f"({100 * (final_ppl / reference_ppl - 1):+.3f}% vs float32)")
  return {"bits": bits, "reference_ppl": reference_ppl, "max_ppl_increase": max_ppl_increase,
          "start": {"bits": start_level, "valid_ppl": start_ppl, "tflite_bytes": start_bytes},
          "sensitivity": sensitivity, "order": order, "steps": steps, "valid_ppl": final_ppl,
          "tflite_bytes": final_bytes, "tokens": int(len(validation_ids) - 1)}


# --- The export ------------------------------------------------------------------------------


def export_sub8bit(model: keras.Model, quantize: str, bits: str = "", block_size: int = 0,
                   compute: str = "dynamic", algorithm: str = DEFAULT_ALGORITHM,
                   embedding_op: str = "lookup",
                   validation_ids: np.ndarray | None = None,
                   max_ppl_increase: str | float = "1%", require_blocks: bool = True,
                   calibration_ids: np.ndarray | None = None,
                   log=print) -> tuple[bytes, dict]:
  """The step model of ``model`` in a sub-8-bit mode: ``(model bytes, report)``.

  Args:
    model: a language model of this package (or one mapped onto it).
    quantize: one of ``SUB8BIT_MODES``.
    bits: for ``mixed``, the spec (:func:`parse_bits`); must be empty otherwise.
    block_size: 0 (a scale per output channel) or a block size of ``BLOCK_SIZES``
      (a float16 scale per block of inputs, where it divides the input width).
    compute: one of ``COMPUTE_KINDS``.
    algorithm: how scales are chosen, one of ``ALGORITHMS``.
    embedding_op: one of ``EMBEDDING_OPS``.
    validation_ids: for ``auto``, the validation token stream.
    max_ppl_increase: for ``auto``, the allowed validation perplexity increase
      over the float32 ``.tflite`` (``"1%"`` or ``0.01``).
    require_blocks: whether a ``block_size`` that gives no weight blocks is an
      error (``False``: those weights get a scale per channel, silently; the
      pipeline's dense rows beside its low-rank ones).
    calibration_ids: for ``algorithm="gptq"``, training text (:mod:`.gptq`).

  Returns:
    The report holds ``quantization`` (the one-line recipe for
    ``model_meta.json``), ``bits`` per group, ``recipe_per_group``,
    ``groups`` (shape, ops, bytes), the ai-edge-quantizer ``recipe`` and, for
    ``auto``, the ``sensitivity`` table and the greedy ``steps``.
  """
  if quantize not in SUB8BIT_MODES:
    raise UserError(f"--quantize={quantize!r}; the sub-8-bit modes are {SUB8BIT_MODES}")
  if bits and quantize != "mixed":
    raise UserError(f"--bits={bits} is for --quantize=mixed, not --quantize={quantize}")
  if quantize == "mixed" and not bits:
    raise UserError(f"--quantize=mixed needs --bits, e.g. --bits={BITS_EXAMPLE}")
  if quantize == "auto" and (validation_ids is None or len(validation_ids) < 2):
    raise UserError("--quantize=auto needs validation text (the corpus's valid split)")
  if compute not in COMPUTE_KINDS:
    raise UserError(f"--compute={compute!r}; use one of {COMPUTE_KINDS}")
  if block_size not in BLOCK_SIZES:
    raise UserError(f"--block_size={block_size}; use one of {BLOCK_SIZES} (0 = per channel)")
  if embedding_op not in EMBEDDING_OPS:
    raise UserError(f"--embedding_op={embedding_op!r}; use one of {EMBEDDING_OPS}")
  if algorithm not in ALGORITHMS:
    raise UserError(f"--algorithm={algorithm!r}; use one of {tuple(ALGORITHMS)}")
  if algorithm == "gptq" and (calibration_ids is None or len(calibration_ids) < 2):
    raise UserError("--algorithm=gptq needs calibration text (the corpus's train split: "
                    "--data_dir)")
  budget = parse_ppl_increase(max_ppl_increase) if quantize == "auto" else None
  spec = parse_bits(bits) if quantize == "mixed" else {DEFAULT_ALIAS: 4}
  float_bytes = float_step_model(model, embedding_op)
  groups = weight_groups(float_bytes, model)
  report = {"tool": f"ai-edge-quantizer {quantizer_version()}", "compute": compute,
            "algorithm": algorithm, "block_size": block_size, "embedding_op": embedding_op,
            "float_tflite_bytes": len(float_bytes)}
  prepare = None
  if algorithm == "gptq":
    def prepare(bits: dict[str, int], into: dict | None = None) -> bytes:
      """The float step model with the groups below 8 bits GPTQ-rounded for ``bits``."""
      plan = plan_granularity(groups, bits, block_size, compute, algorithm)
      with gptq.rounded(model, bits, calibration_ids, plan, report=into) as rounded_model:
        return float_step_model(rounded_model, embedding_op)
  if quantize == "auto":
    quantizable = [g for g in groups if g.quantizable]
    if (require_blocks and block_size
        and not any(g.shape[-1] % block_size == 0 for g in quantizable)):
      raise _no_block_fits(block_size, quantizable, compute)
    choice = auto_bits(float_bytes, groups, np.asarray(validation_ids), budget, block_size,
                       compute, algorithm, log, prepare)
    chosen = choice.pop("bits")
    report["auto"] = choice
  else:
    chosen = resolve_bits(spec, groups)
  chosen, raised = lookup_safe_bits(groups, chosen)
  if raised:
    report["raised_to_8_bits"] = raised
  # Asked for blocks, the file must have some (auto checked widths up front: it may keep
  # at 8 bits every group a block fits, and blocks are for 4 and 2 bits).
  lowered = [g for g in groups if chosen[g.name] < 32]
  if require_blocks and block_size and lowered and quantize != "auto":
    plan = plan_granularity(groups, chosen, block_size, compute, algorithm)
    if not any(plan[g.name].startswith("BLOCKWISE") for g in lowered):
      raise _no_block_fits(block_size, lowered, compute)
  if prepare is not None:
    report["gptq"] = {}
    float_bytes = prepare(chosen, report["gptq"])
  model_bytes, recipe = quantize_groups(float_bytes, groups, chosen, block_size, compute,
                                        algorithm)
  recipes = recipe["per_group"]
  uniform = sorted(set(recipes.values()))
  detail = uniform[0] if len(uniform) == 1 else "per group"
  report.update({
      "quantization": f"{quantize} ({'GPTQ-rounded, ' if prepare else ''}"
                      f"ai-edge-quantizer {detail}: "
                      f"{format_bits(chosen, groups)})",
      "bits": chosen, "recipe_per_group": recipes, "recipe": recipe["entries"],
      "groups": [{**g.to_dict(), "bits": chosen[g.name],
                  "float_bytes": g.float_bytes} for g in groups]})
  return model_bytes, report
