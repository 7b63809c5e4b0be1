"""Int4 quantization-aware fine-tuning on the grid the ``int4`` export uses.

TFMOT's QAT (:mod:`tflm_compress.methods.quantization`) trains for the
converter's 8-bit per-tensor scales. The ``int4`` / ``mixed`` exports
(:mod:`tflm_compress.export.sub8bit`, ai-edge-quantizer) store a weight at 4
bits with one symmetric scale per output channel, ``max|w| / 7`` (``min_max``)
over the row of the FULLY_CONNECTED weight or of the EMBEDDING_LOOKUP table.
This method fine-tunes with exactly that rounding in the forward pass and
straight-through gradients:

* before each training step every targeted weight ``w`` is replaced by its
  grid value ``q(w)`` (the float "shadow" ``w`` is kept as the residual
  ``w - q(w)``); the step computes the loss and the gradients at ``q(w)``
  and the optimizer applies its update; the residual is then added back, so
  the shadow weight moves by the update computed on the rounded model
  (BinaryConnect's scheme; exact for any optimizer whose update does not
  read the weight's value);
* the per-epoch validation runs on the rounded weights too, so the training
  log reports the model the export computes;
* ``strip`` rounds the weights for good: the saved model *is* on the grid,
  and an ``int4 --algorithm=min_max`` export of it stores those values
  (tested: a weight-only int4 export of a stripped model computes its float
  export's logits).

Channels follow the step graph's lowering (``_channel_groups``): a matmul
weight ``[in, out]`` has a scale per output column (the converter transposes
it to FULLY_CONNECTED's ``[out, in]``); a lookup table ``[V, D]`` one per row;
a dense LSTM's ``kernel`` and ``recurrent_kernel`` share a scale per gate
unit, because its step is one FULLY_CONNECTED over ``[x, h]`` with the two
stacked (the converter also folds the sigmoid gates' 1/2 into those rows: a
per-row factor, which moves the scale with the row and keeps the grid).

Targets: the embedding, the LSTMs and the softmax, dense or low-rank (every
2-D weight of those layers); other compressed layers (TT cores, slim pools,
GroupReduce blocks, pruning or clustering wrappers) are refused with their
name, since their weights do not map one-to-one onto the exported tensors.
Export the result with ``--quantize=int4 --algorithm=min_max``: the default
Hadamard rotation re-quantizes a rotated weight, off this grid.
"""

import dataclasses

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tflm_compress.errors import UserError
from tflm_compress.layers.low_rank import LowRankDense, LowRankEmbedding, LowRankLSTM
from tflm_compress.layers.lstm import LSTM
from tflm_compress.layers.tied_embedding import TiedEmbedding
from tflm_compress.methods.base import CompressionContext, layer_kind

NAME = "int4_qat"
# The public config class, ``tflm_compress.Int4QAT``: ``Config`` with its fields' flag
# prefixes dropped (see :mod:`tflm_compress.api`).
API_NAME = "Int4QAT"
FLAG_PREFIXES = ("int4_qat_",)
# The sub-8-bit exports of a model trained here choose scales by max|w| (the pipeline reads
# this): the grid it trained on.
EXPORT_ALGORITHM = "min_max"
KINDS = ("embedding", "lstm", "softmax")
BITS = (2, 4, 8)  # ai-edge-quantizer's integer widths.
BLOCK_SIZES = (0, 32, 64, 128, 256)  # The exports' (export.sub8bit.BLOCK_SIZES).

FLAG_HELP = {
    "int4_qat_block_size": "Int4 QAT: a scale per block of this many inputs, as "
                           "--block_size exports (0 = per channel).",
    "int4_qat_targets": "Int4 QAT: comma-separated groups fine-tuned on the int4 grid: "
                        "embedding, lstm, softmax.",
    "int4_qat_bits": "Int4 QAT: bits of the grid (4; 2 or 8 for a mixed export's groups).",
}


