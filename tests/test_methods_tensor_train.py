import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tflm_compress import compression, methods, testing
from tflm_compress.compat import import_t3f
from tflm_compress.errors import UserError
from tflm_compress.export import TFLiteStepModel, check_parity, convert_step_model, inspect_tflite
from tflm_compress.layers.lstm import LSTM
from tflm_compress.layers.low_rank import LowRankDense
from tflm_compress.layers.tensor_train import (TTDense, TTEmbedding, TTLSTM, cheapest_order,
                                               tt_gather_rows, tt_matvec_macs,
                                               tt_matmul, tt_ranks, tt_to_full)
from tflm_compress.methods import tensor_train as tt
from tflm_compress.models import ModelConfig, build_language_model, count_params, zero_states

from conftest import compress_tiny_run

t3f = import_t3f()

# Every dim factors into 3 even cores and every matrix has TT rank 8 at most,
# so --tt_rank=8 is full rank for all of them.
CONFIG = ModelConfig(vocab_size=32, embedding_size=8, hidden_sizes=(8, 8))
# Dims that need padding: vocab 31 -> 32, hidden 7 -> 8, gates 28 -> 30.
PADDED_CONFIG = ModelConfig(vocab_size=31, embedding_size=8, hidden_sizes=(8, 7))
TOKENS = np.array([[0, 5, 30, 7, 1, 29, 2, 3, 30, 11, 4, 17]], np.int32)
# The TFLite builtins the step models of this method may use.
ALLOWED_OPS = {"ADD", "BATCH_MATMUL", "CONCATENATION", "FLOOR_DIV", "FLOOR_MOD",
               "FULLY_CONNECTED", "GATHER", "LOGISTIC", "MUL", "PAD", "PACK", "RESHAPE", "SLICE",
               "SPLIT", "STRIDED_SLICE", "TANH", "TRANSPOSE", "UNPACK"}


@pytest.fixture(scope="module")
def dense_model():
  return build_language_model(CONFIG, seed=0)


@pytest.fixture(scope="module")
def padded_model():
  return build_language_model(PADDED_CONFIG, seed=1)


def _outputs(model, config=CONFIG, tokens=TOKENS):
  return [np.asarray(o) for o in model([tokens] + zero_states(config, 1))]


def _full(cores) -> np.ndarray:
  """The dense matrix of TT cores, by t3f."""
  return t3f.full(t3f.TensorTrain([tf.constant(c) for c in cores])).numpy()


def _random_cores(rng, tt_shape, rank):
  return [rng.normal(size=s).astype(np.float32)
          for s in tt.tt_core_shapes(tt_shape, rank)]


# ---------------------------------------------------------------------------
# Factorization and TT math.


@pytest.mark.parametrize("n, num_factors, expected", [
    (10000, 4, (10, 10, 10, 10)),
    (10001, 4, (7, 10, 11, 13)),  # Prime factors 73 x 137: padded to 10010.
    (10000, 3, (20, 20, 25)),
    (10001, 3, (15, 23, 29)),  # Padded to 10005.
    (200, 3, (5, 5, 8)),
    (800, 3, (8, 10, 10)),  # 4H for H = 200.
    (201, 3, (5, 6, 7)),  # 3 x 67: padded to 210.
    (650, 3, (5, 10, 13)),
    (7, 3, (2, 2, 2)),  # A prime: padded to 8.
    (6, 3, (1, 2, 3)),  # Fewer than 2^3: 1s allowed rather than padding.
])
def test_factorize_dim(n, num_factors, expected):
  factors = tt.factorize_dim(n, num_factors)
  assert factors == expected
  assert math.prod(factors) >= n


@pytest.mark.parametrize("n", [1, 12, 97, 360, 1024, 10007])
@pytest.mark.parametrize("num_factors", [2, 3, 4])
def test_balanced_factors_multiply_to_n_and_are_sorted(n, num_factors):
  factors = tt.balanced_factors(n, num_factors)
  assert math.prod(factors) == n and len(factors) == num_factors
  assert list(factors) == sorted(factors)


