import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from tflm_compress.data import MarkovWordSource
from tflm_compress.evaluation import eval_windows, evaluate_perplexity

from conftest import REPO_ROOT, SMALL_SOURCE


def test_tiny_model_approaches_the_source_entropy(tiny_run):
  _, metrics = tiny_run
  bound = MarkovWordSource(SMALL_SOURCE).min_perplexity()
  # No model beats the source's entropy rate (up to the test split's sampling
  # noise); the tiny model gets within 10% of it in 3 short epochs.
  assert 0.97 * bound <= metrics["test_ppl"] <= 1.10 * bound, (metrics["test_ppl"], bound)
  assert metrics["history"][-1]["train_ppl"] < metrics["history"][0]["train_ppl"]


def test_run_dir_contents(tiny_run):
  run_dir, metrics = tiny_run
  for name in ("model.keras", "vocab.txt", "metrics.json", "config.json", "history.json"):
    assert os.path.exists(os.path.join(run_dir, name)), name
  assert os.listdir(os.path.join(run_dir, "logs"))  # TensorBoard events.
  on_disk = json.load(open(os.path.join(run_dir, "metrics.json")))
  assert on_disk["params"] == metrics["params"] > 0
  assert on_disk["test_ppl"] == pytest.approx(metrics["test_ppl"])
  assert not [f for f in os.listdir(run_dir) if ".tmp-" in f]  # No temp files left.


def test_eval_windows_cover_every_target_once():
  ids = np.arange(23)
  x, y, w = eval_windows(ids, batch_size=2, num_steps=4)
  # 23 // 2 = 11 per row -> 10 targets per row, 3 windows of 4 (2 padded).
  assert x.shape == (3, 2, 4) and w.sum() == 20
  targets = y.transpose(1, 0, 2).reshape(2, -1)[:, :10]
  np.testing.assert_array_equal(targets, [np.arange(1, 11), np.arange(12, 22)])


def test_perplexity_does_not_depend_on_window_length(tiny_model, small_corpus):
  ids = small_corpus.split("valid")[:1000]
  a = evaluate_perplexity(tiny_model, ids, batch_size=1, num_steps=7)
  b = evaluate_perplexity(tiny_model, ids, batch_size=1, num_steps=50)
  assert a["tokens"] == b["tokens"] == 999
  assert a["ppl"] == pytest.approx(b["ppl"], rel=1e-5)


def _train_cmd(output_dir, *extra):
  return [sys.executable, os.path.join(REPO_ROOT, "scripts", "train.py"), "--config=tiny",
          "--epochs=3", f"--output_dir={output_dir}", "--progress=false", *extra]


def test_resume_after_kill_gives_the_same_result(tmp_path):
  """A run killed after its first epoch resumes and ends like an unbroken run."""
  straight = tmp_path / "straight"
  subprocess.run(_train_cmd(straight), check=True, capture_output=True, cwd=REPO_ROOT)
  killed = tmp_path / "killed"
  proc = subprocess.Popen(_train_cmd(killed), cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  deadline = time.time() + 120
  while not (killed / "history.json").exists():
    assert proc.poll() is None and time.time() < deadline, "run ended before its first epoch"
    time.sleep(0.2)
  proc.kill()
  proc.wait()
  assert not (killed / "metrics.json").exists()
  done = subprocess.run(_train_cmd(killed), check=True, capture_output=True, text=True,
                        cwd=REPO_ROOT)
  assert "resuming" in done.stdout
  a = json.load(open(straight / "metrics.json"))
  b = json.load(open(killed / "metrics.json"))
  assert [h["epoch"] for h in b["history"]] == [1, 2, 3]
  assert b["test_ppl"] == pytest.approx(a["test_ppl"], rel=1e-4)


_MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys
    import tflm_compress
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tflm_compress.data import GeneratedCorpusConfig, generated_corpus
    from tflm_compress.models import ModelConfig, TrainConfig, build_language_model
    from tflm_compress.training import Trainer
    corpus = generated_corpus(GeneratedCorpusConfig(vocab_size=50, num_classes=5,
        train_tokens=3000, valid_tokens=500, test_tokens=500))
    config = ModelConfig(vocab_size=len(corpus.vocab), embedding_size=8, hidden_sizes=(8, 8))
    train = TrainConfig(batch_size=4, num_steps=5, optimizer="sgd", learning_rate=1.0)
    results = {}
    for name, strategy in [("single", tf.distribute.get_strategy()),
                           ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))]:
      trainer = Trainer(lambda: build_language_model(config, seed=0), train, strategy)
      stats = trainer.train_epoch(corpus.split("train"), progress=False)
      ev = trainer.evaluate(corpus.split("valid"), batch_size=2, num_steps=10)
      results[name] = {"weights": [w.tolist() for w in trainer.model.get_weights()],
                       "ppl": stats["ppl"], "eval": ev["ppl"],
                       "replicas": trainer.num_replicas}
    print("RESULT" + json.dumps(results))
