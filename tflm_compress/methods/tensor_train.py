"""Tensor-train (TT) decomposition of the embedding, LSTM kernels and softmax.

Each targeted matrix ``W`` ``[M, N]`` is reshaped as a TT matrix with the TT
shape ``((m_1..m_d), (n_1..n_d))`` (``M <= m_1...m_d``, ``N <= n_1...n_d``:
a dim that does not factor well, e.g. a vocabulary of 10001, is zero-padded to
a nearby one that does) and decomposed by TT-SVD (``t3f.to_tt_matrix``) with a
TT-rank cap per tensor group; the model is then fine-tuned. TT-SVD with the
largest rank the shape allows is exact, so at full rank the layers reproduce
their dense counterparts. Grachev, Ignatov & Savchenko (2017, 2019) compress
LSTM language models this way (with low-rank, pruning and quantization as
the other arms).

The layers (``tflm_compress/layers/tensor_train.py``) keep the cores as Keras
weights and compute with plain TF ops, so the step model converts to TFLite
builtins; the embedding gathers core slices by the digits of each id and never
builds the ``[V, E]`` table.
"""

import dataclasses
import math

import numpy as np
import tf_keras as keras

from tflm_compress.compat import import_t3f
from tflm_compress.errors import UserError
from tflm_compress.layers.lstm import LSTM
from tflm_compress.layers.tensor_train import (TTDense, TTEmbedding, TTLSTM, tt_core_shapes,
                                               tt_param_count, tt_ranks)
from tflm_compress.methods.base import CompressionContext, layer_kind, replace_planned_layers

NAME = "tt"
# The public config class, ``tflm_compress.TensorTrain``: ``Config`` with its fields' flag
# prefixes dropped (see :mod:`tflm_compress.api`).
API_NAME = "TensorTrain"
FLAG_PREFIXES = ("tt_",)

FLAG_HELP = {
    "tt_rank": "Tensor train: TT-rank cap for every targeted matrix (0 = unset).",
    "tt_embedding_rank": "Tensor train: TT-rank of the embedding (overrides --tt_rank; 0 = dense).",
    "tt_lstm_rank": "Tensor train: TT-rank of each LSTM kernel, input and recurrent (overrides "
                    "--tt_rank; 0 = dense).",
    "tt_softmax_rank": "Tensor train: TT-rank of the softmax (overrides --tt_rank; 0 = dense).",
    "tt_num_cores": "Tensor train: number of TT cores (factors of each dim) when no shape is given.",
    "tt_embedding_shape": "Tensor train: TT shape of the [V, E] embedding as 'rows:cols', e.g. "
                          "'10x10x10x10:2x4x5x5' (default: automatic).",
    "tt_lstm_shape": "Tensor train: TT shape of every LSTM kernel ([in or H, 4H]) as 'rows:cols', "
                     "e.g. '5x5x8:8x10x10' (default: automatic).",
    "tt_softmax_shape": "Tensor train: TT shape of the [H, V] softmax kernel as 'rows:cols' "
                        "(default: automatic).",
}

GROUPS = ("embedding", "lstm", "softmax")
MAX_NUM_CORES = 8
# A dim is "nicely factorable" into d factors when its most balanced
# factorization has no factor above this times the d-th root.
BALANCE_LIMIT = 1.5


@dataclasses.dataclass(frozen=True)
class Config:
  """TT ranks and shapes per tensor group.

  Attributes:
    tt_rank: default TT-rank cap for every group.
    tt_embedding_rank, tt_lstm_rank, tt_softmax_rank: per-group overrides
      (None = ``tt_rank``, 0 = keep that group dense).
    tt_num_cores: number of cores ``d`` of automatic TT shapes.
    tt_embedding_shape, tt_lstm_shape, tt_softmax_shape: explicit TT shapes
      ``'m_1x...xm_d:n_1x...xn_d'`` (rows:cols); a side with fewer factors is
      completed with 1s. The products must reach the matrix dims (more pads).
  """

  tt_rank: int = 0
  tt_embedding_rank: int | None = None
  tt_lstm_rank: int | None = None
  tt_softmax_rank: int | None = None
  tt_num_cores: int = 3
  tt_embedding_shape: str | None = None
  tt_lstm_shape: str | None = None
  tt_softmax_shape: str | None = None

  def __post_init__(self):
    for name in ("tt_rank", "tt_embedding_rank", "tt_lstm_rank", "tt_softmax_rank"):
      value = getattr(self, name)
      if value is not None and value < 0:
        raise UserError(f"--{name}={value}; must be >= 0")
    if not 2 <= self.tt_num_cores <= MAX_NUM_CORES:
      raise UserError(f"--tt_num_cores={self.tt_num_cores}; use 2..{MAX_NUM_CORES}")
    for group in GROUPS:
      text = getattr(self, f"tt_{group}_shape")
      if text:
        parse_tt_shape(f"tt_{group}_shape", text)
    if not any(self.group_rank(g) for g in GROUPS):
      raise UserError("tt needs a TT rank: set --tt_rank or one of --tt_embedding_rank, "
                      "--tt_lstm_rank, --tt_softmax_rank")

  def group_rank(self, group: str) -> int:
    value = getattr(self, f"tt_{group}_rank")
    return self.tt_rank if value is None else value


