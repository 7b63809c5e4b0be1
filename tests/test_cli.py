"""What a user sees from the scripts: quiet stderr (``--verbose`` shows TensorFlow's chatter),
errors as the first line, Ctrl-C as one line and a run that resumes, output folders guarded."""

import io
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO_ROOT
from tflm_compress import cli, io_utils, progress, quiet, stages
from tflm_compress.errors import UserError

# What TensorFlow, LiteRT and the converter print when not silenced (seen in this
# environment: I0000/W0000/E0000 lines, absl's pre-init warning, LiteRT's INFO:, the
# tf.lite.Interpreter deprecation warning).
CHATTER = re.compile(r"^([IWEF]\d{4} |WARNING: All log|INFO: |fully_quantize: )|deprecat",
                     re.M | re.I)
INTERRUPTED = re.compile(r"interrupted in stage train, epoch \d/4; rerun the same command to resume\n")
# Long enough that a Ctrl-C after the first epoch lands in a later one.
TRAIN_FLAGS = ["--epochs=4", "--generated_tokens=20000", "--hidden_sizes=32",
               "--embedding_size=32", "--progress=false"]
QUICK_TRAIN_FLAGS = ["--epochs=1", "--generated_tokens=2000", "--generated_vocab_size=50",
                     "--hidden_sizes=8", "--embedding_size=8", "--progress=false"]


def _command(script, *args):
  return [sys.executable, os.path.join(REPO_ROOT, "scripts", script), *map(str, args)]


def _run(script, *args):
  return subprocess.run(_command(script, *args), capture_output=True, text=True, cwd=REPO_ROOT,
                        timeout=600)


def _temp_files(folder):
  return [os.path.join(root, name) for root, _, names in os.walk(folder) for name in names
          if ".tmp-" in name]


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory):
  """train.py given Ctrl-C in its second epoch, then rerun: (run dir, interrupted result,
  the run dir's entries after the interrupt, rerun result)."""
  run_dir = tmp_path_factory.mktemp("cli") / "run"
  proc = subprocess.Popen(_command("train.py", f"--output_dir={run_dir}", *TRAIN_FLAGS),
                          cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 600
  while not (run_dir / "history.json").exists():  # Written after epoch 1.
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    assert time.time() < deadline, "no epoch finished in 10 minutes"
    time.sleep(0.05)
  proc.send_signal(signal.SIGINT)
  out, err = proc.communicate(timeout=300)
  interrupted = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
  entries_after_interrupt = sorted(os.listdir(run_dir))
  temp_files_after_interrupt = _temp_files(run_dir)
  resumed = _run("train.py", f"--output_dir={run_dir}", *TRAIN_FLAGS)
  return {"run_dir": run_dir, "interrupted": interrupted, "entries": entries_after_interrupt,
          "temp_files": temp_files_after_interrupt, "resumed": resumed}


# --- Ctrl-C -----------------------------------------------------------------------------------
def test_ctrl_c_prints_one_line_exits_130_and_leaves_nothing_half_written(interrupted_run):
  interrupted = interrupted_run["interrupted"]
  assert interrupted.returncode == 130, interrupted.stderr[-3000:]
  assert INTERRUPTED.fullmatch(interrupted.stderr), interrupted.stderr[-3000:]
  assert "metrics.json" not in interrupted_run["entries"]  # Not finished, so not written.
  assert "model.keras" not in interrupted_run["entries"]
  assert {"config.json", "history.json", "checkpoints"} <= set(interrupted_run["entries"])
  assert interrupted_run["temp_files"] == []


def test_the_rerun_resumes_and_completes(interrupted_run):
  resumed = interrupted_run["resumed"]
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert re.search(r"^resuming .* after epoch [123]$", resumed.stdout, re.M), resumed.stdout
  assert resumed.stderr == ""
  metrics = json.loads((interrupted_run["run_dir"] / "metrics.json").read_text())
  assert [row["epoch"] for row in metrics["history"]] == [1, 2, 3, 4]


def test_interrupted_stage_names_the_pipeline_stage_and_epoch(tmp_path):
  """The stage comes from the traceback: the innermost StageRunner.run, and run_training's epoch."""
  runner = stages.StageRunner(log=lambda _: None)

  def interrupted(folder):
    raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt) as caught:
    runner.run(str(tmp_path / "stage"), "low_rank: compress + fine-tune", {"a": 1}, interrupted)
  assert cli.interrupted_stage(caught.tb, "pipeline") == "low_rank: compress + fine-tune"
  assert cli.interrupted_stage(None, "evaluate") == "evaluate"
  assert cli.interrupted_stage(None) is None
  assert quiet.interrupt_message(None) == "interrupted; rerun the same command to resume"
  # The stage is left to run again: started, not done, not claimed.
  assert sorted(os.listdir(tmp_path / "stage")) == [stages.STAGE_FILE]


