import os

import numpy as np
import pytest
import tf_keras as keras

from tflm_compress import testing
from tflm_compress.errors import UserError
from tflm_compress.layers import LSTM, TiedEmbedding
from tflm_compress.layers.clustering import ClusterableLSTM, ClusterableTiedEmbedding
from tflm_compress.methods import clustering
from tflm_compress.models import ModelConfig, build_language_model, load_model, zero_states

from conftest import compress_tiny_run

CONFIG = ModelConfig(vocab_size=40, embedding_size=8, hidden_sizes=(8, 8))
TOKENS = np.arange(12, dtype=np.int32)[None] % 40


@pytest.fixture(scope="module")
def dense_model():
  return build_language_model(CONFIG, seed=0)


def _outputs(model):
  return [np.asarray(o) for o in model([TOKENS] + zero_states(CONFIG, 1))]


def test_clusterable_lstm_is_the_lstm_with_its_kernels_clusterable():
  x = np.random.default_rng(0).normal(size=(2, 3, 5)).astype(np.float32)
  states = [np.zeros((2, 6), np.float32)] * 2
  layer = testing.run_layer_test(ClusterableLSTM, {"units": 6}, [x] + states,
                                 [(2, 3, 6), (2, 6), (2, 6)])
  assert layer.get_clusterable_weights() == [("kernel", layer.kernel),
                                             ("recurrent_kernel", layer.recurrent_kernel)]


@pytest.mark.parametrize("init", ["linear", "kmeans_plus_plus", "density_based"])
def test_at_most_k_values_per_targeted_tensor(dense_model, init):
  clustered = clustering.compress(dense_model, clustering.Config(num_clusters=8, cluster_init=init))
  assert {l.name for l in clustered.layers if hasattr(l, "number_of_clusters")} == {
      "cluster_embedding", "cluster_lstm_0", "cluster_lstm_1", "cluster_softmax"}
  stripped = clustering.strip(clustered)
  counts = clustering.unique_values(stripped)
  assert set(counts) == {"embedding/embeddings", "lstm_0/kernel", "lstm_0/recurrent_kernel",
                         "lstm_1/kernel", "lstm_1/recurrent_kernel", "softmax/kernel"}
  assert all(2 <= n <= 8 for n in counts.values()), counts
  # Each weight became its nearest centroid (no fine-tuning has moved them).
  before = dense_model.get_layer("lstm_0").kernel.numpy()
  after = stripped.get_layer("lstm_0").kernel.numpy()
  centroids = np.unique(after)
  nearest = centroids[np.argmin(np.abs(before[..., None] - centroids), axis=-1)]
  np.testing.assert_array_equal(after, nearest)
  # Biases keep all their values.
  np.testing.assert_array_equal(stripped.get_layer("softmax").bias.numpy(),
                                dense_model.get_layer("softmax").bias.numpy())


def test_stripped_model_is_a_package_model(dense_model):
  stripped = clustering.strip(clustering.compress(dense_model, clustering.Config(num_clusters=4)))
  assert [type(l) for l in stripped.layers if not isinstance(l, keras.layers.InputLayer)] == \
      [keras.layers.Embedding, LSTM, LSTM, keras.layers.Dense]
  reloaded = testing.save_and_reload(stripped)
  for a, b in zip(_outputs(stripped), _outputs(reloaded)):
    np.testing.assert_array_equal(a, b)
  testing.assert_tflite_matches_keras(stripped, TOKENS[0], atol=1e-4)


def test_targets_and_tied_embeddings(dense_model):
  only_lstm = clustering.strip(clustering.compress(
      dense_model, clustering.Config(num_clusters=4, cluster_targets="lstm")))
  counts = clustering.unique_values(only_lstm)
  assert counts["lstm_1/recurrent_kernel"] <= 4
  assert counts["embedding/embeddings"] == CONFIG.vocab_size * CONFIG.embedding_size
  tied = build_language_model(ModelConfig(vocab_size=40, embedding_size=8, hidden_sizes=(8, 8),
                                          tie_embeddings=True), seed=0)
  clustered = clustering.compress(tied, clustering.Config(num_clusters=4))
  assert isinstance(clustered.get_layer("cluster_embedding").layer,
                    ClusterableTiedEmbedding)
  stripped = clustering.strip(clustered)
  assert type(stripped.get_layer("embedding")) is TiedEmbedding
  assert clustering.unique_values(stripped)["embedding/embeddings"] <= 4


