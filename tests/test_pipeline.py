import json
import re
import os
import subprocess
import sys
import threading
import time

import pytest

from tflm_compress import report, stages
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


# ----- report -----
ROWS = [
    {"name": "baseline", "method": "baseline", "quantize": "none", "tflite_bytes": 1000,
     "tflite_test_ppl": 100.0, "latency_ms_p50": 1.0},
    {"name": "a", "method": "low_rank", "quantize": "none", "tflite_bytes": 400,
     "tflite_test_ppl": 104.0, "latency_ms_p50": 0.5},
    {"name": "b", "method": "low_rank", "quantize": "dynamic", "tflite_bytes": 200,
     "tflite_test_ppl": 110.0, "latency_ms_p50": 0.6},
    {"name": "c", "method": "tt", "quantize": "none", "tflite_bytes": 500,
     "tflite_test_ppl": 105.0, "latency_ms_p50": 0.4},  # Larger and worse than a.
]
for _row in ROWS:  # The fields a pipeline row has besides those above.
  _row.update({"params": _row["tflite_bytes"] // 4, "valid_ppl": 1.0, "test_ppl": 1.0,
               "latency_floor_ratio": 1.5, "max_abs_logit_diff": 1e-6})


def test_pareto_marks_on_a_hand_made_set():
  assert report.pareto_flags(ROWS, "tflite_bytes", "tflite_test_ppl") == [True, True, True, False]
  assert report.pareto_flags(ROWS, "latency_ms_p50", "tflite_test_ppl") == [True, True, False,
                                                                             True]
  rows = report.annotate(ROWS)
  assert [r["name"] for r in rows] == ["b", "a", "c", "baseline"]  # By size.
  assert rows[0]["compression"] == 5.0 and rows[1]["speedup"] == 2.0
  assert rows[1]["ppl_vs_baseline"] == pytest.approx(0.04)


def test_budget_selection():
  assert report.select_best(ROWS, 450, None)["name"] == "a"
  assert report.select_best(ROWS, None, 0.55)["name"] == "a"
  assert report.select_best(ROWS, 250, None)["name"] == "b"
  with pytest.raises(UserError, match="smallest is 200 bytes and the fastest 0.4 ms"):
    report.select_best(ROWS, 100, None)


def test_report_files(tmp_path):
  out = report.write(ROWS, str(tmp_path), "test", report.published_rows("../data/ptb", "small"))
  assert set(os.listdir(tmp_path)) == {"results.json", "results.md", "pareto.png"}
  md = (tmp_path / "results.md").read_text()
  assert md.count("\n| ") == 4 + 1 + 1  # 4 rows + published header + Zaremba row.
  assert "Zaremba et al. 2014, small" in md and "114.5" in md
  assert json.load(open(tmp_path / "results.json"))["rows"] == json.loads(
      json.dumps(out["rows"]))


# ----- end to end -----
PIPELINE_FLAGS = ["--epochs=1", "--generated_tokens=6000", "--quantize=none,dynamic",
                  "--finetune_epochs=1", "--runs=20"]
DETERMINISTIC = ("name", "method", "quantize", "params", "tflite_bytes", "test_ppl",
                 "tflite_test_ppl", "valid_ppl")


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
  assert "best within budget" in out
  assert _rows(tmp_path / "one") == _rows(tmp_path / "two")
  assert len(_rows(tmp_path / "one")) == 6  # 3 models x 2 PTQ modes.
  assert os.path.exists(tmp_path / "two" / "best" / "model.tflite")
  # Re-timing every export side by side keeps the rows and replaces the latencies.
  rebench = _pipeline(tmp_path / "two", *flags, "--rebenchmark")
  out, err = rebench.communicate(timeout=300)
  assert rebench.returncode == 0, err[-3000:]
  assert out.count("re-benchmarked") == 6
  assert _rows(tmp_path / "two") == _rows(tmp_path / "one")
  # A rerun finds every stage up to date.
  again = _pipeline(tmp_path / "one", *flags)
  out, _ = again.communicate(timeout=300)
  assert out.count("up to date") == 1 + 2 + 6 * 2 and "running" not in out


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
  rows = [_row("baseline", 1000, 100.0), _row("lr32", 300, 104.0), _row("p80", 900, 101.0),
          _row("lr45", 450, 103.0), _row("lr32.rank23", 200, 90.0)]
  # Budget 500 bytes: lr45 is the best configured row that fits; rank 45 -> 32 exists already.
  grid = pipeline.search_variants(rows, variants, 500, None)
  assert [(v.name, v.params) for v in grid] == [("lr45.rank64", {"rank": 64})]
  # Budget 950: p80; sparsity steps +-0.05, keeping the variant's other settings.
  grid = pipeline.search_variants(rows, variants, 950, None)
  assert [(v.name, v.params["sparsity"], v.finetune_epochs) for v in grid] == [
      ("p80.sparsity0.75", 0.75, 2), ("p80.sparsity0.85", 0.85, 2)]
  # Only configured variants seed the grid (lr32.rank23 is a search row, not a seed).
  assert pipeline.search_variants(rows, variants, 2000, None) == ()  # The baseline wins.
  with pytest.raises(UserError, match="no model meets --max_bytes=10"):
    pipeline.search_variants(rows, variants, 10, None)


def _row(variant, size, ppl):
  return {"name": variant, "variant": variant, "tflite_bytes": size, "tflite_test_ppl": ppl,
          "latency_ms_p50": 1.0}


def test_search_runs_the_grid_and_reports_it(tmp_path):
  variants = tmp_path / "variants.json"
  variants.write_text(json.dumps([{"name": "lr4", "method": "low_rank", "params": {"rank": 4}}]))
  flags = [f"--variants={variants}", "--quantize=none", "--max_bytes=100000000"]
  missing = _pipeline(tmp_path / "out", f"--variants={variants}", "--search")
  _, err = missing.communicate(timeout=120)
  assert missing.returncode == 1 and "--search needs a budget" in err
  proc = _pipeline(tmp_path / "out", *flags, "--search")
  out, err = proc.communicate(timeout=600)
  assert proc.returncode == 0, err[-3000:]
  assert "search: 2 variants around the best within budget: lr4.rank3, lr4.rank6" in out
  names = [r["name"] for r in _rows(tmp_path / "out")]
  assert sorted(names) == ["baseline", "lr4", "lr4.rank3", "lr4.rank6"]
  best = json.load(open(tmp_path / "out" / "best" / "best.json"))["row"]
  assert best["tflite_test_ppl"] == min(r["tflite_test_ppl"] for r in _rows(tmp_path / "out"))


def test_plot_axis_ends_at_three_times_the_baseline():
  rows = [{"method": "baseline", "tflite_test_ppl": 100.0},
          {"method": "cluster", "tflite_test_ppl": 800.0},
          {"method": "low_rank", "tflite_test_ppl": 120.0}]
  assert report._ppl_axis_top(rows, "tflite_test_ppl") == 300.0
  assert report._ppl_axis_top(rows[1:], "tflite_test_ppl") == 800.0  # No baseline: all shown.
  assert report._ppl_axis_top(rows[::2], "tflite_test_ppl") == 120.0


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