def test_interrupted_atomic_write_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
  path = tmp_path / "metrics.json"
  path.write_text("old")

  def interrupted_rename(*args, **kwargs):
    raise KeyboardInterrupt

  monkeypatch.setattr(io_utils.tf.io.gfile, "rename", interrupted_rename)
  with pytest.raises(KeyboardInterrupt):
    io_utils.atomic_write_text(str(path), "new")
  assert os.listdir(tmp_path) == ["metrics.json"] and path.read_text() == "old"


# --- quiet by default ---------------------------------------------------------------------------
def test_evaluate_and_convert_are_quiet_and_stdout_is_their_json(interrupted_run):
  run_dir = interrupted_run["run_dir"]
  evaluated = _run("evaluate.py", f"--model_dir={run_dir}", "--split=valid")
  assert evaluated.returncode == 0, evaluated.stderr[-3000:]
  assert evaluated.stderr == ""
  assert json.loads(evaluated.stdout)["split"] == "valid"
  # int8: the converter, the quantizer's printf, LiteRT's XNNPACK line and the
  # tf.lite.Interpreter deprecation all print when not silenced (see the --verbose test).
  converted = _run("convert.py", f"--model_dir={run_dir}", "--quantize=int8")
  assert converted.returncode == 0, converted.stderr[-3000:]
  assert converted.stderr == ""
  assert json.loads(converted.stdout)["parity"]["argmax_agreement"] > 0.9


def test_verbose_shows_tensorflows_chatter(interrupted_run):
  run_dir = interrupted_run["run_dir"]
  converted = _run("convert.py", f"--model_dir={run_dir}", "--quantize=int8", "--verbose",
                   f"--output={run_dir}/verbose/model.tflite")
  assert converted.returncode == 0, converted.stderr[-3000:]
  found = set(m.group(0).strip() for m in CHATTER.finditer(converted.stderr))
  assert {"WARNING: All log", "INFO:", "fully_quantize:"} <= found, converted.stderr[-3000:]
  assert re.search(r"^[IWE]0000 ", converted.stderr, re.M)
  assert re.search(r"tf\.lite\.Interpreter is deprecated", converted.stderr)


def test_quiet_start_imports_no_tensorflow():
  """The scripts' first import quiets the process before TensorFlow loads, so it must not
  load TensorFlow (or the package, whose import does) itself."""
  code = ("import sys; sys.path.insert(0, 'scripts'); import quiet_start; "
          "print(sorted(m for m in ('tensorflow', 'tflm_compress') if m in sys.modules))")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=60)
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == "[]"


