import json
import os

import pytest

from tflm_compress import report
from tflm_compress.errors import UserError


def _row(name, method, quantize, size, valid, test, latency, control):
  return {"name": name, "variant": name.split("+")[0], "method": method, "quantize": quantize,
          "tflite_bytes": size, "tflite_valid_ppl": valid, "tflite_test_ppl": test,
          "latency_ms_p50": latency, "control": control, "params": size // 4,
          "valid_ppl": valid, "test_ppl": test, "latency_floor_ratio": 1.5,
          "max_abs_logit_diff": 1e-6, "distill": False,
          "tflite": f"/runs/x/variants/{name.split('+')[0]}/{quantize}/model.tflite"}


# Validation and test disagree on purpose: on test, the baseline would be the
# reference, `a` a Pareto row and the 260-byte budget's winner `b`; on
# validation (what every choice uses) it is the control, `c` and `c`.
ROWS = [
    _row("baseline", "baseline", "none", 1000, 120.0, 100.0, 1.00, "baseline"),
    _row("control", "control", "none", 1000, 110.0, 101.0, 1.00, "control"),
    # Within 0.1% of the control's validation ppl: a tie, won by the smaller file.
    _row("control+dynamic", "control", "dynamic", 300, 110.05, 101.0, 0.40, "control"),
    _row("a", "low_rank", "none", 400, 112.0, 99.0, 0.50, "control"),
    _row("c", "tt", "none", 250, 111.0, 108.0, 0.45, "baseline"),  # Not fine-tuned.
    _row("b", "low_rank", "dynamic", 200, 118.0, 104.0, 0.60, "control"),
    _row("d", "prune", "none", 1000, 130.0, 130.0, 0.90, "control.e6"),  # Control not run.
]


def _names(rows, flags):
  return sorted(r["name"] for r, f in zip(rows, flags) if f)


def test_pareto_marks_follow_validation_not_test():
  assert _names(ROWS, report.pareto_flags(ROWS, "tflite_bytes")) == ["b", "c", "control+dynamic"]
  assert _names(ROWS, report.pareto_flags(ROWS, "latency_ms_p50")) == ["control+dynamic"]
  # What test perplexity would have marked instead.
  assert _names(ROWS, report.pareto_flags(ROWS, "tflite_bytes", "tflite_test_ppl")) == [
      "a", "b", "control+dynamic"]
  marked = {r["name"]: (r["pareto_size"], r["pareto_latency"]) for r in report.annotate(ROWS)}
  assert marked["c"] == (True, False) and marked["a"] == (False, False)
  assert marked["control+dynamic"] == (True, True) and marked["control"] == (False, False)


def test_ties_go_to_the_smaller_and_faster_model():
  # Issue 25's case: 170.3602 vs 170.3642 is a 0.0023% difference, far inside 0.1%.
  rows = [{"name": "iss", "tflite_bytes": 224_128, "tflite_valid_ppl": 170.3602,
           "latency_ms_p50": 0.0301},
          {"name": "iss+dynamic", "tflite_bytes": 78_512, "tflite_valid_ppl": 170.3642,
           "latency_ms_p50": 0.0123}]
  assert report.ties(170.3602, 170.3642) and not report.ties(170.0, 170.2)
  assert report.pareto_flags(rows, "tflite_bytes") == [False, True]
  assert report.pareto_flags(rows, "latency_ms_p50") == [False, True]
  # Without the tolerance, the 0.004 lower perplexity kept iss on both fronts.
  assert report.pareto_flags(rows, "tflite_bytes", resolution=0.0) == [True, True]
  assert report.pareto_flags(rows, "latency_ms_p50", resolution=0.0) == [True, True]
  # The budget choice too: the lowest perplexity ties with the smaller model's.
  assert report.best_within(rows, None, None)["name"] == "iss+dynamic"
  # Beyond the tolerance the better model is kept: 0.2% apart.
  rows[1]["tflite_valid_ppl"] = 170.3602 * 1.002
  assert report.pareto_flags(rows, "tflite_bytes") == [True, True]
  assert report.best_within(rows, None, None)["name"] == "iss"
  # Exact duplicates both stay marked.
  twins = [dict(rows[0], name="x"), dict(rows[0], name="y")]
  assert report.pareto_flags(twins, "tflite_bytes") == [True, True]


