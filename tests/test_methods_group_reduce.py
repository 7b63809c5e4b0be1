import os

import numpy as np
import pytest
import tf_keras as keras

from tflm_compress import export, testing
from tflm_compress.errors import UserError
from tflm_compress.export import inspect_tflite
from tflm_compress.layers.group_reduce import (GroupReduceEmbedding, GroupReduceSoftmax,
                                               contiguous_assignment)
from tflm_compress.methods import group_reduce as gr
from tflm_compress.methods import low_rank
from tflm_compress.methods.base import CompressionContext
from tflm_compress.models import ModelConfig, build_language_model, count_params, zero_states

from conftest import compress_tiny_run

CONFIG = ModelConfig(vocab_size=30, embedding_size=6, hidden_sizes=(6, 6))
TOKENS = (np.arange(24, dtype=np.int32)[None] * 7) % 30
COUNTS = np.floor(1000.0 / np.arange(1, 31))  # Zipf, frequency-sorted ids
CONTEXT = CompressionContext(seed=0)
# The builtin ops a GroupReduce step model (LSTM included) may lower to.
STEP_OPS = {"ADD", "CAST", "CONCATENATION", "EQUAL", "FULLY_CONNECTED", "GATHER", "LOGISTIC",
            "MINIMUM", "MUL", "RESHAPE", "SPLIT", "SPLIT_V", "STRIDED_SLICE", "TANH",
            "QUANTIZE", "DEQUANTIZE", "TRANSPOSE", "BATCH_MATMUL"}


class _Vocab:
  counts = COUNTS.astype(np.int64)


@pytest.fixture
def dense_model():
  """The small dense model with O(1) embedding and softmax weights (so errors show)."""
  model = build_language_model(CONFIG, seed=0)
  rng = np.random.default_rng(0)
  model.get_layer("embedding").embeddings.assign(rng.normal(size=(30, 6)))
  model.get_layer("softmax").kernel.assign(rng.normal(size=(6, 30)))
  model.get_layer("softmax").bias.assign(rng.normal(size=30))
  return model


def _outputs(model):
  return [np.asarray(o) for o in model([TOKENS] + zero_states(CONFIG, 1))]


def _context():
  return CompressionContext(vocab=_Vocab(), seed=0)


def test_layer_contracts():
  testing.run_layer_test(GroupReduceEmbedding,
                         {"input_dim": 9, "output_dim": 4, "block_sizes": [4, 3, 2],
                          "ranks": [3, 2, 1]},
                         np.array([[0, 5], [8, 3]]), [(2, 2, 4)])
  x = np.random.default_rng(0).normal(size=(2, 3, 5)).astype(np.float32)
  testing.run_layer_test(GroupReduceSoftmax,
                         {"units": 9, "block_sizes": [4, 3, 2], "ranks": [3, 2, 1]},
                         x, [(2, 3, 9)])


def test_layers_compute_the_block_factorization():
  """Both layers equal the dense matrix the factors and int tables describe."""
  rng = np.random.default_rng(3)
  sizes, ranks = [4, 3, 2], [3, 2, 1]
  word_block = np.array([0, 1, 0, 2, 1, 0, 2, 1, 0], np.int32)
  word_position = np.array([0, 0, 1, 0, 1, 2, 1, 2, 3], np.int32)
  u = [rng.normal(size=(n, r)) for n, r in zip(sizes, ranks)]
  v = [rng.normal(size=(r, 5)) for r in ranks]
  dense = np.stack([u[b][p] @ v[b] for b, p in zip(word_block, word_position)])  # [9, 5]

  embedding = GroupReduceEmbedding(9, 5, sizes, ranks)
  embedding(np.zeros((1,), np.int32))
  embedding.set_weights(u + v + [word_block, word_position])
  ids = np.array([[8, 0, 3], [1, 4, 7]])
  np.testing.assert_allclose(embedding(ids), dense[ids], atol=1e-5)

  softmax = GroupReduceSoftmax(9, sizes, ranks)
  softmax(np.zeros((1, 5), np.float32))
  bias = rng.normal(size=9)
  softmax.set_weights([x.T for x in v] + [x.T for x in u] + [bias, word_block, word_position])
  h = rng.normal(size=(2, 3, 5)).astype(np.float32)
  np.testing.assert_allclose(softmax(h), h @ dense.T + bias, atol=1e-4)
  # The tables are int32 data, not parameters.
  tables = {w.name.split("/")[-1].split(":")[0]: w.dtype.name
            for w in softmax.non_trainable_weights}
  assert tables == {"word_block": "int32", "word_position": "int32"}


