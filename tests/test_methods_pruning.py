import json
import os
import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest
import tf_keras as keras

from tflm_compress import testing
from tflm_compress.errors import UserError
from tflm_compress.export import sparsity
from tflm_compress.layers import LSTM, TiedEmbedding
from tflm_compress.layers.pruning import PrunableLSTM, PrunableTiedEmbedding
from tflm_compress.methods import pruning, tfmot_support
from tflm_compress.models import ModelConfig, build_language_model, zero_states

from conftest import REPO_ROOT, compress_tiny_run

CONFIG = ModelConfig(vocab_size=40, embedding_size=8, hidden_sizes=(8, 8))
TOKENS = np.arange(12, dtype=np.int32)[None] % 40
TARGETS = {"embedding": 0.5, "lstm": 0.75, "softmax": 0.6}


@pytest.fixture(scope="module")
def dense_model():
  return build_language_model(CONFIG, seed=0)


def _outputs(model):
  return [np.asarray(o) for o in model([TOKENS] + zero_states(CONFIG, 1))]


def _config(**kwargs):
  kwargs.setdefault("embedding_sparsity", TARGETS["embedding"])
  kwargs.setdefault("lstm_sparsity", TARGETS["lstm"])
  kwargs.setdefault("softmax_sparsity", TARGETS["softmax"])
  return pruning.Config(**kwargs)


def test_prunable_lstm_is_the_lstm_with_its_kernels_prunable():
  x = np.random.default_rng(0).normal(size=(2, 3, 5)).astype(np.float32)
  states = [np.zeros((2, 6), np.float32)] * 2
  layer = testing.run_layer_test(PrunableLSTM, {"units": 6}, [x] + states,
                                 [(2, 3, 6), (2, 6), (2, 6)])
  assert layer.get_prunable_weights() == [layer.kernel, layer.recurrent_kernel]
  plain = LSTM(6)
  plain([x] + states)
  plain.set_weights(layer.get_weights())
  for a, b in zip(plain([x] + states), layer([x] + states)):
    np.testing.assert_array_equal(a, b)


def test_schedule_steps():
  # Derived: the ramp ends halfway through fine-tuning, 20 mask updates on it.
  assert pruning.schedule_steps(pruning.Config(sparsity=0.5), finetune_steps=400) == (0, 200, 10)
  # end - begin is rounded up to a multiple of the frequency.
  assert pruning.schedule_steps(pruning.Config(sparsity=0.5), finetune_steps=157) == (0, 78, 3)
  assert pruning.schedule_steps(pruning.Config(sparsity=0.5)) == (0, 1000, 50)
  explicit = pruning.Config(sparsity=0.5, pruning_begin_step=10, pruning_end_step=33,
                            pruning_frequency=5)
  assert pruning.schedule_steps(explicit, finetune_steps=400) == (10, 35, 5)


def test_the_fine_tuning_length_places_the_schedule(dense_model):
  context = types.SimpleNamespace(finetune_steps=400)  # What compress_and_finetune knows.
  pruned = pruning.compress(dense_model, pruning.Config(sparsity=0.5), context)
  schedule = pruned.get_layer("prune_low_magnitude_lstm_0").pruning_schedule
  assert (schedule.begin_step, schedule.end_step, schedule.frequency) == (0, 200, 10)
  assert schedule.final_sparsity == 0.5


@pytest.mark.parametrize("schedule", pruning.SCHEDULES)
def test_every_targeted_tensor_gets_its_sparsity(dense_model, schedule):
  pruned = pruning.compress(dense_model, _config(pruning_schedule=schedule))
  wrapped = [l.name for l in pruned.layers if isinstance(l, pruning.PruneLowMagnitude)]
  assert wrapped == ["prune_low_magnitude_embedding", "prune_low_magnitude_lstm_0",
                     "prune_low_magnitude_lstm_1", "prune_low_magnitude_softmax"]
  stripped = pruning.strip(pruned)  # Completes the schedule: no fine-tuning needed.
  measured = pruning.measured_sparsity(stripped)
  assert set(measured) == {"embedding/embeddings", "lstm_0/kernel", "lstm_0/recurrent_kernel",
                           "lstm_1/kernel", "lstm_1/recurrent_kernel", "softmax/kernel"}
  for name, sparsity in measured.items():
    assert sparsity == pytest.approx(TARGETS[tfmot_support.group_of(name)], abs=0.01), name
  # Biases are never pruned.
  np.testing.assert_array_equal(stripped.get_layer("lstm_0").bias.numpy(),
                                dense_model.get_layer("lstm_0").bias.numpy())