def test_reference_and_the_ratios():
  rows = {r["name"]: r for r in report.annotate(ROWS)}
  assert report.reference(ROWS)["name"] == "control"  # 110 < 120 on validation (test: 101 > 100).
  a, c, b, d = rows["a"], rows["c"], rows["b"], rows["d"]
  assert a["ppl_vs_baseline"] == pytest.approx(99.0 / 100.0 - 1)  # -1%
  assert a["ppl_vs_control"] == pytest.approx(99.0 / 101.0 - 1)  # -1.98%
  assert b["ppl_vs_control"] == pytest.approx(104.0 / 101.0 - 1)  # +2.97%
  assert c["ppl_vs_control"] == pytest.approx(0.08) == pytest.approx(c["ppl_vs_baseline"])
  assert rows["control+dynamic"]["ppl_vs_control"] == pytest.approx(0.0)
  assert rows["baseline"]["ppl_vs_control"] == 0.0
  assert d["ppl_vs_control"] is None  # Its control did not finish.
  assert c["valid_vs_reference"] == pytest.approx(111.0 / 110.0 - 1)
  assert rows["baseline"]["valid_vs_reference"] == pytest.approx(120.0 / 110.0 - 1)
  assert a["compression"] == 2.5 and a["speedup"] == 2.0
  assert [r["name"] for r in report.annotate(ROWS)][:3] == ["b", "c", "control+dynamic"]
  assert report.reference([r for r in ROWS if r["method"] != "control"])["name"] == "baseline"


def test_budget_winner_follows_validation():
  assert report.select_best(ROWS, 260, None)["name"] == "c"  # Test would pick b (104 < 108).
  assert report.select_best(ROWS, 450, None)["name"] == "control+dynamic"  # Test: a.
  assert report.select_best(ROWS, None, 0.5)["name"] == "control+dynamic"
  assert report.select_best(ROWS, None, None)["name"] == "control+dynamic"  # Ties control.
  assert report.select_best(ROWS, 220, None)["name"] == "b"
  with pytest.raises(UserError, match="smallest is 200 bytes and the fastest 0.4 ms"):
    report.select_best(ROWS, 100, None)
  old = [{k: v for k, v in r.items() if k != "tflite_valid_ppl"} for r in ROWS]
  with pytest.raises(UserError, match="no finished variant has a validation perplexity"):
    report.select_best(old, None, None)


def test_headline_follows_validation():
  head = report.headline(report.annotate(ROWS))
  # Within 5% of 110 (<= 115.5): control, control+dynamic, a and c; b (118) is not.
  assert head == {"within": 0.05, "smallest": "c", "fastest": "control+dynamic"}
  assert report.headline(report.annotate(ROWS), within=0.001)["smallest"] == "control+dynamic"


def test_summary_budgets():
  budgets = report.budgets(ROWS, max_latency_ms=0.5)
  assert [(b.name, b.max_bytes, b.max_latency_ms) for b in budgets] == [
      ("size_1of4", 250, None), ("size_1of10", 100, None), ("size_1of20", 50, None),
      ("max_latency_0.5ms", None, 0.5)]
  assert budgets[0].label == "1/4 of the baseline (250 B)"
  assert budgets[3].label == "your budget (<= 0.5 ms/token)"
  both = report.budgets(ROWS, 300_000, 0.25)[-1]
  assert (both.name, both.label) == ("max_bytes_300000_max_latency_0.25ms",
                                     "your budget (<= 300,000 B, <= 0.25 ms/token)")
  assert report.budgets([r for r in ROWS if r["method"] != "baseline"]) == []
  entries = report.summary(ROWS, budgets)
  assert [(e["name"], e["bundle"]) for e in entries] == [
      ("c", "best/size_1of4"), (None, None), (None, None),
      ("control+dynamic", "best/max_latency_0.5ms")]