def test_weighted_basis_is_the_svd_of_the_weighted_rows():
  rng = np.random.default_rng(0)
  rows, weights = rng.normal(size=(40, 7)), rng.uniform(1, 100, size=40)
  basis = gr.weighted_basis(rows, weights, 3)
  np.testing.assert_allclose(basis @ basis.T, np.eye(3), atol=1e-10)
  _, _, vt = np.linalg.svd(np.sqrt(weights)[:, None] * rows, full_matrices=False)
  np.testing.assert_allclose(basis.T @ basis, vt[:3].T @ vt[:3], atol=1e-10)
  # The weighted error of U = E V^T is the Eckart-Young bound of the weighted matrix.
  s = np.linalg.svd(np.sqrt(weights)[:, None] * rows, compute_uv=False)
  error = gr.weighted_error(rows, weights, np.zeros(40, int), [basis])
  assert error == pytest.approx(np.sum(s[3:] ** 2), rel=1e-9)


@pytest.mark.parametrize("num_blocks", [1, 3])
def test_full_rank_is_exact(num_blocks):
  matrix = np.random.default_rng(1).normal(size=(30, 6))
  sizes = np.bincount(gr.equal_size_blocks(30, num_blocks))
  factors = gr.group_reduce(matrix, COUNTS, num_blocks, gr.max_ranks(sizes, 6), refine_rounds=2)
  np.testing.assert_allclose(factors.reconstruct(), matrix, atol=1e-5)


def test_one_block_full_rank_reproduces_the_dense_model(dense_model):
  full = gr.compress(dense_model, gr.Config(gr_num_blocks=1, gr_ranks="6"), _context())
  assert type(full.get_layer("embedding")) is GroupReduceEmbedding
  assert type(full.get_layer("softmax")) is GroupReduceSoftmax
  for a, b in zip(_outputs(dense_model), _outputs(full)):
    np.testing.assert_allclose(a, b, atol=1e-5)
  ids = np.arange(30)[None]
  np.testing.assert_allclose(full.get_layer("embedding")(ids)[0],
                             dense_model.get_layer("embedding").embeddings.numpy(), atol=1e-5)


def test_blocks_are_contiguous_equal_word_counts():
  np.testing.assert_array_equal(np.bincount(gr.equal_size_blocks(10, 3)), [4, 3, 3])
  assert np.all(np.diff(gr.equal_size_blocks(10, 3)) >= 0)
  block, position = contiguous_assignment([4, 3, 3])
  np.testing.assert_array_equal(position, [0, 1, 2, 3, 0, 1, 2, 0, 1, 2])
  np.testing.assert_array_equal(block, gr.equal_size_blocks(10, 3))


