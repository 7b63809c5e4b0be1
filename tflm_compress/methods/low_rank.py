"""Low-rank factorization: ``W ~ U V`` by truncated SVD, then fine-tuning.

Targets: the embedding (``E ~ A B``), each LSTM's input and recurrent kernels
(the four gates stacked), and the softmax (``logits = (h U) V + b``). A rank is
given per tensor group, or chosen per matrix as the smallest keeping a fraction
``energy`` of the squared singular values. The factors start as
``U = U_r sqrt(S_r)`` and ``V = sqrt(S_r) V_r^T``, the best rank-r
approximation (Eckart-Young), so at full rank the layer is exact.
"""

import dataclasses

import numpy as np
import tf_keras as keras

from tflm_compress.errors import UserError
from tflm_compress.layers.lstm import LSTM
from tflm_compress.layers.low_rank import LowRankDense, LowRankEmbedding, LowRankLSTM
from tflm_compress.methods.base import (CompressionContext, check_rank, layer_kind,
                                        replace_planned_layers)

NAME = "low_rank"
# The public config class, ``tflm_compress.LowRank``: ``Config`` with its fields' flag
# prefixes dropped (see :mod:`tflm_compress.api`).
API_NAME = "LowRank"
FLAG_PREFIXES = ()

FLAG_HELP = {
    "rank": "Low-rank: rank for every targeted matrix (0 = unset).",
    "embedding_rank": "Low-rank: rank of the embedding (overrides --rank; 0 = dense).",
    "lstm_rank": "Low-rank: rank of each LSTM kernel, input and recurrent (overrides --rank).",
    "softmax_rank": "Low-rank: rank of the softmax (overrides --rank; 0 = dense).",
    "energy": "Low-rank: choose each rank to keep this fraction of squared singular values "
              "(0 = use the ranks).",
}


@dataclasses.dataclass(frozen=True)
class Config:
  """Ranks per tensor group; ``None`` means "use ``rank``"; 0 means "keep dense".

  Attributes:
    rank: default rank for every group.
    embedding_rank, lstm_rank, softmax_rank: per-group overrides.
    energy: if > 0, each matrix gets the smallest rank whose singular values
      keep this fraction of the squared Frobenius norm (the per-group ranks
      then only say which groups are targeted: any value but 0).
  """

  rank: int = 0
  embedding_rank: int | None = None
  lstm_rank: int | None = None
  softmax_rank: int | None = None
  energy: float = 0.0

  def __post_init__(self):
    for name in ("rank", "embedding_rank", "lstm_rank", "softmax_rank"):
      value = getattr(self, name)
      if value is not None and value < 0:
        raise UserError(f"--{name}={value}; must be >= 0")
    if not 0.0 <= self.energy <= 1.0:
      raise UserError(f"--energy={self.energy}; must be in [0, 1] (0 = use the ranks)")
    if not any(self.group_rank(g) for g in ("embedding", "lstm", "softmax")):
      raise UserError("low_rank needs a rank: set --rank or one of --embedding_rank, "
                      "--lstm_rank, --softmax_rank (or --energy with --rank=1 for all groups)")

  def group_rank(self, group: str) -> int:
    value = getattr(self, f"{group}_rank")
    return self.rank if value is None else value


def truncated_svd(matrix: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
  """``(U, V)`` with ``U @ V`` the best rank-``rank`` approximation of ``matrix``."""
  u, s, vt = np.linalg.svd(np.asarray(matrix, np.float64), full_matrices=False)
  root = np.sqrt(s[:rank])
  return (u[:, :rank] * root).astype(np.float32), (root[:, None] * vt[:rank]).astype(np.float32)


def rank_for_energy(matrix: np.ndarray, energy: float) -> int:
  """Smallest rank whose singular values keep ``energy`` of ``sum(s^2)``."""
  s = np.linalg.svd(np.asarray(matrix, np.float64), compute_uv=False)
  kept = np.cumsum(s**2) / np.sum(s**2)
  return int(min(np.searchsorted(kept, energy - 1e-12) + 1, len(s)))


def _rank(config: Config, group: str, matrix: np.ndarray, flag: str, layer_name: str) -> int:
  rank = config.group_rank(group)
  if not rank:
    return 0
  if config.energy:
    return rank_for_energy(matrix, config.energy)
  check_rank(flag, rank, matrix.shape, layer_name)
  return rank


def compress(model: keras.Model, config: Config,
             context: CompressionContext | None = None) -> keras.Model:
  """Replaces the targeted dense layers of ``model`` by SVD-initialised factors."""
  del context
  plans = {}  # layer name -> (new layer, {weight name: value})
  for layer in model.layers:
    kind = layer_kind(layer)
    if kind == "embedding" and type(layer) is keras.layers.Embedding:
      table = layer.embeddings.numpy()
      rank = _rank(config, "embedding", table, "embedding_rank", layer.name)
      if rank:
        a, b = truncated_svd(table, rank)
        plans[layer.name] = (LowRankEmbedding(layer.input_dim, layer.output_dim, rank,
                                              name=layer.name),
                             {"embeddings": a, "projection": b})
    elif kind == "softmax" and type(layer) is keras.layers.Dense:
      kernel = layer.kernel.numpy()
      rank = _rank(config, "softmax", kernel, "softmax_rank", layer.name)
      if rank:
        u, v = truncated_svd(kernel, rank)
        plans[layer.name] = (LowRankDense(layer.units, rank, name=layer.name),
                             {"kernel_u": u, "kernel_v": v, "bias": layer.bias.numpy()})
    elif kind == "lstm" and type(layer) is LSTM:
      kernel, recurrent = layer.kernel.numpy(), layer.recurrent_kernel.numpy()
      input_rank = _rank(config, "lstm", kernel, "lstm_rank", layer.name)
      recurrent_rank = _rank(config, "lstm", recurrent, "lstm_rank", layer.name)
      if input_rank or recurrent_rank:
        weights = {"bias": layer.bias.numpy()}
        if input_rank:
          weights["kernel_u"], weights["kernel_v"] = truncated_svd(kernel, input_rank)
        if recurrent_rank:
          weights["recurrent_u"], weights["recurrent_v"] = truncated_svd(recurrent, recurrent_rank)
        new = LowRankLSTM(layer.units, input_rank=input_rank, recurrent_rank=recurrent_rank,
                          name=layer.name)
        plans[layer.name] = (new, weights)
  if not plans:
    raise UserError("low_rank found no dense embedding, LSTM or softmax layer to factorize "
                    "(tied embeddings and already-compressed layers are left alone)")

  return replace_planned_layers(model, plans)


def report(model: keras.Model) -> dict:
  """The rank of each factorized layer."""
  out = {}
  for layer in model.layers:
    if isinstance(layer, (LowRankDense, LowRankEmbedding)):
      out[layer.name] = {"rank": layer.rank}
    elif isinstance(layer, LowRankLSTM):
      out[layer.name] = {"input_rank": layer.input_rank, "recurrent_rank": layer.recurrent_rank}
  return out
