"""Tensor-train (TT) layers: matrices stored as a chain of small 4-D cores.

A ``M x N`` matrix whose dims factor as ``M = m_1 ... m_d`` and
``N = n_1 ... n_d`` (the *TT shape* ``((m_1..m_d), (n_1..n_d))``) is stored as
cores ``G_k`` of shape ``[r_{k-1}, m_k, n_k, r_k]`` (``r_0 = r_d = 1``), with

    W[(i_1..i_d), (j_1..j_d)] = G_1[:, i_1, j_1, :] @ ... @ G_d[:, i_d, j_d, :]

where ``(i_1..i_d)`` are the row-major (mixed-radix) digits of the row index,
and likewise for the column. This is the layout of ``t3f.TensorTrain`` cores
(``t3f.to_tt_matrix`` produces them, ``t3f.full`` rebuilds ``W``), so
TT-SVD-initialised cores drop in as the layers' weights.

The layers compute with plain TF ops only (RESHAPE, TRANSPOSE, MatMul, GATHER,
FLOOR_DIV/FLOOR_MOD, PAD, SLICE) so the step model lowers to TFLite builtins.
Two equivalent ways to apply a TT kernel, chosen from the static input shape:

* one row (the step model, ``[1, 1, ...]``): the core chain
  (:func:`tt_matmul`: TRANSPOSE + FULLY_CONNECTED per core, in the cheaper of
  the two orders), so the converted graph holds only the cores and costs
  :func:`tt_matvec_macs` per token instead of ``M N``;
* many rows or steps (training, evaluation): the kernel is rebuilt once per
  call (:func:`tt_to_full`, ``O(r M N)``) and applied with one matmul per
  step, because the chain's many tiny ops are slow to train (a training step
  of the tiny model took ~10x the dense one on CPU; about the same once rebuilt).

The embedding always gathers core slices (:func:`tt_gather_rows`,
GATHER + BATCH_MATMUL): its ``[V, E]`` table is never built.

A matrix whose dims do not factor well is padded: the TT shape may multiply to
more than the layer's dims; the input is zero-padded to ``M`` and the output is
sliced back to the layer's width, so padded rows/columns never show.
"""

import math
import threading

import tensorflow as tf
import tf_keras as keras

from tflm_compress.layers.lstm import LSTM, PACKAGE


def normalize_tt_shape(tt_shape) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """``((m_1..m_d), (n_1..n_d))`` as tuples of ints (lists from JSON accepted)."""
  rows, cols = (tuple(int(f) for f in side) for side in tt_shape)
  if len(rows) != len(cols) or not rows:
    raise ValueError(f"TT shape {tt_shape} needs the same number (>= 1) of row and column "
                     "factors")
  if any(f < 1 for f in rows + cols):
    raise ValueError(f"TT shape {tt_shape} has a factor < 1")
  return rows, cols


def tt_ranks(tt_shape, max_rank: int) -> tuple[int, ...]:
  """The ``d + 1`` TT ranks ``(1, r_1, ..., r_{d-1}, 1)`` for a rank cap ``max_rank``.

  Each ``r_k = min(max_rank, r_{k-1} m_k n_k, prod_{j>k} m_j n_j)``: the ranks
  TT-SVD (``t3f.to_tt_matrix(..., max_tt_rank=max_rank)``) gives, since no
  unfolding has a larger rank than its smaller side.
  """
  rows, cols = normalize_tt_shape(tt_shape)
  modes = [m * n for m, n in zip(rows, cols)]
  ranks = [1]
  for k in range(len(modes) - 1):
    ranks.append(min(int(max_rank), ranks[-1] * modes[k], math.prod(modes[k + 1:])))
  return tuple(ranks + [1])


def tt_core_shapes(tt_shape, max_rank: int) -> list[tuple[int, int, int, int]]:
  """Shapes ``[r_{k-1}, m_k, n_k, r_k]`` of the cores."""
  rows, cols = normalize_tt_shape(tt_shape)
  ranks = tt_ranks(tt_shape, max_rank)
  return [(ranks[k], rows[k], cols[k], ranks[k + 1]) for k in range(len(rows))]


def tt_param_count(tt_shape, max_rank: int) -> int:
  return int(sum(math.prod(s) for s in tt_core_shapes(tt_shape, max_rank)))


