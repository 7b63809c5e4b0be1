import dataclasses
import json
import re
import os
import subprocess
import sys
import threading
import time

import pytest

from tflm_compress import stages
from tflm_compress.errors import UserError

from conftest import REPO_ROOT


# ----- stages -----
def test_stage_skips_when_up_to_date_and_redoes_on_config_change(tmp_path):
  folder = str(tmp_path / "stage")
  calls = []
  runner = stages.StageRunner(log=lambda _: None)

  def fn(folder):
    calls.append(sorted(os.listdir(folder)))
    open(os.path.join(folder, "artifact.txt"), "w").write("x")
    return {"value": len(calls)}

  assert runner.run(folder, "s", {"a": 1}, fn) == {"value": 1}
  assert runner.run(folder, "s", {"a": 1}, fn) == {"value": 1}  # Skipped.
  assert len(calls) == 1
  assert runner.run(folder, "s", {"a": 2}, fn) == {"value": 2}  # Stale: wiped and redone.
  assert calls[1] == ["CLAIM.json", "STAGE.json"]  # The old artifact is gone.
  assert not os.path.exists(os.path.join(folder, "CLAIM.json"))


def test_killed_stage_resumes_in_the_same_folder(tmp_path):
  folder = str(tmp_path / "stage")
  runner = stages.StageRunner(log=lambda _: None)

  def crash(folder):
    open(os.path.join(folder, "checkpoint"), "w").write("epoch 1")
    raise KeyboardInterrupt  # Killed mid-stage.

  with pytest.raises(KeyboardInterrupt):
    runner.run(folder, "s", {"a": 1}, crash)
  seen = runner.run(folder, "s", {"a": 1}, lambda f: {"kept": os.path.exists(
      os.path.join(f, "checkpoint"))})
  assert seen == {"kept": True}


def test_a_live_claim_makes_others_wait_for_done(tmp_path):
  folder = tmp_path / "stage"
  folder.mkdir()
  digest = stages.config_hash({"a": 1})
  # Another live process (our parent) holds the claim.
  (folder / "CLAIM.json").write_text(json.dumps({"host": os.uname().nodename,
                                                 "pid": os.getppid(), "time": 0}))
  (folder / "STAGE.json").write_text(json.dumps({"hash": digest}))

  def finish():
    time.sleep(0.5)
    (folder / "DONE.json").write_text(json.dumps({"hash": digest, "result": {"by": "other"}}))

  threading.Thread(target=finish).start()
  runner = stages.StageRunner(log=lambda _: None, poll_seconds=0.1)
  assert runner.run(str(folder), "s", {"a": 1}, lambda f: {"by": "me"}) == {"by": "other"}


def test_a_dead_claim_is_taken_over(tmp_path):
  folder = tmp_path / "stage"
  folder.mkdir()
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  (folder / "CLAIM.json").write_text(json.dumps({"host": os.uname().nodename, "pid": dead.pid}))
  runner = stages.StageRunner(log=lambda _: None, poll_seconds=0.1)
  assert runner.run(str(folder), "s", {"a": 1}, lambda f: {"by": "me"}) == {"by": "me"}


# ----- end to end -----
PIPELINE_FLAGS = ["--epochs=1", "--generated_tokens=6000", "--quantize=none,dynamic",
                  "--finetune_epochs=1", "--runs=20", "--search=none"]
DETERMINISTIC = ("name", "method", "quantize", "control", "params", "tflite_bytes", "test_ppl",
                 "tflite_test_ppl", "tflite_valid_ppl", "valid_ppl")


