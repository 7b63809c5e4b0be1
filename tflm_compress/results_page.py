"""The generated parts of ``docs/RESULTS.md``, rendered from committed result files.

A page holds hand-written text and generated blocks::

  <!-- generated: answer docs/results/ptb_small_all_methods.json variants=... -->
  ...(whatever :func:`render` writes; never edited by hand)...
  <!-- end generated -->

The first word after ``generated:`` names a generator (:data:`GENERATORS`), the
next is the result file it reads (relative to the repository root), the rest
are ``key=value`` options. :func:`render` rewrites every block from its file,
so the page cannot drift from the JSON; ``scripts/results_page.py --check``
fails when the committed page differs from what :func:`render` gives.

Every choice a block makes (the model per budget, the best row per method) is
made on validation perplexity; test perplexity is what it reports.
"""

from __future__ import annotations

import json
import os
import re
from typing import Callable

from tflm_compress import report
from tflm_compress.errors import UserError

_BLOCK = re.compile(r"<!-- generated: (?P<spec>[^>]*?) -->\n(?P<body>.*?)<!-- end generated -->",
                    re.DOTALL)

# Size budgets of the answer table (bytes of the .tflite; None: any size).
ANSWER_BUDGETS = ((250_000, "250 kB"), (500_000, "500 kB"), (1_000_000, "1 MB"),
                  (2_000_000, "2 MB"), (5_000_000, "5 MB"), (None, "any size"))
KERAS_CHOICE_KEY = "valid_ppl"
TEST_KEY = report.ppl_key("test")
# Where render puts the rows of a block's ``reference_from=FILE``.
REFERENCE_ROWS = "_reference_rows"


def _load(root: str, path: str, page: str, generator: str) -> dict | list:
  full = os.path.join(root, path)
  if not os.path.isfile(full):
    raise UserError(f"{page}: block '{generator}' reads {path}, which does not exist")
  with open(full) as f:
    try:
      return json.load(f)
    except json.JSONDecodeError as e:
      raise UserError(f"{page}: block '{generator}' reads {path}, which is not JSON: {e}") from e


def choice_rows(rows: list[dict]) -> tuple[list[dict], str]:
  """Rows with :data:`report.CHOICE_KEY` set, and what it holds.

  A run that measured the ``.tflite``'s validation perplexity is chosen on it;
  an older run (Keras validation perplexity only) is chosen on the Keras
  model's, which the page says.
  """
  if any(r.get(report.CHOICE_KEY) is not None for r in rows):
    return rows, "validation perplexity of the .tflite"
  if not any(r.get(KERAS_CHOICE_KEY) is not None for r in rows):
    raise UserError("no row has a validation perplexity (tflite_valid_ppl or valid_ppl)")
  return ([dict(r, **{report.CHOICE_KEY: r.get(KERAS_CHOICE_KEY)}) for r in rows],
          "validation perplexity of the Keras model (this run did not measure the .tflite's)")


def _reference_row(rows: list[dict], options: dict) -> dict:
  """``reference=NAME``, else :func:`report.reference`, of the block's rows or, with
  ``reference_from=FILE``, of that file's (a run of the same base model whose
  controls the block's file lacks)."""
  where = "the file"
  if REFERENCE_ROWS in options:
    rows, where = choice_rows(options[REFERENCE_ROWS])[0], options["reference_from"]
  name = options.get("reference")
  if name:
    found = [r for r in rows if r["name"] == name]
    if not found:
      raise UserError(f"reference={name} is not a row of {where}")
    return found[0]
  ref = report.reference(rows)
  if ref is None:
    raise UserError(f"{where} has no fp32 baseline or control row to be the reference")
  return ref


def _reference_label(ref: dict, options: dict) -> str:
  where = options.get("reference_from")
  return f"{ref['name']}" + (f" of {where}" if where else "")


def _settings(row: dict, variants: dict[str, dict]) -> str:
  variant = variants.get(row.get("variant"), {})
  parts = [row["method"]]
  params = variant.get("params") or {}
  if params:
    parts[0] += "(" + ", ".join(f"{k}={v}" for k, v in sorted(params.items())) + ")"
  if variant.get("distill") or row.get("distill"):
    parts.append("distilled")
  if variant.get("finetune_dropout") is not None:
    parts.append(f"dropout {variant['finetune_dropout']:g}")
  parts.append("fp32" if row.get("quantize", "none") == "none" else row["quantize"])
  return ", ".join(parts)


def _pct(value: float | None) -> str:
  return "" if value is None else f"{100 * value:+.1f}%"


def _ms(row: dict) -> str:
  value = row.get("latency_ms_p50")
  return "" if value is None else f"{value:.3g}"


