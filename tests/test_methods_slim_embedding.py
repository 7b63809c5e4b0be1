import os

import numpy as np
import pytest
import tf_keras as keras

from tflm_compress import export, testing
from tflm_compress.errors import UserError
from tflm_compress.export import inspect_tflite
from tflm_compress.layers.slim_embedding import SlimEmbedding, SlimSoftmax, random_assignment
from tflm_compress.methods import low_rank
from tflm_compress.methods import slim_embedding as slim
from tflm_compress.methods.base import CompressionContext
from tflm_compress.models import ModelConfig, build_language_model, count_params, zero_states

from conftest import compress_tiny_run

CONFIG = ModelConfig(vocab_size=30, embedding_size=6, hidden_sizes=(6, 8))
TOKENS = (np.arange(24, dtype=np.int32)[None] * 7) % 30
CONTEXT = CompressionContext(seed=0)
STEP_OPS = {"ADD", "FULLY_CONNECTED", "GATHER", "LOGISTIC", "MUL", "RESHAPE", "SPLIT",
            "STRIDED_SLICE", "SUM", "TANH", "QUANTIZE", "DEQUANTIZE", "TRANSPOSE",
            "BATCH_MATMUL", "CONCATENATION"}


@pytest.fixture
def dense_model():
  """The small dense model with O(1) embedding and softmax weights (so errors show)."""
  model = build_language_model(CONFIG, seed=0)
  rng = np.random.default_rng(0)
  model.get_layer("embedding").embeddings.assign(rng.normal(size=(30, 6)))
  model.get_layer("softmax").kernel.assign(rng.normal(size=(8, 30)))
  model.get_layer("softmax").bias.assign(rng.normal(size=30))
  return model


def _outputs(model):
  return [np.asarray(o) for o in model([TOKENS] + zero_states(CONFIG, 1))]


def test_layer_contracts():
  testing.run_layer_test(SlimEmbedding, {"input_dim": 9, "output_dim": 6, "num_subvectors": 3,
                                         "pool_size": 5, "seed": 2},
                         np.array([[0, 5], [8, 3]]), [(2, 2, 6)])
  x = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)
  testing.run_layer_test(SlimSoftmax, {"units": 9, "num_subvectors": 2, "pool_size": 5},
                         x, [(2, 3, 9)])


def test_assignment_is_reproducible_from_the_seed_and_balanced():
  a = random_assignment(100, 4, 30, seed=7)
  assert a.shape == (100, 4) and a.dtype == np.int32
  np.testing.assert_array_equal(a, random_assignment(100, 4, 30, seed=7))
  assert not np.array_equal(a, random_assignment(100, 4, 30, seed=8))
  uses = np.bincount(a.ravel(), minlength=30)
  assert uses.min() == 13 and uses.max() == 14  # 400 slots over 30 entries, none unused
  # A layer rebuilt from its config draws the same table.
  layer = SlimEmbedding(100, 8, 4, 30, seed=7)
  layer(np.zeros((1,), np.int32))
  np.testing.assert_array_equal(layer.assignment.numpy(), a)
  clone = SlimEmbedding.from_config(layer.get_config())
  clone(np.zeros((1,), np.int32))
  np.testing.assert_array_equal(clone.assignment.numpy(), a)


def test_layers_compute_the_pooled_vectors():
  rng = np.random.default_rng(1)
  embedding = SlimEmbedding(9, 6, 3, 5, seed=3)
  ids = np.array([[1, 8, 0], [4, 4, 2]])
  embedding(ids)
  pool = rng.normal(size=(5, 2)).astype(np.float32)
  embedding.pool.assign(pool)
  table = slim.expand(pool, embedding.assignment.numpy())
  np.testing.assert_allclose(embedding(ids), table[ids], atol=1e-6)

  softmax = SlimSoftmax(9, 2, 5, seed=4)
  h = rng.normal(size=(2, 3, 4)).astype(np.float32)
  softmax(h)
  pool, bias = rng.normal(size=(5, 2)), rng.normal(size=9)
  softmax.set_weights([pool, bias, softmax.assignment.numpy()])
  vectors = slim.expand(pool, softmax.assignment.numpy())  # [V, H]
  np.testing.assert_allclose(softmax(h), h @ vectors.T + bias, atol=1e-5)
  np.testing.assert_allclose(softmax.vectors(), vectors, atol=1e-6)
  # One row (the step graph) takes the pool-score path; it computes the same logits.
  for row in h.reshape(-1, 4):
    np.testing.assert_allclose(softmax(row[None]), row[None] @ vectors.T + bias, atol=1e-5)