def _pipeline(output_dir, *extra):
  return subprocess.Popen([sys.executable, os.path.join(REPO_ROOT, "scripts", "run_pipeline.py"),
                           f"--output_dir={output_dir}", *PIPELINE_FLAGS, *extra],
                          cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


def _rows(output_dir):
  rows = json.load(open(os.path.join(output_dir, "results.json")))["rows"]
  return sorted(({k: r[k] for k in DETERMINISTIC} for r in rows), key=lambda r: r["name"])


def test_fan_out_over_two_processes_equals_one_process(tmp_path):
  variants = tmp_path / "variants.json"
  variants.write_text(json.dumps([{"name": "lr4", "method": "low_rank", "params": {"rank": 4}},
                                  {"name": "lr8", "method": "low_rank",
                                   "params": {"softmax_rank": 8}}]))
  flags = [f"--variants={variants}"]
  one = _pipeline(tmp_path / "one", *flags)
  split = [_pipeline(tmp_path / "two", *flags, "--only=baseline,lr4"),
           _pipeline(tmp_path / "two", *flags, "--only=lr8")]
  for proc in [one] + split:
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
  merged = _pipeline(tmp_path / "two", *flags, "--report_only", "--max_bytes=10000000")
  out, err = merged.communicate(timeout=300)
  assert merged.returncode == 0, err[-3000:]
  assert _rows(tmp_path / "one") == _rows(tmp_path / "two")
  # 3 models and the control of their one recipe (both processes needed it) x 2 PTQ modes.
  assert len(_rows(tmp_path / "one")) == 8
  assert {r["name"] for r in _rows(tmp_path / "one")} >= {"control", "control+dynamic"}
  _check_answer(tmp_path / "two", out, "max_bytes_10000000", "your budget (<= 10,000,000 B)",
                10_000_000)
  # Re-timing every export side by side keeps the rows and replaces the latencies.
  # Re-timing every export side by side (rounds interleaved) keeps the rows and replaces
  # the latencies with each export's median round.
  rebench = _pipeline(tmp_path / "two", *flags, "--rebenchmark", "--rebenchmark_rounds=3")
  out, err = rebench.communicate(timeout=300)
  assert rebench.returncode == 0, err[-3000:]
  assert out.count("re-benchmarked") == 8
  assert _rows(tmp_path / "two") == _rows(tmp_path / "one")
  for line in (l for l in out.splitlines() if "re-benchmarked" in l):
    p50 = float(line.split("p50 ")[1].split(" ms")[0])
    rounds = [float(x) for x in line.split("(rounds: ")[1].rstrip(")").split(", ")]
    assert len(rounds) == 3 and p50 == pytest.approx(sorted(rounds)[1], rel=1e-3), line
  bench = tmp_path / "two" / "variants" / "lr4" / "dynamic" / "bench"
  assert sorted(os.listdir(bench)) == ["DONE.json", "STAGE.json", "benchmark.json"]
  timed = json.load(open(tmp_path / "two" / "results.json"))["rows"]
  lr4 = next(r for r in timed if r["name"] == "lr4+dynamic")
  report_p50 = json.load(open(bench / "benchmark.json"))["results"]["host-litert"]["latency_ms"]
  assert report_p50["p50"] == lr4["latency_ms_p50"]  # The kept report is the median round's.
  assert all(len(r["latency_round_p50s"]) == 3 and
             r["latency_ms_p50"] == sorted(r["latency_round_p50s"])[1] for r in timed)
  # A rerun finds every stage up to date.
  again = _pipeline(tmp_path / "one", *flags)
  out, _ = again.communicate(timeout=300)
  assert out.count("up to date") == 1 + 3 + 8 * 2 and "running" not in out


def _check_answer(output_dir, stdout, user_budget, user_label, user_limit):
  """The printed answer, results.md's and best/<budget>/: each a bundle of the budget's
  best row by validation perplexity (ties to the smaller), loadable like any export."""
  from tflm_compress.data.vocab import Vocabulary  # pylint: disable=g-import-not-at-top
  from tflm_compress.export.meta import ModelMeta  # pylint: disable=g-import-not-at-top
  from tflm_compress.export.runtime import TFLiteStepModel  # pylint: disable=g-import-not-at-top

  results = json.load(open(os.path.join(output_dir, "results.json")))
  rows = results["rows"]
  base = next(r for r in rows if r["name"] == "baseline")
  ref = min((r for r in rows if r["method"] in ("baseline", "control") and
             r["quantize"] == "none"), key=lambda r: r["tflite_valid_ppl"])
  assert results["reference"]["name"] == ref["name"]
  assert f"Reference: {ref['name']} (valid {ref['tflite_valid_ppl']:.2f}" in stdout
  md = open(os.path.join(output_dir, "results.md")).read()
  assert md.startswith("# Compression results: preset tiny on the generated corpus\n")
  assert f"Reference: **{ref['name']}**" in md and "Corpus bound: **161.53**" in md
  budgets = [(f"size_1of{n}", base["tflite_bytes"] // n, f"1/{n} of the baseline") for n in
             (4, 10, 20)] + [(user_budget, user_limit, user_label)]
  assert [e["budget"]["name"] for e in results["summary"]] == [b[0] for b in budgets]
  for (name, limit, label), entry in zip(budgets, results["summary"]):
    fits = [r for r in rows if r["tflite_bytes"] <= limit]
    folder = os.path.join(output_dir, "best", name)
    if not fits:
      assert entry["name"] is None and not os.path.exists(folder)
      assert f"{label}" in stdout and f"| {label}" in md
      continue
    lowest = min(r["tflite_valid_ppl"] for r in fits)
    tied = [r for r in fits if r["tflite_valid_ppl"] <= lowest * 1.001]
    best = min(tied, key=lambda r: (r["tflite_bytes"], r["tflite_valid_ppl"]))
    assert entry["name"] == best["name"] and entry["bundle"] == f"best/{name}"
    assert f"{best['name']}  valid {best['tflite_valid_ppl']:.2f}" in stdout
    assert f"-> {folder}/" in stdout and f"| {best['name']} |" in md
    meta = ModelMeta.load(os.path.join(folder, "model_meta.json"))
    step = TFLiteStepModel(os.path.join(folder, meta.model_file))
    assert step.size_bytes == best["tflite_bytes"] and meta.quantization == best["quantize"]
    assert len(Vocabulary.load(os.path.join(folder, meta.vocab_file))) == meta.vocab_size
    assert json.load(open(os.path.join(folder, "best.json")))["row"]["name"] == best["name"]


def _run_config(output_dir, name):
  return json.load(open(os.path.join(output_dir, "variants", name, "model", "config.json")))


def test_controls_are_fine_tuned_with_their_variants_recipe(tmp_path):
  variants = tmp_path / "variants.json"
  variants.write_text(json.dumps([
      {"name": "lr4", "method": "low_rank", "params": {"rank": 4}},
      {"name": "lr4_kd", "method": "low_rank", "params": {"rank": 4}, "distill": True,
       "finetune_dropout": 0.2, "finetune_learning_rate": 0.002}]))
  out_dir = tmp_path / "out"
  proc = _pipeline(out_dir, f"--variants={variants}", "--quantize=none")
  out, err = proc.communicate(timeout=600)
  assert proc.returncode == 0, err[-3000:]
  rows = {r["name"]: r for r in json.load(open(out_dir / "results.json"))["rows"]}
  # One control per recipe, plus the distilled recipe's undistilled one (its teacher).
  assert sorted(rows) == ["baseline", "control", "control.lr0.002.do0.2",
                          "control_kd.lr0.002.do0.2", "lr4", "lr4_kd"]
  base = json.load(open(out_dir / "baseline" / "metrics.json"))
  teacher = json.load(open(out_dir / "variants" / "control.lr0.002.do0.2" / "model" /
                           "metrics.json"))
  # The undistilled control beats the base model on validation, so it teaches.
  assert teacher["valid_ppl"] < base["valid_ppl"]
  teacher_model = str(out_dir / "variants" / "control.lr0.002.do0.2" / "model" / "model.keras")
  for variant, control in (("lr4", "control"), ("lr4_kd", "control_kd.lr0.002.do0.2")):
    mine, its = _run_config(out_dir, variant), _run_config(out_dir, control)
    assert its["method"] == "control" and mine["method"] == "low_rank"
    for key in ("train", "distillation", "finetune_dropout", "teacher_model", "base_model"):
      assert mine.get(key) == its.get(key), key  # Same epochs, lr schedule, dropout, teacher.
    assert rows[variant]["control"] == control and rows[control]["method"] == "control"
    assert rows[variant]["ppl_vs_control"] == pytest.approx(
        rows[variant]["tflite_test_ppl"] / rows[control]["tflite_test_ppl"] - 1, rel=1e-12)
  kd, plain = _run_config(out_dir, "lr4_kd"), _run_config(out_dir, "lr4")
  assert kd["train"]["epochs"] == 1 and kd["train"]["learning_rate"] == 0.002
  assert plain["train"]["learning_rate"] == 0.01 / 4  # The tiny preset's lr / 4.
  assert kd["finetune_dropout"] == 0.2 and "finetune_dropout" not in plain
  assert kd["distillation"] == {"alpha": 0.5, "temperature": 2.0} and plain["distillation"] is None
  assert kd["teacher_model"] == teacher_model and "teacher_model" not in plain
  assert rows["lr4_kd"]["teacher"] == rows["control_kd.lr0.002.do0.2"]["teacher"] == (
      "control.lr0.002.do0.2")
  assert "teacher" not in rows["lr4"]
  assert "| lr4_kd | low_rank, KD: control.lr0.002.do0.2 |" in open(out_dir / "results.md").read()


def test_a_from_scratch_variant_trains_the_compressed_architecture_by_the_baseline_recipe(
    tmp_path):
  variants = tmp_path / "variants.json"
  variants.write_text(json.dumps([{"name": "lr4_scratch", "method": "low_rank",
                                   "params": {"rank": 4}, "from_scratch": True}]))
  out_dir = tmp_path / "out"
  # Fanned out alone, it does not wait for the baseline (it does not start from it).
  # --dropout: the recipe's dropout, the baseline's and the from-scratch variant's alike.
  proc = _pipeline(out_dir, f"--variants={variants}", "--quantize=none", "--only=lr4_scratch",
                   "--dropout=0.2")
  out, err = proc.communicate(timeout=600)
  assert proc.returncode == 0, err[-3000:]
  assert "lr4_scratch: train from scratch: done" in out
  assert "baseline: train" not in out and not (out_dir / "baseline").exists()
  assert (f"report: not written: the baseline has not finished in {out_dir} "
          "(merge with --report_only once it has)") in out
  assert not (out_dir / "results.json").exists()
  proc = _pipeline(out_dir, f"--variants={variants}", "--quantize=none", "--dropout=0.2")
  out, err = proc.communicate(timeout=600)
  assert proc.returncode == 0, err[-3000:]
  assert "lr4_scratch: train from scratch: up to date, skipped" in out
  assert "baseline: train: done" in out
  rows = {r["name"]: r for r in json.load(open(out_dir / "results.json"))["rows"]}
  assert sorted(rows) == ["baseline", "lr4_scratch"]  # No fine-tuning recipe: no control.
  row = rows["lr4_scratch"]
  assert row["from_scratch"] is True and row["control"] == "baseline"
  assert row["params"] < rows["baseline"]["params"]
  assert row["ppl_vs_control"] == pytest.approx(
      row["tflite_test_ppl"] / rows["baseline"]["tflite_test_ppl"] - 1, rel=1e-12)
  mine, base = _run_config(out_dir, "lr4_scratch"), json.load(
      open(out_dir / "baseline" / "config.json"))
  assert mine["from_scratch"] is True and mine["method"] == "low_rank"
  assert mine["train"] == base["train"]  # The baseline's epochs, lr schedule, seed.
  assert mine["model"] == base["model"]  # Built from the preset, not from the trained model.
  assert base["model"]["dropout"] == 0.2


@pytest.mark.parametrize("fields, message", [
    ({"finetune_epochs": 2}, "variant 'x': from_scratch trains with the baseline's recipe; "
                             "drop finetune_epochs"),
    ({"distill": True, "finetune_dropout": 0.3},
     "variant 'x': from_scratch trains with the baseline's recipe; drop finetune_dropout, distill"),
])
def test_from_scratch_variants_take_no_fine_tuning_settings(fields, message):
  from tflm_compress import pipeline  # pylint: disable=g-import-not-at-top
  with pytest.raises(UserError) as e:
    pipeline.Variant("x", "low_rank", {"rank": 4}, from_scratch=True, **fields)
  assert str(e.value) == message
  with pytest.raises(UserError, match="variant 'y': from_scratch needs a method"):
    pipeline.Variant("y", from_scratch=True)
  assert "from_scratch" not in pipeline.Variant("z", "low_rank", {"rank": 4}).to_dict()


def test_unknown_only_variant(tmp_path):
  proc = _pipeline(tmp_path / "x", "--only=nope")
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 1 and "--only names unknown variants ['nope']" in err


def test_distillation_variants():
  from tflm_compress import pipeline  # pylint: disable=g-import-not-at-top

  base = (pipeline.Variant("lr", "low_rank", {"rank": 4}),)
  assert pipeline.with_distillation(base, "none") == base
  both = pipeline.with_distillation(base, "both")
  assert [(v.name, v.distill) for v in both] == [("lr", False), ("lr_kd", True)]
  assert [(v.name, v.distill) for v in pipeline.with_distillation(base, "only")] == [("lr", True)]
  with pytest.raises(UserError, match="--distill='some'"):
    pipeline.with_distillation(base, "some")
  scratch = base + (pipeline.Variant("s", "low_rank", {"rank": 4}, from_scratch=True),)
  assert [(v.name, v.distill) for v in pipeline.with_distillation(scratch, "both")] == [
      ("lr", False), ("s", False), ("lr_kd", True)]  # No teacher for a from-scratch model.
  assert [(v.name, v.distill) for v in pipeline.with_distillation(scratch, "only")] == [
      ("s", False), ("lr", True)]


@pytest.mark.parametrize("variant, message", [
    ({"name": "p", "method": "prune", "params": {"sparsty": 0.9}},
     r"variant 'p': parameters \['sparsty'\] are not options of 'prune'; "
     r"its options: .*'sparsity'"),
    ({"name": "lr", "method": "low_rank", "params": {"rank": 10_000}},
     r"variant 'lr': .*rank"),
    ({"name": "s", "method": "slim_embedding", "params": {"slim_k": 7, "slim_m": 50}},
     r"variant 's': .*slim_k=7"),
    ({"name": "b", "method": "", "params": {"rank": 4}}, r"variant 'b' has params but no method"),
])
def test_bad_variants_fail_before_any_work(tmp_path, variant, message):
  variants = tmp_path / "variants.json"
  variants.write_text(json.dumps([variant]))
  proc = _pipeline(tmp_path / "out", f"--variants={variants}")
  _, err = proc.communicate(timeout=120)
  errors = [l for l in err.splitlines() if l.startswith("error:")]
  assert proc.returncode == 1 and len(errors) == 1 and "Traceback" not in err, err[-2000:]
  assert re.search(message, errors[0]), errors[0]
  assert not os.path.exists(tmp_path / "out" / "baseline" / "model.keras")


def test_search_grid_steps_around_the_best_configured_variant_within_budget():
  from tflm_compress import pipeline  # pylint: disable=g-import-not-at-top

  variants = (pipeline.Variant("lr32", "low_rank", {"rank": 32}),
              pipeline.Variant("p80", "prune", {"sparsity": 0.8}, finetune_epochs=2),
              pipeline.Variant("lr45", "low_rank", {"rank": 45}))
  # (name, bytes, validation ppl, test ppl): validation and test disagree on purpose.
  rows = [_row("baseline", 1000, 100.0, 100.0), _row("lr32", 300, 104.0, 95.0),
          _row("p80", 900, 101.0, 103.0), _row("lr45", 450, 103.0, 99.0),
          _row("lr32.rank23", 200, 90.0, 90.0), _row("control.e2", 1000, 99.0, 101.0)]
  # Budget 500 bytes: lr45 is the best configured row on validation (lr32 on test);
  # rank 45 -> 32 exists already.
  grid = pipeline.search_variants(rows, variants, 500, None)
  assert [(v.name, v.params) for v in grid] == [("lr45.rank64", {"rank": 64})]
  # Budget 950: p80 on validation (lr32 on test); sparsity steps +-0.05, keeping the
  # variant's other settings.
  grid = pipeline.search_variants(rows, variants, 950, None)
  assert [(v.name, v.params["sparsity"], v.finetune_epochs) for v in grid] == [
      ("p80.sparsity0.75", 0.75, 2), ("p80.sparsity0.85", 0.85, 2)]
  # Only configured variants seed the grid (lr32.rank23 is a search row, not a seed); an
  # uncompressed model that wins leaves none (the control here: the baseline on test).
  assert pipeline.search_variants(rows, variants, 2000, None) == ()
  with pytest.raises(UserError, match="no model meets --max_bytes=10"):
    pipeline.search_variants(rows, variants, 10, None)


def _row(variant, size, valid_ppl, test_ppl):
  return {"name": variant, "variant": variant, "tflite_bytes": size,
          "tflite_valid_ppl": valid_ppl, "tflite_test_ppl": test_ppl, "latency_ms_p50": 1.0}


@pytest.mark.parametrize("value, message", [
    ("0,x", "error: --compose_dropouts entry 'x' is not a number\n"),
    ("0.3,1.5", "error: --compose_dropouts=1.5; must be in [0, 1)\n"),
])
def test_a_bad_compose_dropout_is_one_error_line_before_any_training(tmp_path, value, message):
  proc = _pipeline(tmp_path / "out", f"--compose_dropouts={value}")
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 1 and err == message
  assert not os.path.exists(tmp_path / "out")


def test_search_runs_the_grid_and_reports_it(tmp_path):
  variants = tmp_path / "variants.json"
  variants.write_text(json.dumps([{"name": "lr4", "method": "low_rank", "params": {"rank": 4}}]))
  # Smaller than the baseline and its control: the search seeds from lr4.
  budget = 100_000
  flags = [f"--variants={variants}", "--quantize=none", f"--max_bytes={budget}"]
  missing = _pipeline(tmp_path / "out", f"--variants={variants}", "--search")
  _, err = missing.communicate(timeout=120)
  assert missing.returncode == 1 and "--search needs a budget" in err
  proc = _pipeline(tmp_path / "out", *flags, "--search")
  out, err = proc.communicate(timeout=600)
  assert proc.returncode == 0, err[-3000:]
  assert "search: 2 variants around the best within budget: lr4.rank3, lr4.rank6" in out
  names = [r["name"] for r in _rows(tmp_path / "out")]
  assert sorted(names) == ["baseline", "control", "lr4", "lr4.rank3", "lr4.rank6"]
  _check_answer(tmp_path / "out", out, f"max_bytes_{budget}", f"your budget (<= {budget:,} B)",
                budget)


def test_finetune_dropout_of_the_variant_wins_and_is_hashed_only_when_set():
  from tflm_compress import pipeline  # pylint: disable=g-import-not-at-top
  from tflm_compress.models import get_preset  # pylint: disable=g-import-not-at-top

  plain = pipeline.Variant("lr", "low_rank", {"rank": 4})
  own = pipeline.Variant("lr_do", "low_rank", {"rank": 4}, finetune_dropout=0.2)
  assert "finetune_dropout" not in plain.to_dict() and own.to_dict()["finetune_dropout"] == 0.2

  def stage_config(finetune_dropout, variant):
    config = pipeline.PipelineConfig(get_preset("tiny"), "tiny", (plain, own),
                                     finetune_dropout=finetune_dropout)
    runner = pipeline.Pipeline.__new__(pipeline.Pipeline)  # The stage config needs no corpus.
    runner.config = config
    return runner._variant_model_config(variant, "hash")  # pylint: disable=protected-access

  assert "finetune_dropout" not in stage_config(None, plain)  # Earlier runs keep their hash.
  assert stage_config(0.5, plain)["finetune_dropout"] == 0.5
  assert stage_config(0.5, own)["finetune_dropout"] == 0.2
  with pytest.raises(UserError, match="variant 'x': --finetune_dropout=1.0"):
    pipeline.Variant("x", "low_rank", {"rank": 4}, finetune_dropout=1.0)


@pytest.mark.parametrize("flags, message", [
    (["--quantize=none,mixed"], r"--quantize=mixed needs --bits, e\.g\. --bits=embedding:8"),
    (["--quantize=none", "--bits=lstm:4"], r"--bits=lstm:4 is for --quantize=mixed"),
    (["--quantize=none,int3"], r"--quantize=none,int3; use some of \('none', .*'int4'"),
    (["--quantize=none,dynamic", "--block_size=32"],
     r"--block_size=32 is for the sub-8-bit modes \('int4', 'mixed', 'auto'\), which "
     r"--quantize=none,dynamic does not list"),
])
def test_bad_sub8bit_flags_fail_before_any_work(tmp_path, flags, message):
  proc = subprocess.Popen([sys.executable, os.path.join(REPO_ROOT, "scripts", "run_pipeline.py"),
                           f"--output_dir={tmp_path / 'out'}", "--epochs=1",
                           "--generated_tokens=6000", *flags],
                          cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
  _, err = proc.communicate(timeout=120)
  errors = [l for l in err.splitlines() if l.startswith("error:")]
  assert proc.returncode == 1 and len(errors) == 1 and "Traceback" not in err, err[-2000:]
  assert re.search(message, errors[0]), errors[0]
  assert not os.path.exists(tmp_path / "out" / "baseline")


def test_sub8bit_modes_export_every_variant(tmp_path):
  variants = tmp_path / "variants.json"
  variants.write_text(json.dumps([{"name": "q4", "method": "int4_qat"}]))
  out_dir = tmp_path / "out"
  proc = _pipeline(out_dir, f"--variants={variants}", "--finetune_epochs=0",
                   "--quantize=none,int4,mixed", "--bits=embedding:8,lstm:8,softmax:4",
                   "--block_size=32")
  _, err = proc.communicate(timeout=600)
  assert proc.returncode == 0, err[-3000:]
  rows = {r["name"]: r for r in json.load(open(out_dir / "results.json"))["rows"]}
  assert {"baseline", "baseline+int4", "baseline+mixed"} <= set(rows)
  float_row, int4, mixed = rows["baseline"], rows["baseline+int4"], rows["baseline+mixed"]
  assert set(int4["bits"].values()) == {4}
  assert mixed["bits"]["embedding"] == 8 and mixed["bits"]["softmax"] == 4
  assert int4["tflite_bytes"] < mixed["tflite_bytes"] < float_row["tflite_bytes"]
  for row in (int4, mixed):
    assert row["argmax_agreement"] > 0.9 and row["tflite_valid_ppl"] > 1
    meta = json.load(open(os.path.join(os.path.dirname(row["tflite"]), "model_meta.json")))
    assert meta["quantization"] == row["quantization"]
    assert meta["quantization"].startswith(row["quantize"] + " (ai-edge-quantizer")
  # The default scales rotate (Hadamard); an int4_qat chain's are min_max, its training grid.
  # --block_size=32 divides every width of the tiny model (32-wide rows, 32 + 32 LSTM inputs).
  assert "(ai-edge-quantizer dynamic_wi4b32_hr_afp32: " in int4["quantization"]
  assert "(ai-edge-quantizer dynamic_wi4b32_afp32: " in rows["q4+int4"]["quantization"]


def test_export_settings_put_blocks_where_they_fit(tmp_path):
  """--block_size in a pipeline: blocks for the weights it divides, per channel for the rest
  (a dense baseline of 200/400-wide inputs beside rank-32 factors), never an error."""
  from tflm_compress import pipeline  # pylint: disable=g-import-not-at-top
  from tflm_compress.models import get_preset  # pylint: disable=g-import-not-at-top

  config = pipeline.PipelineConfig(get_preset("tiny"), "tiny", (), quantize=("none", "int4"),
                                   block_size=32)
  runner = pipeline.Pipeline(config, None, str(tmp_path))
  assert runner.export_settings("low_rank", "int4") == {
      "algorithm": "hadamard", "block_size": 32, "require_blocks": False}
  assert runner.export_settings("low_rank+int4_qat", "int4")["algorithm"] == "min_max"
  assert runner.export_settings("low_rank", "dynamic") == {}
  per_channel = pipeline.Pipeline(dataclasses.replace(config, block_size=0), None, str(tmp_path))
  assert per_channel.export_settings("low_rank", "int4") == {"algorithm": "hadamard"}
  gptq = pipeline.Pipeline(dataclasses.replace(config, algorithm="gptq"), None, str(tmp_path))
  assert gptq.export_settings("low_rank", "int4")["algorithm"] == "gptq"
  assert gptq.export_settings("low_rank+int4_qat", "int4")["algorithm"] == "min_max"
  with pytest.raises(UserError, match=r"^--algorithm='rtn'; use one of \('min_max', "):
    dataclasses.replace(config, algorithm="rtn")
  with pytest.raises(UserError, match=r"^--algorithm=gptq is for the sub-8-bit modes"):
    dataclasses.replace(config, algorithm="gptq", block_size=0, quantize=("none",))


def test_only_keeps_the_baseline_and_the_controls_a_variant_needs(tmp_path):
  from tflm_compress import pipeline  # pylint: disable=g-import-not-at-top
  from tflm_compress.models import get_preset  # pylint: disable=g-import-not-at-top

  variants = (pipeline.Variant("lr", "low_rank", {"rank": 4}),
              pipeline.Variant("lr_kd", "low_rank", {"rank": 4}, distill=True))
  config = pipeline.PipelineConfig(get_preset("tiny"), "tiny", variants)
  # Every ratio in the report divides by the baseline's rows, so --only never drops it.
  runner = pipeline.Pipeline(config, None, str(tmp_path), only=["lr_kd"])
  assert [v.name for v in runner.selected] == ["baseline", "control", "control_kd", "lr_kd"]
  runner = pipeline.Pipeline(config, None, str(tmp_path), only=["lr"])
  assert [v.name for v in runner.selected] == ["baseline", "control", "lr"]
  # A from-scratch variant does not start from the base model: alone, it needs nothing.
  config = pipeline.PipelineConfig(get_preset("tiny"), "tiny", variants + (
      pipeline.Variant("lr_scratch", "low_rank", {"rank": 4}, from_scratch=True),))
  runner = pipeline.Pipeline(config, None, str(tmp_path), only=["lr_scratch"])
  assert [v.name for v in runner.selected] == ["lr_scratch"]
  runner = pipeline.Pipeline(config, None, str(tmp_path), only=["lr_scratch", "lr"])
  assert [v.name for v in runner.selected] == ["baseline", "control", "lr", "lr_scratch"]
