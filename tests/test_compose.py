"""The composition search (tflm_compress.compose, run_pipeline.py --search=compose)."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import tflm_compress as tc
from conftest import REPO_ROOT, compress_tiny_run
from tflm_compress import compose, compression, export, pipeline, report
from tflm_compress.methods.base import CompressionContext
from tflm_compress.models.config import get_preset
from tflm_compress.pipeline import Variant


def test_budget_sizes_parse_with_units():
  assert compose.parse_sizes("1M,250k,1500000,2.5M") == [250_000, 1_000_000, 1_500_000,
                                                         2_500_000]
  with pytest.raises(tc.UserError, match=r"^--budgets: '12q' is not a size; write e\.g\. 250k, "
                                         r"1M or 1500000$"):
    compose.parse_sizes("1M,12q")
  with pytest.raises(tc.UserError, match="lists no size"):
    compose.parse_sizes(",")


def test_small_grid_crosses_lstm_and_output_parts_and_merges_low_rank():
  chains = {c.name: c for c in compose.chain_grid(200, [200, 200], "small")}
  assert sorted(chains) == sorted([
      "compose.lrE50", "compose.gr25", "compose.iss50", "compose.iss50+lrE50",
      "compose.iss50+gr25", "compose.lrL50", "compose.lrL50+lrE50", "compose.lrL50+gr25"])
  merged = chains["compose.lrL50+lrE50"]
  assert merged.method == "low_rank"
  assert merged.params == {"lstm_rank": 50, "embedding_rank": 50, "softmax_rank": 50}
  assert chains["compose.iss50+gr25"].method == "iss+group_reduce"  # ISS first.
  assert all(c.distill for c in chains.values())
  assert len(compose.chain_grid(200, [200, 200], "full")) == 5 * 7 - 1
  with pytest.raises(tc.UserError, match=r"--compose_grid='huge'"):
    compose.chain_grid(200, [200], "huge")


def test_finalists_are_the_lowest_screened_validation_ppl_that_fit_each_budget():
  chains = tuple(Variant(f"compose.c{i}", "low_rank", {"rank": i + 1}) for i in range(4))
  screened = {
      "compose.c0": {"none": {"tflite_bytes": 900, "slice_ppl": 100.0, "latency_ms_p50": 0.9},
                     "dynamic": {"tflite_bytes": 300, "slice_ppl": 101.0,
                                 "latency_ms_p50": 0.3}},
      "compose.c1": {"none": {"tflite_bytes": 500, "slice_ppl": 99.0, "latency_ms_p50": 0.5}},
      "compose.c2": {"dynamic": {"tflite_bytes": 200, "slice_ppl": 120.0,
                                 "latency_ms_p50": 0.1}},
      "compose.c3": {"dynamic": {"tflite_bytes": 5000, "slice_ppl": 50.0,
                                 "latency_ms_p50": 5.0}},
  }
  names = lambda vs: [v.name for v in vs]
  size = lambda n: report.Budget(f"size_{n}", "", max_bytes=n)
  # 1000 B: c1 (99) then c0 (100); 400 B: c0's dynamic (101) then c2; c3 never fits.
  assert names(compose.finalists(chains, screened, [size(400), size(1000)], per_budget=2)) == [
      "compose.c0", "compose.c2", "compose.c1"]
  assert names(compose.finalists(chains, screened, [size(400), size(1000)], per_budget=1)) == [
      "compose.c0", "compose.c1"]
  assert compose.finalists(chains, screened, [size(100)]) == ()
  # A latency budget screens on the exports' timings: <= 0.4 ms keeps c0's dynamic and c2.
  fast = report.Budget("fast", "", max_latency_ms=0.4)
  assert names(compose.finalists(chains, screened, [fast], per_budget=3)) == [
      "compose.c0", "compose.c2"]
  # Both limits at once: <= 0.4 ms and <= 250 B leaves c2 alone.
  both = report.Budget("both", "", max_bytes=250, max_latency_ms=0.4)
  assert names(compose.finalists(chains, screened, [both], per_budget=3)) == ["compose.c2"]
  # A screen without timings (written before they were taken) fits no latency budget.
  untimed = {"compose.c2": {"dynamic": {"tflite_bytes": 200, "slice_ppl": 120.0}}}
  assert compose.finalists(chains, untimed, [fast]) == ()


def test_with_recipes_fine_tunes_each_finalist_once_per_dropout_with_its_own_control():
  chains = (Variant("compose.lrL50", "low_rank", {"lstm_rank": 50}, distill=True),
            Variant("compose.gr25", "group_reduce", {"gr_budget": 0.25}, distill=True))
  assert compose.with_recipes(chains) == chains
  got = compose.with_recipes(chains, (0.0, 0.3, 0.3))
  assert [(v.name, v.finetune_dropout) for v in got] == [
      ("compose.lrL50.do0", 0.0), ("compose.lrL50.do0.3", 0.3),
      ("compose.gr25.do0", 0.0), ("compose.gr25.do0.3", 0.3)]
  assert all(v.distill and v.method == c.method for v, c in zip(got, np.repeat(chains, 2)))
  config = pipeline.PipelineConfig(preset=get_preset("tiny"), preset_name="tiny",
                                   variants=got, finetune_dropout=None)
  runner = pipeline.Pipeline(config, None, "unused")
  assert [runner.control_of(v) for v in got[:2]] == ["control_kd.do0", "control_kd.do0.3"]
  with pytest.raises(tc.UserError, match=r"^--compose_dropouts=1\.5; must be in \[0, 1\)$"):
    compose.with_recipes(chains, (0.3, 1.5))


def test_a_finalist_already_in_variants_runs_once_and_a_namesake_with_other_settings_fails():
  chain = Variant("compose.lrL50.do0", "low_rank", {"lstm_rank": 50}, distill=True,
                  finetune_dropout=0.0)
  other = Variant("compose.gr25.do0", "group_reduce", {"gr_budget": 0.25}, distill=True,
                  finetune_dropout=0.0)
  config = pipeline.PipelineConfig(preset=get_preset("tiny"), preset_name="tiny",
                                   variants=(chain,))
  assert compose._new_variants(config, (chain, other)) == (other,)
  renamed = dataclasses.replace(chain, params={"lstm_rank": 40})
  config = dataclasses.replace(config, variants=(renamed,))
  with pytest.raises(tc.UserError, match=(
      r"^variant 'compose\.lrL50\.do0' of --variants is not the composition search's chain "
      r"of that name \(low_rank, \{'lstm_rank': 50\}\); rename it$")):
    compose._new_variants(config, (chain,))


def test_screen_gives_exact_bytes_and_slice_ppl_of_the_uncompressed_chain(tiny_run, small_corpus,
                                                                          tmp_path):
  base = os.path.join(tiny_run[0], "model.keras")
  chain = Variant("compose.iss50+lrE4", "iss+low_rank",
                  {"iss_keep": 0.5, "embedding_rank": 4, "softmax_rank": 4})
  got = compose.screen_chain(base, chain, small_corpus, ["none", "dynamic"], 300,
                             str(tmp_path / "screen"))
  assert os.listdir(tmp_path / "screen") == []  # The exports are measured, then removed.
  # The dense reference: the same chain by hand (ISS surgery first, then low-rank).
  model = tc.load_model(base)
  plan = compression.check_params(chain.method, chain.params)
  model = compression.apply_methods(model, plan, CompressionContext(vocab=small_corpus.vocab))
  assert [l.units for l in model.layers if l.name.startswith("lstm_")] == [16, 16]  # 32 each
  assert compression.with_hook(plan, "strip") == []  # ISS is settled; low-rank has no strip.
  ids = small_corpus.split("valid")[:300]
  for mode in ("none", "dynamic"):
    path = str(tmp_path / mode / "model.tflite")
    summary = export.export_step_model(model, small_corpus.vocab, path, mode)
    assert got[mode]["tflite_bytes"] == summary["tflite_bytes"]
    assert got[mode]["slice_ppl"] == pytest.approx(
        export.TFLiteStepModel(path).perplexity(ids, progress=False)["ppl"], rel=1e-9)
    assert 0 < got[mode]["latency_ms_p50"] < 100  # Timed (compose.SCREEN_BENCHMARK).
  logits = export.keras_stream_logits(model, ids[:20])
  np.testing.assert_allclose(export.TFLiteStepModel(str(tmp_path / "none" / "model.tflite"))
                             .run(ids[:20]), logits, atol=1e-4)


def test_screen_exports_with_the_pipelines_settings(tiny_run, small_corpus, tmp_path):
  """Screened int4 bytes are the finalist's: the block size and scale algorithm the
  pipeline gives the chain's exports (Pipeline.export_settings) apply to the screen too."""
  base = os.path.join(tiny_run[0], "model.keras")
  chain = Variant("compose.lrE8", "low_rank", {"embedding_rank": 8, "softmax_rank": 8})
  settings = {"algorithm": "min_max", "block_size": 32}
  calls = []

  def export_settings(method, mode):
    calls.append((method, mode))
    return settings if mode == "int4" else {}

  got = compose.screen_chain(base, chain, small_corpus, ["dynamic", "int4"], 300,
                             str(tmp_path / "screen"), export_settings=export_settings)
  assert calls == [("low_rank", "dynamic"), ("low_rank", "int4")]
  plan = compression.check_params(chain.method, chain.params)
  model = compression.strip_methods(compression.apply_methods(
      tc.load_model(base), plan, CompressionContext(vocab=small_corpus.vocab, seed=0)), plan)
  blocked = export.export_step_model(model, small_corpus.vocab, str(tmp_path / "b.tflite"),
                                     "int4", log=lambda _: None, **settings)
  per_channel = export.export_step_model(model, small_corpus.vocab, str(tmp_path / "c.tflite"),
                                         "int4", algorithm="min_max", log=lambda _: None)
  assert got["int4"]["tflite_bytes"] == blocked["tflite_bytes"]
  assert blocked["tflite_bytes"] != per_channel["tflite_bytes"]  # Else this shows nothing.