@dataclasses.dataclass(frozen=True)
class Config:
  """Which weights train on the export's grid, and at how many bits.

  Attributes:
    int4_qat_targets: ``"embedding,lstm,softmax"`` or a subset (a ``mixed``
      export keeping a group at 8 bits leaves it out).
    int4_qat_bits: the grid's width: symmetric, ``2**(bits-1) - 1`` levels
      each side of zero.
    int4_qat_block_size: 0 for a scale per output channel (the exports'
      default); else the export's ``--block_size``: a scale per block of that
      many inputs, where it divides the width.
  """

  int4_qat_targets: str = ",".join(KINDS)
  int4_qat_bits: int = 4
  int4_qat_block_size: int = 0

  def __post_init__(self):
    self.targets()
    if self.int4_qat_bits not in BITS:
      raise UserError(f"--int4_qat_bits={self.int4_qat_bits}; use one of {BITS}")
    if self.int4_qat_block_size not in BLOCK_SIZES:
      raise UserError(f"--int4_qat_block_size={self.int4_qat_block_size}; use one of "
                      f"{BLOCK_SIZES} (0 = per channel), as the export's --block_size")

  def targets(self) -> tuple[str, ...]:
    names = tuple(t.strip() for t in self.int4_qat_targets.split(",") if t.strip())
    if not names or any(n not in KINDS for n in names) or len(set(names)) != len(names):
      raise UserError(f"--int4_qat_targets={self.int4_qat_targets!r}; use a comma-separated "
                      f"subset of {', '.join(KINDS)}")
    return names