def test_the_filter_keeps_errors_and_tracebacks_even_through_a_crash(tmp_path):
  """Noise written straight to fd 2 is dropped; what the user needs passes, also when the
  process dies at once after writing it (the filter is another process)."""
  script = tmp_path / "noisy.py"
  script.write_text(
      "import os, sys\n"
      f"sys.path.insert(0, {os.path.join(REPO_ROOT, 'scripts')!r})\n"
      "import quiet_start\n"
      "os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are "
      "written to STDERR\\n')\n"
      "os.write(2, b'E0000 00:00:1796236115.701304    6707 cuda_platform.cc:52] failed call "
      "to cuInit\\nerror: the one line\\n')\n"
      "os.write(2, b'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n')\n"
      "if sys.argv[1] == 'crash':\n"
      "  os.write(2, b'F0000 00:00:1.0  1 check.cc:1] Check failed: x\\n')\n"
      "  os._exit(3)\n"
      "raise ValueError('a bug')\n")
  crashed = subprocess.run([sys.executable, str(script), "crash"], capture_output=True,
                           text=True, timeout=60)
  assert crashed.returncode == 3
  assert crashed.stderr == "error: the one line\nF0000 00:00:1.0  1 check.cc:1] Check failed: x\n"
  failed = subprocess.run([sys.executable, str(script), "bug"], capture_output=True, text=True,
                          timeout=60)
  assert failed.returncode == 1
  lines = failed.stderr.splitlines()
  assert lines[0] == "error: the one line" and lines[1] == "Traceback (most recent call last):"
  assert lines[-1] == "ValueError: a bug"


def test_line_filter_drops_chatter_and_passes_partial_lines_live():
  line_filter = quiet.LineFilter()
  noise = [b"I0000 00:00:1796236105.526648    6707 port.cc:153] oneDNN custom operations\n",
           b"W0000 00:00:1796237214.480152   17658 flatbuffer_export.cc:3851] Skipping\n",
           b"I1202 18:29:20.299838 139847272524672 functional_saver.py:440] Sharding\n",
           b"INFO:tensorflow:Assets written to: /tmp/tmpyxqzq0q2/assets\n",
           b"fully_quantize: 0, inference_type: 6, input_inference_type: FLOAT32\n"]
  for line in noise:
    assert line_filter.feed(line) == b"", line
  assert line_filter.feed(b"error: no such file\n") == b"error: no such file\n"
  assert line_filter.feed(b'  File "x.py", line 3, in <module>\n').startswith(b"  File")
  # A progress bar's partial line passes at once, and the rest of it with it.
  assert line_filter.feed(b"\r[====  ] 4/10") == b"\r[====  ] 4/10"
  assert line_filter.feed(b"\r[======] 10/10\n") == b"\r[======] 10/10\n"
  # A noise line arriving in pieces is dropped whole; a short partial line waits to be judged.
  assert line_filter.feed(b"E0000 00:00:1.5  1 cuda_platform.cc:52] fail") == b""
  assert line_filter.flush() == b""  # Judged: noise.
  assert line_filter.feed(b"ed call to cuInit\nnext") == b""
  assert line_filter.flush() == b"next"


@pytest.mark.parametrize("argv, verbose", [
    ([], False), (["--verbose"], True), (["--verbose=true"], True), (["-verbose"], True),
    (["--verbose", "--noverbose"], False), (["--verbose=false"], False),
    (["--", "--verbose"], False), (["--verbosity=1"], False),
])
def test_wants_verbose(argv, verbose):
  assert quiet.wants_verbose(["script.py", *argv]) is verbose


# --- progress -----------------------------------------------------------------------------------
def test_progress_bar_shows_count_and_eta_and_erases_itself():
  now = [0.0]
  stream = io.StringIO()
  bar = progress.Bar(100, "test perplexity", stream=stream, enabled=True, min_interval=0,
                     clock=lambda: now[0])
  now[0] = 10.0
  bar.update(25, ppl=171.3)
  assert stream.getvalue() == "\rtest perplexity [======>                 ] 25/100  ETA 0:30  ppl 171.3"
  now[0] = 40.0
  bar.update(100)
  assert stream.getvalue().endswith("100/100  in 0:40" + " " * len("  ppl 171.3"))
  bar.close()
  assert stream.getvalue().endswith("\r" + " " * len(bar.render()) + "\r")
  # Not a terminal: nothing at all (logs and piped JSON stay clean).
  quiet_stream = io.StringIO()
  assert list(progress.track(range(3), label="x", stream=quiet_stream)) == [0, 1, 2]
  assert quiet_stream.getvalue() == ""