def test_an_iss_chain_fine_tunes_and_strips(tiny_run, small_corpus, tmp_path):
  metrics = compress_tiny_run(tiny_run, small_corpus, str(tmp_path / "run"), "iss+low_rank",
                              {"iss_keep": 0.5, "embedding_rank": 4, "softmax_rank": 4})
  model = tc.load_model(str(tmp_path / "run"))
  assert [l.units for l in model.layers if l.name.startswith("lstm_")] == [16, 16]  # 32 each
  assert type(model.get_layer("softmax")).__name__ == "LowRankDense"
  assert np.isfinite(metrics["valid_ppl"])


def _row(name, method, nbytes, valid, variant=None):
  return {"name": name, "variant": variant or name, "method": method, "quantize": "none",
          "tflite_bytes": nbytes, report.CHOICE_KEY: valid, "tflite_test_ppl": valid - 5,
          "latency_ms_p50": 0.01}


def test_report_puts_the_best_chain_beside_the_best_single_method_per_budget():
  rows = [_row("baseline", "baseline", 10_000, 100.0), _row("lr", "low_rank", 2_000, 104.0),
          _row("gr", "group_reduce", 900, 110.0), _row("manual", "iss+low_rank", 800, 90.0),
          _row("compose.a", "iss+low_rank", 1_500, 102.0),
          _row("compose.b", "low_rank", 800, 106.0)]
  budgets = report.budgets(rows, sizes=(1_000, 3_000))
  assert [b.label for b in budgets] == ["<= 1,000 B", "<= 3,000 B"]
  result = report.build(rows, "test", [], budgets)
  assert [(e["chain"], e["single"]) for e in result["composition"]] == [
      ("compose.b", "gr"), ("compose.a", "lr")]
  text = report.markdown(result)
  assert "## Composition search: the best chain and the best single method per budget" in text
  assert "| <= 1,000 B | compose.b (low_rank) | 106.00 | 101.00 |" in text
  assert report.composition_lines(result)[1] == (
      "  <= 1,000 B: chain compose.b valid 106.00 test 101.00 800 B; "
      "single gr valid 110.00 test 105.00 900 B")
  assert report.build(rows[:3], "test", [], budgets)["composition"] == []


