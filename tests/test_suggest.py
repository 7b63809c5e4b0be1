"""Next-word suggestions from a bundle (tflm_compress.Suggester, scripts/suggest.py)."""

import os
import subprocess
import sys

import numpy as np
import pytest

import tflm_compress as tc
from conftest import REPO_ROOT
from tflm_compress import export
from tflm_compress.export.runtime import log_softmax


@pytest.fixture(scope="module")
def bundle_dir(tiny_model, small_corpus, tmp_path_factory):
  folder = tmp_path_factory.mktemp("suggest_bundle")
  export.export_step_model(tiny_model, small_corpus.vocab, str(folder / "model.tflite"), "none")
  return str(folder)


def test_suggestions_are_the_top_words_of_the_keras_model_after_eos_and_the_text(
    bundle_dir, tiny_model, small_corpus):
  vocab = small_corpus.vocab
  text = " ".join(vocab.words[5:9]) + " notaword"
  got = tc.Suggester(bundle_dir).suggest(text, k=4)
  # The dense reference: the Keras model over the same stream, from the zero state.
  ids = [vocab.eos_id] + vocab.encode(text.split()).tolist()
  assert ids[-1] == vocab.unk_id
  logits = export.keras_stream_logits(tiny_model, np.asarray(ids, np.int32))[-1]
  probs = np.exp(log_softmax(logits))
  expected = [int(i) for i in np.argsort(-probs, kind="stable")
              if i not in (vocab.eos_id, vocab.unk_id)][:4]
  assert [w for w, _ in got] == [vocab.words[i] for i in expected]
  np.testing.assert_allclose([p for _, p in got], probs[expected], rtol=1e-4)
  assert all(a >= b for (_, a), (_, b) in zip(got, got[1:]))


def test_eos_and_unk_are_never_suggested(bundle_dir, small_corpus):
  vocab = small_corpus.vocab
  words = [w for w, _ in tc.suggest_next_words(bundle_dir, "", k=len(vocab) - 2)]
  assert len(words) == len(vocab) - 2
  assert vocab.words[vocab.eos_id] not in words and vocab.words[vocab.unk_id] not in words


def test_a_folder_without_a_bundle_is_one_clear_error(tmp_path):
  with pytest.raises(tc.UserError, match="is not a bundle: no model_meta.json in it"):
    tc.Suggester(str(tmp_path))


def _run(*args, stdin=None):
  return subprocess.run([sys.executable, os.path.join(REPO_ROOT, "scripts", "suggest.py"), *args],
                        capture_output=True, text=True, input=stdin, timeout=300)


def test_script_prints_the_suggestions_per_line_of_stdin(bundle_dir, small_corpus):
  vocab = small_corpus.vocab
  lines = [vocab.words[5], " ".join(vocab.words[6:9])]
  result = _run(f"--bundle={bundle_dir}", "--k=2", stdin="\n".join(lines) + "\n")
  assert result.returncode == 0, result.stderr[-2000:]
  out = result.stdout.splitlines()
  suggester = tc.Suggester(bundle_dir)
  assert out == [f"{line!r} -> " + "  ".join(f"{w} ({p:.3f})" for w, p in
                                               suggester.suggest(line, 2)) for line in lines]


def test_script_without_a_bundle_says_so_in_one_line(tmp_path):
  result = _run(f"--bundle={tmp_path}", "--text=the")
  assert result.returncode != 0
  assert result.stderr.splitlines()[0] == (f"error: {str(tmp_path)!r} is not a bundle: no "
                                           "model_meta.json in it (export one with "
                                           "scripts/convert.py or tflm_compress.export_tflite)")
