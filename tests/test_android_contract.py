"""The Android demo's JVM core (android_demo/lmcore) reads a bundle as the Python side wrote it.

Exports a step-model bundle, builds lmcore with javac (android_demo/ci_check.sh --build-only) and
runs its ContractCli: the token ids of a text and the top-3 words of a logits vector must be the
ones Python gets (``vocab.encode(text.split())``, ``read_tokens``, a stable argsort skipping
``<eos>``/``<unk>``), with the logits computed by the exported ``.tflite`` itself.
"""

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from conftest import REPO_ROOT
from tflm_compress import export
from tflm_compress.data.reader import read_tokens
from tflm_compress.export.meta import ModelMeta

ANDROID_DEMO = os.path.join(REPO_ROOT, "android_demo")
TOP_K = 3

pytestmark = pytest.mark.skipif(shutil.which("javac") is None or shutil.which("java") is None,
                                reason="javac/java not installed (Debian: default-jdk-headless); "
                                "android_demo/ci_check.sh installs it")


@pytest.fixture(scope="module")
def bundle_dir(tiny_model, small_corpus, tmp_path_factory):
  folder = tmp_path_factory.mktemp("android_bundle")
  export.export_step_model(tiny_model, small_corpus.vocab, str(folder / "model.tflite"), "none")
  return folder


