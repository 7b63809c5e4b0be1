"""Training a compressed architecture from a random init (train.py --method, tc.train)."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np

import tflm_compress as tc
from tflm_compress.layers import low_rank as low_rank_layers
from tflm_compress.models import count_params, get_preset

from conftest import REPO_ROOT


def _read_json(path):
  with open(path) as f:
    return json.load(f)


def test_train_with_methods_trains_the_compressed_structure_from_scratch(small_corpus, tmp_path):
  recipe = dataclasses.replace(get_preset("tiny").train, epochs=1)
  run = str(tmp_path / "lr_scratch")
  metrics = tc.train(small_corpus, run, "tiny", recipe, tc.LowRank(rank=4),
                     log=lambda _: None)
  model = tc.load_model(run)
  assert any(isinstance(l, low_rank_layers.LowRankEmbedding) for l in model.layers)
  config = _read_json(os.path.join(run, "config.json"))
  assert config["from_scratch"] is True and config["method"] == "low_rank"
  assert config["method_config"]["low_rank"]["rank"] == 4
  report = metrics["method_report"]
  assert report["compression_of_params"] > 2
  assert report["base_params"] > count_params(model)
  # It learned: far below the uniform model's perplexity on a 200-word vocabulary.
  assert metrics["test_ppl"] < 0.75 * len(small_corpus.vocab)
  # The same call resumes (nothing left to train) and gives the same model.
  again = tc.train(small_corpus, run, "tiny", recipe, tc.LowRank(rank=4), log=lambda _: None)
  assert again["test_ppl"] == metrics["test_ppl"]
  tokens = np.array([[3, 4, 5]])
  states = [np.zeros((1, int(t.shape[-1])), np.float32) for t in model.inputs[1:]]
  np.testing.assert_allclose(tc.load_model(run)([tokens, *states])[0], model([tokens, *states])[0],
                             atol=1e-6)


def _train_script(*flags):
  return subprocess.run([sys.executable, os.path.join(REPO_ROOT, "scripts", "train.py"), *flags],
                        capture_output=True, text=True, cwd=REPO_ROOT, check=False)


def test_train_script_method_flag(tmp_path):
  run = str(tmp_path / "tt_scratch")
  result = _train_script("--method=tt", "--tt_rank=0", "--tt_softmax_rank=4", "--epochs=1",
                         "--generated_tokens=3000", f"--output_dir={run}", "--noprogress")
  assert result.returncode == 0, result.stderr[-3000:]
  config = _read_json(os.path.join(run, "config.json"))
  assert config["from_scratch"] and config["preset"] == "tiny"
  assert config["method_config"]["tt"]["tt_softmax_rank"] == 4
  assert "tt" in _read_json(os.path.join(run, "metrics.json"))["method_report"]

  bad = _train_script("--method=tensor", f"--output_dir={tmp_path / 'bad'}")
  assert bad.returncode == 1
  assert bad.stderr.splitlines()[0].startswith("error: ") and "tensor" in bad.stderr
  assert not os.path.exists(tmp_path / "bad")
  missing = _train_script("--method=tt", f"--output_dir={tmp_path / 'bad'}")
  assert missing.returncode == 1
  assert missing.stderr.splitlines()[0] == ("error: tt needs a TT rank: set --tt_rank or one of "
                                            "--tt_embedding_rank, --tt_lstm_rank, "
                                            "--tt_softmax_rank")
  assert not os.path.exists(tmp_path / "bad")