def tt_glorot_stddev(tt_shape, max_rank: int) -> float:
  """Core stddev giving full-matrix entries the Glorot variance ``2 / (M + N)``.

  An entry of ``W`` is a sum of ``r_1 ... r_{d-1}`` products of ``d`` core
  entries, so its variance is ``prod(r) * s^(2d)`` for i.i.d. cores of stddev ``s``.
  """
  rows, cols = normalize_tt_shape(tt_shape)
  variance = 2.0 / (math.prod(rows) + math.prod(cols))
  inner = math.prod(tt_ranks(tt_shape, max_rank)[1:-1])
  return float((variance / inner) ** (1.0 / (2 * len(rows))))


def tt_matvec_macs(tt_shape, ranks, order: str = "l2r") -> int:
  """Multiply-accumulates per row of :func:`tt_matmul` in ``order`` (``"l2r"``: core 1
  first, ``"r2l"``: core d first), for TT ranks ``(1, r_1, ..., r_{d-1}, 1)``.

  Step ``k`` of ``l2r`` costs ``r_{k-1} m_k n_k r_k`` times the column factors already
  produced (``n_1..n_{k-1}``) times the row factors not yet contracted
  (``m_{k+1}..m_d``); ``r2l`` is ``l2r`` of the digit-reversed matrix.
  """
  rows, cols = normalize_tt_shape(tt_shape)
  ranks = [int(r) for r in ranks]
  if order == "r2l":
    rows, cols, ranks = rows[::-1], cols[::-1], ranks[::-1]
  elif order != "l2r":
    raise ValueError(f"order={order!r}; use 'l2r' or 'r2l'")
  return int(sum(ranks[k] * rows[k] * cols[k] * ranks[k + 1] * math.prod(cols[:k])
                 * math.prod(rows[k + 1:]) for k in range(len(rows))))


# TFLite's TRANSPOSE takes up to 6 dims: the digit reversal of r2l transposes
# [B, m_1..m_d], so it is offered for d <= 5 cores.
_MAX_REVERSED_CORES = 5


def cheapest_order(tt_shape, ranks) -> str:
  """``"l2r"`` or ``"r2l"``, whichever :func:`tt_matvec_macs` counts fewer of (ties: l2r)."""
  if len(normalize_tt_shape(tt_shape)[0]) > _MAX_REVERSED_CORES:
    return "l2r"
  return min(("l2r", "r2l"), key=lambda order: tt_matvec_macs(tt_shape, ranks, order))


def _tt_matmul_l2r(x: tf.Tensor, cores, rows, cols) -> tf.Tensor:
  # The running tensor is laid out [Q, B P, r] (the row factors not yet
  # contracted, the batch with the column factors produced so far, the current
  # rank). Each step moves m_k last (a 2-D TRANSPOSE) and multiplies by the
  # core seen as [r_{k-1} m_k, n_k r_k] (FULLY_CONNECTED).
  ranks = [int(c.shape[0]) for c in cores] + [1]
  # [B, m_1, rest] -> [rest, B, m_1]: the layout above with r_0 = 1.
  t = tf.transpose(tf.reshape(x, [-1, rows[0], math.prod(rows[1:])]), [2, 0, 1])
  for k, core in enumerate(cores):
    if k:
      t = tf.transpose(tf.reshape(t, [rows[k], -1]))
    t = tf.reshape(t, [-1, ranks[k] * rows[k]])
    t = tf.matmul(t, tf.reshape(core, [ranks[k] * rows[k], cols[k] * ranks[k + 1]]))
  return tf.reshape(t, [-1, math.prod(cols)])


def _reverse_digits(t: tf.Tensor, factors) -> tf.Tensor:
  """``[B, prod(factors)]`` with each index's mixed-radix digits over ``factors``
  reversed: one TRANSPOSE of ``[B, f_1..f_d]``."""
  d = len(factors)
  t = tf.reshape(t, [-1, *factors])
  return tf.reshape(tf.transpose(t, [0, *range(d, 0, -1)]), [-1, math.prod(factors)])


