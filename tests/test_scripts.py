"""The absl scripts: bad input gives one clear line and a non-zero exit, nothing written.

The line is the first of stderr: TensorFlow's chatter is kept off it (tests/test_cli.py).
"""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT


def _run(script, *args, cwd=REPO_ROOT):
  return subprocess.run([sys.executable, os.path.join(REPO_ROOT, "scripts", script), *args],
                        capture_output=True, text=True, cwd=cwd, timeout=300)


def _error_line(result):
  lines = [l for l in result.stderr.splitlines() if l.startswith(("error:", "FATAL Flags"))]
  assert result.returncode != 0
  assert len(lines) == 1, result.stderr[-2000:]
  assert result.stderr.startswith(lines[0]), result.stderr[-2000:]  # The first line of stderr.
  assert "Traceback" not in result.stderr, result.stderr[-2000:]
  return lines[0]


@pytest.fixture()
def ptb_like(tmp_path):
  data = tmp_path / "data"
  data.mkdir()
  for split in ("train", "valid", "test"):
    (data / f"ptb.{split}.txt").write_text("the cat sat\non the mat\n" * 50)
  return data


@pytest.mark.parametrize("make_args, expected", [
    (lambda d: [f"--data_dir={d}/nope"], "is not a directory"),
    (lambda d: [f"--data_dir={d}", "--config=huge"], "--config"),
    (lambda d: [f"--data_dir={d}", "--hidden_sizes=200,0"], "hidden_sizes=[200, 0]"),
    (lambda d: [f"--data_dir={d}", "--hidden_sizes=a"], "--hidden_sizes=a"),
    (lambda d: [f"--data_dir={d}", "--batch_size=0"], "--batch_size=0"),
    (lambda d: [f"--data_dir={d}", "--embedding_size=-3"], "--embedding_size=-3"),
    (lambda d: [f"--data_dir={d}", "--strategy=multi_worker"], "TF_CONFIG"),
])
def test_train_bad_input(ptb_like, tmp_path, make_args, expected):
  out = tmp_path / "out"
  line = _error_line(_run("train.py", *make_args(ptb_like), f"--output_dir={out}"))
  assert expected in line
  assert not out.exists()


def test_train_missing_and_empty_split(ptb_like, tmp_path):
  out = tmp_path / "out"
  (ptb_like / "ptb.valid.txt").unlink()
  assert "has no valid split" in _error_line(_run("train.py", f"--data_dir={ptb_like}",
                                                  f"--output_dir={out}"))
  (ptb_like / "ptb.valid.txt").write_text("\n\n")
  line = _error_line(_run("train.py", f"--data_dir={ptb_like}", f"--output_dir={out}"))
  assert "ptb.valid.txt" in line and "holds no words" in line
  assert not out.exists()


def test_train_then_evaluate_and_convert_on_user_text(ptb_like, tmp_path):
  run = tmp_path / "run"
  done = _run("train.py", f"--data_dir={ptb_like}", f"--output_dir={run}", "--epochs=1",
              "--batch_size=2", "--num_steps=5", "--progress=false")
  assert done.returncode == 0, done.stderr[-2000:]
  assert done.stderr == ""  # Quiet: no TensorFlow chatter.
  metrics = json.load(open(run / "metrics.json"))
  assert metrics["config"]["corpus"]["vocab_size"] == 7  # 5 words + <eos> + <unk>
  result = _run("evaluate.py", f"--model_dir={run}", "--split=valid")
  assert result.returncode == 0, result.stderr[-2000:]
  keras_ppl = json.loads(result.stdout)["ppl"]
  converted = _run("convert.py", f"--model_dir={run}", "--quantize=none")
  assert converted.returncode == 0, converted.stderr[-2000:]
  assert converted.stderr == ""
  assert json.loads(converted.stdout)["parity"]["max_abs_logit_diff"] < 1e-4
  tflite = _run("evaluate.py", f"--model={run}/tflite_none/model.tflite", f"--vocab={run}/vocab.txt",
                "--split=valid", f"--data_dir={ptb_like}")
  assert tflite.returncode == 0, tflite.stderr[-2000:]
  assert json.loads(tflite.stdout)["ppl"] == pytest.approx(keras_ppl, rel=1e-4)
  # A vocab that does not match the model.
  (tmp_path / "vocab.txt").write_text("a\n<eos>\n<unk>\n")
  line = _error_line(_run("evaluate.py", f"--model={run}/model.keras",
                          f"--vocab={tmp_path}/vocab.txt"))
  assert "has 7 logits" in line and "has 3 words" in line
  # A rerun with other flags into the same dir is refused, the run untouched.
  line = _error_line(_run("train.py", f"--data_dir={ptb_like}", f"--output_dir={run}",
                          "--epochs=2", "--batch_size=2", "--num_steps=5"))
  assert "different configuration" in line


def test_evaluate_corrupt_tflite(tmp_path):
  bad = tmp_path / "model.tflite"
  bad.write_bytes(b"\x00" * 100)
  (tmp_path / "vocab.txt").write_text("a\n<eos>\n<unk>\n")
  assert "not a TFLite model" in _error_line(_run("evaluate.py", f"--model={bad}"))


def test_convert_needs_a_model():
  assert "exactly one of --model_dir" in _error_line(_run("convert.py"))