def test_tt_ranks_are_capped_by_every_unfolding():
  # Modes m_k n_k = 4, 8, 8: unfoldings 4 x 64 and 32 x 8.
  assert tt_ranks(((2, 2, 2), (2, 4, 4)), 100) == (1, 4, 8, 1)
  assert tt_ranks(((2, 2, 2), (2, 4, 4)), 3) == (1, 3, 3, 1)
  # Modes 20, 40, 50, 50: the largest is the middle cut, min(20 * 40, 50 * 50).
  assert tt.max_tt_rank(((10, 10, 10, 10), (2, 4, 5, 5))) == 800


@pytest.mark.parametrize("dims, tt_shape", [
    ((8, 32), ((2, 2, 2), (2, 4, 4))),
    ((29, 7), ((2, 3, 5), (2, 2, 2))),  # Padded on both sides.
    ((12, 20), ((3, 4), (4, 5))),
    ((16, 6), ((2, 2, 2, 2), (1, 2, 3, 1))),
])
def test_tt_svd_at_the_max_rank_reproduces_the_matrix(dims, tt_shape):
  matrix = np.random.default_rng(0).normal(size=dims)
  rank = tt.max_tt_rank(tt_shape)
  full = _full(tt.tt_svd(matrix, tt_shape, rank))
  np.testing.assert_allclose(full[:dims[0], :dims[1]], matrix, atol=1e-5)
  np.testing.assert_allclose(full[dims[0]:], 0, atol=1e-5)
  np.testing.assert_allclose(full[:, dims[1]:], 0, atol=1e-5)


def test_tt_svd_error_shrinks_with_the_rank():
  matrix = np.random.default_rng(1).normal(size=(27, 64))
  tt_shape = ((3, 3, 3), (4, 4, 4))
  errors = [np.linalg.norm(_full(tt.tt_svd(matrix, tt_shape, r)) - matrix)
            for r in (1, 4, 8, tt.max_tt_rank(tt_shape))]
  assert errors == sorted(errors, reverse=True) and errors[-1] < 1e-4


def test_tt_matmul_and_gather_match_the_full_matrix():
  rng = np.random.default_rng(2)
  tt_shape = ((2, 3, 5), (3, 1, 4))
  cores = _random_cores(rng, tt_shape, 3)
  full = _full(cores)
  x = rng.normal(size=(5, 30)).astype(np.float32)
  np.testing.assert_allclose(tt_matmul(tf.constant(x), cores, tt_shape), x @ full,
                             rtol=1e-5, atol=1e-5)
  ids = np.array([29, 0, 7, 7, 13])
  np.testing.assert_allclose(tt_gather_rows(tf.constant(ids), cores, tt_shape), full[ids],
                             rtol=1e-5, atol=1e-5)