def tt_matmul(x: tf.Tensor, cores, tt_shape, order: str | None = None) -> tf.Tensor:
  """``x @ W`` for ``x`` ``[B, M]`` and the TT matrix ``W`` ``[M, N]`` -> ``[B, N]``.

  One core at a time, as FULLY_CONNECTED (the core seen as
  ``[r_{k-1} m_k, n_k r_k]``) after a 2-D TRANSPOSE of the running tensor, in
  ``order``: ``"l2r"`` (core 1 first), ``"r2l"`` (core d first: the same chain
  over the digit-reversed matrix, whose cores are the constants reversed, with
  one TRANSPOSE of ``x``'s digits before and one of the output's after), or
  None, the one :func:`cheapest_order` picks. The orders can differ by
  orders of magnitude (a ``2x100:100x100`` rank-32 softmax: 32.6M
  multiply-accumulates per row left to right, 1.28M right to left, 2M dense).
  """
  rows, cols = normalize_tt_shape(tt_shape)
  ranks = [int(c.shape[0]) for c in cores] + [1]
  order = order or cheapest_order(tt_shape, ranks)
  if order == "l2r":
    return _tt_matmul_l2r(x, cores, rows, cols)
  if order != "r2l":
    raise ValueError(f"order={order!r}; use 'l2r', 'r2l' or None")
  # W'[(i_d..i_1), (j_d..j_1)] = G_d'[i_d, j_d] ... G_1'[i_1, j_1] with G_k' the core's
  # rank axes swapped: x W = reverse(reverse(x) W').
  flipped = [tf.transpose(core, [3, 1, 2, 0]) for core in reversed(cores)]
  y = _tt_matmul_l2r(_reverse_digits(x, rows), flipped, rows[::-1], cols[::-1])
  return _reverse_digits(y, cols[::-1])


def tt_to_full(cores, tt_shape) -> tf.Tensor:
  """The dense ``[M, N]`` matrix of the cores (``t3f.full`` with plain TF ops)."""
  rows, cols = normalize_tt_shape(tt_shape)
  full = tf.reshape(cores[0], [rows[0], cols[0], -1])  # [P_m, P_n, r]
  for k in range(1, len(cores)):
    rank, next_rank = int(cores[k].shape[0]), int(cores[k].shape[-1])
    prefix_rows, prefix_cols = math.prod(rows[:k]), math.prod(cols[:k])
    product = tf.matmul(tf.reshape(full, [-1, rank]), tf.reshape(cores[k], [rank, -1]))
    product = tf.reshape(product, [prefix_rows, prefix_cols, rows[k], cols[k], next_rank])
    full = tf.reshape(tf.transpose(product, [0, 2, 1, 3, 4]),
                      [prefix_rows * rows[k], prefix_cols * cols[k], next_rank])
  return tf.reshape(full, [math.prod(rows), math.prod(cols)])


def single_row(shape) -> bool:
  """Whether a static shape ``[..., features]`` holds exactly one row (the step model)."""
  leading = tf.TensorShape(shape)[:-1].as_list()
  return all(d == 1 for d in leading)


def tt_gather_rows(ids: tf.Tensor, cores, tt_shape) -> tf.Tensor:
  """Rows ``W[ids]`` of the TT matrix, ``ids`` int ``[B]`` -> ``[B, N]``.

  An id's row-major digits ``i_k`` over ``(m_1..m_d)`` select the core slices
  ``G_k[:, i_k]`` (``[r_{k-1}, n_k, r_k]``, one GATHER per core); their chain
  product (BATCH_MATMUL) is the row. Nothing of size ``M`` is ever built.
  """
  rows, cols = normalize_tt_shape(tt_shape)
  ranks = [int(c.shape[0]) for c in cores] + [1]
  ids = tf.cast(ids, tf.int32)
  out = None
  for k, core in enumerate(cores):
    stride = math.prod(rows[k + 1:])
    digit = tf.math.floordiv(ids, stride) if stride > 1 else ids
    if k:
      digit = tf.math.floormod(digit, rows[k])
    # [r, m, n, r'] -> [m, r, n r']: a gather along the first axis.
    table = tf.reshape(tf.transpose(core, [1, 0, 2, 3]),
                       [rows[k], ranks[k], cols[k] * ranks[k + 1]])
    slab = tf.gather(table, digit)  # [B, r_{k-1}, n_k r_k]
    if out is None:
      out = tf.reshape(slab, [-1, cols[0], ranks[1]])
    else:
      out = tf.reshape(tf.matmul(out, slab), [-1, math.prod(cols[:k + 1]), ranks[k + 1]])
  return tf.reshape(out, [-1, math.prod(cols)])


def _tt_dims(tt_shape) -> tuple[int, int]:
  rows, cols = normalize_tt_shape(tt_shape)
  return math.prod(rows), math.prod(cols)


