import collections

import numpy as np
import pytest

from tflm_compress.data import GeneratedCorpusConfig, MarkovWordSource, generated_corpus
from tflm_compress.errors import UserError


def _plugin_conditional_entropy(ranks):
  """Empirical H(W_t | W_{t-1}) from bigram counts (plug-in estimate, nats)."""
  pairs = collections.Counter(zip(ranks[:-1], ranks[1:]))
  prev = collections.Counter(ranks[:-1])
  n = len(ranks) - 1
  return -sum(c / n * np.log(c / prev[a]) for (a, _), c in pairs.items())


def test_entropy_formula_matches_empirical_estimates():
  source = MarkovWordSource(GeneratedCorpusConfig(vocab_size=60, num_classes=4, seed=3))
  ranks = source.sample_ranks(400_000, np.random.default_rng(0))
  exact = source.entropy_rate()
  # The mean log-loss of the true model converges to the entropy rate ...
  assert -source.log_prob(ranks).mean() == pytest.approx(exact, rel=0.01)
  # ... and so does the plug-in bigram estimate (it is first-order Markov).
  assert _plugin_conditional_entropy(ranks) == pytest.approx(exact, rel=0.01)


def test_entropy_of_a_hand_computed_source():
  # K=2 classes with uniform offsets (class_zipf=0), 4 words, uniform emissions:
  # H = ln 2 (offset) + ln 2 (two words per class) = ln 4.
  source = MarkovWordSource(GeneratedCorpusConfig(vocab_size=4, num_classes=2, word_zipf=0.0,
                                                  class_zipf=0.0))
  assert source.entropy_rate() == pytest.approx(np.log(4))
  assert source.min_perplexity() == pytest.approx(4.0)


def test_unigram_frequencies_are_zipfian_and_sum_to_one():
  source = MarkovWordSource(GeneratedCorpusConfig(vocab_size=1000, num_classes=10))
  probs = source.unigram_probs()
  assert probs.sum() == pytest.approx(1.0)
  # Roughly a power law: the top word is far more frequent than the 100th.
  assert probs[0] > 50 * probs[500]
  ranks = source.sample_ranks(200_000, np.random.default_rng(1))
  empirical = np.bincount(ranks, minlength=1000) / len(ranks)
  np.testing.assert_allclose(empirical[:20], probs[:20], rtol=0.1)


def test_generated_corpus_is_seeded_and_frequency_sorted():
  config = GeneratedCorpusConfig(vocab_size=50, num_classes=5, train_tokens=5000,
                                 valid_tokens=500, test_tokens=500, seed=7)
  a, b = generated_corpus(config), generated_corpus(config)
  np.testing.assert_array_equal(a.split("train"), b.split("train"))
  assert a.vocab == b.vocab
  counts = a.vocab.counts
  assert np.all(np.diff(counts) <= 0)
  other = generated_corpus(GeneratedCorpusConfig(**{**config.__dict__, "seed": 8}))
  assert not np.array_equal(other.split("train"), a.split("train"))


@pytest.mark.parametrize("kwargs, message", [
    ({"vocab_size": 2}, "vocab_size"),
    ({"num_classes": 1}, "num_classes"),
    ({"train_tokens": 0}, "train_tokens"),
])
def test_bad_generated_configs(kwargs, message):
  with pytest.raises(UserError, match=message):
    GeneratedCorpusConfig(**kwargs)
