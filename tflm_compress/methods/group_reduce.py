"""GroupReduce: block-wise, frequency-weighted low-rank embedding and softmax.

Chen et al. 2018 (arXiv 1806.06950). For each targeted ``[V, D]`` matrix of
per-word rows (the embedding table; the softmax kernel transposed):

1. **Blocks.** Ids are frequency-sorted, so the vocabulary is cut into
   ``gr_num_blocks`` contiguous id ranges of (nearly) equal word counts, as in
   the paper: block 0 holds the most frequent words. (Equal *total frequency*
   blocks would put a handful of words in block 0 and cap its rank at that
   handful; with equal word counts a block's total frequency is proportional
   to its average frequency, the paper's rank criterion.)
2. **Ranks.** Block ``b`` gets a rank proportional to its total training
   frequency ``F_b`` (``gr_rank_power=1``; ``F_b ** p`` in general): ``r_b = clip(round(s * F_b / F_0), 1, min(n_b, D))``,
   with ``s`` the largest scale whose parameter count ``sum r_b (n_b + D)``
   fits the budget; leftover budget then raises ranks by one, most frequent
   block first, keeping ranks non-increasing in block order. So ranks are
   monotone non-increasing with block frequency and the budget is met.
   ``gr_ranks`` gives explicit ranks instead.
3. **Weighted SVD.** With word weights ``f_w`` (training count + 1, so a word
   never seen in training, such as ``<unk>`` in a closed vocabulary, still
   has a defined row), block ``b``'s basis ``V_b`` (orthonormal rows) is the
   top ``r_b`` right singular vectors of ``D_b^{1/2} E_b`` (computed as the
   top eigenvectors of ``E_b^T D_b E_b``, ``D x D``), and
   ``U_b = E_b V_b^T``. This is the SVD solution with the weighting undone
   on ``U_b`` (``D_b^{-1/2} P_r S_r = E_b Q_r``) without dividing by the
   weights, and the best rank-``r_b`` approximation of the block under the
   frequency-weighted error ``sum_w f_w ||e_w - u_w V_b||^2``. One block at
   full rank reproduces the matrix exactly.
4. **Refinement** (``gr_refine_rounds``). Each round reassigns words to the
   block whose basis reconstructs them best (weighted projection error), then
   recomputes each block's weighted SVD. Block sizes stay fixed, so the
   parameter count stays within the budget: without that every word would
   move to the highest-rank block (a full-rank basis reconstructs any row
   exactly) and the budget would be lost. Ranks stay with their blocks.
   Reassignment is done by optimal
   exchanges between each pair of blocks (the ``k`` best swaps, ``k`` as large
   as every swap still lowers the error). Both steps can only lower the
   weighted error; a round that would raise it (rounding) is undone and
   refinement stops.
5. End-to-end fine-tuning (``compression.compress_and_finetune``).

The layers (``tflm_compress.layers.group_reduce``) carry the word -> block and
word -> position-in-block maps as int32 tables.
"""

import dataclasses

import numpy as np
import tf_keras as keras

from tflm_compress.errors import UserError
from tflm_compress.layers.group_reduce import GroupReduceEmbedding, GroupReduceSoftmax
from tflm_compress.methods.base import (CompressionContext, replace_planned_layers,
                                        word_vector_tables)

NAME = "group_reduce"
# The public config class, ``tflm_compress.GroupReduce``: ``Config`` with its fields' flag
# prefixes dropped (see :mod:`tflm_compress.api`).
API_NAME = "GroupReduce"
FLAG_PREFIXES = ("gr_",)
TARGETS = ("embedding", "softmax")

FLAG_HELP = {
    "gr_num_blocks": "GroupReduce: number of frequency blocks (contiguous id ranges of equal "
                     "word counts).",
    "gr_budget": "GroupReduce: parameters per targeted matrix (biases and int tables not "
                 "counted): a fraction of the dense V*D if <= 1, else an absolute count.",
    "gr_ranks": "GroupReduce: explicit rank per block, most frequent first, comma-separated "
                "(overrides --gr_budget).",
    "gr_rank_power": "GroupReduce: ranks proportional to block frequency ** this power (1 = the "
                     "paper's proportional allocation; 0.5 = square root, milder; 0 = equal).",
    "gr_refine_rounds": "GroupReduce: rounds of block refinement (0 = keep contiguous blocks).",
    "gr_targets": "GroupReduce: comma-separated matrices to compress: embedding, softmax.",
}