def _dense_kernel(cores, tt_shape, input_dim: int, output_dim: int) -> tf.Tensor:
  """The ``[input_dim, output_dim]`` kernel rebuilt from the cores (padding cut off)."""
  return tt_to_full(cores, tt_shape)[:input_dim, :output_dim]


def _padded_tt_matmul(x: tf.Tensor, cores, tt_shape, output_dim: int) -> tf.Tensor:
  """``x`` ``[B, in]`` zero-padded to ``M``, times the TT matrix, sliced to ``output_dim``."""
  padded_in, padded_out = _tt_dims(tt_shape)
  input_dim = int(x.shape[-1])
  if padded_in > input_dim:
    x = tf.pad(x, [[0, 0], [0, padded_in - input_dim]])
  y = tt_matmul(x, cores, tt_shape)
  if padded_out > output_dim:
    y = y[:, :output_dim]
  return y


def _check_fits(layer: str, tt_shape, input_dim: int, output_dim: int) -> None:
  padded_in, padded_out = _tt_dims(tt_shape)
  if padded_in < input_dim or padded_out < output_dim:
    raise ValueError(f"{layer}: TT shape {tt_shape} ({padded_in}x{padded_out}) is smaller than "
                     f"the matrix ({input_dim}x{output_dim})")


def _add_cores(layer: keras.layers.Layer, prefix: str, tt_shape, tt_rank: int) -> list:
  stddev = tt_glorot_stddev(tt_shape, tt_rank)
  return [layer.add_weight(f"{prefix}{k}", shape=shape,
                           initializer=keras.initializers.RandomNormal(stddev=stddev))
          for k, shape in enumerate(tt_core_shapes(tt_shape, tt_rank))]


def _shape_config(tt_shape) -> list[list[int]]:
  return [list(side) for side in tt_shape]


@keras.utils.register_keras_serializable(package=PACKAGE)
class TTDense(keras.layers.Layer):
  """``y = x @ W + bias`` with ``W`` ``[input_dim, units]`` a TT matrix.

  Weights: ``core_0 .. core_{d-1}`` (``[r_{k-1}, m_k, n_k, r_k]``, t3f layout)
  and ``bias`` ``[units]``. If the TT shape multiplies to more than
  ``input_dim x units``, the input is zero-padded and the output sliced. Used
  for the softmax. One static row (the step model) goes through the core
  chain; more rows use the kernel rebuilt once per call (same values).

  Args:
    units: output size.
    tt_shape: ``((m_1..m_d), (n_1..n_d))`` with ``prod(m) >= input_dim`` and
      ``prod(n) >= units``.
    tt_rank: TT-rank cap; the ranks are :func:`tt_ranks` of it.
    **kwargs: passed to ``keras.layers.Layer``.

  Call arguments:
    inputs: float ``[..., input_dim]``; returns ``[..., units]``.

  Example:
    >>> layer = TTDense(30, tt_shape=((2, 2, 2), (2, 3, 5)), tt_rank=4)
    >>> layer(tf.zeros([2, 7, 8])).shape
    TensorShape([2, 7, 30])
  """

  # The TFLite ops this layer lowers to in the step graph (export.check_exportable).
  tflite_lowering = ("TRANSPOSE + FULLY_CONNECTED per core, cheapest order (a digit-reversal "
                     "TRANSPOSE before and after for right to left; PAD/SLICE if padded)")

  def __init__(self, units: int, tt_shape, tt_rank: int, **kwargs):
    super().__init__(**kwargs)
    self.units = int(units)
    self.tt_shape = normalize_tt_shape(tt_shape)
    self.tt_rank = int(tt_rank)

  def build(self, input_shape):
    self.input_dim = int(input_shape[-1])
    _check_fits(self.name, self.tt_shape, self.input_dim, self.units)
    self.cores = _add_cores(self, "core_", self.tt_shape, self.tt_rank)
    self.bias = self.add_weight("bias", shape=(self.units,), initializer="zeros")
    super().build(input_shape)

  def call(self, inputs):
    shape = tf.shape(inputs)
    flat = tf.reshape(inputs, [-1, self.input_dim])
    if single_row(inputs.shape):
      out = _padded_tt_matmul(flat, self.cores, self.tt_shape, self.units)
    else:
      out = tf.matmul(flat, _dense_kernel(self.cores, self.tt_shape, self.input_dim, self.units))
    out = out + self.bias
    return tf.reshape(out, tf.concat([shape[:-1], [self.units]], 0))

  def compute_output_shape(self, input_shape):
    return tf.TensorShape(input_shape)[:-1].concatenate([self.units])

  def get_config(self):
    config = super().get_config()
    config.update({"units": self.units, "tt_shape": _shape_config(self.tt_shape),
                   "tt_rank": self.tt_rank})
    return config


