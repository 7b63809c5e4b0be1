"""Slim embeddings: input and output word vectors from a shared sub-vector pool.

Li et al. 2018, "Slim Embedding Layers for Recurrent Neural Language Models"
(AAAI 2018, arXiv 1711.09873). Each targeted ``[V, D]`` matrix of word rows
(the embedding table; the softmax kernel transposed, one output vector per
word) is replaced by a pool of ``slim_m`` sub-vectors of size ``D / slim_k``
and a fixed random ``[V, slim_k]`` assignment (seeded by ``slim_seed``; the
softmax uses ``slim_seed + 1``, so the two tables differ): word ``w``'s row is
``concat_k pool[a[w, k]]``. Parameters per table: ``M * D / K`` (plus ``V``
for the softmax bias); the assignment is int32 data in the layer.

Initialisation (``slim_init``):

* ``average`` (default): distilled from the trained model: each pool entry
  is the frequency-weighted mean (weights: training count + 1) of the trained
  sub-vectors assigned to it. That is the least-squares optimum of
  ``sum_w f_w ||e_w - slim(e)_w||^2`` for the fixed assignment, so frequent
  words start closest to their trained vectors. The softmax bias is copied.
* ``random``: the pool starts from the layer's initializer and the softmax
  bias from zero (training from scratch, as in the paper).

Then end-to-end fine-tuning (``compression.compress_and_finetune``).
"""

import dataclasses

import numpy as np
import tf_keras as keras

from tflm_compress.errors import UserError
from tflm_compress.layers.slim_embedding import SlimEmbedding, SlimSoftmax, random_assignment
from tflm_compress.methods.base import (CompressionContext, replace_planned_layers,
                                        word_vector_tables)

NAME = "slim_embedding"
# The public config class, ``tflm_compress.SlimEmbedding``: ``Config`` with its fields' flag
# prefixes dropped (see :mod:`tflm_compress.api`).
API_NAME = "SlimEmbedding"
FLAG_PREFIXES = ("slim_",)
TARGETS = ("embedding", "softmax")
INITS = ("average", "random")

FLAG_HELP = {
    "slim_k": "Slim embeddings: sub-vectors per word vector K (must divide the embedding / "
              "hidden size).",
    "slim_m": "Slim embeddings: pool size M, shared sub-vectors per table (required).",
    "slim_seed": "Slim embeddings: seed of the random assignment tables.",
    "slim_targets": "Slim embeddings: comma-separated tables to compress: embedding, softmax.",
    "slim_init": "Slim embeddings: 'average' (pool from the trained vectors) or 'random' "
                 "(from scratch).",
}


@dataclasses.dataclass(frozen=True)
class Config:
  """Slim embedding parameters (see the module docstring).

  Attributes:
    slim_k: sub-vectors per word ``K``.
    slim_m: pool size ``M`` (``1..V*K``).
    slim_seed: seed of the assignment (the softmax table uses ``slim_seed + 1``).
    slim_targets: ``"embedding,softmax"`` or one of them.
    slim_init: ``average`` or ``random``.
  """

  slim_k: int = 4
  slim_m: int = 0
  slim_seed: int = 0
  slim_targets: str = "embedding,softmax"
  slim_init: str = "average"

  def __post_init__(self):
    if self.slim_k < 1:
      raise UserError(f"--slim_k={self.slim_k}; must be >= 1 and divide the embedding size")
    if self.slim_m < 1:
      raise UserError(f"slim_embedding needs --slim_m (the pool size, >= 1); got {self.slim_m}")
    if self.slim_init not in INITS:
      raise UserError(f"--slim_init={self.slim_init!r}; use one of {', '.join(INITS)}")
    self.targets()

  def targets(self) -> tuple[str, ...]:
    names = tuple(t.strip() for t in self.slim_targets.split(",") if t.strip())
    bad = [t for t in names if t not in TARGETS]
    if bad or not names:
      raise UserError(f"--slim_targets={self.slim_targets!r}; use a comma-separated subset of "
                      f"{', '.join(TARGETS)}")
    return names


# ----- the math, on plain arrays -----

def divisors(n: int) -> list[int]:
  return [k for k in range(1, n + 1) if n % k == 0]