def grid_values(weights: list, axis: int, bits: int, block_size: int = 0) -> list[tf.Tensor]:
  """The weights rounded to a symmetric grid: one scale per channel, or per block.

  ``axis`` is the input axis, the one a channel's ``max|w|`` runs over (0: a
  matmul weight ``[in, out]``, a scale per output column; 1: a table
  ``[V, D]``, per row); the weights are stacked along it (a dense LSTM's
  kernel and recurrent kernel: one FULLY_CONNECTED over ``[x, h]``). With
  ``block_size`` dividing the stacked width, each run of ``block_size``
  inputs of a channel has its own scale, rounded to bfloat16 as
  ai-edge-quantizer rounds block scales; otherwise one scale per channel (as
  the export falls back). Works on tensors and on NumPy arrays.
  """
  levels = 2 ** (bits - 1) - 1
  w = tf.concat([tf.convert_to_tensor(x, tf.float32) for x in weights], axis=axis)
  width = int(w.shape[axis])
  blocked = bool(block_size) and width % block_size == 0
  if blocked:  # [.., width, ..] -> [.., width / B, B, ..]: each block's max over B.
    shape = w.shape.as_list()
    shape[axis:axis + 1] = [width // block_size, block_size]
    w = tf.reshape(w, shape)
    axis += 1
  bound = tf.reduce_max(tf.abs(w), axis=axis, keepdims=True)
  scale = tf.maximum(bound, 1e-9) / levels  # ai-edge-quantizer's floor for a zero channel.
  if blocked:
    scale = tf.cast(tf.cast(scale, tf.bfloat16), tf.float32)
  q = tf.clip_by_value(tf.round(w / scale), -levels - 1, levels) * scale
  if blocked:
    axis -= 1
    shape[axis:axis + 2] = [width]
    q = tf.reshape(q, shape)
  return tf.split(q, [int(np.shape(x)[axis]) for x in weights], axis=axis)


def _channel_groups(layer: keras.layers.Layer) -> list[tuple[list[tf.Variable], int]]:
  """``[(variables sharing channel scales, reduced axis)]`` of one targeted layer."""
  if type(layer) is LSTM:  # One FULLY_CONNECTED over [x, h] per step (LSTM.fused_step).
    return [([layer.kernel, layer.recurrent_kernel], 0)]
  if type(layer) in (LowRankLSTM, keras.layers.Dense, LowRankDense):  # A matmul per weight.
    return [([v], 0) for v in layer.trainable_weights if len(v.shape) == 2]
  if type(layer) in (keras.layers.Embedding, TiedEmbedding):
    return [([layer.embeddings], 1)]
  if type(layer) is LowRankEmbedding:
    return [([layer.embeddings], 1), ([layer.projection], 0)]
  raise UserError(f"int4_qat: layer {layer.name!r} is a {type(layer).__name__}, whose "
                  "weights do not map one-to-one onto the exported int4 tensors; int4_qat "
                  "takes dense or low-rank embedding, LSTM and softmax layers")


def channel_groups(model: keras.Model, config: Config
                   ) -> list[tuple[list[tf.Variable], int]]:
  """The targeted weight groups of ``model`` (a tied table once, in embedding order)."""
  targets = config.targets()
  groups, seen = [], set()
  for layer in model.layers:
    if layer_kind(layer) not in targets:
      continue
    for variables, axis in _channel_groups(layer):
      key = tuple(id(v) for v in variables)
      if key not in seen:
        seen.add(key)
        groups.append((variables, axis))
  if not groups:
    raise UserError(f"int4_qat found no {' or '.join(targets)} layer in model "
                    f"{model.name!r}")
  return groups


class GridProjection:
  """Swaps the targeted weights for their grid values around a step, and back.

  Create it in the model's strategy scope (its residuals mirror the weights);
  call :meth:`project` and :meth:`restore` in cross-replica context, around
  ``strategy.run`` of a training step (inside or outside ``tf.function``).
  """

  def __init__(self, model: keras.Model, config: Config):
    self.bits, self.block_size = config.int4_qat_bits, config.int4_qat_block_size
    self.groups = channel_groups(model, config)
    self.residuals = [[tf.Variable(tf.zeros_like(v), trainable=False,
                                   name=f"int4_qat_residual_{i}_{j}")
                       for j, v in enumerate(variables)]
                      for i, (variables, _) in enumerate(self.groups)]

  def project(self) -> None:
    """Weights -> their grid values; the residuals keep what was taken off."""
    for (variables, axis), residuals in zip(self.groups, self.residuals):
      values = grid_values(variables, axis, self.bits, self.block_size)
      for v, r, q in zip(variables, residuals, values):
        r.assign(v - q)
        v.assign(q)

  def restore(self) -> None:
    """Adds the residuals back (after the optimizer's update)."""
    for (variables, _), residuals in zip(self.groups, self.residuals):
      for v, r in zip(variables, residuals):
        v.assign_add(r)

  def snap(self) -> None:
    """Rounds the weights for good."""
    for variables, axis in self.groups:
      for v, q in zip(variables, grid_values(variables, axis, self.bits, self.block_size)):
        v.assign(q)


def compress(model: keras.Model, config: Config,
             context: CompressionContext | None = None) -> keras.Model:
  """``model`` itself: the rounding happens around each fine-tuning step
  (:func:`weight_projections`). Checks that every target maps onto the export."""
  del context
  channel_groups(model, config)
  return model


def weight_projections(model: keras.Model, config: Config) -> list[GridProjection]:
  return [GridProjection(model, config)]


def strip(model: keras.Model, config: Config | None = None) -> keras.Model:
  GridProjection(model, config or Config()).snap()
  return model


def off_grid_fraction(model: keras.Model, config: Config | None = None) -> float:
  """Fraction of targeted weights not on the grid (0 after :func:`strip`)."""
  config = config or Config()
  off = total = 0
  for variables, axis in channel_groups(model, config):
    for v, q in zip(variables, grid_values(variables, axis, config.int4_qat_bits,
                                           config.int4_qat_block_size)):
      w = v.numpy()
      off += int(np.sum(np.abs(w - q.numpy()) > 1e-6 * max(float(np.abs(w).max()), 1e-30)))
      total += w.size
  return off / max(total, 1)