@dataclasses.dataclass(frozen=True)
class Config:
  """GroupReduce parameters (see the module docstring).

  Attributes:
    gr_num_blocks: number of vocabulary blocks ``c``.
    gr_budget: parameter budget per targeted matrix: ``0 < x <= 1`` is a
      fraction of the dense ``V * D``; ``x > 1`` an absolute count. Counts
      only the factors (``sum r_b (n_b + D)``), not the softmax bias nor the
      int32 tables.
    gr_ranks: explicit ranks ``"r_0,r_1,..."`` (one per block, most frequent
      block first); overrides ``gr_budget``.
    gr_rank_power: ranks proportional to ``F_b ** gr_rank_power`` (``1``:
      proportional to frequency, the paper's rule; ``0.5``: to its square
      root, which leaves the rare blocks more rank under a power law;
      ``0``: equal ranks).
    gr_refine_rounds: refinement rounds.
    gr_targets: ``"embedding,softmax"``, or one of them.
  """

  gr_num_blocks: int = 4
  gr_budget: float = 0.25
  gr_ranks: str = ""
  gr_rank_power: float = 1.0
  gr_refine_rounds: int = 3
  gr_targets: str = "embedding,softmax"

  def __post_init__(self):
    if self.gr_num_blocks < 1:
      raise UserError(f"--gr_num_blocks={self.gr_num_blocks}; must be >= 1")
    if not self.gr_budget > 0:
      raise UserError(f"--gr_budget={self.gr_budget}; must be > 0 (a fraction of the dense "
                      "matrix if <= 1, else a parameter count)")
    if self.gr_budget > 1 and self.gr_budget != int(self.gr_budget):
      raise UserError(f"--gr_budget={self.gr_budget}; above 1 it is a parameter count and "
                      "must be a whole number")
    if not 0 <= self.gr_rank_power <= 2:
      raise UserError(f"--gr_rank_power={self.gr_rank_power}; use 0..2 (1 = proportional to "
                      "frequency, 0.5 = square root, 0 = equal ranks)")
    if self.gr_refine_rounds < 0:
      raise UserError(f"--gr_refine_rounds={self.gr_refine_rounds}; must be >= 0")
    ranks = self.explicit_ranks()
    if ranks is not None and len(ranks) != self.gr_num_blocks:
      raise UserError(f"--gr_ranks={self.gr_ranks!r} gives {len(ranks)} ranks but "
                      f"--gr_num_blocks={self.gr_num_blocks}; give one rank per block")
    self.targets()

  def explicit_ranks(self) -> list[int] | None:
    if not self.gr_ranks.strip():
      return None
    try:
      ranks = [int(r) for r in self.gr_ranks.split(",")]
    except ValueError:
      raise UserError(f"--gr_ranks={self.gr_ranks!r}; use comma-separated whole numbers, "
                      "e.g. 32,16,8,4") from None
    if min(ranks) < 1:
      raise UserError(f"--gr_ranks={self.gr_ranks!r}; every rank must be >= 1")
    return ranks

  def targets(self) -> tuple[str, ...]:
    names = tuple(t.strip() for t in self.gr_targets.split(",") if t.strip())
    bad = [t for t in names if t not in TARGETS]
    if bad or not names:
      raise UserError(f"--gr_targets={self.gr_targets!r}; use a comma-separated subset of "
                      f"{', '.join(TARGETS)}")
    return names


# ----- the math, on plain arrays -----

def word_weights(counts: np.ndarray) -> np.ndarray:
  """Frequency weights ``f_w``: training counts plus one (every weight positive)."""
  return np.asarray(counts, np.float64) + 1.0