""")


def test_mirrored_two_replicas_equal_one_device():
  """Row sharding + all-reduce: 2 replicas train exactly like 1 on the global batch."""
  out = subprocess.run([sys.executable, "-c", _MIRRORED_SCRIPT], capture_output=True, text=True,
                       cwd=REPO_ROOT, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  results = json.loads(out.stdout.split("RESULT", 1)[1])
  single, mirrored = results["single"], results["mirrored"]
  assert (single["replicas"], mirrored["replicas"]) == (1, 2)
  assert mirrored["ppl"] == pytest.approx(single["ppl"], rel=1e-5)
  assert mirrored["eval"] == pytest.approx(single["eval"], rel=1e-5)
  for a, b in zip(single["weights"], mirrored["weights"]):
    np.testing.assert_allclose(np.array(a), np.array(b), atol=1e-5)


def test_nan_loss_stops_the_run_and_writes_no_model(small_corpus, tmp_path):
  """A diverging run stops with a clear error naming the batch; no NaN model is written."""
  import dataclasses  # pylint: disable=g-import-not-at-top

  import numpy as np  # pylint: disable=g-import-not-at-top,redefined-outer-name,reimported

  from tflm_compress.models import build_language_model, get_preset  # pylint: disable=g-import-not-at-top
  from tflm_compress.training import TrainingDivergedError, run_training  # pylint: disable=g-import-not-at-top

  preset = get_preset("tiny")
  config = preset.model.with_vocab_size(len(small_corpus.vocab))

  def poisoned_model():
    model = build_language_model(config, seed=0)
    bias = model.get_layer("softmax").bias
    bias.assign(np.where(np.arange(bias.shape[0]) == 3, np.nan, bias.numpy()))
    return model

  run_dir = str(tmp_path / "run")
  with pytest.raises(TrainingDivergedError, match=r"loss is nan at epoch 1, batch 1;.*last good"):
    run_training(poisoned_model, small_corpus, dataclasses.replace(preset.train, epochs=1),
                 run_dir, {"model": "poisoned"}, progress=False, log=lambda _: None)
  assert not os.path.exists(os.path.join(run_dir, "model.keras"))
  assert not os.path.exists(os.path.join(run_dir, "checkpoints", "checkpoint"))


def test_unwritable_output_dir_is_a_clear_error_before_any_work(small_corpus, tmp_path):
  """An output dir under a regular file (ENOTDIR, which root gets too, unlike a
  read-only dir): one clear error, nothing written."""
  from tflm_compress.errors import UserError  # pylint: disable=g-import-not-at-top
  from tflm_compress.models import get_preset  # pylint: disable=g-import-not-at-top
  from tflm_compress.training import train_language_model  # pylint: disable=g-import-not-at-top

  blocker = tmp_path / "not_a_dir"
  blocker.write_text("a user's file\n")
  with pytest.raises(UserError, match=r"^cannot create output directory .*not_a_dir/run"):
    train_language_model(small_corpus, get_preset("tiny").model, get_preset("tiny").train,
                         str(blocker / "run"), progress=False, log=lambda _: None)
  assert blocker.read_text() == "a user's file\n"
  assert sorted(os.listdir(tmp_path)) == ["not_a_dir"]


def test_unwritable_paths_are_clear_errors(tmp_path):
  from tflm_compress import io_utils  # pylint: disable=g-import-not-at-top
  from tflm_compress.errors import UserError  # pylint: disable=g-import-not-at-top

  blocker = tmp_path / "file"
  blocker.write_text("x")
  with pytest.raises(UserError, match="cannot create output directory"):
    io_utils.makedirs(str(blocker / "sub"))
  with pytest.raises(UserError, match="cannot write"):
    io_utils.atomic_write_text(str(blocker / "sub" / "a.json"), "{}")
  assert sorted(os.listdir(tmp_path)) == ["file"]  # No temp files left.


def test_distillation_from_itself_with_alpha_one_keeps_the_teacher(tiny_run, small_corpus):
  """With alpha=1 and the teacher as the student's start, the KD gradient is zero:
  one epoch leaves the weights (nearly) unchanged; with alpha=0 it is plain CE."""
  import numpy as np  # pylint: disable=g-import-not-at-top,redefined-outer-name,reimported

  from tflm_compress.models import TrainConfig, load_model  # pylint: disable=g-import-not-at-top
  from tflm_compress.training import Distillation, Trainer  # pylint: disable=g-import-not-at-top

  path = os.path.join(tiny_run[0], "model.keras")
  train = TrainConfig(batch_size=8, num_steps=10, optimizer="sgd", learning_rate=1.0)
  ids = small_corpus.split("train")[:4000]
  before = load_model(path).get_weights()
  results = {}
  for alpha in (1.0, 0.0):
    trainer = Trainer(lambda: load_model(path), train, teacher_fn=lambda: load_model(path),
                      distillation=Distillation(alpha=alpha, temperature=2.0))
    stats = trainer.train_epoch(ids, progress=False)
    drift = max(float(np.abs(a - b).max()) for a, b in zip(before, trainer.model.get_weights()))
    results[alpha] = (drift, stats["ppl"])
  assert results[1.0][0] < 1e-4, results
  assert results[0.0][0] > 1e-3, results
  # The teacher is frozen and its state is carried separately from the student's.
  assert trainer.teacher.trainable is False


def _no_space(*_args, **_kwargs):
  raise OSError(28, "No space left on device")


def test_full_disk_at_a_checkpoint_keeps_the_last_good_one(small_corpus, tmp_path, monkeypatch):
  import dataclasses  # pylint: disable=g-import-not-at-top

  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from tflm_compress.errors import UserError  # pylint: disable=g-import-not-at-top
  from tflm_compress.models import get_preset  # pylint: disable=g-import-not-at-top
  from tflm_compress.training import train_language_model  # pylint: disable=g-import-not-at-top

  preset = get_preset("tiny")
  train = dataclasses.replace(preset.train, epochs=2)
  run_dir = str(tmp_path / "run")
  real_save = tf.train.CheckpointManager.save

  def save_once_then_full(manager, checkpoint_number=None, **kwargs):
    if checkpoint_number == 2:
      _no_space()
    return real_save(manager, checkpoint_number=checkpoint_number, **kwargs)

  monkeypatch.setattr(tf.train.CheckpointManager, "save", save_once_then_full)
  with pytest.raises(UserError, match=r"cannot write checkpoint 2 in .*No space left on device; "
                                      r"the last good checkpoint '.*ckpt-1' is kept"):
    train_language_model(small_corpus, preset.model, train, run_dir, progress=False,
                         log=lambda _: None)
  assert not os.path.exists(os.path.join(run_dir, "model.keras"))
  monkeypatch.undo()  # Space again: the rerun resumes from epoch 1's checkpoint.
  lines = []
  train_language_model(small_corpus, preset.model, train, run_dir, progress=False,
                       log=lines.append)
  assert any("resum" in l.lower() for l in lines), lines
  assert os.path.exists(os.path.join(run_dir, "model.keras"))


def test_full_disk_while_writing_an_artifact_leaves_nothing(tmp_path, monkeypatch):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from tflm_compress import io_utils  # pylint: disable=g-import-not-at-top
  from tflm_compress.errors import UserError  # pylint: disable=g-import-not-at-top

  (tmp_path / "model.tflite").write_bytes(b"old")
  monkeypatch.setattr(tf.io.gfile.GFile, "write", _no_space)
  with pytest.raises(UserError, match=r"cannot write '.*model.tflite': No space left on device"):
    io_utils.atomic_write_bytes(str(tmp_path / "model.tflite"), b"new" * 1000)
  assert os.listdir(tmp_path) == ["model.tflite"]  # No temp file left behind.
  assert (tmp_path / "model.tflite").read_bytes() == b"old"  # The old artifact is intact.