def test_pruning_keeps_the_largest_magnitudes_of_our_lstm(dense_model):
  stripped = pruning.strip(pruning.compress(dense_model, pruning.Config(lstm_sparsity=0.75)))
  for layer_name in ("lstm_0", "lstm_1"):
    for weight in ("kernel", "recurrent_kernel"):
      before = getattr(dense_model.get_layer(layer_name), weight).numpy()
      after = getattr(stripped.get_layer(layer_name), weight).numpy()
      kept = after != 0
      assert kept.mean() == pytest.approx(0.25, abs=0.01)
      np.testing.assert_array_equal(after[kept], before[kept])  # Survivors unchanged.
      assert np.abs(before[~kept]).max() <= np.abs(before[kept]).min()  # Smallest went.
  # Groups not asked for stay dense and exact.
  np.testing.assert_array_equal(stripped.get_layer("softmax").kernel.numpy(),
                                dense_model.get_layer("softmax").kernel.numpy())


def test_stripped_model_is_a_package_model(dense_model):
  stripped = pruning.strip(pruning.compress(dense_model, _config()))
  assert [type(l) for l in stripped.layers if not isinstance(l, keras.layers.InputLayer)] == \
      [keras.layers.Embedding, LSTM, LSTM, keras.layers.Dense]
  reloaded = testing.save_and_reload(stripped)
  assert type(reloaded.get_layer("lstm_0")) is LSTM
  for a, b in zip(_outputs(stripped), _outputs(reloaded)):
    np.testing.assert_array_equal(a, b)
  assert pruning.measured_sparsity(reloaded) == pruning.measured_sparsity(stripped)
  testing.assert_tflite_matches_keras(stripped, TOKENS[0], atol=1e-4)  # Builtin ops only.


def test_block_sparsity_zeroes_whole_blocks(dense_model):
  stripped = pruning.strip(pruning.compress(
      dense_model, pruning.Config(sparsity=0.5, prune_block_size="1,4")))
  for name, value in tfmot_support.target_tensors(stripped).items():
    blocks = value.reshape(value.shape[0], -1, 4)
    zero_blocks = np.all(blocks == 0, axis=-1)
    assert np.array_equal(zero_blocks, np.any(blocks == 0, axis=-1)), name  # All or none.
    assert zero_blocks.mean() == pytest.approx(0.5, abs=0.01), name


def test_tied_embedding_is_pruned_once():
  tied = build_language_model(ModelConfig(vocab_size=40, embedding_size=8, hidden_sizes=(8, 8),
                                          tie_embeddings=True), seed=0)
  pruned = pruning.compress(tied, pruning.Config(embedding_sparsity=0.8))
  wrapper = pruned.get_layer("prune_low_magnitude_embedding")
  assert isinstance(wrapper.layer, PrunableTiedEmbedding)
  # Called twice per step (lookup and logits): its schedule runs on doubled steps.
  assert wrapper.pruning_schedule.end_step == 2 * pruning.schedule_steps(
      pruning.Config(sparsity=0.8))[1]
  stripped = pruning.strip(pruned)
  assert type(stripped.get_layer("embedding")) is TiedEmbedding
  assert pruning.measured_sparsity(stripped)["embedding/embeddings"] == pytest.approx(0.8,
                                                                                      abs=0.01)
  testing.assert_tflite_matches_keras(stripped, TOKENS[0], atol=1e-4)