@keras.utils.register_keras_serializable(package=PACKAGE)
class TTEmbedding(keras.layers.Layer):
  """An embedding table ``[input_dim, output_dim]`` stored as a TT matrix.

  A lookup gathers, for each id, one slice of each core (selected by the id's
  mixed-radix digits over the row factors) and multiplies them: the
  ``[V, E]`` table is never built. Rows past ``input_dim`` (padding of the
  vocabulary to a factorable size) are never gathered; columns past
  ``output_dim`` are sliced off.

  Weights: ``core_0 .. core_{d-1}`` (``[r_{k-1}, m_k, n_k, r_k]``, t3f layout).

  Args:
    input_dim: vocabulary size ``V`` (``prod(m) >= V``).
    output_dim: embedding size ``E`` (``prod(n) >= E``).
    tt_shape: ``((m_1..m_d), (n_1..n_d))``.
    tt_rank: TT-rank cap.
    **kwargs: passed to ``keras.layers.Layer``.

  Call arguments:
    inputs: int ids ``[...]`` in ``[0, input_dim)``; returns ``[..., E]``.
  """

  # The TFLite ops this layer lowers to in the step graph (export.check_exportable).
  tflite_lowering = "FLOOR_DIV/FLOOR_MOD + GATHER + BATCH_MATMUL per core"

  def __init__(self, input_dim: int, output_dim: int, tt_shape, tt_rank: int, **kwargs):
    super().__init__(**kwargs)
    self.input_dim = int(input_dim)
    self.output_dim = int(output_dim)
    self.tt_shape = normalize_tt_shape(tt_shape)
    self.tt_rank = int(tt_rank)
    _check_fits(self.name, self.tt_shape, self.input_dim, self.output_dim)

  def build(self, input_shape):
    self.cores = _add_cores(self, "core_", self.tt_shape, self.tt_rank)
    super().build(input_shape)

  def call(self, inputs):
    shape = tf.shape(inputs)
    rows = tt_gather_rows(tf.reshape(inputs, [-1]), self.cores, self.tt_shape)
    if _tt_dims(self.tt_shape)[1] > self.output_dim:
      rows = rows[:, :self.output_dim]
    return tf.reshape(rows, tf.concat([shape, [self.output_dim]], 0))

  def compute_output_shape(self, input_shape):
    return tf.TensorShape(input_shape).concatenate([self.output_dim])

  def get_config(self):
    config = super().get_config()
    config.update({"input_dim": self.input_dim, "output_dim": self.output_dim,
                   "tt_shape": _shape_config(self.tt_shape), "tt_rank": self.tt_rank})
    return config