def _variants(root: str, options: dict, page: str, generator: str) -> dict[str, dict]:
  if "variants" not in options:
    return {}
  return {v["name"]: v for path in options["variants"].split(",")  # One file or several.
          for v in _load(root, path, page, generator)}


def answer(data: dict, options: dict, variants: dict[str, dict]) -> list[str]:
  """One row per size budget: the model of lowest validation perplexity that fits."""
  rows, chosen_on = choice_rows(data["rows"])
  ref = _reference_row(rows, options)
  base = next((r for r in rows if r["method"] == report.BASELINE and
               r.get("quantize") == "none"), None)
  lines = [f"Reference: **{_reference_label(ref, options)}**, test {ref[TEST_KEY]:.2f} "
           f"(the plain baseline: test {base[TEST_KEY]:.2f}). Chosen on the {chosen_on}; "
           f"test perplexity of the .tflite reported.", "",
           "| budget | model | method, settings | bytes | valid | test | test vs reference "
           "| ms/token | flags |", "|---|---|---|---|---|---|---|---|---|"]
  for max_bytes, label in ANSWER_BUDGETS:
    best = report.best_within(rows, max_bytes, None)
    if best is None:
      lines.append(f"| {label} | no model fits | | | | | | | |")
      continue
    lines.append(
        f"| {label} | `{best['name']}` | {_settings(best, variants)} | "
        f"{best['tflite_bytes']:,} | {best[report.CHOICE_KEY]:.2f} | {best[TEST_KEY]:.2f} | "
        f"{_pct(best[TEST_KEY] / ref[TEST_KEY] - 1)} | {_ms(best)} | {_flags(best)} |")
  return lines


def _flags(row: dict) -> str:
  """The ``run_pipeline.py`` flags that rebuild ``row`` (beside the page's command)."""
  if row["method"] == report.BASELINE:
    return f"`--only=baseline --quantize={row.get('quantize', 'none')}`"
  return f"`--only={row['variant']} --quantize={row.get('quantize', 'none')}`"


def methods(data: dict, options: dict, variants: dict[str, dict]) -> list[str]:
  """The best row of each method family (chosen on validation), any size."""
  rows, chosen_on = choice_rows(data["rows"])
  ref = _reference_row(rows, options)
  families = sorted({r["method"] for r in rows} - {report.BASELINE, report.CONTROL})
  lines = [f"Best row per method, chosen on the {chosen_on}; test vs "
           f"{_reference_label(ref, options)} "
           f"({ref[TEST_KEY]:.2f}).", "",
           "| method | best row | settings | bytes | test | test vs reference | ms/token |",
           "|---|---|---|---|---|---|---|"]
  for family in families:
    best = report.best_within([r for r in rows if r["method"] == family], None, None)
    lines.append(f"| {family} | `{best['name']}` | {_settings(best, variants)} | "
                 f"{best['tflite_bytes']:,} | {best[TEST_KEY]:.2f} | "
                 f"{_pct(best[TEST_KEY] / ref[TEST_KEY] - 1)} | {_ms(best)} |")
  return lines


def sub8bit(data: dict, options: dict, variants: dict[str, dict]) -> list[str]:
  """Every sub-8-bit export of a ``benchmarks/ptq_modes.py`` file (one or many runs)."""
  del options, variants
  runs = data["runs"] if "runs" in data else {"": data}
  lines = ["| algorithm | mode | bits | bytes | test | vs its fp32 Keras |",
           "|---|---|---|---|---|---|"]
  for algorithm, run in runs.items():
    for mode in run["modes"]:
      bits = (mode.get("sub8bit") or {}).get("bits") or {}
      shown = ", ".join(f"{k}:{v}" for k, v in bits.items()) if len(bits) <= 4 else (
          f"{min(bits.values())}-{max(bits.values())} over {len(bits)} tensors")
      lines.append(f"| {algorithm or 'min_max'} | {mode['quantize']} | {shown} | "
                   f"{mode['tflite_bytes']:,} | {mode['test_ppl']:.2f} | "
                   f"{_pct(mode.get('ppl_vs_keras'))} |")
  return lines