def test_tt_to_full_equals_t3f_full():
  tt_shape = ((2, 3, 5), (3, 1, 4))
  cores = _random_cores(np.random.default_rng(5), tt_shape, 3)
  np.testing.assert_allclose(tt_to_full(cores, tt_shape), _full(cores), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------
# Layers.


def test_one_row_core_chain_equals_the_rebuilt_kernel():
  """The step model's path (one static row) and the training path agree."""
  rng = np.random.default_rng(6)
  x = rng.normal(size=(2, 3, 7)).astype(np.float32)
  dense = TTDense(30, tt_shape=((2, 2, 2), (2, 3, 5)), tt_rank=3)
  many = dense(x).numpy()
  one = np.stack([dense(x[b:b + 1, t:t + 1]).numpy()[0, 0] for b in range(2) for t in range(3)])
  np.testing.assert_allclose(one, many.reshape(6, 30), rtol=1e-5, atol=1e-5)
  lstm = TTLSTM(7, kernel_tt_shape=((2, 2, 2), (2, 3, 5)), kernel_tt_rank=3,
                recurrent_tt_shape=((2, 2, 2), (2, 3, 5)), recurrent_tt_rank=2)
  h, c = [rng.normal(size=(1, 7)).astype(np.float32) for _ in range(2)]
  outputs, h_many, c_many = lstm([x[:1], h, c])
  for t in range(3):
    y, h, c = lstm([x[:1, t:t + 1], h, c])
    np.testing.assert_allclose(y[0, 0], outputs[0, t], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(h, h_many, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(c, c_many, rtol=1e-5, atol=1e-5)


def test_layer_contracts():
  x = np.random.default_rng(0).normal(size=(2, 3, 7)).astype(np.float32)
  testing.run_layer_test(TTDense, {"units": 30, "tt_shape": ((2, 2, 2), (2, 3, 5)),
                                   "tt_rank": 3}, x, [(2, 3, 30)])
  testing.run_layer_test(TTEmbedding, {"input_dim": 29, "output_dim": 7,
                                       "tt_shape": ((2, 3, 5), (2, 2, 2)), "tt_rank": 2},
                         np.array([[1, 2], [28, 8]]), [(2, 2, 7)])
  states = [np.zeros((2, 6), np.float32)] * 2
  testing.run_layer_test(TTLSTM, {"units": 6, "kernel_tt_shape": ((2, 2, 2), (2, 3, 4)),
                                  "kernel_tt_rank": 2, "recurrent_tt_shape": ((1, 2, 3), (2, 3, 4)),
                                  "recurrent_tt_rank": 3},
                         [x] + states, [(2, 3, 6), (2, 6), (2, 6)])
  # One kernel TT, the other dense.
  layer = testing.run_layer_test(TTLSTM, {"units": 6, "kernel_tt_shape": ((2, 2, 2), (2, 3, 4)),
                                          "kernel_tt_rank": 2}, [x] + states,
                                 [(2, 3, 6), (2, 6), (2, 6)])
  assert sorted(w.name.split("/")[-1] for w in layer.weights) == [
      "bias:0", "kernel_core_0:0", "kernel_core_1:0", "kernel_core_2:0", "recurrent_kernel:0"]


def test_embedding_lookup_equals_rows_of_t3f_full():
  layer = TTEmbedding(29, 7, tt_shape=((2, 3, 5), (2, 2, 2)), tt_rank=3)
  ids = np.arange(29)
  rows = layer(ids[None]).numpy()[0]
  full = _full([w.numpy() for w in layer.cores])
  np.testing.assert_allclose(rows, full[:29, :7], rtol=1e-5, atol=1e-6)


def test_full_rank_tt_dense_and_embedding_reproduce_their_dense_counterparts():
  rng = np.random.default_rng(3)
  dense = keras.layers.Dense(31, bias_initializer="random_normal")
  x = rng.normal(size=(4, 7)).astype(np.float32)
  expected = dense(x).numpy()
  tt_shape = tt.auto_tt_shape((7, 31), 3)
  assert tt_shape == ((2, 2, 2), (2, 4, 4))  # Both sides padded.
  rank = tt.max_tt_rank(tt_shape)
  layer = TTDense(31, tt_shape, rank)
  layer.build((None, 7))
  layer.set_weights(tt.tt_svd(dense.kernel.numpy(), tt_shape, rank) + [dense.bias.numpy()])
  np.testing.assert_allclose(layer(x), expected, atol=1e-5)
  np.testing.assert_allclose(layer(x[:1]), expected[:1], atol=1e-5)  # The core chain.

  embedding = keras.layers.Embedding(31, 7)
  ids = np.arange(31)[None]
  expected = embedding(ids).numpy()
  tt_shape = tt.auto_tt_shape((31, 7), 3)
  rank = tt.max_tt_rank(tt_shape)
  layer = TTEmbedding(31, 7, tt_shape, rank)
  layer.build(ids.shape)
  layer.set_weights(tt.tt_svd(embedding.embeddings.numpy(), tt_shape, rank))
  np.testing.assert_allclose(layer(ids), expected, atol=1e-5)


def test_full_rank_tt_lstm_reproduces_the_dense_lstm():
  rng = np.random.default_rng(4)
  units, input_dim = 7, 8
  x = rng.normal(size=(2, 5, input_dim)).astype(np.float32)
  states = [rng.normal(size=(2, units)).astype(np.float32) for _ in range(2)]
  dense = LSTM(units, bias_initializer="random_normal")
  expected = dense([x] + states)
  kernel_shape = tt.auto_tt_shape((input_dim, 4 * units), 3)
  recurrent_shape = tt.auto_tt_shape((units, 4 * units), 3)
  assert recurrent_shape == ((2, 2, 2), (2, 3, 5))  # 7 -> 8 rows, 28 -> 30 gates.
  kernel_rank, recurrent_rank = tt.max_tt_rank(kernel_shape), tt.max_tt_rank(recurrent_shape)
  layer = TTLSTM(units, kernel_shape, kernel_rank, recurrent_shape, recurrent_rank)
  layer([x] + states)
  layer.set_weights(tt.tt_svd(dense.kernel.numpy(), kernel_shape, kernel_rank)
                    + tt.tt_svd(dense.recurrent_kernel.numpy(), recurrent_shape, recurrent_rank)
                    + [dense.bias.numpy()])
  for a, b in zip(expected, layer([x] + states)):
    np.testing.assert_allclose(a, b, atol=1e-5)


# ---------------------------------------------------------------------------
# The method on a model.


def test_full_rank_reproduces_the_dense_model(dense_model):
  full = tt.compress(dense_model, tt.Config(tt_rank=8))
  kinds = {l.name: type(l) for l in full.layers}
  assert kinds["embedding"] is TTEmbedding and kinds["softmax"] is TTDense
  assert kinds["lstm_0"] is TTLSTM and kinds["lstm_1"] is TTLSTM
  for a, b in zip(_outputs(dense_model), _outputs(full)):
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_groups_are_independent_and_the_report_counts_params(dense_model):
  only_lstm = tt.compress(dense_model, tt.Config(tt_lstm_rank=2))
  assert type(only_lstm.get_layer("softmax")) is keras.layers.Dense
  assert type(only_lstm.get_layer("embedding")) is keras.layers.Embedding
  report = tt.report(only_lstm)
  assert set(report) == {"lstm_0", "lstm_1"}
  kernel = report["lstm_0"]["kernel"]
  # [8, 32] as 2x2x2:2x4x4 with ranks (1, 2, 2, 1): 1*2*2*2 + 2*2*4*2 + 2*2*4*1 = 56.
  assert kernel == {"tt_shape": "2x2x2:2x4x4", "tt_rank": 2, "ranks": [1, 2, 2, 1],
                    "dims": [8, 32], "padded_dims": [8, 32], "params": 56, "dense_params": 256,
                    "compression": 256 / 56}
  saved = 4 * (256 - 56)  # Four kernels of the same shape.
  assert count_params(dense_model) - count_params(only_lstm) == saved


def test_padded_vocab_round_trip_and_export_parity(padded_model):
  model = tt.compress(padded_model, tt.Config(tt_rank=3))
  report = tt.report(model)
  assert report["embedding"]["padded_dims"] == [32, 8]
  assert report["softmax"]["padded_dims"] == [8, 32]
  assert report["lstm_1"]["recurrent_kernel"]["padded_dims"] == [8, 30]
  reloaded = testing.save_and_reload(model)
  assert [type(l) for l in reloaded.layers] == [type(l) for l in model.layers]
  for a, b in zip(_outputs(model, PADDED_CONFIG), _outputs(reloaded, PADDED_CONFIG)):
    np.testing.assert_allclose(a, b, atol=1e-6)
  model_bytes = convert_step_model(model)  # Builtin ops only, or it raises.
  parity = check_parity(model, TFLiteStepModel(model_bytes), TOKENS[0])
  assert parity["max_abs_logit_diff"] <= 1e-4, parity
  tflite = inspect_tflite.parse(model_bytes)
  ops = set(inspect_tflite.op_names(tflite))
  assert ops <= ALLOWED_OPS, ops - ALLOWED_OPS
  assert {"GATHER", "BATCH_MATMUL", "FULLY_CONNECTED"} <= ops
  # The file holds the cores, not rebuilt matrices (any of which would add
  # >= 8 * 31 * 4 bytes); the slack is for shape constants.
  assert sum(inspect_tflite.bytes_by_group(tflite).values()) <= 4 * count_params(model) + 256


def test_explicit_shapes_are_used(dense_model):
  model = tt.compress(dense_model, tt.Config(tt_rank=2, tt_embedding_shape="4x8:8",
                                             tt_softmax_shape="8:2x16", tt_lstm_shape="2x4:4x8"))
  assert model.get_layer("embedding").tt_shape == ((4, 8), (8, 1))
  assert model.get_layer("softmax").tt_shape == ((8, 1), (2, 16))
  assert model.get_layer("lstm_1").recurrent_tt_shape == ((2, 4), (4, 8))
  testing.assert_tflite_matches_keras(model, TOKENS[0], atol=1e-4)


def test_composes_with_low_rank_and_exports(dense_model):
  plan = [(m, compression.method_config(m, {"tt_lstm_rank": 2, "tt_embedding_rank": 0,
                                            "tt_softmax_rank": 0, "softmax_rank": 3}))
          for m in methods.parse_spec("tt+low_rank")]
  model = compression.apply_methods(dense_model, plan, methods.CompressionContext())
  kinds = {l.name: type(l) for l in model.layers}
  assert kinds["lstm_0"] is TTLSTM and kinds["softmax"] is LowRankDense
  assert kinds["embedding"] is keras.layers.Embedding
  testing.assert_tflite_matches_keras(testing.save_and_reload(model), TOKENS[0], atol=1e-4)


@pytest.mark.parametrize("kwargs, message", [
    ({}, "needs a TT rank"),
    ({"tt_embedding_rank": 0, "tt_lstm_rank": 0, "tt_softmax_rank": 0}, "needs a TT rank"),
    ({"tt_rank": -1}, "--tt_rank=-1"),
    ({"tt_rank": 2, "tt_num_cores": 1}, r"--tt_num_cores=1; use 2..8"),
    ({"tt_rank": 2, "tt_lstm_shape": "4x8"}, r"--tt_lstm_shape='4x8' is not a TT shape"),
    ({"tt_rank": 2, "tt_softmax_shape": "4xa:2"}, r"--tt_softmax_shape='4xa:2' is not a TT shape"),
    ({"tt_rank": 2, "tt_softmax_shape": "0x4:2"}, r"every factor >= 1"),
])
def test_bad_configs(kwargs, message):
  with pytest.raises(UserError, match=message):
    tt.Config(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"tt_softmax_rank": 9},
     r"--tt_softmax_rank=9 does not fit softmax \(8x32\) \(TT shape 2x2x2:2x4x4\): "
     r"its largest TT rank is 8; use 1..8"),
    ({"tt_rank": 9}, r"--tt_rank=9 does not fit embedding"),
    ({"tt_lstm_rank": 2, "tt_lstm_shape": "2x2:4x8"},
     r"--tt_lstm_shape='2x2:4x8': the rows multiply to 4 but lstm_0 kernel \(8x32\) has 8 rows; "
     r".* e.g. --tt_lstm_shape=2x2x2:2x4x4"),
    ({"tt_embedding_rank": 2, "tt_embedding_shape": "8x8:8"}, r"the rows multiply to 64"),
])
def test_shapes_and_ranks_that_do_not_fit(dense_model, kwargs, message):
  with pytest.raises(UserError, match=message):
    tt.compress(dense_model, tt.Config(**kwargs))