def test_param_count_matches_the_formula(dense_model):
  model = slim.compress(dense_model, slim.Config(slim_k=2, slim_m=10), CONTEXT)
  assert type(model.get_layer("embedding")) is SlimEmbedding
  assert type(model.get_layer("softmax")) is SlimSoftmax
  embedding_params = 10 * 6 // 2
  softmax_params = 10 * 8 // 2 + 30
  assert slim.slim_params(30, 6, 2, 10) == embedding_params
  assert slim.slim_params(30, 8, 2, 10, bias=True) == softmax_params
  assert count_params(dense_model) - count_params(model) == \
      (30 * 6 - embedding_params) + (8 * 30 + 30 - softmax_params)
  report = slim.report(model)
  assert report["embedding"]["pool_params"] == embedding_params
  assert report["softmax"]["seed"] == 1  # slim_seed + 1: the tables differ
  np.testing.assert_array_equal(model.get_layer("embedding").assignment.numpy(),
                                random_assignment(30, 2, 10, seed=0))
  np.testing.assert_array_equal(model.get_layer("softmax").assignment.numpy(),
                                random_assignment(30, 2, 10, seed=1))


def test_average_pool_is_the_weighted_least_squares_pool():
  rng = np.random.default_rng(2)
  matrix, weights = rng.normal(size=(40, 6)), rng.uniform(1, 50, size=40)
  assignment = random_assignment(40, 3, 12, seed=0)
  pool = slim.average_pool(matrix, assignment, 12, weights)

  def error(p):
    return np.sum(weights[:, None] * (matrix - slim.expand(p, assignment)) ** 2)

  for _ in range(5):  # Any other pool is worse.
    assert error(pool + 0.01 * rng.normal(size=pool.shape)) > error(pool)
  # A matrix that the pool can represent is recovered exactly.
  exact = slim.expand(rng.normal(size=(12, 2)), assignment)
  np.testing.assert_allclose(slim.expand(slim.average_pool(exact, assignment, 12), assignment),
                             exact, atol=1e-12)


def test_representable_model_is_reproduced_exactly(dense_model):
  """With weights a pool can represent, the averaged initialisation is exact."""
  rng = np.random.default_rng(3)
  dense_model.get_layer("embedding").embeddings.assign(
      slim.expand(rng.normal(size=(10, 3)), random_assignment(30, 2, 10, seed=5)))
  dense_model.get_layer("softmax").kernel.assign(
      slim.expand(rng.normal(size=(10, 4)), random_assignment(30, 2, 10, seed=6)).T)
  model = slim.compress(dense_model, slim.Config(slim_k=2, slim_m=10, slim_seed=5), CONTEXT)
  for a, b in zip(_outputs(dense_model), _outputs(model)):
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_random_init_trains_from_scratch(dense_model):
  model = slim.compress(dense_model, slim.Config(slim_k=2, slim_m=10, slim_init="random",
                                                 slim_targets="softmax"), CONTEXT)
  assert type(model.get_layer("embedding")) is keras.layers.Embedding
  np.testing.assert_array_equal(model.get_layer("softmax").bias.numpy(), np.zeros(30))


def test_round_trip_and_export_parity(dense_model):
  model = slim.compress(dense_model, slim.Config(slim_k=2, slim_m=12), CONTEXT)
  reloaded = testing.save_and_reload(model)
  np.testing.assert_array_equal(reloaded.get_layer("softmax").assignment.numpy(),
                                model.get_layer("softmax").assignment.numpy())
  for a, b in zip(_outputs(model), _outputs(reloaded)):
    np.testing.assert_allclose(a, b, atol=1e-6)
  testing.assert_tflite_matches_keras(model, TOKENS[0], atol=1e-4)
  flat = inspect_tflite.parse(export.convert_step_model(model))
  assert set(inspect_tflite.op_names(flat)) <= STEP_OPS
  # The softmax holds the pool and bias, not a [V, H] matrix; its table is int32 data.
  assert inspect_tflite.bytes_by_group(flat)["softmax"] < 8 * 30 * 4
  assert inspect_tflite.weight_dtypes(flat)["INT32"] >= 2 * 30 * 2 * 4


