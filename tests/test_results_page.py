"""docs/RESULTS.md is what its result files give; the generators choose on validation."""

import json
import os
import subprocess
import sys

import pytest

from tflm_compress import results_page
from tflm_compress.errors import UserError

from conftest import REPO_ROOT

PAGE = os.path.join(REPO_ROOT, "docs", "RESULTS.md")


def _row(name, method, nbytes, valid, test, quantize="none", variant=None, ms=0.1):
  return {"name": name, "method": method, "variant": variant or name.split("+")[0],
          "quantize": quantize, "tflite_bytes": nbytes, "tflite_valid_ppl": valid,
          "tflite_test_ppl": test, "latency_ms_p50": ms}


# Validation and test disagree: on test "lucky" looks best at 1 MB, on validation "steady".
ROWS = [_row("baseline", "baseline", 4_000_000, 120.0, 114.0),
        _row("control", "control", 4_000_000, 110.0, 104.0),
        _row("lucky+dynamic", "low_rank", 900_000, 118.0, 105.0, "dynamic", ms=0.02),
        _row("steady+dynamic", "low_rank", 950_000, 115.0, 109.0, "dynamic", ms=0.03),
        _row("tiny", "tt", 200_000, 300.0, 290.0)]


def test_committed_page_is_what_its_files_give():
  text = open(PAGE).read()
  assert results_page.render(text, REPO_ROOT, "docs/RESULTS.md") == text, (
      "docs/RESULTS.md is out of date: run python scripts/results_page.py")
  assert len(text.splitlines()) < 275
  lowered = text.lower()
  for word in ("issue", "session", "round of work"):
    assert word not in lowered, word
  assert text.count("<!-- generated: ") == text.count("<!-- end generated -->") == 7


def test_answer_chooses_on_validation_and_reports_test():
  lines = results_page.answer({"rows": ROWS}, {}, {"steady": {"params": {"rank": 8}}})
  assert lines[0] == ("Reference: **control**, test 104.00 (the plain baseline: test 114.00). "
                      "Chosen on the validation perplexity of the .tflite; test perplexity of "
                      "the .tflite reported.")
  table = {line.split(" | ")[0][2:]: line for line in lines if line.startswith("| ")}
  assert table["250 kB"] == ("| 250 kB | `tiny` | tt, fp32 | 200,000 | 300.00 | 290.00 | "
                             "+178.8% | 0.1 | `--only=tiny --quantize=none` |")
  assert table["1 MB"] == ("| 1 MB | `steady+dynamic` | low_rank(rank=8), dynamic | 950,000 | "
                           "115.00 | 109.00 | +4.8% | 0.03 | "
                           "`--only=steady --quantize=dynamic` |")
  assert table["any size"].startswith("| any size | `control` |")


def test_answer_on_an_old_file_chooses_on_keras_validation():
  old = [dict({k: v for k, v in r.items() if k != "tflite_valid_ppl"},
              valid_ppl=r["tflite_valid_ppl"]) for r in ROWS]
  lines = results_page.answer({"rows": old}, {"reference": "control"}, {})
  assert "Chosen on the validation perplexity of the Keras model (this run did not " \
         "measure the .tflite's)" in lines[0]
  assert any(line.startswith("| 1 MB | `steady+dynamic` |") for line in lines)


def test_methods_best_row_per_family_follows_validation():
  lines = results_page.methods({"rows": ROWS}, {}, {})
  assert [line.split(" | ")[:2] for line in lines[4:]] == [
      ["| low_rank", "`steady+dynamic`"], ["| tt", "`tiny`"]]


def test_composition_puts_each_budgets_chain_beside_its_best_single_method():
  rows = ROWS + [_row("compose.lrL8+gr25.do0+int4", "low_rank+group_reduce", 600_000, 116.0,
                      107.0, "int4", variant="compose.lrL8+gr25.do0", ms=0.01)]
  data = {"rows": rows, "composition": [
      {"budget": {"label": "<= 1,000,000 B"}, "chain": "compose.lrL8+gr25.do0+int4",
       "single": "steady+dynamic"},
      {"budget": {"label": "<= 100,000 B"}, "chain": None, "single": None}]}
  variants = {"compose.lrL8+gr25.do0": {"params": {"lstm_rank": 8, "gr_budget": 0.25},
                                        "distill": True, "finetune_dropout": 0.0}}
  lines = results_page.composition(data, {"reference": "control"}, variants)
  assert lines[0] == ("Chosen on the validation perplexity of the .tflite; test vs control "
                      "(104.00).")
  assert lines[4] == (
      "| <= 1,000,000 B | `compose.lrL8+gr25.do0+int4` | low_rank+group_reduce(gr_budget=0.25, "
      "lstm_rank=8), distilled, dropout 0, int4 | 600,000 | 116.00 | 107.00 | +2.9% | 0.01 | "
      "`steady+dynamic` | 950,000 | 115.00 | 109.00 | +4.8% |")
  assert lines[5] == "| <= 100,000 B | none fits | | | | | | | | none fits | | | | |"


def test_variants_option_reads_each_of_several_files(tmp_path):
  os.makedirs(tmp_path / "r")
  (tmp_path / "r" / "run.json").write_text(json.dumps({"rows": ROWS}))
  (tmp_path / "r" / "a.json").write_text(json.dumps([{"name": "steady", "params": {"rank": 8}}]))
  (tmp_path / "r" / "b.json").write_text(json.dumps([{"name": "tiny", "params": {"tt_rank": 2}}]))
  page = ("<!-- generated: methods r/run.json variants=r/a.json,r/b.json -->\n"
          "<!-- end generated -->\n")
  text = results_page.render(page, str(tmp_path), "P.md")
  assert "| low_rank | `steady+dynamic` | low_rank(rank=8), dynamic |" in text
  assert "| tt | `tiny` | tt(tt_rank=2), fp32 |" in text