def test_sparsity_sizes_of_a_90_percent_sparse_model():
  model = build_language_model(ModelConfig(vocab_size=200, embedding_size=48,
                                           hidden_sizes=(48, 48)), seed=0)
  dense = sparsity.sparsity_sizes(model)
  sparse = sparsity.sparsity_sizes(pruning.strip(pruning.compress(model,
                                                                 pruning.Config(sparsity=0.9))))
  for sizes in (dense, sparse):
    assert set(sizes) == {"float", "float_sparse", "dynamic", "dynamic_sparse"}
  assert dense["float_sparse"]["sparse_tensors"] == 0  # Dense weights stay dense.
  # Same dense file size, much smaller once compressed.
  assert sparse["float"]["tflite_bytes"] == pytest.approx(dense["float"]["tflite_bytes"], rel=0.01)
  assert sparse["float"]["gzip_bytes"] < 0.5 * dense["float"]["gzip_bytes"]
  # Sparse encoding of the 3 FULLY_CONNECTED weights ([kernel; recurrent_kernel] per LSTM
  # in the step graph, and the softmax).
  assert sparse["float_sparse"]["sparse_tensors"] == 3
  assert sparse["float_sparse"]["tflite_bytes"] < 0.6 * sparse["float"]["tflite_bytes"]
  assert sparse["float_sparse"]["loads_in_litert"]
  assert sparse["dynamic_sparse"]["tflite_bytes"] < sparse["dynamic"]["tflite_bytes"]
  assert sparse["dynamic"]["gzip_bytes"] < dense["dynamic"]["gzip_bytes"]


@pytest.mark.parametrize("kwargs, message", [
    ({}, "prune needs a target"),
    ({"sparsity": 1.0}, r"--sparsity=1.0; must be in \[0, 1\)"),
    ({"sparsity": -0.1}, r"--sparsity=-0.1; must be in \[0, 1\)"),
    ({"sparsity": 0.5, "lstm_sparsity": 1.5}, r"--lstm_sparsity=1.5"),
    ({"sparsity": 0.5, "pruning_schedule": "cubic"}, "--pruning_schedule='cubic'; use one of"),
    ({"sparsity": 0.5, "prune_block_size": "1x4"}, "--prune_block_size='1x4'; use 'H,W'"),
    ({"sparsity": 0.5, "prune_block_size": "0,4"}, "--prune_block_size='0,4'"),
    ({"sparsity": 0.5, "pruning_begin_step": 10, "pruning_end_step": 5},
     "--pruning_end_step=5 must be after --pruning_begin_step=10"),
    ({"sparsity": 0.5, "pruning_frequency": -1}, "--pruning_frequency=-1; must be >= 0"),
    ({"sparsity": 0.0, "embedding_sparsity": 0.0}, "prune needs a target"),
])
def test_bad_configs(kwargs, message):
  with pytest.raises(UserError, match=message):
    pruning.Config(**kwargs)


def test_errors_against_the_model(dense_model):
  with pytest.raises(UserError, match=r"--prune_block_size='1,16' is larger than embedding"):
    pruning.compress(dense_model, pruning.Config(sparsity=0.5, prune_block_size="1,16"))
  from tflm_compress.methods import low_rank  # pylint: disable=g-import-not-at-top

  factored = low_rank.compress(dense_model, low_rank.Config(rank=2))
  with pytest.raises(UserError, match="prune found no dense embedding, LSTM or softmax"):
    pruning.compress(factored, pruning.Config(sparsity=0.5))


