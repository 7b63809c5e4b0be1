"""A generated word source whose entropy rate is known exactly.

The source is a class-based first-order Markov chain:

* Word ranks ``r = 0 .. V-1`` are dealt round-robin into ``K`` classes
  (class ``r mod K``, in-class rank ``r div K``); rank 0 is ``<eos>``.
* The class sequence is ``c_t = (c_{t-1} + d_t) mod K`` with offsets ``d_t``
  drawn i.i.d. from a Zipfian distribution ``p`` (over a seeded permutation of
  the offsets). Its transition matrix is circulant, hence doubly stochastic, so
  the stationary class distribution is uniform and the chain starts in it.
* Given its class, a word is drawn from a Zipfian distribution ``E_c`` over the
  class's words (exponent ``word_zipf``).

Because classes are disjoint, the previous word determines the previous class,
so the entropy rate in nats per token is exactly::

    H = H(p) + (1/K) * sum_c H(E_c)

and no model can reach a perplexity below ``exp(H)``. Word frequencies are
``E_c(w) / K``: Zipfian in rank, as in natural text.
"""

import dataclasses

import numpy as np

from tflm_compress.data.vocab import EOS
from tflm_compress.errors import UserError


@dataclasses.dataclass(frozen=True)
class GeneratedCorpusConfig:
  """Parameters of the generated source.

  Attributes:
    vocab_size: number of distinct tokens, ``<eos>`` included.
    num_classes: number of word classes ``K`` (``2 <= K <= vocab_size``).
    word_zipf: Zipf exponent of words within a class.
    class_zipf: Zipf exponent of the class offsets.
    train_tokens, valid_tokens, test_tokens: split lengths in tokens.
    seed: seeds the offset permutation and the samples.
  """

  vocab_size: int = 1000
  num_classes: int = 10
  word_zipf: float = 1.1
  class_zipf: float = 1.5
  train_tokens: int = 200_000
  valid_tokens: int = 20_000
  test_tokens: int = 20_000
  seed: int = 0

  def __post_init__(self):
    if self.vocab_size < 3:
      raise UserError(f"generated corpus vocab_size={self.vocab_size}; use >= 3")
    if not 2 <= self.num_classes <= self.vocab_size:
      raise UserError(
          f"generated corpus num_classes={self.num_classes}; use 2..{self.vocab_size}")
    for name in ("train_tokens", "valid_tokens", "test_tokens"):
      if getattr(self, name) < 2:
        raise UserError(f"generated corpus {name}={getattr(self, name)}; use >= 2")
    if self.word_zipf < 0 or self.class_zipf < 0:
      raise UserError("generated corpus Zipf exponents must be >= 0")


def _zipf(n: int, exponent: float) -> np.ndarray:
  weights = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent
  return weights / weights.sum()


def _entropy(p: np.ndarray) -> float:
  p = p[p > 0]
  return float(-(p * np.log(p)).sum())


class MarkovWordSource:
  """The source described in the module docstring."""

  def __init__(self, config: GeneratedCorpusConfig):
    self.config = config
    k, v = config.num_classes, config.vocab_size
    rng = np.random.default_rng(config.seed)
    # Offset distribution: Zipf over a seeded permutation of 0..K-1.
    self.offset_probs = np.empty(k)
    self.offset_probs[rng.permutation(k)] = _zipf(k, config.class_zipf)
    # Words of class c, by in-class rank: ranks c, c+K, c+2K, ...
    self.class_words = [np.arange(c, v, k) for c in range(k)]
    self.emission_probs = [_zipf(len(w), config.word_zipf) for w in self.class_words]
    self.words = [EOS] + [f"w{r}" for r in range(1, v)]

  def entropy_rate(self) -> float:
    """Exact entropy rate in nats per token (the closed form above)."""
    k = self.config.num_classes
    return _entropy(self.offset_probs) + sum(_entropy(e) for e in self.emission_probs) / k

  def min_perplexity(self) -> float:
    """``exp(entropy_rate)``: the lowest perplexity any model can reach."""
    return float(np.exp(self.entropy_rate()))

  def unigram_probs(self) -> np.ndarray:
    """Stationary probability of each word rank, [V]."""
    probs = np.zeros(self.config.vocab_size)
    for words, e in zip(self.class_words, self.emission_probs):
      probs[words] = e / self.config.num_classes
    return probs

  def log_prob(self, ranks: np.ndarray) -> np.ndarray:
    """``log P(w_t | w_{t-1})`` for t >= 1 of a rank sequence, [T-1]."""
    k = self.config.num_classes
    ranks = np.asarray(ranks)
    classes = ranks % k
    offsets = (classes[1:] - classes[:-1]) % k
    in_class = ranks[1:] // k
    emission = np.array([self.emission_probs[c][j] for c, j in zip(classes[1:], in_class)])
    return np.log(self.offset_probs[offsets]) + np.log(emission)

  def sample_ranks(self, num_tokens: int, rng: np.random.Generator) -> np.ndarray:
    """Samples ``num_tokens`` word ranks from the stationary chain, int64 [T]."""
    k = self.config.num_classes
    offsets = rng.choice(k, size=num_tokens, p=self.offset_probs)
    classes = (rng.integers(k) + np.cumsum(offsets)) % k
    ranks = np.empty(num_tokens, dtype=np.int64)
    for c in range(k):
      where = np.flatnonzero(classes == c)
      picks = rng.choice(len(self.class_words[c]), size=len(where), p=self.emission_probs[c])
      ranks[where] = self.class_words[c][picks]
    return ranks

  def sample_splits(self) -> dict[str, list[str]]:
    """Token streams for train/valid/test: one stationary chain cut in three."""
    cfg = self.config
    rng = np.random.default_rng([cfg.seed, 1])
    total = cfg.train_tokens + cfg.valid_tokens + cfg.test_tokens
    ranks = self.sample_ranks(total, rng)
    tokens = [self.words[r] for r in ranks]
    a, b = cfg.train_tokens, cfg.train_tokens + cfg.valid_tokens
    return {"train": tokens[:a], "valid": tokens[a:b], "test": tokens[b:]}
