"""The public Python API (tflm_compress/__init__.py): the README example, configs, fit."""

import dataclasses
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tf_keras as keras

import tflm_compress as tc
from tflm_compress.methods import REGISTRY, iss

from conftest import REPO_ROOT


def _readme_python_example() -> str:
  with open(os.path.join(REPO_ROOT, "README.md")) as f:
    readme = f.read()
  section = readme[readme.index("## Python API"):]
  return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _run_script(name: str, *flags: str) -> str:
  result = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "scripts", name), *flags],
                          capture_output=True, text=True, cwd=REPO_ROOT, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout


def test_readme_example_runs_and_matches_the_scripts(tiny_run, small_corpus, tmp_path):
  """The README's Python example, on the tiny run, gives the perplexity that
  compress.py + convert.py + evaluate.py give for the same methods and recipe."""
  run_dir = tiny_run[0]
  code = _readme_python_example()
  # The example reads its base run and writes its bundle at these paths.
  code = code.replace("runs/tiny_api", str(tmp_path / "api")).replace('"runs/tiny"',
                                                                      repr(run_dir))
  namespace = {}
  exec(compile(code, "README.md", "exec"), namespace)  # pylint: disable=exec-used
  api_ppl = namespace["result"]["ppl"]

  script_run = str(tmp_path / "script_run")
  _run_script("compress.py", f"--model_dir={run_dir}", "--method=low_rank+iss",
              "--embedding_rank=16", "--iss_lambda=0.001", "--finetune_epochs=1",
              f"--output_dir={script_run}", "--noprogress")
  _run_script("convert.py", f"--model_dir={script_run}", "--quantize=dynamic",
              f"--output={tmp_path}/script_bundle/model.tflite")
  # The bundle does not know the run's (generated) corpus: score it on the example's.
  script_ppl = tc.evaluate(f"{tmp_path}/script_bundle/model.tflite", namespace["corpus"],
                           split="test")["ppl"]
  assert api_ppl == pytest.approx(script_ppl, rel=1e-6)
  with open(os.path.join(tmp_path, "api", "model_meta.json")) as f:
    assert json.load(f)["method"] == "low_rank+iss"


def test_every_method_has_a_public_config_with_plain_names():
  assert sorted(tc.MethodConfig.__subclasses__(), key=lambda c: c.__name__) == sorted(
      (getattr(tc, m.API_NAME) for m in REGISTRY.values()), key=lambda c: c.__name__)
  config = tc.ISS(lambda_=0.04, units_multiple=8)
  assert config.to_method_config() == iss.Config(iss_lambda=0.04, iss_units_multiple=8)
  assert [f for f in tc.GroupReduce.__dataclass_fields__][:2] == ["num_blocks", "budget"]
  assert tc.Prune(sparsity=0.8, block_size="1,4").to_method_config().prune_block_size == "1,4"
  # The scripts build the same configs from their prefixed flags (others' flags ignored).
  assert config.to_flags() == {**dataclasses.asdict(iss.Config(iss_keep=0.5)), "iss_keep": None,
                               "iss_lambda": 0.04,
                               "iss_units_multiple": 8}
  assert tc.ISS.from_flags({"iss_lambda": 0.04, "iss_units_multiple": 8, "rank": 3}) == config
  # Validation is the method's own, naming the script flag.
  with pytest.raises(tc.UserError, match=r"--sparsity=1\.5"):
    tc.Prune(sparsity=1.5)
  with pytest.raises(tc.UserError, match="method configs such as tflm_compress.LowRank"):
    tc.compress(keras.Sequential(), "low_rank")


def _fit_inputs(model, corpus, batch: int = 8, steps: int = 10):
  ids = corpus.split("train")[: batch * steps * 4 + 1]
  tokens = ids[:-1].reshape(-1, steps)
  targets = ids[1:].reshape(-1, steps)
  states = [np.zeros((len(tokens), int(t.shape[-1])), np.float32) for t in model.inputs[1:]]
  return [tokens, *states], targets