def slim_params(vocab_size: int, dim: int, num_subvectors: int, pool_size: int,
                bias: bool = False) -> int:
  """Float parameters of a slim table: ``M * D / K`` (``+ V`` with a bias)."""
  return pool_size * (dim // num_subvectors) + (vocab_size if bias else 0)


def subvectors(matrix: np.ndarray, num_subvectors: int) -> np.ndarray:
  """``[V, D]`` -> ``[V, K, D/K]`` (word ``w``'s ``k``-th sub-vector)."""
  vocab_size, dim = matrix.shape
  return np.asarray(matrix).reshape(vocab_size, num_subvectors, dim // num_subvectors)


def average_pool(matrix: np.ndarray, assignment: np.ndarray, pool_size: int,
                 weights: np.ndarray | None = None) -> np.ndarray:
  """``[M, D/K]``: pool entry ``m`` = the weighted mean of the sub-vectors assigned to ``m``.

  The least-squares pool for a fixed assignment: it minimizes
  ``sum_w weights_w ||matrix_w - expand(pool, assignment)_w||^2``. Entries
  no word uses stay zero.
  """
  parts = subvectors(np.asarray(matrix, np.float64), assignment.shape[1])
  weights = np.ones(len(matrix)) if weights is None else np.asarray(weights, np.float64)
  slot_weights = np.broadcast_to(weights[:, None], assignment.shape).ravel()
  ids = assignment.ravel()
  sums = np.zeros((pool_size, parts.shape[-1]))
  np.add.at(sums, ids, parts.reshape(-1, parts.shape[-1]) * slot_weights[:, None])
  totals = np.bincount(ids, weights=slot_weights, minlength=pool_size)
  return np.where(totals[:, None] > 0, sums / np.maximum(totals, 1e-300)[:, None], 0.0)


def expand(pool: np.ndarray, assignment: np.ndarray) -> np.ndarray:
  """The ``[V, D]`` matrix a pool and an assignment represent."""
  return np.asarray(pool)[assignment].reshape(assignment.shape[0], -1)


# ----- the method -----

def check_config(config: Config, shape: tuple[int, int], layer_name: str, dim_name: str) -> None:
  """Clear errors for a ``K`` that does not divide ``D`` or an ``M`` beyond ``V*K``."""
  vocab_size, dim = shape
  if dim % config.slim_k:
    raise UserError(f"--slim_k={config.slim_k} does not divide the {dim_name} {dim} of "
                    f"{layer_name}; valid --slim_k: {', '.join(map(str, divisors(dim)))}")
  slots = vocab_size * config.slim_k
  if config.slim_m > slots:
    raise UserError(f"--slim_m={config.slim_m} exceeds the {slots} sub-vector slots of "
                    f"{layer_name} (V={vocab_size} x K={config.slim_k}); use 1..{slots}")


def compress(model: keras.Model, config: Config,
             context: CompressionContext | None = None) -> keras.Model:
  """Replaces the dense embedding and/or softmax by slim layers."""
  context = context or CompressionContext()
  targets = config.targets()
  plans = {}  # layer name -> (new layer, {weight name: value})
  for layer, kind, rows in word_vector_tables(model, targets):
    if kind == "embedding":
      check_config(config, rows.shape, layer.name, "embedding size")
      seed = config.slim_seed
      new = SlimEmbedding(layer.input_dim, layer.output_dim, config.slim_k, config.slim_m,
                          seed=seed, name=layer.name)
      values = {}
    else:
      check_config(config, rows.shape, layer.name, "input (hidden) size")
      seed = config.slim_seed + 1
      new = SlimSoftmax(layer.units, config.slim_k, config.slim_m, seed=seed, name=layer.name)
      values = {"bias": layer.bias.numpy()} if config.slim_init == "average" else {}
    if config.slim_init == "average":
      assignment = random_assignment(rows.shape[0], config.slim_k, config.slim_m, seed)
      counts = context.word_counts(rows.shape[0])
      values["pool"] = average_pool(rows, assignment, config.slim_m, counts + 1.0)
    plans[layer.name] = (new, values)
  if not plans:
    raise UserError(f"slim_embedding found no dense {' or '.join(targets)} layer to compress "
                    "(tied embeddings and already-compressed layers are left alone)")

  return replace_planned_layers(model, plans)


def report(model: keras.Model) -> dict:
  """K, M, parameters and duplicate word vectors of each slim layer."""
  out = {}
  for layer in model.layers:
    if isinstance(layer, (SlimEmbedding, SlimSoftmax)):
      assignment = layer.assignment.numpy()
      vocab_size = assignment.shape[0]
      dim = layer.pool.shape[1] * layer.num_subvectors
      pool_params = int(np.prod(layer.pool.shape))
      out[layer.name] = {
          "num_subvectors": layer.num_subvectors, "pool_size": layer.pool_size,
          "seed": layer.seed, "pool_params": pool_params,
          "fraction_of_dense": pool_params / (vocab_size * dim),
          "int32_table_bytes": 4 * assignment.size,
          # Words whose K pool ids equal another word's: identical vectors.
          "duplicate_words": int(vocab_size - len(np.unique(assignment, axis=0))),
      }
  return out