@pytest.mark.parametrize("budget", [0.05, 0.1, 0.2, 0.4, 0.7, 1.0, 5000])
def test_rank_allocation_follows_frequency_and_meets_the_budget(budget):
  vocab_size, dim, num_blocks = 1000, 32, 6
  counts = np.floor(1e5 / np.arange(1, vocab_size + 1))
  config = gr.Config(gr_num_blocks=num_blocks, gr_budget=budget)
  ranks = gr.plan_ranks(config, counts, (vocab_size, dim), "embedding")
  sizes = np.bincount(gr.equal_size_blocks(vocab_size, num_blocks))
  allowed = budget * vocab_size * dim if budget <= 1 else budget
  params = gr.block_params(sizes, ranks, dim)
  assert params <= allowed
  assert all(a >= b for a, b in zip(ranks, ranks[1:])), ranks  # non-increasing with frequency
  assert all(1 <= r <= dim for r in ranks)
  # The budget is used: one more rank on any block that may still grow would not fit.
  for b, r in enumerate(ranks):
    if r < dim and (b == 0 or r < ranks[b - 1]):
      assert params + sizes[b] + dim > allowed, (b, ranks)


def test_ranks_are_proportional_to_block_frequency():
  # Block frequencies 8:4:2:1 with room for every rank: ranks 8:4:2:1.
  ranks = gr.allocate_ranks([8.0, 4.0, 2.0, 1.0], [100] * 4, 64,
                            budget=gr.block_params([100] * 4, [16, 8, 4, 2], 64))
  assert ranks == [16, 8, 4, 2]


def test_rank_power_moves_rank_from_frequent_to_rare_blocks():
  vocab_size, dim, num_blocks = 1000, 64, 4
  counts = np.floor(1e5 / np.arange(1, vocab_size + 1))  # Zipf: block 0 holds most tokens.
  sizes = np.bincount(gr.equal_size_blocks(vocab_size, num_blocks))
  by_power = {p: gr.plan_ranks(gr.Config(gr_num_blocks=num_blocks, gr_budget=0.2,
                                         gr_rank_power=p), counts, (vocab_size, dim), "e")
              for p in (1.0, 0.5, 0.0)}
  for ranks in by_power.values():
    assert gr.block_params(sizes, ranks, dim) <= 0.2 * vocab_size * dim
  # Power 0: equal ranks (up to the leftover +1s); 1 gives block 0 the most; 0.5 in between.
  assert max(by_power[0.0]) - min(by_power[0.0]) <= 1, by_power
  assert by_power[1.0][0] > by_power[0.5][0] > by_power[0.0][0], by_power
  assert by_power[1.0][-1] < by_power[0.5][-1] < by_power[0.0][-1], by_power


def _interleaved_subspaces(seed, vocab_size=60, dim=8, num_blocks=3, rank=2):
  """Rows from ``num_blocks`` random rank-``rank`` subspaces, word w in subspace w % 3.

  Contiguous frequency blocks mix the subspaces, so refinement has much to gain.
  """
  rng = np.random.default_rng(seed)
  bases = [np.linalg.qr(rng.normal(size=(dim, rank)))[0].T for _ in range(num_blocks)]
  rows = np.stack([rng.normal(size=rank) @ bases[w % num_blocks] for w in range(vocab_size)])
  return rows + 0.01 * rng.normal(size=rows.shape)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_refinement_never_increases_the_weighted_error_and_helps(seed):
  matrix = _interleaved_subspaces(seed)
  counts = np.floor(1e4 / np.arange(1, 61))
  weights = gr.word_weights(counts)
  start = gr.equal_size_blocks(60, 3)
  assignment, errors = gr.refine(matrix, weights, start, [2, 2, 2], rounds=8)
  assert len(errors) >= 3  # several rounds were kept
  assert all(b <= a for a, b in zip(errors, errors[1:])), errors
  assert errors[-1] < 0.5 * errors[0], errors
  np.testing.assert_array_equal(np.bincount(assignment), [20, 20, 20])  # sizes (budget) kept
  bases = gr.block_bases(matrix, weights, assignment, [2, 2, 2])
  assert gr.weighted_error(matrix, weights, assignment, bases) == pytest.approx(errors[-1])