# The package's training loop (a tf.function over strategy.run), on one device
# and on two mirrored CPU replicas: pruning reaches its target while training,
# and two replicas train exactly like one.
_STRATEGY_SCRIPT = textwrap.dedent("""
    import json, sys
    import tflm_compress
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tflm_compress.data import GeneratedCorpusConfig, generated_corpus
    from tflm_compress.methods import pruning
    from tflm_compress.models import ModelConfig, TrainConfig, build_language_model
    from tflm_compress.training import Trainer
    corpus = generated_corpus(GeneratedCorpusConfig(vocab_size=50, num_classes=5,
        train_tokens=3000, valid_tokens=500, test_tokens=500))
    train = TrainConfig(batch_size=4, num_steps=5, optimizer="sgd", learning_rate=1.0)
    config = pruning.Config(sparsity=0.75, pruning_end_step=40, pruning_frequency=5)
    results = {}
    # One MirroredStrategy per process: a second one reuses collective keys.
    strategies = [("single", tf.distribute.get_strategy()),
                  ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))]
    for tied in (False, True):
      model_config = ModelConfig(vocab_size=len(corpus.vocab), embedding_size=8,
                                 hidden_sizes=(8, 8), tie_embeddings=tied)
      for name, strategy in strategies:
        base = build_language_model(model_config, seed=0)
        trainer = Trainer(lambda: pruning.compress(base, config), train, strategy,
                          callbacks_fn=lambda m: pruning.callbacks(m, config))
        stats = trainer.train_epoch(corpus.split("train"), progress=False)
        trained = pruning.measured_sparsity(trainer.model)  # Before strip.
        ev = trainer.evaluate(corpus.split("valid"))  # eval batch 1: the 1-device path.
        with strategy.scope():
          stripped = pruning.strip(trainer.model)
        results[f"{name}_tied{tied}"] = {
            "replicas": trainer.num_replicas, "ppl": stats["ppl"], "eval": ev["ppl"],
            "trained": trained, "stripped": pruning.measured_sparsity(stripped),
            "classes": sorted({type(l).__name__ for l in stripped.layers}),
            "weights": [w.tolist() for w in stripped.get_weights()]}
    print("RESULT" + json.dumps(results))
""")


def test_pruning_in_the_distributed_training_loop():
  out = subprocess.run([sys.executable, "-c", _STRATEGY_SCRIPT], capture_output=True, text=True,
                       cwd=REPO_ROOT, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  results = json.loads(out.stdout.split("RESULT", 1)[1])
  for tied in (False, True):
    single, mirrored = results[f"single_tied{tied}"], results[f"mirrored_tied{tied}"]
    assert (single["replicas"], mirrored["replicas"]) == (1, 2)
    for run in (single, mirrored):
      # 149 training steps > the 40-step ramp: the target is reached in training.
      trained = run["trained"]
      assert all(s == pytest.approx(0.75, abs=0.01) for s in trained.values()), trained
      assert run["stripped"] == run["trained"]
      assert "PruneLowMagnitude" not in run["classes"] and "LSTM" in run["classes"]
    assert mirrored["ppl"] == pytest.approx(single["ppl"], rel=1e-5)
    assert mirrored["eval"] == pytest.approx(single["eval"], rel=1e-5)
    for a, b in zip(single["weights"], mirrored["weights"]):
      np.testing.assert_allclose(np.array(a), np.array(b), atol=1e-5)


def test_compress_and_finetune_writes_a_sparse_run_dir(tiny_run, small_corpus, tmp_path):
  run_dir, base_metrics = tiny_run
  out = str(tmp_path / "pruned")
  metrics = compress_tiny_run(tiny_run, small_corpus, out, "prune", {"sparsity": 0.5})
  report = metrics["method_report"]["prune"]
  assert all(s == pytest.approx(0.5, abs=0.01) for s in report["sparsity"].values())
  assert report["sizes"]["float"]["gzip_bytes"] < report["sizes"]["float"]["tflite_bytes"]
  assert report["nonzero_params"] == pytest.approx(0.5 * metrics["params"], rel=0.05)
  assert metrics["test_ppl"] < 1.2 * base_metrics["test_ppl"]
  from tflm_compress.models import load_model  # pylint: disable=g-import-not-at-top

  saved = load_model(os.path.join(out, "model.keras"))
  assert pruning.measured_sparsity(saved) == report["sparsity"]
  assert type(saved.get_layer("lstm_1")) is LSTM


def test_convert_and_describe_reports_the_first_line_of_a_converter_error():
  def refuse():
    raise ValueError("\n  sparse hybrid FULLY_CONNECTED unsupported\n  details...")

  assert sparsity.convert_and_describe(refuse) == (
      None, {"error": "sparse hybrid FULLY_CONNECTED unsupported"})