@pytest.mark.parametrize("kwargs, message", [
    ({}, r"--num_clusters=0; cluster needs 2..65536"),
    ({"num_clusters": 1}, r"--num_clusters=1; cluster needs 2..65536"),
    ({"num_clusters": 16, "cluster_init": "kmeans"}, r"--cluster_init='kmeans'; use one of"),
    ({"num_clusters": 16, "cluster_targets": "rnn"}, r"--cluster_targets='rnn'; use a comma"),
    ({"num_clusters": 16, "cluster_targets": ""}, r"--cluster_targets=''"),
])
def test_bad_configs(kwargs, message):
  with pytest.raises(UserError, match=message):
    clustering.Config(**kwargs)


def test_packed_bytes():
  values = np.repeat(np.arange(16, dtype=np.float32), 10)  # 160 weights, 16 values.
  assert clustering.packed_bytes(values) == 16 * 4 + 160 * 4 // 8


def test_more_clusters_than_weights(dense_model):
  with pytest.raises(UserError, match=r"--num_clusters=500 exceeds the 320 weights of "
                                      r"embedding/embeddings"):
    clustering.compress(dense_model, clustering.Config(num_clusters=500))


def test_compress_and_finetune_keeps_k_values(tiny_run, small_corpus, tmp_path):
  run_dir, base_metrics = tiny_run
  out = str(tmp_path / "clustered")
  metrics = compress_tiny_run(tiny_run, small_corpus, out, "cluster", {"num_clusters": 16})
  report = metrics["method_report"]["cluster"]
  counts = report["unique_values"]
  assert all(n <= 16 for n in counts.values()), counts
  # 4-bit indices: about 1/8 of float32, plus the codebooks.
  assert report["packed_bytes"] < report["float32_bytes"] / 7
  assert metrics["test_ppl"] < 1.2 * base_metrics["test_ppl"]
  saved = load_model(os.path.join(out, "model.keras"))
  assert clustering.unique_values(saved) == counts


def _centroid_gradient(dense_model, aggregation):
  """d(sum of logits)/d(softmax centroids), and the weights per centroid."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  clustered = clustering.compress(dense_model, clustering.Config(
      num_clusters=4, cluster_init="linear", cluster_targets="softmax",
      cluster_gradient=aggregation))
  wrapper = clustered.get_layer("cluster_softmax")
  centroids = [v for v in wrapper.trainable_variables if "cluster_centroids" in v.name][0]
  with tf.GradientTape() as tape:
    logits = clustered([TOKENS] + zero_states(CONFIG, 1))[0]
    loss = tf.reduce_sum(logits)
  gradient = tf.convert_to_tensor(tape.gradient(loss, centroids)).numpy()
  kernel = clustering.strip(clustered).get_layer("softmax").kernel.numpy()
  sizes = np.array([np.sum(kernel == c) for c in centroids.numpy()])
  return gradient, sizes


def test_avg_centroid_gradient_is_the_sum_over_the_cluster_size(dense_model):
  summed, sizes = _centroid_gradient(dense_model, "sum")
  averaged, sizes_avg = _centroid_gradient(dense_model, "avg")
  np.testing.assert_array_equal(sizes, sizes_avg)
  assert sizes.sum() == 8 * 40 and sizes.min() > 1
  np.testing.assert_allclose(averaged * sizes, summed, rtol=1e-4, atol=1e-6)


def test_bad_cluster_gradient():
  with pytest.raises(UserError, match="--cluster_gradient='mean'; use one of"):
    clustering.Config(num_clusters=4, cluster_gradient="mean")
