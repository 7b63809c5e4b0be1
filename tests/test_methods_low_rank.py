import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tflm_compress import testing
from tflm_compress.errors import UserError
from tflm_compress.layers.low_rank import LowRankDense, LowRankEmbedding, LowRankLSTM
from tflm_compress.methods import low_rank
from tflm_compress.models import ModelConfig, build_language_model, count_params, zero_states

from conftest import compress_tiny_run

CONFIG = ModelConfig(vocab_size=30, embedding_size=6, hidden_sizes=(6, 6))
TOKENS = np.arange(12, dtype=np.int32)[None] % 30


@pytest.fixture(scope="module")
def dense_model():
  return build_language_model(CONFIG, seed=0)


def _outputs(model):
  return [np.asarray(o) for o in model([TOKENS] + zero_states(CONFIG, 1))]


def test_layer_contracts():
  x = np.random.default_rng(0).normal(size=(2, 3, 5)).astype(np.float32)
  testing.run_layer_test(LowRankDense, {"units": 7, "rank": 2}, x, [(2, 3, 7)])
  testing.run_layer_test(LowRankEmbedding, {"input_dim": 9, "output_dim": 4, "rank": 2},
                         np.array([[1, 2], [3, 8]]), [(2, 2, 4)])
  states = [np.zeros((2, 6), np.float32)] * 2
  testing.run_layer_test(LowRankLSTM, {"units": 6, "input_rank": 2, "recurrent_rank": 3},
                         [x] + states, [(2, 3, 6), (2, 6), (2, 6)])


def test_truncated_svd_is_exact_at_full_rank_and_optimal_below():
  rng = np.random.default_rng(1)
  matrix = rng.normal(size=(9, 14))
  u, v = low_rank.truncated_svd(matrix, 9)
  np.testing.assert_allclose(u @ v, matrix, atol=1e-5)
  s = np.linalg.svd(matrix, compute_uv=False)
  u, v = low_rank.truncated_svd(matrix, 4)
  # Eckart-Young: the error is the norm of the dropped singular values.
  assert np.linalg.norm(matrix - u @ v) == pytest.approx(np.sqrt((s[4:] ** 2).sum()), rel=1e-5)


def test_rank_for_energy():
  matrix = np.diag([3.0, 2.0, 1.0])  # energies 9, 4, 1 of 14
  assert low_rank.rank_for_energy(matrix, 9 / 14) == 1
  assert low_rank.rank_for_energy(matrix, 0.9) == 2
  assert low_rank.rank_for_energy(matrix, 1.0) == 3


def test_full_rank_reproduces_the_dense_model(dense_model):
  full = low_rank.compress(dense_model, low_rank.Config(embedding_rank=6, lstm_rank=6,
                                                         softmax_rank=6))
  kinds = {l.name: type(l) for l in full.layers}
  assert kinds["embedding"] is LowRankEmbedding and kinds["softmax"] is LowRankDense
  assert kinds["lstm_0"] is LowRankLSTM and kinds["lstm_1"] is LowRankLSTM
  for a, b in zip(_outputs(dense_model), _outputs(full)):
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_groups_are_independent_and_params_follow_the_formula(dense_model):
  only_softmax = low_rank.compress(dense_model, low_rank.Config(softmax_rank=2))
  assert type(only_softmax.get_layer("lstm_0")).__name__ == "LSTM"
  np.testing.assert_array_equal(only_softmax.get_layer("lstm_0").kernel.numpy(),
                                dense_model.get_layer("lstm_0").kernel.numpy())
  saved = 6 * 30 - 2 * (6 + 30)
  assert count_params(dense_model) - count_params(only_softmax) == saved


def test_round_trip_and_export_parity(dense_model):
  model = low_rank.compress(dense_model, low_rank.Config(rank=3))
  reloaded = testing.save_and_reload(model)
  for a, b in zip(_outputs(model), _outputs(reloaded)):
    np.testing.assert_allclose(a, b, atol=1e-6)
  testing.assert_tflite_matches_keras(model, TOKENS[0], atol=1e-4)


@pytest.mark.parametrize("kwargs, message", [
    ({}, "needs a rank"),
    ({"rank": -1}, "--rank=-1"),
    ({"energy": 1.5}, "--energy=1.5"),
])
def test_bad_configs(kwargs, message):
  with pytest.raises(UserError, match=message):
    low_rank.Config(**kwargs)


def test_rank_larger_than_the_matrix(dense_model):
  with pytest.raises(UserError, match=r"--softmax_rank=7 does not fit softmax \(6x30\); use 1..6"):
    low_rank.compress(dense_model, low_rank.Config(softmax_rank=7))


def test_compress_and_finetune_writes_a_run_dir(tiny_run, small_corpus, tmp_path):
  run_dir, base_metrics = tiny_run
  out = str(tmp_path / "lr")
  metrics = compress_tiny_run(tiny_run, small_corpus, out, "low_rank", {"rank": 8})
  assert metrics["params"] < base_metrics["params"] / 2
  assert metrics["method_report"]["low_rank"]["softmax"] == {"rank": 8}
  assert metrics["test_ppl"] < 1.1 * base_metrics["test_ppl"]
  saved = json.load(open(os.path.join(out, "metrics.json")))
  assert saved["config"]["method"] == "low_rank"
  assert os.path.exists(os.path.join(out, "model.keras"))