# --- output folders -----------------------------------------------------------------------------
def _foreign_dir(tmp_path):
  folder = tmp_path / "mine"
  folder.mkdir()
  (folder / "notes.txt").write_text("my notes")
  return folder


def test_check_output_dir(tmp_path, interrupted_run):
  check = io_utils.check_output_dir
  check(str(tmp_path / "new"))  # Does not exist: fine, and not created.
  assert not (tmp_path / "new").exists()
  (tmp_path / "empty" / "sub").mkdir(parents=True)
  check(str(tmp_path / "empty"))  # Only folders.
  check(str(interrupted_run["run_dir"]))  # The package's own run dir: a rerun resumes.
  foreign = _foreign_dir(tmp_path)
  message = (f"--output_dir={str(foreign)!r} holds files tflm_compress did not write "
             "(e.g. 'notes.txt'); use a new or empty folder, or pass --overwrite to write "
             "into it anyway")
  with pytest.raises(UserError) as refused:
    check(str(foreign))
  assert str(refused.value) == message
  check(str(foreign), overwrite=True)
  (foreign / "config.json").write_text('{"name": "not a run config"}')
  with pytest.raises(UserError, match="holds files tflm_compress did not write"):
    check(str(foreign))
  with pytest.raises(UserError, match="--output='.*notes.txt' is a file, not a folder"):
    check(str(foreign / "notes.txt"), overwrite=True, flag="--output")
  # A pipeline output dir (a stage folder in it), a bundle, a killed write's temp file.
  pipeline_dir = tmp_path / "pipeline" / "baseline"
  pipeline_dir.mkdir(parents=True)
  (pipeline_dir / stages.STAGE_FILE).write_text("{}")
  (tmp_path / "pipeline" / "results.md").write_text("# results")
  check(str(tmp_path / "pipeline"))
  (tmp_path / "bundle").mkdir()
  (tmp_path / "bundle" / "model_meta.json").write_text("{}")
  (tmp_path / "bundle" / "model.tflite").write_bytes(b"x")
  check(str(tmp_path / "bundle"))
  (tmp_path / "killed").mkdir()
  (tmp_path / "killed" / ".config.json.tmp-0123abcd").write_text("{")
  check(str(tmp_path / "killed"))


@pytest.mark.parametrize("script, args", [
    ("train.py", QUICK_TRAIN_FLAGS),
    ("compress.py", ["--model_dir={run_dir}", "--method=low_rank", "--rank=4"]),
    ("run_pipeline.py", ["--epochs=1"]),
])
def test_scripts_refuse_a_folder_of_the_users_files(tmp_path, interrupted_run, script, args):
  foreign = _foreign_dir(tmp_path)
  args = [a.format(run_dir=interrupted_run["run_dir"]) for a in args]
  result = _run(script, *args, f"--output_dir={foreign}")
  assert result.returncode == 1
  assert result.stderr == (f"error: --output_dir={str(foreign)!r} holds files tflm_compress "
                           "did not write (e.g. 'notes.txt'); use a new or empty folder, or "
                           "pass --overwrite to write into it anyway\n")
  assert os.listdir(foreign) == ["notes.txt"]


def test_overwrite_writes_into_the_users_folder(tmp_path):
  foreign = _foreign_dir(tmp_path)
  result = _run("train.py", *QUICK_TRAIN_FLAGS, f"--output_dir={foreign}", "--overwrite")
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stderr == ""
  assert (foreign / "metrics.json").exists() and (foreign / "notes.txt").read_text() == "my notes"