def test_compress_and_finetune_writes_a_run_dir(tiny_run, small_corpus, tmp_path):
  run_dir, base_metrics = tiny_run
  out = str(tmp_path / "tt")
  metrics = compress_tiny_run(tiny_run, small_corpus, out, "tt", {"tt_rank": 8})
  assert metrics["params"] < base_metrics["params"] / 2
  softmax = metrics["method_report"]["tt"]["softmax"]
  assert softmax["tt_shape"] == "2x4x4:5x6x7" and softmax["ranks"] == [1, 8, 8, 1]
  assert metrics["test_ppl"] < 1.2 * base_metrics["test_ppl"]
  saved = json.load(open(os.path.join(out, "metrics.json")))
  assert saved["config"]["method"] == "tt"
  assert os.path.exists(os.path.join(out, "model.keras"))


# ---------------------------------------------------------------------------
# One-row contraction order (the step model's softmax and LSTM kernels).


@pytest.mark.parametrize("tt_shape", [((2, 3, 5), (3, 1, 4)), ((2, 10), (10, 10)),
                                      ((2, 2, 2, 2), (3, 1, 2, 2))])
@pytest.mark.parametrize("order", ["l2r", "r2l"])
def test_both_contraction_orders_match_the_full_matrix(tt_shape, order):
  rng = np.random.default_rng(3)
  cores = _random_cores(rng, tt_shape, 4)
  full = _full(cores)
  x = rng.normal(size=(3, full.shape[0])).astype(np.float32)
  np.testing.assert_allclose(tt_matmul(tf.constant(x), cores, tt_shape, order), x @ full,
                             rtol=1e-5, atol=1e-5)