def test_plain_fit_with_training_callbacks_prunes_and_applies_the_iss_penalty(tiny_model,
                                                                             small_corpus):
  """TFMOT's way: compress, then model.fit with the callbacks; strip gives the result."""
  model = tc.compress(tiny_model, tc.Prune(sparsity=0.75, schedule="constant"),
                      corpus=small_corpus)
  x, y = _fit_inputs(model, small_corpus)
  loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  model.compile(optimizer=keras.optimizers.SGD(0.1),
                loss=[loss] + [None] * (len(model.outputs) - 1))
  model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=tc.training_callbacks(model))
  stripped = tc.strip(model)
  kernel = stripped.get_layer("lstm_0").kernel.numpy()
  assert np.mean(kernel == 0) == pytest.approx(0.75, abs=0.01)

  before = [w.copy() for w in tiny_model.get_weights()]
  iss_model = tc.compress(tiny_model, tc.ISS(lambda_=0.5, threshold=1e-9))
  assert iss_model is not tiny_model and tiny_model.losses == []  # The input is left alone.
  expected = 0.5 * float(iss.group_lasso(iss_model))
  assert [float(l) for l in iss_model.losses] == pytest.approx([expected], rel=1e-5)
  iss_model.compile(optimizer=keras.optimizers.SGD(0.05),
                    loss=[loss] + [None] * (len(iss_model.outputs) - 1))
  history = iss_model.fit(x, y, batch_size=8, epochs=1, verbose=0,
                          callbacks=tc.training_callbacks(iss_model))
  plain = keras.models.clone_model(tiny_model)
  plain.set_weights(tiny_model.get_weights())
  plain.compile(optimizer=keras.optimizers.SGD(0.05),
                loss=[loss] + [None] * (len(plain.outputs) - 1))
  plain_history = plain.fit(x, y, batch_size=8, epochs=1, verbose=0)
  # The penalty is part of fit's loss, and it pulls the group norms down.
  assert history.history["loss"][0] > plain_history.history["loss"][0]
  assert float(iss.group_lasso(iss_model)) < float(iss.group_lasso(plain))
  for kept, now in zip(before, tiny_model.get_weights()):
    np.testing.assert_array_equal(kept, now)


def test_finetune_runs_the_methods_hooks_and_strip_does_the_surgery(tiny_model, small_corpus):
  """ISS through the package loop: its thresholding callback and surgery shrink the LSTMs."""
  norms = np.concatenate([s.norms().numpy() for s in iss.sites(tiny_model) if s.prunable])
  # Units below the median norm are zeroed at the first batch and stay so.
  model = tc.compress(tiny_model, tc.ISS(lambda_=0.01, threshold=float(np.median(norms))))
  model = tc.finetune(model, small_corpus, epochs=1)
  stripped = tc.strip(model)
  assert stripped.losses == []  # The penalty stays with the training model.
  units = [stripped.get_layer(f"lstm_{i}").units for i in range(2)]
  assert all(u < 32 for u in units), units
  assert tc.evaluate(stripped, small_corpus, split="valid")["ppl"] > 1


# Every compressed model kind the package saves, by the methods that make it.
SAVED_KINDS = {
    "low_rank": "[tc.LowRank(rank=4)]",
    "tt": "[tc.TensorTrain(rank=2)]",
    "group_reduce": "[tc.GroupReduce(num_blocks=2, budget=0.5)]",
    "slim": "[tc.SlimEmbedding(k=2, m=8)]",
    "iss": "[tc.ISS(keep=0.5)]",
    "pruned": "[tc.Prune(sparsity=0.5, schedule='constant')]",
    "qat": "[tc.QAT()]",
    "clustered": "[tc.Cluster(num_clusters=4)]",
}