def test_reference_from_another_file_of_the_same_base_model(tmp_path):
  """A run without controls is restated against the reference of a run with them."""
  os.makedirs(tmp_path / "docs" / "results")
  no_controls = [r for r in ROWS if r["method"] != "control"]
  (tmp_path / "docs" / "results" / "old.json").write_text(json.dumps({"rows": no_controls}))
  (tmp_path / "docs" / "results" / "new.json").write_text(json.dumps({"rows": ROWS}))
  page = ("<!-- generated: methods docs/results/old.json "
          "reference_from=docs/results/new.json -->\n<!-- end generated -->\n")
  text = results_page.render(page, str(tmp_path), "P.md")
  assert "test vs control of docs/results/new.json (104.00)." in text
  assert "| low_rank | `steady+dynamic` | low_rank, dynamic | 950,000 | 109.00 | +4.8% |" in text
  alone = results_page.render(page.replace(" reference_from=docs/results/new.json", ""),
                              str(tmp_path), "P.md")
  assert "test vs baseline (114.00)." in alone
  with pytest.raises(UserError, match=r"reference=x is not a row of docs/results/new\.json"):
    results_page.render(page.replace("new.json", "new.json reference=x"), str(tmp_path), "P.md")
  (tmp_path / "docs" / "results" / "norows.json").write_text("{}")
  with pytest.raises(UserError) as e:
    results_page.render(page.replace("new.json", "norows.json"), str(tmp_path), "P.md")
  assert str(e.value) == "P.md: block 'methods' cannot read docs/results/old.json: missing 'rows'"


def test_published_rows_keep_their_citations():
  data = json.load(open(os.path.join(REPO_ROOT, "docs", "results", "published_ptb.json")))
  lines = results_page.published(data, {}, {})
  assert lines[2].startswith("| Zaremba, Sutskever, Vinyals 2014") and lines[2].endswith(
      "| small, 2x200, no dropout |  |  | 114.5 |")
  assert "| Grachev et al. 2019, Table 3 | TT softmax, LSTM 200-200 (0.304M output-layer " \
         "params) | 11.8 | 2.95 | 116.588 |" in lines


@pytest.mark.parametrize("block, message", [
    ("<!-- generated: charts docs/results/published_ptb.json -->\n<!-- end generated -->",
     "P.md: unknown generator 'charts' (known: answer, methods, sub8bit, published, peer, composition)"),
    ("<!-- generated: answer docs/results/nope.json -->\n<!-- end generated -->",
     "P.md: block 'answer' reads docs/results/nope.json, which does not exist"),
    ("<!-- generated: answer docs/results/published_ptb.json ref -->\n<!-- end generated -->",
     "P.md: block 'answer': option 'ref' is not key=value"),
    ("<!-- generated: answer docs/results/sub.json reference=x -->\n<!-- end generated -->",
     "P.md: block 'answer' (docs/results/sub.json): reference=x is not a row of the file"),
])
def test_bad_blocks_fail_with_one_line(tmp_path, block, message):
  os.makedirs(tmp_path / "docs" / "results")
  for name in ("published_ptb.json", "sub.json"):
    (tmp_path / "docs" / "results" / name).write_text(json.dumps({"rows": ROWS}))
  with pytest.raises(UserError) as e:
    results_page.render("x\n" + block + "\n", str(tmp_path), "P.md")
  assert str(e.value) == message


def test_script_check_fails_on_a_stale_page(tmp_path):
  os.makedirs(tmp_path / "docs" / "results")
  (tmp_path / "docs" / "results" / "r.json").write_text(json.dumps({"rows": ROWS}))
  page = tmp_path / "P.md"
  page.write_text("# T\n<!-- generated: methods docs/results/r.json -->\nold\n"
                  "<!-- end generated -->\n")
  script = os.path.join(REPO_ROOT, "scripts", "results_page.py")
  run = lambda *flags: subprocess.run(
      [sys.executable, script, f"--page={page}", f"--root={tmp_path}", *flags],
      capture_output=True, text=True, timeout=120)
  stale = run("--check")
  assert stale.returncode == 1 and stale.stderr.strip().splitlines()[-1] == (
      f"error: {page} is out of date with its result files; run "
      f"python scripts/results_page.py --page={page}")
  assert run().returncode == 0 and "| low_rank | `steady+dynamic` |" in page.read_text()
  fresh = run("--check")
  assert fresh.returncode == 0 and fresh.stdout.strip() == f"{page}: up to date"


def test_peer_table_puts_the_stock_graph_beside_ours():
  graph = lambda g, mode, ms, ops, loops: {"graph": g, "mode": mode, "bytes": 1000, "ms_p50": ms,
                                          "tflite_ops": ops, "while_ops": loops,
                                          "delegate_partitions": 1}
  data = {"modes": [{"mode": "none", "stock_over_ours": 1.5, "max_abs_logit_diff": 2e-6,
                     "parity_tokens": 64}],
          "rows": [graph("ours", "none", 0.1, 20, 0), graph("stock", "none", 0.15, 60, 2)],
          "rounds": 9, "settings": {"num_threads": 1}}
  lines = results_page.peer(data, {}, {})
  assert lines[2:4] == ["| none | stock | 1,000 | 60 | 2 | 1 | 0.1500 | 1.50x |",
                        "| none | ours | 1,000 | 20 | 0 | 1 | 0.1000 |  |"]
  assert lines[-1] == ("Largest logit difference, stock vs ours, over 64 tokens: none 2.0e-06; "
                       "9 interleaved rounds, 1 thread.")