def equal_size_blocks(vocab_size: int, num_blocks: int) -> np.ndarray:
  """Block of each id: ``num_blocks`` contiguous ranges, sizes differing by at most one."""
  if not 1 <= num_blocks <= vocab_size:
    raise ValueError(f"num_blocks={num_blocks} must be in 1..{vocab_size}")
  sizes = np.full(num_blocks, vocab_size // num_blocks)
  sizes[:vocab_size % num_blocks] += 1
  return np.repeat(np.arange(num_blocks), sizes)


def block_params(block_sizes, ranks, dim: int) -> int:
  """Float parameters of the factors: ``sum_b r_b * (n_b + dim)``."""
  return int(sum(r * (n + dim) for n, r in zip(block_sizes, ranks)))


def max_ranks(block_sizes, dim: int) -> list[int]:
  return [int(min(n, dim)) for n in block_sizes]


def allocate_ranks(block_frequencies, block_sizes, dim: int, budget: int) -> list[int]:
  """Ranks proportional to block frequency that fit ``budget`` parameters.

  ``r_b = clip(round(s * F_b / max F), 1, min(n_b, dim))`` (halves round
  up) for the largest scale ``s`` whose :func:`block_params` is
  ``<= budget``; the leftover budget then raises ranks by one in block order
  (most frequent first) while they stay non-increasing. Blocks must be
  given most frequent first (and, for monotone ranks, with non-increasing
  sizes, as :func:`equal_size_blocks`).

  Raises:
    ValueError: if even rank 1 everywhere exceeds ``budget``.
  """
  freq = np.asarray(block_frequencies, np.float64)
  caps = np.asarray(max_ranks(block_sizes, dim))
  cost = np.asarray(block_sizes) + dim  # parameters per unit of rank, per block

  def ranks_at(scale):
    return np.clip(np.floor(scale * freq / freq.max() + 0.5), 1, caps).astype(int)

  floor = ranks_at(0.0)
  if floor @ cost > budget:
    raise ValueError(f"budget {budget} is below the {int(floor @ cost)} parameters of rank 1 "
                     "in every block")
  # floor(s * q + 1/2) steps up at s = (k - 0.5) / q: try each step, keep the last that fits.
  ratios = freq / freq.max()
  steps = sorted({(k - 0.5) / q * (1 + 1e-9) for q, cap in zip(ratios, caps)
                  for k in range(2, cap + 1)})
  ranks = floor
  for scale in steps:
    candidate = ranks_at(scale)
    if candidate @ cost > budget:
      break
    ranks = candidate
  ranks = list(ranks)
  grown = True
  while grown:
    grown = False
    for b in range(len(ranks)):
      fits = block_params(block_sizes, ranks, dim) + cost[b] <= budget
      if fits and ranks[b] < caps[b] and (b == 0 or ranks[b] < ranks[b - 1]):
        ranks[b] += 1
        grown = True
  return [int(r) for r in ranks]


def weighted_basis(rows: np.ndarray, weights: np.ndarray, rank: int) -> np.ndarray:
  """Orthonormal ``[rank, D]`` basis of the best rank-``rank`` weighted approximation.

  The top right singular vectors of ``diag(sqrt(weights)) @ rows``, computed
  as the top eigenvectors of its ``[D, D]`` Gram matrix ``rows^T W rows``
  (``n * D^2`` work instead of an SVD of the tall block).
  """
  rows = np.asarray(rows, np.float64)
  gram = rows.T @ (np.asarray(weights, np.float64)[:, None] * rows)
  _, vectors = np.linalg.eigh(gram)  # ascending eigenvalues
  return vectors[:, ::-1][:, :rank].T.copy()


def projection_costs(matrix: np.ndarray, weights: np.ndarray, bases) -> np.ndarray:
  """``[V, c]``: weighted error ``f_w ||e_w - e_w V_b^T V_b||^2`` of each word in each block.

  With orthonormal basis rows the residual norm is ``||e||^2 - ||e V_b^T||^2``.
  """
  matrix = np.asarray(matrix, np.float64)
  norms = np.sum(matrix**2, axis=1)
  costs = np.empty((matrix.shape[0], len(bases)))
  for b, basis in enumerate(bases):
    kept = np.sum((matrix @ basis.T)**2, axis=1)
    costs[:, b] = weights * np.maximum(norms - kept, 0.0)
  return costs


def block_bases(matrix: np.ndarray, weights: np.ndarray, assignment: np.ndarray, ranks):
  return [weighted_basis(matrix[assignment == b], weights[assignment == b], r)
          for b, r in enumerate(ranks)]


def weighted_error(matrix: np.ndarray, weights: np.ndarray, assignment: np.ndarray,
                   bases) -> float:
  """Total weighted reconstruction error of ``matrix`` under ``assignment`` and ``bases``."""
  return _assigned_total(projection_costs(matrix, weights, bases), assignment)


def exchange(costs: np.ndarray, assignment: np.ndarray) -> np.ndarray:
  """Lowers ``sum costs[w, assignment[w]]`` by swaps that keep every block's size.

  For each pair of blocks, the words of each that would gain most by moving
  to the other are swapped pairwise while a pair's total gain is positive
  (the best exchange between two blocks at fixed costs).
  """
  assignment = assignment.copy()
  num_blocks = costs.shape[1]
  for a in range(num_blocks):
    for b in range(a + 1, num_blocks):
      in_a, in_b = np.flatnonzero(assignment == a), np.flatnonzero(assignment == b)
      gain_a = costs[in_a, a] - costs[in_a, b]  # > 0: better off in b
      gain_b = costs[in_b, b] - costs[in_b, a]
      order_a, order_b = np.argsort(-gain_a, kind="stable"), np.argsort(-gain_b, kind="stable")
      pair_gain = gain_a[order_a][:len(in_b)] + gain_b[order_b][:len(in_a)]
      swaps = int(np.sum(np.cumprod(pair_gain > 0)))
      assignment[in_a[order_a[:swaps]]] = b
      assignment[in_b[order_b[:swaps]]] = a
  return assignment


def refine(matrix: np.ndarray, weights: np.ndarray, assignment: np.ndarray, ranks,
           rounds: int) -> tuple[np.ndarray, list[float]]:
  """GroupReduce's refinement: ``rounds`` of reassignment + weighted SVD.

  Returns:
    ``(assignment, errors)``: the refined word -> block map and the weighted
    error before refinement and after each round kept (non-increasing: a
    round that would raise the error is undone and ends refinement).
  """
  bases = block_bases(matrix, weights, assignment, ranks)
  costs = projection_costs(matrix, weights, bases)
  errors = [_assigned_total(costs, assignment)]
  for _ in range(rounds):
    new_assignment = exchange(costs, assignment)
    if np.array_equal(new_assignment, assignment):
      break
    new_bases = block_bases(matrix, weights, new_assignment, ranks)
    new_costs = projection_costs(matrix, weights, new_bases)
    error = _assigned_total(new_costs, new_assignment)
    if error > errors[-1]:
      break  # Rounding made it worse: keep the old assignment.
    assignment, costs = new_assignment, new_costs
    errors.append(error)
  return assignment, errors


def _assigned_total(costs: np.ndarray, assignment: np.ndarray) -> float:
  return float(costs[np.arange(len(assignment)), assignment].sum())


@dataclasses.dataclass
class Factors:
  """GroupReduce of one matrix.

  Attributes:
    word_block, word_position: int32 ``[V]``: block of each word and its row
      in the block (blocks list their words in id order).
    u: per block ``[n_b, r_b]``; v: per block ``[r_b, D]`` (orthonormal rows).
    block_sizes, ranks: per block.
    errors: weighted error before refinement and after each kept round.
    relative_error: final weighted error / ``sum_w f_w ||e_w||^2``.
  """

  word_block: np.ndarray
  word_position: np.ndarray
  u: list[np.ndarray]
  v: list[np.ndarray]
  block_sizes: list[int]
  ranks: list[int]
  errors: list[float]
  relative_error: float

  def reconstruct(self) -> np.ndarray:
    """The ``[V, D]`` matrix the factors represent."""
    rows = [self.u[b][self.word_position[w]] @ self.v[b]
            for w, b in enumerate(self.word_block)]
    return np.stack(rows)


def group_reduce(matrix: np.ndarray, counts: np.ndarray, num_blocks: int, ranks,
                 refine_rounds: int) -> Factors:
  """Blocks, weighted SVD and refinement of a ``[V, D]`` matrix of word rows."""
  matrix = np.asarray(matrix, np.float64)
  weights = word_weights(counts)
  assignment = equal_size_blocks(len(matrix), num_blocks)
  assignment, errors = refine(matrix, weights, assignment, ranks, refine_rounds)
  bases = block_bases(matrix, weights, assignment, ranks)
  word_position = np.zeros(len(matrix), np.int64)
  u, block_sizes = [], []
  for b, basis in enumerate(bases):
    ids = np.flatnonzero(assignment == b)
    word_position[ids] = np.arange(len(ids))
    u.append((matrix[ids] @ basis.T).astype(np.float32))
    block_sizes.append(len(ids))
  total = float(np.sum(weights * np.sum(matrix**2, axis=1)))
  return Factors(assignment.astype(np.int32), word_position.astype(np.int32), u,
                 [basis.astype(np.float32) for basis in bases], block_sizes, list(ranks),
                 errors, errors[-1] / total if total else 0.0)


# ----- the method -----

def _budget_params(config: Config, shape: tuple[int, int]) -> int:
  if config.gr_budget <= 1:
    return int(np.floor(config.gr_budget * shape[0] * shape[1]))
  return int(config.gr_budget)


def plan_ranks(config: Config, counts: np.ndarray, shape: tuple[int, int],
               layer_name: str) -> list[int]:
  """The ranks for a ``[V, D]`` matrix (validated: clear errors naming the flags)."""
  vocab_size, dim = shape
  if config.gr_num_blocks > vocab_size:
    raise UserError(f"--gr_num_blocks={config.gr_num_blocks} exceeds the {vocab_size} words of "
                    f"{layer_name}; use 1..{vocab_size}")
  blocks = equal_size_blocks(vocab_size, config.gr_num_blocks)
  sizes = np.bincount(blocks).tolist()
  caps = max_ranks(sizes, dim)
  ranks = config.explicit_ranks()
  if ranks is not None:
    if any(r > cap for r, cap in zip(ranks, caps)):
      raise UserError(
          f"--gr_ranks={config.gr_ranks} does not fit {layer_name} ({vocab_size}x{dim}, blocks of "
          f"{sizes} words): each block's rank must be <= min(its size, {dim}); use ranks <= "
          f"{','.join(map(str, caps))}")
    return ranks
  budget = _budget_params(config, shape)
  least = block_params(sizes, [1] * len(sizes), dim)
  if budget < least:
    raise UserError(
        f"--gr_budget={config.gr_budget:g} allows {budget} parameters for {layer_name} "
        f"({vocab_size}x{dim}) but {config.gr_num_blocks} blocks need at least {least} (rank 1 "
        f"each); use --gr_budget >= {least / (vocab_size * dim):.4g} (or >= {least} as a count) "
        "or fewer --gr_num_blocks")
  weights = word_weights(counts)
  block_freq = np.bincount(blocks, weights=weights)
  return allocate_ranks(block_freq ** config.gr_rank_power, sizes, dim, budget)


def compress(model: keras.Model, config: Config,
             context: CompressionContext | None = None) -> keras.Model:
  """Replaces the dense embedding and/or softmax by GroupReduce layers."""
  context = context or CompressionContext()
  targets = config.targets()
  plans = {}  # layer name -> (new layer, {weight name: value})
  for layer, kind, rows in word_vector_tables(model, targets):
    counts = context.word_counts(rows.shape[0])
    ranks = plan_ranks(config, counts, rows.shape, layer.name)
    factors = group_reduce(rows, counts, config.gr_num_blocks, ranks, config.gr_refine_rounds)
    if kind == "embedding":
      new = GroupReduceEmbedding(layer.input_dim, layer.output_dim, factors.block_sizes,
                                 factors.ranks, name=layer.name)
      values = {f"block{b}_u": u for b, u in enumerate(factors.u)}
      values.update({f"block{b}_v": v for b, v in enumerate(factors.v)})
    else:
      new = GroupReduceSoftmax(layer.units, factors.block_sizes, factors.ranks, name=layer.name)
      values = {f"block{b}_basis": v.T for b, v in enumerate(factors.v)}
      values.update({f"block{b}_words": u.T for b, u in enumerate(factors.u)})
      values["bias"] = layer.bias.numpy()
    values["word_block"] = factors.word_block
    values["word_position"] = factors.word_position
    plans[layer.name] = (new, values)
  if not plans:
    raise UserError(f"group_reduce found no dense {' or '.join(targets)} layer to compress "
                    "(tied embeddings and already-compressed layers are left alone)")

  return replace_planned_layers(model, plans)


def report(model: keras.Model) -> dict:
  """Blocks, ranks and parameters of each GroupReduce layer."""
  out = {}
  for layer in model.layers:
    if isinstance(layer, (GroupReduceEmbedding, GroupReduceSoftmax)):
      dim = layer.output_dim if isinstance(layer, GroupReduceEmbedding) else layer.basis[0].shape[0]
      vocab_size = sum(layer.block_sizes)
      params = block_params(layer.block_sizes, layer.ranks, dim)
      out[layer.name] = {"block_sizes": list(layer.block_sizes), "ranks": list(layer.ranks),
                         "factor_params": params,
                         "fraction_of_dense": params / (vocab_size * dim),
                         "int32_table_bytes": 2 * 4 * vocab_size}
  return out
