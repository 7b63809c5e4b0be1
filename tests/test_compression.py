"""compress_and_finetune's own options: dropout while fine-tuning."""

import json
import os

import numpy as np
import pytest
import tf_keras as keras

from conftest import compress_tiny_run
from tflm_compress import compression
from tflm_compress.errors import UserError
from tflm_compress.methods import pruning
from tflm_compress.models import ModelConfig, build_language_model, load_model


def _lstm_rates(model):
  return [(l.input_dropout, l.output_dropout) for l in model.layers if l.name.startswith("lstm_")]


def test_set_dropout_puts_it_on_lstm_inputs_and_the_last_output_then_restores():
  model = build_language_model(ModelConfig(vocab_size=20, embedding_size=8, hidden_sizes=(6, 5, 4)))
  previous = compression.set_dropout(model, 0.4)
  assert _lstm_rates(model) == [(0.4, 0.0), (0.4, 0.0), (0.4, 0.4)]
  compression.restore_dropout(previous)
  assert _lstm_rates(model) == [(0.0, 0.0)] * 3


def test_set_dropout_changes_the_rate_of_existing_dropout_layers():
  model = build_language_model(ModelConfig(vocab_size=20, embedding_size=8, hidden_sizes=(6, 5),
                                           dropout=0.5))
  previous = compression.set_dropout(model, 0.2)
  rates = [l.rate for l in model.layers if isinstance(l, keras.layers.Dropout)]
  assert rates == [0.2, 0.2, 0.2]
  assert _lstm_rates(model) == [(0.0, 0.0)] * 2  # Not doubled inside the LSTMs.
  compression.restore_dropout(previous)
  assert [l.rate for l in model.layers if isinstance(l, keras.layers.Dropout)] == [0.5] * 3


def test_set_dropout_reaches_lstms_inside_tfmot_wrappers():
  model = build_language_model(ModelConfig(vocab_size=20, embedding_size=8, hidden_sizes=(6, 5)))
  pruned = pruning.compress(model, pruning.Config(sparsity=0.5))
  compression.set_dropout(pruned, 0.3)
  inner = [l.layer for l in pruned.layers if hasattr(l, "layer") and "lstm" in l.layer.name]
  assert [(l.input_dropout, l.output_dropout) for l in inner] == [(0.3, 0.0), (0.3, 0.3)]
  with pytest.raises(UserError, match="finetune_dropout=1.5"):
    compression.set_dropout(model, 1.5)


def test_finetune_dropout_changes_the_fine_tuning_and_is_not_saved(tiny_run, small_corpus,
                                                                    tmp_path):
  plain_dir, dropout_dir = str(tmp_path / "plain"), str(tmp_path / "dropout")
  compress_tiny_run(tiny_run, small_corpus, plain_dir, "low_rank", {"rank": 8})
  metrics = compress_tiny_run(tiny_run, small_corpus, dropout_dir, "low_rank", {"rank": 8},
                              finetune_dropout=0.5)
  assert np.isfinite(metrics["test_ppl"])
  plain = load_model(os.path.join(plain_dir, "model.keras"))
  dropped = load_model(os.path.join(dropout_dir, "model.keras"))
  assert _lstm_rates(dropped) == [(0.0, 0.0)] * len(_lstm_rates(dropped))
  # Same seed and data: only the dropout makes the fine-tuned weights differ.
  assert not np.allclose(plain.get_layer("softmax").get_weights()[0],
                         dropped.get_layer("softmax").get_weights()[0])
  with open(os.path.join(dropout_dir, "config.json")) as f:
    assert json.load(f)["finetune_dropout"] == 0.5
  with open(os.path.join(plain_dir, "config.json")) as f:
    assert "finetune_dropout" not in json.load(f)


def test_distillation_teacher_other_than_the_base(tiny_run, small_corpus, tmp_path):
  from tflm_compress.training import Distillation  # pylint: disable=g-import-not-at-top

  teacher = os.path.join(tiny_run[0], "model.keras")
  with pytest.raises(UserError, match="--distill_teacher needs --distill"):
    compress_tiny_run(tiny_run, small_corpus, str(tmp_path / "a"), "low_rank", {"rank": 8},
                      teacher_model_path=teacher)
  with pytest.raises(UserError, match="model file not found: .*missing.keras"):
    compress_tiny_run(tiny_run, small_corpus, str(tmp_path / "b"), "low_rank", {"rank": 8},
                      distillation=Distillation(),
                      teacher_model_path=str(tmp_path / "missing.keras"))
  assert not os.path.exists(tmp_path / "a") and not os.path.exists(tmp_path / "b")
  out = str(tmp_path / "c")
  compress_tiny_run(tiny_run, small_corpus, out, "low_rank", {"rank": 8},
                    distillation=Distillation(), teacher_model_path=teacher)
  with open(os.path.join(out, "config.json")) as f:
    assert json.load(f)["teacher_model"] == teacher