def test_composes_with_low_rank_lstm_and_ptq(dense_model):
  model = slim.compress(dense_model, slim.Config(slim_k=2, slim_m=20), CONTEXT)
  model = low_rank.compress(model, low_rank.Config(lstm_rank=3), CONTEXT)
  kinds = [type(model.get_layer(n)).__name__ for n in ("embedding", "lstm_1", "softmax")]
  assert kinds == ["SlimEmbedding", "LowRankLSTM", "SlimSoftmax"]
  testing.assert_tflite_matches_keras(testing.save_and_reload(model), TOKENS[0], atol=1e-4)
  calibration = export.representative_steps(model, TOKENS[0], 20)
  for quantize in ("dynamic", "int8"):
    flat = export.convert_step_model(model, quantize, calibration if quantize == "int8" else None)
    assert not inspect_tflite.non_builtin_ops(inspect_tflite.parse(flat))
    parity = export.check_parity(model, export.TFLiteStepModel(flat), TOKENS[0])
    assert parity["argmax_agreement"] >= 0.75, (quantize, parity)


@pytest.mark.parametrize("kwargs, message", [
    ({"slim_k": 0, "slim_m": 4}, "--slim_k=0"),
    ({"slim_k": 2}, "needs --slim_m"),
    ({"slim_k": 2, "slim_m": 4, "slim_targets": "lstm"}, "subset of embedding, softmax"),
    ({"slim_k": 2, "slim_m": 4, "slim_init": "svd"}, "use one of average, random"),
])
def test_bad_configs(kwargs, message):
  with pytest.raises(UserError, match=message):
    slim.Config(**kwargs)


def test_k_that_does_not_divide_lists_the_valid_divisors(dense_model):
  with pytest.raises(UserError, match=r"--slim_k=4 does not divide the embedding size 6 of "
                                      r"embedding; valid --slim_k: 1, 2, 3, 6"):
    slim.compress(dense_model, slim.Config(slim_k=4, slim_m=8), CONTEXT)
  with pytest.raises(UserError, match=r"--slim_k=3 does not divide the input \(hidden\) size 8 "
                                      r"of softmax; valid --slim_k: 1, 2, 4, 8"):
    slim.compress(dense_model, slim.Config(slim_k=3, slim_m=8, slim_targets="softmax"), CONTEXT)
  with pytest.raises(UserError, match=r"--slim_m=61 exceeds the 60 sub-vector slots of "
                                      r"embedding \(V=30 x K=2\); use 1..60"):
    slim.compress(dense_model, slim.Config(slim_k=2, slim_m=61), CONTEXT)


def test_nothing_to_compress():
  tied = build_language_model(ModelConfig(vocab_size=30, embedding_size=6, hidden_sizes=(6,),
                                          tie_embeddings=True), seed=0)
  with pytest.raises(UserError, match="slim_embedding found no dense embedding or softmax"):
    slim.compress(tied, slim.Config(slim_k=2, slim_m=4), CONTEXT)


def test_compress_and_finetune_writes_a_run_dir(tiny_run, small_corpus, tmp_path):
  run_dir, base_metrics = tiny_run
  out = str(tmp_path / "slim")
  metrics = compress_tiny_run(tiny_run, small_corpus, out, "slim_embedding", {"slim_k": 4, "slim_m": 100})
  report = metrics["method_report"]["slim_embedding"]
  assert report["embedding"]["pool_params"] == 100 * 32 // 4
  vocab_size, dim = len(small_corpus.vocab), 32
  assert metrics["params"] == base_metrics["params"] - 2 * vocab_size * dim + 2 * 100 * dim // 4
  assert metrics["test_ppl"] < 1.3 * base_metrics["test_ppl"]
  assert os.path.exists(os.path.join(out, "model.keras"))