def composition(data: dict, options: dict, variants: dict[str, dict]) -> list[str]:
  """Per budget of a ``--search=compose`` run: the composed winner beside the best
  single method that fits (both chosen on validation by the run's report)."""
  rows, chosen_on = choice_rows(data["rows"])
  ref = _reference_row(rows, options)
  by_name = {r["name"]: r for r in rows}
  lines = [f"Chosen on the {chosen_on}; test vs {_reference_label(ref, options)} "
           f"({ref[TEST_KEY]:.2f}).", "",
           "| budget | composed chain | settings | bytes | valid | test | test vs reference "
           "| ms/token | best single method | bytes | valid | test | test vs reference |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  def figures(row: dict) -> list[str]:
    return [f"{row['tflite_bytes']:,}", f"{row[report.CHOICE_KEY]:.2f}",
            f"{row[TEST_KEY]:.2f}", _pct(row[TEST_KEY] / ref[TEST_KEY] - 1)]

  for entry in data["composition"]:
    chain, single = by_name.get(entry["chain"]), by_name.get(entry["single"])
    cells = [entry["budget"]["label"]]
    cells += ([f"`{chain['name']}`", _settings(chain, variants), *figures(chain), _ms(chain)]
              if chain else ["none fits"] + [""] * 7)
    cells += [f"`{single['name']}`", *figures(single)] if single else ["none fits"] + [""] * 4
    lines.append("|" + "|".join(f" {c} " if c else " " for c in cells) + "|")
  return lines


def published(data: dict, options: dict, variants: dict[str, dict]) -> list[str]:
  """The papers' rows, each with its citation."""
  del options, variants
  lines = ["| source | model | Mb | params (M) | test |", "|---|---|---|---|---|"]
  for row in data["rows"]:
    mb = "" if row.get("mb") is None else f"{row['mb']:g}"
    params = "" if row.get("params_m") is None else f"{row['params_m']:g}"
    lines.append(f"| {row['citation']} | {row['model']} | {mb} | {params} | "
                 f"{row['test_ppl']:g} |")
  return lines


def peer(data: dict, options: dict, variants: dict[str, dict]) -> list[str]:
  """Our step graph beside the stock Keras LSTM converted by TFLiteConverter
  (``benchmarks/peer_latency.py``): one row per graph and mode."""
  del options, variants
  rows = {(r["graph"], r["mode"]): r for r in data["rows"]}
  lines = ["| mode | graph | bytes | TFLite ops | WHILE | XNNPACK partitions | ms/token | "
           "stock / ours |", "|---|---|---|---|---|---|---|---|"]
  for entry in data["modes"]:
    for graph in ("stock", "ours"):
      r = rows[(graph, entry["mode"])]
      ratio = f"{entry['stock_over_ours']:.2f}x" if graph == "stock" else ""
      lines.append(f"| {entry['mode']} | {graph} | {r['bytes']:,} | {r['tflite_ops']} | "
                   f"{r['while_ops']} | {r['delegate_partitions']} | {r['ms_p50']:.4f} | "
                   f"{ratio} |")
  diffs = ", ".join(f"{e['mode']} {e['max_abs_logit_diff']:.1e}" for e in data["modes"])
  lines += ["", f"Largest logit difference, stock vs ours, over {data['modes'][0]['parity_tokens']}"
            f" tokens: {diffs}; {data['rounds']} interleaved rounds, "
            f"{data['settings']['num_threads']} thread."]
  return lines


GENERATORS: dict[str, Callable[[dict, dict, dict], list[str]]] = {
    "answer": answer, "methods": methods, "sub8bit": sub8bit, "published": published,
    "peer": peer, "composition": composition}


def _parse_spec(spec: str, page: str) -> tuple[str, str, dict]:
  words = spec.split()
  if len(words) < 2:
    raise UserError(f"{page}: generated block '{spec}' needs a generator and a file")
  name, path, options = words[0], words[1], {}
  if name not in GENERATORS:
    raise UserError(f"{page}: unknown generator '{name}' (known: {', '.join(GENERATORS)})")
  for word in words[2:]:
    key, sep, value = word.partition("=")
    if not sep:
      raise UserError(f"{page}: block '{name}': option '{word}' is not key=value")
    options[key] = value
  return name, path, options


def render(text: str, root: str, page: str = "RESULTS.md") -> str:
  """``text`` with every generated block rewritten from its file under ``root``."""
  def block(match: re.Match) -> str:
    name, path, options = _parse_spec(match.group("spec"), page)
    data = _load(root, path, page, name)
    try:
      if "reference_from" in options:
        options[REFERENCE_ROWS] = _load(root, options["reference_from"], page, name)["rows"]
      body = GENERATORS[name](data, options, _variants(root, options, page, name))
    except (KeyError, TypeError) as e:
      raise UserError(f"{page}: block '{name}' cannot read {path}: missing {e}") from e
    except UserError as e:
      raise UserError(f"{page}: block '{name}' ({path}): {e}") from e
    return (f"<!-- generated: {match.group('spec')} -->\n" + "\n".join(body) +
            "\n<!-- end generated -->")
  return _BLOCK.sub(block, text)