def test_refinement_on_a_random_matrix_is_monotone():
  rng = np.random.default_rng(5)
  matrix, counts = rng.normal(size=(200, 10)), np.floor(1e4 / np.arange(1, 201))
  factors = gr.group_reduce(matrix, counts, 5, [6, 4, 3, 2, 2], refine_rounds=6)
  assert all(b <= a for a, b in zip(factors.errors, factors.errors[1:])), factors.errors
  assert factors.errors[-1] < factors.errors[0]


def test_a_round_that_would_raise_the_error_is_undone(monkeypatch):
  matrix = _interleaved_subspaces(0)
  weights = gr.word_weights(np.floor(1e4 / np.arange(1, 61)))
  start = gr.equal_size_blocks(60, 3)
  monkeypatch.setattr(gr, "exchange", lambda costs, a: np.roll(a, 7))  # a bad reassignment
  assignment, errors = gr.refine(matrix, weights, start, [2, 2, 2], rounds=3)
  np.testing.assert_array_equal(assignment, start)
  assert len(errors) == 1


def test_exchange_keeps_block_sizes_and_lowers_the_cost():
  rng = np.random.default_rng(0)
  costs = rng.uniform(size=(50, 4))
  start = gr.equal_size_blocks(50, 4)
  after = gr.exchange(costs, start)
  np.testing.assert_array_equal(np.bincount(after), np.bincount(start))
  total = lambda a: costs[np.arange(50), a].sum()  # noqa: E731
  assert total(after) < total(start)


def test_refined_model_round_trips_and_matches_the_tflite_step_model(dense_model):
  model = gr.compress(dense_model, gr.Config(gr_num_blocks=3, gr_budget=0.5,
                                             gr_refine_rounds=3), _context())
  embedding = model.get_layer("embedding")
  word_block = embedding.word_block.numpy()
  assert np.any(np.diff(word_block) < 0)  # refinement moved words: not contiguous
  assert embedding.word_block.dtype.name == "int32" and not embedding.word_block.trainable
  reloaded = testing.save_and_reload(model)
  np.testing.assert_array_equal(reloaded.get_layer("embedding").word_block.numpy(), word_block)
  for a, b in zip(_outputs(model), _outputs(reloaded)):
    np.testing.assert_allclose(a, b, atol=1e-6)
  testing.assert_tflite_matches_keras(model, TOKENS[0], atol=1e-4)
  flat = inspect_tflite.parse(export.convert_step_model(model))
  assert set(inspect_tflite.op_names(flat)) <= STEP_OPS
  # The word -> block / position maps reach the .tflite as int32 data.
  assert inspect_tflite.weight_dtypes(flat)["INT32"] >= 3 * 4 * 30


def test_params_follow_the_formula(dense_model):
  config = gr.Config(gr_num_blocks=3, gr_ranks="4,2,1", gr_targets="softmax")
  model = gr.compress(dense_model, config, _context())
  assert type(model.get_layer("embedding")) is keras.layers.Embedding
  saved = 6 * 30 - (4 * (10 + 6) + 2 * (10 + 6) + 1 * (10 + 6))
  assert count_params(dense_model) - count_params(model) == saved
  assert gr.report(model)["softmax"]["ranks"] == [4, 2, 1]


def test_composes_with_low_rank_lstm_and_ptq(dense_model):
  model = gr.compress(dense_model, gr.Config(gr_num_blocks=2, gr_budget=0.6), _context())
  model = low_rank.compress(model, low_rank.Config(lstm_rank=3), CONTEXT)
  kinds = [type(model.get_layer(n)).__name__ for n in ("embedding", "lstm_0", "softmax")]
  assert kinds == ["GroupReduceEmbedding", "LowRankLSTM", "GroupReduceSoftmax"]
  testing.assert_tflite_matches_keras(testing.save_and_reload(model), TOKENS[0], atol=1e-4)
  calibration = export.representative_steps(model, TOKENS[0], 20)
  for quantize in ("dynamic", "int8"):
    flat = export.convert_step_model(model, quantize, calibration if quantize == "int8" else None)
    assert not inspect_tflite.non_builtin_ops(inspect_tflite.parse(flat))
    parity = export.check_parity(model, export.TFLiteStepModel(flat), TOKENS[0])
    assert parity["argmax_agreement"] >= 0.75, (quantize, parity)