@pytest.fixture(scope="module")
def lmcore_classes(tmp_path_factory):
  build_dir = tmp_path_factory.mktemp("lmcore_build")
  result = subprocess.run(
      ["bash", os.path.join(ANDROID_DEMO, "ci_check.sh"), "--build-only",
       f"--build_dir={build_dir}"], capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stdout + result.stderr
  return str(build_dir / "classes")


def _cli(classes, *args):
  result = subprocess.run(
      ["java", "-cp", classes, "org.tflmcompress.lmcore.ContractCli", *map(str, args)],
      capture_output=True, text=True, timeout=120)
  return result


def _run_cli(classes, *args):
  result = _cli(classes, *args)
  assert result.returncode == 0, result.stderr
  return json.loads(result.stdout)


def _python_top_k(logits, vocab, k=TOP_K):
  """Top-k ids as the app must pick them: stable order, <eos>/<unk> never suggested."""
  order = np.argsort(-logits.astype(np.float64), kind="stable")
  return [int(i) for i in order if i not in (vocab.eos_id, vocab.unk_id)][:k]


def _sample_text(vocab):
  """Known words, unknown words and Python-only whitespace (NBSP, U+2028, U+0085, U+3000)."""
  w = vocab.words
  return (f"{w[5]} {w[7]}\u00a0zebra\t{w[3]}\n"
          f"\n  {w[9]}\u2028{w[2]}\u0085unknownword\u3000{w[11]}\r\n"
          f"{w[4]} {w[6]} {w[8][:1]}")


def test_meta_and_token_ids_match_python(bundle_dir, lmcore_classes, small_corpus, tmp_path):
  vocab = small_corpus.vocab
  text = _sample_text(vocab)
  text_file = tmp_path / "text.txt"
  text_file.write_bytes(text.encode("utf-8"))
  out = _run_cli(lmcore_classes, f"--bundle_dir={bundle_dir}", f"--text_file={text_file}")

  meta = ModelMeta.load(str(bundle_dir / "model_meta.json"))
  for key, value in meta.to_dict().items():
    if key != "format_version":
      assert out[key] == value, key
  assert out["words"] == text.split()
  assert out["token_ids"] == vocab.encode(text.split()).tolist()
  assert vocab.unk_id in out["token_ids"]  # zebra, unknownword
  assert out["line_ids"] == vocab.encode(read_tokens(str(text_file))).tolist()
  # What the app feeds: <eos>, the finished lines (each ending in <eos>), then the finished words
  # of the line being typed; its last word is still being typed.
  finished, _, typing = text.rpartition("\n")
  finished_file = tmp_path / "finished.txt"
  finished_file.write_bytes(finished.encode("utf-8"))
  expected_context = ([vocab.eos_id] + vocab.encode(read_tokens(str(finished_file))).tolist()
                      + vocab.encode(typing.split()[:-1]).tolist())
  assert out["context_ids"] == expected_context
  assert out["partial_word"] == typing.split()[-1]


@pytest.mark.parametrize("logits_format", ["f32", "txt"])
def test_top_k_of_tflite_logits_matches_python(bundle_dir, lmcore_classes, small_corpus, tmp_path,
                                               logits_format):
  vocab = small_corpus.vocab
  runtime = export.TFLiteStepModel(str(bundle_dir / "model.tflite"))
  states = runtime.zero_states()
  for token in [vocab.eos_id] + vocab.encode(vocab.words[3:8]).tolist():
    logits, states = runtime.step(int(token), states)
  logits = np.asarray(logits, np.float32)
  assert logits.shape == (len(vocab),)
  # Push <eos> and <unk> to the top and tie two words, so skipping and tie order are exercised.
  crafted = logits.copy()
  top = float(crafted.max())
  crafted[[vocab.eos_id, vocab.unk_id]] = top + 2
  tie = [i for i in range(len(vocab)) if i not in (vocab.eos_id, vocab.unk_id)][-2:]
  crafted[tie] = top + 1

  for name, vector in [("model", logits), ("crafted", crafted)]:
    path = tmp_path / f"{name}.{logits_format}"
    if logits_format == "f32":
      path.write_bytes(vector.astype("<f4").tobytes())
    else:
      np.savetxt(path, vector, fmt="%.9g")  # 9 digits round-trip any float32
    out = _run_cli(lmcore_classes, f"--bundle_dir={bundle_dir}", "--text=x",
                   f"--logits={path}", f"--k={TOP_K}")
    expected = _python_top_k(vector, vocab)
    assert out["top_k_ids"] == expected, name
    assert out["top_k_words"] == vocab.decode(expected), name
    shifted = vector.astype(np.float64) - vector.max()
    probs = np.exp(shifted[expected]) / np.exp(shifted).sum()
    np.testing.assert_allclose(out["top_k_probabilities"], probs, rtol=1e-9)
  assert _python_top_k(crafted, vocab)[:2] == tie  # lower id first


def test_cli_errors_are_one_line(bundle_dir, lmcore_classes, tmp_path):
  short = tmp_path / "short.f32"
  short.write_bytes(b"\0" * 12)
  result = _cli(lmcore_classes, f"--bundle_dir={bundle_dir}", "--text=x", f"--logits={short}")
  assert result.returncode == 1
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert errors and errors[0].startswith("error: --logits=") and len(errors) == 1
  assert "Exception" not in result.stderr
  result = _cli(lmcore_classes, f"--bundle_dir={tmp_path}", "--text=x")
  assert result.returncode == 1 and "has no model_meta.json" in result.stderr


def test_copy_bundle_script_fills_the_assets(bundle_dir, tmp_path):
  assets = tmp_path / "assets"
  assets.mkdir()
  (assets / "old_model.tflite").write_bytes(b"stale")
  (assets / ".gitkeep").write_text("")
  script = os.path.join(ANDROID_DEMO, "copy_bundle.sh")
  result = subprocess.run(["bash", script, str(bundle_dir), str(assets)], capture_output=True,
                          text=True, timeout=60)
  assert result.returncode == 0, result.stderr
  assert sorted(os.listdir(assets)) == [".gitkeep", "model.tflite", "model_meta.json", "vocab.txt"]
  for name in ("model.tflite", "model_meta.json", "vocab.txt"):
    assert (assets / name).read_bytes() == (bundle_dir / name).read_bytes()
  assert "quantization none" in result.stdout

  result = subprocess.run(["bash", script, str(tmp_path / "nope")], capture_output=True,
                          text=True, timeout=60)
  assert result.returncode == 1 and result.stderr.startswith("error: bundle folder not found")