def test_answer_and_files(tmp_path):
  published = report.published_rows("../data/ptb", "small")
  out = report.write(ROWS, str(tmp_path), "test", published,
                     report.budgets(ROWS, max_bytes=450), corpus_bound=95.25, title="T")
  assert set(os.listdir(tmp_path)) == {"results.json", "results.md", "pareto.png"}
  assert json.load(open(tmp_path / "results.json")) == json.loads(json.dumps(out))
  assert out["reference"]["name"] == "control" and out["baseline"]["name"] == "baseline"
  lines = report.summary_lines(out, "runs/x")
  assert lines[0] == ("Reference: control (valid 110.00, test 101.00; fp32 .tflite); "
                      "baseline valid 120.00, test 100.00.")
  assert lines[1].startswith("Corpus bound: 95.25")
  assert lines[3] == ("  1/4 of the baseline (250 B): c  valid 111.00  test 108.00 (+0.91% "
                      "valid vs reference)  250 B  0.45 ms/token  -> runs/x/best/size_1of4/")
  assert lines[4] == "  1/10 of the baseline (100 B): no model fits"
  assert "your budget (<= 450 B): control+dynamic  valid 110.05" in lines[6]
  assert lines[-1] == ("Within 5% of the reference (validation): smallest c (250 B, 4.00x "
                       "smaller than the baseline's fp32 file), fastest control+dynamic "
                       "(0.4 ms/token, 2.50x faster than the baseline's fp32).")
  md = (tmp_path / "results.md").read_text()
  assert md.startswith("# T\n\nReference: **control** (valid 110.00, test 101.00")
  assert "Corpus bound: **95.25**" in md
  assert "| 1/4 of the baseline (250 B) | c | 111.00 | 108.00 | +0.91% | 250 | 0.45 | " \
         "`best/size_1of4/` |" in md
  assert "| 1/20 of the baseline (50 B) | no model fits |" in md
  assert "- **vs control**: test ppl vs the fp32 .tflite of this row's control" in md
  assert "ppls within 0.1% are ties" in md
  assert ("| a | low_rank | none | 100 | 400 | 2.50x | 112.00 | 99.00 | -1.00% | -1.98% | 0.5 "
          "| 1.50 | 1.0e-06 |  |") in md
  assert "| c | tt | none | 62 | 250 | 4.00x | 111.00 | 108.00 | +8.00% | +8.00% |" in md
  assert md.count("\n| ") == 1 + 4 + 1 + len(ROWS) + 1 + 1  # Tables' headers and rows.
  assert "Zaremba et al. 2014, small" in md and "114.5" in md


def test_bundles_per_budget(tmp_path):
  from tflm_compress import pipeline  # pylint: disable=g-import-not-at-top

  rows = []
  for r in ROWS:  # A bundle (fake bytes) behind every row.
    folder = tmp_path / "variants" / r["variant"] / r["quantize"]
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("model.tflite", "model_meta.json", "vocab.txt"):
      (folder / name).write_text(f"{r['name']} {name}")
    rows.append(dict(r, tflite=str(folder / "model.tflite")))
  best = tmp_path / "best"
  (best / "size_1of3").mkdir(parents=True)  # A budget of an earlier report: removed.
  (best / "size_1of3" / "best.json").write_text("{}")
  (best / "notes").mkdir()  # Not ours (no best.json): kept.
  (best / "best.json").write_text("{}")  # The single bundle of earlier versions: removed.
  (best / "model.tflite").write_text("old")
  out = report.build(rows, "test", [], report.budgets(rows, max_latency_ms=0.5))
  written = pipeline.export_bundles(out, str(tmp_path))
  assert written == [str(best / "size_1of4"), str(best / "max_latency_0.5ms")]
  assert sorted(os.listdir(best)) == ["max_latency_0.5ms", "notes", "size_1of4"]
  assert (best / "size_1of4" / "model.tflite").read_text() == "c model.tflite"
  assert (best / "max_latency_0.5ms" / "vocab.txt").read_text() == "control+dynamic vocab.txt"
  chosen = json.loads((best / "size_1of4" / "best.json").read_text())
  assert chosen["row"]["name"] == "c" and chosen["budget"]["max_bytes"] == 250


def test_plot_axis_ends_at_three_times_the_baseline():
  rows = [{"method": "baseline", "tflite_test_ppl": 100.0},
          {"method": "cluster", "tflite_test_ppl": 800.0},
          {"method": "low_rank", "tflite_test_ppl": 120.0}]
  assert report._ppl_axis_top(rows, "tflite_test_ppl") == 300.0
  assert report._ppl_axis_top(rows[1:], "tflite_test_ppl") == 800.0  # No baseline: all shown.
  assert report._ppl_axis_top(rows[::2], "tflite_test_ppl") == 120.0


def test_headline_without_a_baseline_row_names_no_ratio():
  rows = [r for r in ROWS if r["method"] != "baseline"]
  annotated = report.annotate(rows)
  sentence = report._headline_sentence(  # pylint: disable=protected-access
      {"headline": report.headline(annotated), "rows": annotated})
  assert sentence == ("Within 5% of the reference (validation): smallest c (250 B), fastest "
                      "control+dynamic (0.4 ms/token).")