def test_pipeline_composes_by_default_screens_fine_tunes_finalists_and_reports(tmp_path):
  """No --search flag: the default run searches (the README's default run includes it)."""
  variants = tmp_path / "variants.json"
  variants.write_text(json.dumps([{"name": "lr4", "method": "low_rank", "params": {"rank": 4}}]))
  out = tmp_path / "out"
  cmd = [sys.executable, os.path.join(REPO_ROOT, "scripts", "run_pipeline.py"),
         f"--output_dir={out}", "--epochs=1", "--generated_tokens=6000",
         "--quantize=none,dynamic", "--finetune_epochs=1", "--runs=20",
         f"--variants={variants}", "--budgets=60k,100k", "--compose_slice_tokens=300"]
  proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stderr == ""  # Quiet: none of TensorFlow's, LiteRT's or the converter's chatter.
  screened = json.load(open(out / "compose" / "screen.json"))
  tiny = get_preset("tiny").model
  assert {r["chain"] for r in screened} == {
      c.name for c in compose.chain_grid(tiny.embedding_size, list(tiny.hidden_sizes))}
  assert {r["quantize"] for r in screened} == {"none", "dynamic"}
  assert all(r["latency_ms_p50"] > 0 for r in screened)
  results = json.load(open(out / "results.json"))
  composed = [r for r in results["rows"] if r["variant"].startswith("compose.")]
  assert composed and all(r["distill"] for r in composed)
  finalists = pipeline.load_variants(str(out / "compose" / "finalists.json"))
  assert {v.name for v in finalists} == {r["variant"] for r in composed}
  assert [e["budget"]["max_bytes"] for e in results["composition"]] == [60_000, 100_000]
  for entry in results["composition"]:
    if entry["chain"]:
      row = next(r for r in results["rows"] if r["name"] == entry["chain"])
      assert row["tflite_bytes"] <= entry["budget"]["max_bytes"]
  assert "Composition search (best chain vs best single method" in proc.stdout
  assert "compose: screen compose." in proc.stdout and "ETA" in proc.stdout
  # Resumable: the rerun redoes nothing.
  again = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
  assert again.returncode == 0 and ": running" not in again.stdout
  # A fan-out process (--only) runs its variants and leaves the search to the run without.
  fan_out = subprocess.run(cmd + ["--only=lr4"], cwd=REPO_ROOT, capture_output=True, text=True,
                           timeout=900)
  assert fan_out.returncode == 0 and "compose:" not in fan_out.stdout, fan_out.stderr[-3000:]
  # Merging the run (--report_only) keeps the search's rows, screening nothing again.
  merged = subprocess.run(cmd + ["--report_only"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=900)
  assert merged.returncode == 0 and ": running" not in merged.stdout, merged.stderr[-3000:]
  assert json.load(open(out / "results.json"))["composition"] == results["composition"]