# ---------------------------------------------------------------------------
# Factorization of dims (plain integer math).


def _divisors(n: int) -> list[int]:
  small = [f for f in range(1, math.isqrt(n) + 1) if n % f == 0]
  return sorted(set(small + [n // f for f in small]))


def balanced_factors(n: int, num_factors: int) -> tuple[int, ...]:
  """``num_factors`` ascending factors of ``n`` with the smallest largest factor.

  Ties go to the largest smallest factor (the most even split); factors of 1
  appear only when ``n`` has fewer prime factors than ``num_factors``.
  E.g. ``10000, 4 -> (10, 10, 10, 10)``, ``200, 3 -> (5, 5, 8)``.
  """
  if n < 1 or num_factors < 1:
    raise ValueError(f"balanced_factors({n}, {num_factors}): need n >= 1 and num_factors >= 1")
  best = None

  def search(remaining, count, smallest, chosen):
    nonlocal best
    if count == 1:
      if remaining >= smallest:
        candidate = tuple(chosen + [remaining])
        key = (candidate[-1], -candidate[0])
        if best is None or key < (best[-1], -best[0]):
          best = candidate
      return
    for f in _divisors(remaining):
      if f < smallest:
        continue
      if f ** count > remaining:
        break
      search(remaining // f, count - 1, f, chosen + [f])

  search(n, num_factors, 1, [])
  return best


def _is_nicely_factorable(n: int, factors: tuple[int, ...]) -> bool:
  limit = math.ceil(BALANCE_LIMIT * n ** (1.0 / len(factors)) - 1e-9)
  return max(factors) <= limit and (min(factors) >= 2 or n < 2 ** len(factors))


def factorize_dim(n: int, num_factors: int) -> tuple[int, ...]:
  """Factors of ``n`` or, if ``n`` does not factor evenly, of the next dim that does.

  The result multiplies to the smallest ``n' >= n`` whose most balanced
  factorization (:func:`balanced_factors`) has no factor above
  ``1.5 * n'^(1/num_factors)`` (and no 1s unless ``n' < 2^num_factors``); the
  rows or columns ``n..n'-1`` are zero padding. E.g. ``10000, 4 ->
  (10, 10, 10, 10)``; ``10001, 4 -> (7, 10, 11, 13)`` (10010).
  """
  best = None
  for candidate in range(n, 2 * n + 1):
    factors = balanced_factors(candidate, num_factors)
    if _is_nicely_factorable(candidate, factors):
      return factors
    score = max(factors) / candidate ** (1.0 / num_factors)
    if best is None or score < best[0]:
      best = (score, factors)
  return best[1]  # Only for tiny n with many factors; never reached in practice.


def format_tt_shape(tt_shape) -> str:
  return ":".join("x".join(str(f) for f in side) for side in tt_shape)


def parse_tt_shape(flag: str, text: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """``'10x10x10x10:2x4x5x5'`` -> ``((10, 10, 10, 10), (2, 4, 5, 5))``.

  The side with fewer factors is completed with trailing 1s (a core of mode 1
  on that side), so ``'10x10x10x10:5x5x8'`` is ``((10,10,10,10), (5,5,8,1))``.
  """
  usage = (f"--{flag}={text!r} is not a TT shape; write the row factors and the column factors "
           "as 'm1xm2x...:n1xn2x...', e.g. '10x10x10x10:2x4x5x5'")
  sides = text.strip().split(":")
  if len(sides) != 2:
    raise UserError(usage)
  try:
    rows, cols = ([int(f) for f in side.split("x")] for side in sides)
  except ValueError:
    raise UserError(usage) from None
  if any(f < 1 for f in rows + cols):
    raise UserError(usage + " (every factor >= 1)")
  d = max(len(rows), len(cols))
  if d > MAX_NUM_CORES:
    raise UserError(f"--{flag}={text!r} has {d} cores; use at most {MAX_NUM_CORES}")
  return tuple(rows + [1] * (d - len(rows))), tuple(cols + [1] * (d - len(cols)))


def auto_tt_shape(dims: tuple[int, int], num_cores: int):
  """The TT shape :func:`factorize_dim` gives each dim of a ``[M, N]`` matrix."""
  return factorize_dim(dims[0], num_cores), factorize_dim(dims[1], num_cores)


def max_tt_rank(tt_shape) -> int:
  """The largest TT rank any cut of ``tt_shape`` has (full-rank TT-SVD reaches it)."""
  return max(tt_ranks(tt_shape, np.iinfo(np.int64).max))


def resolve_tt_shape(flag: str, text: str | None, dims: tuple[int, int], num_cores: int,
                     what: str):
  """The TT shape for a ``dims`` matrix: parsed from ``text`` (checked) or automatic."""
  auto = auto_tt_shape(dims, num_cores)
  if not text:
    return auto
  tt_shape = parse_tt_shape(flag, text)
  for side, factors, dim in (("rows", tt_shape[0], dims[0]), ("columns", tt_shape[1], dims[1])):
    product = math.prod(factors)
    if not dim <= product < 2 * dim:
      raise UserError(
          f"--{flag}={text!r}: the {side} multiply to {product} but {what} has {dim} {side}; "
          f"the factors must multiply to {dim} (or a little more, which pads), "
          f"e.g. --{flag}={format_tt_shape(auto)}")
  return tt_shape


def check_tt_rank(flag: str, rank: int, tt_shape, what: str) -> None:
  """A clear error for a TT rank above what ``tt_shape`` can have."""
  largest = max_tt_rank(tt_shape)
  if not 1 <= rank <= largest:
    raise UserError(f"--{flag}={rank} does not fit {what} (TT shape {format_tt_shape(tt_shape)}): "
                    f"its largest TT rank is {largest}; use 1..{largest}")


# ---------------------------------------------------------------------------
# TT-SVD.


def pad_matrix(matrix: np.ndarray, dims: tuple[int, int]) -> np.ndarray:
  """``matrix`` zero-padded at the end to ``dims``."""
  matrix = np.asarray(matrix)
  return np.pad(matrix, [(0, dims[0] - matrix.shape[0]), (0, dims[1] - matrix.shape[1])])


def tt_svd(matrix: np.ndarray, tt_shape, max_rank: int) -> list[np.ndarray]:
  """TT cores ``[r_{k-1}, m_k, n_k, r_k]`` of ``matrix`` (zero-padded to the shape's dims).

  ``t3f.to_tt_matrix`` (TT-SVD, in float64): successive truncated SVDs of the
  unfoldings, the quasi-optimal TT approximation with ranks capped at
  ``max_rank``; exact when ``max_rank >= max_tt_rank(tt_shape)``.
  """
  t3f = import_t3f()
  dims = (math.prod(tt_shape[0]), math.prod(tt_shape[1]))
  padded = pad_matrix(np.asarray(matrix, np.float64), dims)
  tt = t3f.to_tt_matrix(padded, shape=[list(tt_shape[0]), list(tt_shape[1])],
                        max_tt_rank=int(max_rank))
  cores = [np.asarray(c, np.float32) for c in tt.tt_cores]
  expected = tt_core_shapes(tt_shape, max_rank)
  assert [c.shape for c in cores] == expected, ([c.shape for c in cores], expected)
  return cores


# ---------------------------------------------------------------------------
# The method.


def _plan_matrix(config: Config, group: str, matrix: np.ndarray, what: str):
  """``(tt_shape, rank, cores)`` for one matrix, or None if its group stays dense."""
  rank = config.group_rank(group)
  if not rank:
    return None
  tt_shape = resolve_tt_shape(f"tt_{group}_shape", getattr(config, f"tt_{group}_shape"),
                              matrix.shape, config.tt_num_cores, what)
  check_tt_rank(f"tt_{group}_rank" if getattr(config, f"tt_{group}_rank") is not None
                else "tt_rank", rank, tt_shape, what)
  return tt_shape, rank, tt_svd(matrix, tt_shape, rank)


def _core_weights(prefix: str, cores: list[np.ndarray]) -> dict:
  return {f"{prefix}{k}": core for k, core in enumerate(cores)}


def compress(model: keras.Model, config: Config,
             context: CompressionContext | None = None) -> keras.Model:
  """Replaces the targeted dense layers of ``model`` by TT-SVD-initialised TT layers."""
  del context
  plans = {}  # layer name -> (new layer, {weight name: value})
  for layer in model.layers:
    kind = layer_kind(layer)
    if kind == "embedding" and type(layer) is keras.layers.Embedding:
      table = layer.embeddings.numpy()
      plan = _plan_matrix(config, "embedding", table, f"{layer.name} ({table.shape[0]}x"
                          f"{table.shape[1]})")
      if plan:
        tt_shape, rank, cores = plan
        plans[layer.name] = (TTEmbedding(layer.input_dim, layer.output_dim, tt_shape, rank,
                                         name=layer.name), _core_weights("core_", cores))
    elif (kind == "softmax" and type(layer) is keras.layers.Dense
          and layer.get_config()["activation"] == "linear"):
      kernel = layer.kernel.numpy()
      plan = _plan_matrix(config, "softmax", kernel,
                          f"{layer.name} ({kernel.shape[0]}x{kernel.shape[1]})")
      if plan:
        tt_shape, rank, cores = plan
        bias = layer.bias.numpy() if layer.use_bias else np.zeros(layer.units, np.float32)
        plans[layer.name] = (TTDense(layer.units, tt_shape, rank, name=layer.name),
                             {**_core_weights("core_", cores), "bias": bias})
    elif kind == "lstm" and type(layer) is LSTM:
      kernel, recurrent = layer.kernel.numpy(), layer.recurrent_kernel.numpy()
      kernel_plan = _plan_matrix(config, "lstm", kernel, f"{layer.name} kernel "
                                 f"({kernel.shape[0]}x{kernel.shape[1]})")
      recurrent_plan = _plan_matrix(config, "lstm", recurrent, f"{layer.name} recurrent_kernel "
                                    f"({recurrent.shape[0]}x{recurrent.shape[1]})")
      if kernel_plan and recurrent_plan:
        weights = {"bias": layer.bias.numpy(), **_core_weights("kernel_core_", kernel_plan[2]),
                   **_core_weights("recurrent_core_", recurrent_plan[2])}
        new = TTLSTM(layer.units, kernel_tt_shape=kernel_plan[0], kernel_tt_rank=kernel_plan[1],
                     recurrent_tt_shape=recurrent_plan[0], recurrent_tt_rank=recurrent_plan[1],
                     name=layer.name)
        plans[layer.name] = (new, weights)
  if not plans:
    raise UserError("tt found no dense embedding, LSTM or softmax layer to decompose "
                    "(tied embeddings and already-compressed layers are left alone)")

  return replace_planned_layers(model, plans)


def _matrix_report(tt_shape, tt_rank: int, dims: tuple[int, int]) -> dict:
  params = tt_param_count(tt_shape, tt_rank)
  return {
      "tt_shape": format_tt_shape(tt_shape),
      "tt_rank": tt_rank,
      "ranks": list(tt_ranks(tt_shape, tt_rank)),
      "dims": list(dims),
      "padded_dims": [math.prod(tt_shape[0]), math.prod(tt_shape[1])],
      "params": params,
      "dense_params": int(dims[0] * dims[1]),
      "compression": float(dims[0] * dims[1] / params),
  }


def report(model: keras.Model) -> dict:
  """Per TT layer: TT shapes, ranks and parameter counts (cores only, bias apart)."""
  out = {}
  for layer in model.layers:
    if isinstance(layer, TTEmbedding):
      out[layer.name] = _matrix_report(layer.tt_shape, layer.tt_rank,
                                       (layer.input_dim, layer.output_dim))
    elif isinstance(layer, TTDense):
      out[layer.name] = _matrix_report(layer.tt_shape, layer.tt_rank,
                                       (layer.input_dim, layer.units))
    elif isinstance(layer, TTLSTM):
      entry = {}
      if layer.kernel_tt_rank:
        entry["kernel"] = _matrix_report(layer.kernel_tt_shape, layer.kernel_tt_rank,
                                         (layer.input_dim, 4 * layer.units))
      if layer.recurrent_tt_rank:
        entry["recurrent_kernel"] = _matrix_report(layer.recurrent_tt_shape,
                                                   layer.recurrent_tt_rank,
                                                   (layer.units, 4 * layer.units))
      out[layer.name] = entry
  return out