_SAVE = """
import sys
import numpy as np
import tflm_compress as tc
from tflm_compress.models import ModelConfig, build_language_model
base = build_language_model(ModelConfig(vocab_size=40, embedding_size=8, hidden_sizes=(8, 8)),
                            seed=0)
def inputs(model):
  return [np.arange(12, dtype=np.int32).reshape(2, 6) % 40] + [
      np.full((2, int(t.shape[-1])), 0.1, np.float32) for t in model.inputs[1:]]
out = {}
for kind, methods in KINDS.items():
  model = tc.strip(tc.compress(base, *eval(methods)))
  model.save(f"{sys.argv[1]}/{kind}.keras")
  out[kind] = model(inputs(model))[0].numpy()
np.savez(f"{sys.argv[1]}/logits.npz", **out)
"""

_LOAD = """
import sys
import numpy as np
import tf_keras
import tflm_compress  # noqa: F401  (only the import: it registers the layers)
def inputs(model):
  return [np.arange(12, dtype=np.int32).reshape(2, 6) % 40] + [
      np.full((2, int(t.shape[-1])), 0.1, np.float32) for t in model.inputs[1:]]
expected = np.load(f"{sys.argv[1]}/logits.npz")
for kind in expected.files:
  model = tf_keras.models.load_model(f"{sys.argv[1]}/{kind}.keras", compile=False)
  np.testing.assert_allclose(model(inputs(model))[0].numpy(), expected[kind], atol=1e-5,
                             err_msg=kind)
  print(kind, type(model.get_layer("lstm_0")).__name__)
"""


def test_plain_tf_keras_load_model_reads_every_compressed_kind(tmp_path):
  """In a fresh interpreter with only ``import tflm_compress``: same outputs."""
  save = _SAVE.replace("KINDS", repr(SAVED_KINDS))
  for code in (save, _LOAD):
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                            text=True, cwd=REPO_ROOT, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
  loaded = dict(line.split() for line in result.stdout.splitlines())
  assert sorted(loaded) == sorted(SAVED_KINDS)
  assert loaded["low_rank"] == "LowRankLSTM" and loaded["tt"] == "TTLSTM"


def test_importing_the_package_sets_only_the_legacy_keras_switch():
  code = ("import os; before = dict(os.environ); import tflm_compress; "
          "print(sorted(k for k in os.environ if os.environ[k] != before.get(k)))")
  env = {k: v for k, v in os.environ.items()
         if k not in ("TF_USE_LEGACY_KERAS", "TF_CPP_MIN_LOG_LEVEL")}
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=REPO_ROOT, check=True)
  assert result.stdout.strip().splitlines()[-1] == "['TF_USE_LEGACY_KERAS']"


def test_export_tflite_writes_int4_and_mixed_bundles(tiny_model, small_corpus, tmp_path):
  model = tiny_model
  dense = tc.export_tflite(model, str(tmp_path / "none"), quantize="none", corpus=small_corpus)
  int4 = tc.export_tflite(model, str(tmp_path / "int4"), quantize="int4", corpus=small_corpus)
  mixed = tc.export_tflite(model, str(tmp_path / "mixed"), quantize="mixed",
                           corpus=small_corpus, bits="embedding:8,lstm:8,softmax:4")
  assert int4["tflite_bytes"] < mixed["tflite_bytes"] < dense["tflite_bytes"]
  assert mixed["sub8bit"]["bits"]["embedding"] == 8 and mixed["sub8bit"]["bits"]["softmax"] == 4
  assert int4["parity"]["argmax_agreement"] > 0.9
  with open(tmp_path / "int4" / "model_meta.json") as f:
    assert json.load(f)["quantization"].startswith("int4 (ai-edge-quantizer")
  with pytest.raises(tc.UserError, match=r"unknown settings \['bitz'\]"):
    tc.export_tflite(model, str(tmp_path / "x"), quantize="mixed", corpus=small_corpus,
                     bitz="lstm:4")
  assert not os.path.exists(tmp_path / "x")