@pytest.mark.parametrize("kwargs, message", [
    ({"gr_num_blocks": 0}, "--gr_num_blocks=0"),
    ({"gr_budget": 0.0}, "--gr_budget=0.0; must be > 0"),
    ({"gr_budget": 10.5}, "must be a whole number"),
    ({"gr_ranks": "4,x"}, "comma-separated whole numbers"),
    ({"gr_ranks": "4,2", "gr_num_blocks": 3}, "gives 2 ranks but --gr_num_blocks=3"),
    ({"gr_ranks": "4,0"}, "every rank must be >= 1"),
    ({"gr_refine_rounds": -1}, "--gr_refine_rounds=-1"),
    ({"gr_rank_power": 3}, r"--gr_rank_power=3; use 0..2"),
    ({"gr_targets": "embedding,lstm"}, "use a comma-separated subset of embedding, softmax"),
])
def test_bad_configs(kwargs, message):
  with pytest.raises(UserError, match=message):
    gr.Config(**kwargs)


def test_ranks_too_large_list_the_valid_ranks(dense_model):
  with pytest.raises(UserError, match=r"--gr_ranks=7,2,1 does not fit embedding \(30x6.*"
                                      r"use ranks <= 6,6,6"):
    gr.compress(dense_model, gr.Config(gr_num_blocks=3, gr_ranks="7,2,1"), _context())
  # Blocks of 4 and 3 words: ranks at most 4 and 3.
  with pytest.raises(UserError, match=r"use ranks <= 4,3"):
    gr.plan_ranks(gr.Config(gr_num_blocks=2, gr_ranks="2,4"), np.ones(7), (7, 6), "softmax")


def test_a_budget_nobody_can_meet(dense_model):
  # Rank 1 in 3 blocks of a 30x6 matrix needs 30 + 3*6 = 48 parameters.
  with pytest.raises(UserError, match=r"--gr_budget=0.1 allows 18 parameters for embedding "
                                      r"\(30x6\) but 3 blocks need at least 48.*"
                                      r"--gr_budget >= 0.2667 \(or >= 48 as a count\)"):
    gr.compress(dense_model, gr.Config(gr_num_blocks=3, gr_budget=0.1), _context())
  with pytest.raises(UserError, match="--gr_num_blocks=31 exceeds the 30 words"):
    gr.compress(dense_model, gr.Config(gr_num_blocks=31), _context())


def test_nothing_to_compress():
  tied = build_language_model(ModelConfig(vocab_size=30, embedding_size=6, hidden_sizes=(6,),
                                          tie_embeddings=True), seed=0)
  with pytest.raises(UserError, match="group_reduce found no dense embedding or softmax"):
    gr.compress(tied, gr.Config(), CONTEXT)


def test_compress_and_finetune_writes_a_run_dir(tiny_run, small_corpus, tmp_path):
  run_dir, base_metrics = tiny_run
  out = str(tmp_path / "gr")
  metrics = compress_tiny_run(tiny_run, small_corpus, out, "group_reduce", {"gr_num_blocks": 4, "gr_budget": 0.3, "gr_refine_rounds": 2})
  report = metrics["method_report"]["group_reduce"]
  assert set(report) == {"embedding", "softmax"}
  for layer in report.values():
    assert layer["fraction_of_dense"] <= 0.3
    assert layer["ranks"] == sorted(layer["ranks"], reverse=True)
  vocab_size, dim = len(small_corpus.vocab), 32
  assert metrics["params"] == base_metrics["params"] - sum(
      vocab_size * dim - layer["factor_params"] for layer in report.values())
  assert metrics["test_ppl"] < 1.15 * base_metrics["test_ppl"]
  assert os.path.exists(os.path.join(out, "model.keras"))
