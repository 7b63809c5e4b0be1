import numpy as np
import pytest

from tflm_compress import testing
from tflm_compress.errors import UserError
from tflm_compress.models import (ModelConfig, TrainConfig, build_language_model, count_params,
                                  get_preset, zero_states)


def test_small_preset_has_zaremba_param_count():
  config = get_preset("small").model.with_vocab_size(10_000)
  model = build_language_model(config)
  # emb 10000*200 + 2 LSTMs (4*200*(200+200) + 800) + softmax 200*10000 + 10000
  assert count_params(model) == 2_000_000 + 2 * 320_800 + 2_010_000 == 4_651_600


def test_inputs_outputs_and_state_carry():
  config = ModelConfig(vocab_size=30, embedding_size=8, hidden_sizes=(6, 5))
  model = build_language_model(config, seed=1)
  assert [t.name for t in model.inputs] == ["tokens", "h0", "c0", "h1", "c1"]
  tokens = np.random.default_rng(0).integers(0, 30, (2, 9)).astype(np.int32)
  logits, *states = model([tokens] + zero_states(config, 2))
  assert logits.shape == (2, 9, 30) and [s.shape[-1] for s in states] == [6, 6, 5, 5]
  a, *mid = model([tokens[:, :4]] + zero_states(config, 2))
  b, *_ = model([tokens[:, 4:]] + mid)
  np.testing.assert_allclose(np.concatenate([a, b], 1), logits, atol=1e-5)


def test_same_seed_same_weights_and_init_scale():
  config = ModelConfig(vocab_size=30, embedding_size=8, hidden_sizes=(6,), init_scale=0.05)
  a, b = build_language_model(config, seed=3), build_language_model(config, seed=3)
  for wa, wb in zip(a.get_weights(), b.get_weights()):
    np.testing.assert_array_equal(wa, wb)
  kernel = a.get_layer("lstm_0").kernel.numpy()
  assert np.abs(kernel).max() <= 0.05 and np.abs(kernel).max() > 0.04


@pytest.mark.parametrize("tied", [False, True])
def test_keras_round_trip_gives_same_logits(tied):
  config = ModelConfig(vocab_size=20, embedding_size=6, hidden_sizes=(6,), tie_embeddings=tied,
                       dropout=0.3)
  model = build_language_model(config, seed=0)
  reloaded = testing.save_and_reload(model)
  tokens = np.array([[1, 2, 3, 4]], np.int32)
  for a, b in zip(model([tokens] + zero_states(config, 1)),
                  reloaded([tokens] + zero_states(config, 1))):
    np.testing.assert_allclose(a, b, atol=1e-6)
  if tied:
    assert count_params(model) == 20 * 6 + 20 + 4 * 6 * 12 + 24


@pytest.mark.parametrize("kwargs, message", [
    ({"embedding_size": 0}, "embedding_size=0"),
    ({"hidden_sizes": (200, -1)}, "hidden_sizes"),
    ({"hidden_sizes": ()}, "hidden_sizes"),
    ({"dropout": 1.0}, "dropout"),
    ({"tie_embeddings": True, "embedding_size": 100}, "tie_embeddings"),
])
def test_bad_model_configs(kwargs, message):
  with pytest.raises(UserError, match=message):
    ModelConfig(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 0}, "--batch_size=0"),
    ({"optimizer": "rmsprop"}, "--optimizer"),
    ({"lr_decay": 0}, "--lr_decay"),
])
def test_bad_train_configs(kwargs, message):
  with pytest.raises(UserError, match=message):
    TrainConfig(**kwargs)


def test_zaremba_learning_rate_schedule():
  train = get_preset("small").train
  # Zaremba: lr * 0.5 ** max(epoch + 1 - 4, 0), 0-based epochs.
  assert [train.learning_rate_at(e) for e in range(6)] == [1, 1, 1, 1, 0.5, 0.25]
  with pytest.raises(UserError, match="unknown --config='huge'"):
    get_preset("huge")