def test_contraction_cost_and_the_cheapest_order():
  # The PTB softmax shape of docs/RESULTS.md: 200 x 10000 as 2x100:100x100, rank 32.
  shape, ranks = ((2, 100), (100, 100)), (1, 32, 1)
  assert tt_matvec_macs(shape, ranks, "l2r") == 2 * 100 * 32 * 100 + 32 * 100 * 100 * 100
  assert tt_matvec_macs(shape, ranks, "r2l") == 100 * 100 * 32 * 2 + 32 * 2 * 100 * 100
  assert cheapest_order(shape, ranks) == "r2l"
  # Mirrored, left to right is the cheap one.
  assert cheapest_order(((100, 2), (100, 100)), ranks) == "l2r"
  with pytest.raises(ValueError, match="order='up'"):
    tt_matvec_macs(shape, ranks, "up")


def _step_ops(tt_shape, rank, order):
  cores = _random_cores(np.random.default_rng(4), tt_shape, rank)
  rows = math.prod(tt_shape[0])
  fn = tf.function(lambda x: tt_matmul(x, [tf.constant(c) for c in cores], tt_shape, order),
                   input_signature=[tf.TensorSpec([1, rows], tf.float32)])
  converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
  ops = inspect_tflite.op_names(inspect_tflite.parse(converter.convert()))
  return {op: ops.count(op) for op in set(ops) - {"RESHAPE"}}


@pytest.mark.parametrize("tt_shape,order,expected", [
    (((2, 10), (10, 10)), "l2r", {"TRANSPOSE": 2, "FULLY_CONNECTED": 2}),
    (((2, 10), (10, 10)), "r2l", {"TRANSPOSE": 2, "FULLY_CONNECTED": 2}),
    (((2, 3, 5), (3, 1, 4)), "l2r", {"TRANSPOSE": 3, "FULLY_CONNECTED": 3}),
])
def test_one_row_contraction_op_counts(tt_shape, order, expected):
  """Pinned: one FULLY_CONNECTED per core and no more TRANSPOSEs than cores (the
  converter folds r2l's digit reversals into the chain's transposes)."""
  assert _step_ops(tt_shape, 3, order) == expected