@keras.utils.register_keras_serializable(package=PACKAGE)
class TTLSTM(LSTM):
  """An :class:`LSTM` whose input and/or recurrent kernels are TT matrices.

  ``kernel`` ``[input_dim, 4H]`` is held as ``kernel_core_k`` and
  ``recurrent_kernel`` ``[H, 4H]`` as ``recurrent_core_k``, each over the four
  gates stacked (i, f, c, o); a TT rank of 0 keeps that kernel dense
  (``kernel`` / ``recurrent_kernel``). The same weights run in training and in
  the step model: a single static step (``x`` ``[1, 1, in]``) multiplies by
  the core chains; longer calls rebuild each kernel once and then run as a
  dense LSTM.

  Args:
    units: hidden size ``H``.
    kernel_tt_shape: TT shape of the input kernel (``prod(m) >= input_dim``,
      ``prod(n) >= 4H``), or None when ``kernel_tt_rank`` is 0.
    kernel_tt_rank: TT-rank cap of the input kernel (0 = dense).
    recurrent_tt_shape: TT shape of the recurrent kernel (``prod(m) >= H``).
    recurrent_tt_rank: TT-rank cap of the recurrent kernel (0 = dense).
    **kwargs: passed to :class:`LSTM`.

  Call arguments:
    inputs: ``[x, h, c]`` as for :class:`LSTM`.
  """

  # The TFLite ops this layer lowers to in the step graph (export.check_exportable).
  tflite_lowering = "TT kernels as TTDense, then the LSTM's elementwise ops"

  def __init__(self, units: int, kernel_tt_shape=None, kernel_tt_rank: int = 0,
               recurrent_tt_shape=None, recurrent_tt_rank: int = 0, **kwargs):
    super().__init__(units, **kwargs)
    self.kernel_tt_rank = int(kernel_tt_rank)
    self.recurrent_tt_rank = int(recurrent_tt_rank)
    for name, rank, shape in (("kernel", self.kernel_tt_rank, kernel_tt_shape),
                              ("recurrent", self.recurrent_tt_rank, recurrent_tt_shape)):
      if rank and shape is None:
        raise ValueError(f"TTLSTM {name}_tt_rank={rank} needs {name}_tt_shape")
    self.kernel_tt_shape = normalize_tt_shape(kernel_tt_shape) if self.kernel_tt_rank else None
    self.recurrent_tt_shape = (normalize_tt_shape(recurrent_tt_shape)
                               if self.recurrent_tt_rank else None)
    # Kernels rebuilt for the call in progress (see call), by thread id since
    # MirroredStrategy calls a layer from one thread per replica; empty between
    # calls. Set with object.__setattr__ to stay out of Keras's tracking.
    object.__setattr__(self, "_rebuilt", {})

  def build_kernels(self, input_dim: int) -> None:
    gates = 4 * self.units
    if self.kernel_tt_rank:
      _check_fits(f"{self.name} kernel", self.kernel_tt_shape, input_dim, gates)
      self.kernel_cores = _add_cores(self, "kernel_core_", self.kernel_tt_shape,
                                     self.kernel_tt_rank)
    else:
      self.kernel = self.add_weight("kernel", shape=(input_dim, gates),
                                    initializer=self.kernel_initializer)
    if self.recurrent_tt_rank:
      _check_fits(f"{self.name} recurrent_kernel", self.recurrent_tt_shape, self.units, gates)
      self.recurrent_cores = _add_cores(self, "recurrent_core_", self.recurrent_tt_shape,
                                        self.recurrent_tt_rank)
    else:
      self.recurrent_kernel = self.add_weight("recurrent_kernel", shape=(self.units, gates),
                                              initializer=self.recurrent_initializer)

  def run_steps(self, x, h, c):
    # Over many rows or steps (training, evaluation) rebuild each TT kernel once
    # per call and use plain matmuls; for one static row (the step model) keep
    # the core chain so the .tflite stores only the cores.
    rebuilt = {}
    if not single_row(tf.TensorShape(x.shape)):
      gates = 4 * self.units
      if self.kernel_tt_rank:
        rebuilt["kernel"] = _dense_kernel(self.kernel_cores, self.kernel_tt_shape,
                                          self.input_dim, gates)
      if self.recurrent_tt_rank:
        rebuilt["recurrent"] = _dense_kernel(self.recurrent_cores, self.recurrent_tt_shape,
                                             self.units, gates)
    self._rebuilt[threading.get_ident()] = rebuilt
    try:
      return super().run_steps(x, h, c)
    finally:
      del self._rebuilt[threading.get_ident()]

  def input_projection(self, x):
    if not self.kernel_tt_rank:
      return tf.matmul(x, self.kernel)
    rebuilt = self._rebuilt.get(threading.get_ident(), {})
    if "kernel" in rebuilt:
      return tf.matmul(x, rebuilt["kernel"])
    return _padded_tt_matmul(x, self.kernel_cores, self.kernel_tt_shape, 4 * self.units)

  def recurrent_projection(self, h):
    if not self.recurrent_tt_rank:
      return tf.matmul(h, self.recurrent_kernel)
    rebuilt = self._rebuilt.get(threading.get_ident(), {})
    if "recurrent" in rebuilt:
      return tf.matmul(h, rebuilt["recurrent"])
    return _padded_tt_matmul(h, self.recurrent_cores, self.recurrent_tt_shape, 4 * self.units)

  def get_config(self):
    config = super().get_config()
    config.update({
        "kernel_tt_shape": None if self.kernel_tt_shape is None
                           else _shape_config(self.kernel_tt_shape),
        "kernel_tt_rank": self.kernel_tt_rank,
        "recurrent_tt_shape": None if self.recurrent_tt_shape is None
                              else _shape_config(self.recurrent_tt_shape),
        "recurrent_tt_rank": self.recurrent_tt_rank,
    })
    return config
