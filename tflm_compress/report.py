"""The run's report: results.json, results.md, pareto.png, and the answer (best model per budget).

Every choice here (the reference, the Pareto marks, the best model within a
budget, "within X%") is made on the **validation** perplexity of the
``.tflite`` (``tflite_valid_ppl``); the test perplexity is reported beside it
and never used to choose. Perplexities within :data:`PPL_RESOLUTION` of each
other are ties, won by the smaller (or faster) model.

The **reference** is the uncompressed fp32 ``.tflite`` of lowest validation
perplexity among the baseline and the controls (the base model fine-tuned with
a variant's recipe, uncompressed: see :mod:`tflm_compress.pipeline`).
"""

import dataclasses
import io
import os

from tflm_compress import io_utils
from tflm_compress.errors import UserError

BASELINE = "baseline"
CONTROL = "control"
# The split every choice is made on, and the row key of its .tflite perplexity.
CHOICE_SPLIT = "valid"
CHOICE_KEY = f"tflite_{CHOICE_SPLIT}_ppl"
# Perplexities differing by less than this (relative) are ties: the resolution we
# claim for a perplexity. Not round-off (an fp32 .tflite matches Keras to 1e-6
# relative) but the size of an effect we do not call a difference: dynamic-range
# PTQ moves PTB small test perplexities by a median 0.03% (41 variants, at most
# 0.2%); the methods we compare differ by percents.
PPL_RESOLUTION = 0.001
# Default budgets: these fractions of the baseline's fp32 .tflite bytes.
BUDGET_FRACTIONS = (4, 10, 20)
# "Within X%" of the reference, for the headline.
HEADLINE_WITHIN = 0.05
# Variants of the composition search (tflm_compress.compose) are named PREFIX + chain.
COMPOSE_PREFIX = "compose."

# Published rows to print beside ours: only figures verified against the
# papers' own tables (../shared/docs/anchors.md). Keyed by (corpus, preset).
PUBLISHED = {
    ("ptb", "small"): [
        {"name": "Zaremba et al. 2014, small (2x200)", "params": 4_651_600, "valid_ppl": 120.7,
         "test_ppl": 114.5},
    ],
    ("ptb", "medium"): [
        {"name": "Zaremba et al. 2014, medium (2x650)", "valid_ppl": 86.2, "test_ppl": 82.7},
    ],
    ("ptb", "large"): [
        {"name": "Zaremba et al. 2014, large (2x1500)", "valid_ppl": 82.2, "test_ppl": 78.4},
    ],
}


def published_rows(corpus_source: str, preset_name: str) -> list[dict]:
  corpus = "ptb" if "ptb" in corpus_source.lower() else corpus_source
  return PUBLISHED.get((corpus, preset_name), [])


def ppl_key(split: str) -> str:
  return f"tflite_{split}_ppl"


def ties(a: float, b: float, resolution: float = PPL_RESOLUTION) -> bool:
  """Whether two perplexities are equal within ``resolution`` (relative)."""
  return abs(a - b) <= resolution * min(a, b)


def pareto_flags(rows: list[dict], x_key: str, y_key: str = CHOICE_KEY,
                 resolution: float = PPL_RESOLUTION) -> list[bool]:
  """True for rows no other row beats (lower is better on both keys).

  Row ``o`` beats row ``r`` when it is no larger on ``x_key``, no worse on
  ``y_key`` (a tie counts as no worse) and either smaller on ``x_key`` or
  better on ``y_key`` by more than a tie. So of two rows whose perplexities
  tie, only the smaller (faster) one is marked; exact duplicates both are.
  """
  def beats(o, x, y):
    ox, oy = o.get(x_key), o.get(y_key)
    if ox is None or oy is None or ox > x:
      return False
    tie = ties(oy, y, resolution)
    if oy > y and not tie:
      return False
    return ox < x or (oy < y and not tie)

  flags = []
  for row in rows:
    x, y = row.get(x_key), row.get(y_key)
    flags.append(x is not None and y is not None and not any(beats(o, x, y) for o in rows))
  return flags


def _fp32(rows: list[dict], method: str) -> list[dict]:
  return [r for r in rows if r.get("method") == method and r.get("quantize") == "none"]


def reference(rows: list[dict]) -> dict | None:
  """The uncompressed fp32 row (baseline or a control) of lowest validation perplexity."""
  candidates = [r for r in _fp32(rows, BASELINE) + _fp32(rows, CONTROL)
                if r.get(CHOICE_KEY) is not None]
  return min(candidates, key=lambda r: (r[CHOICE_KEY], r["method"] != BASELINE), default=None)


def _ratio(a, b):
  return None if a is None or not b else a / b - 1.0


def annotate(rows: list[dict], eval_split: str = "test") -> list[dict]:
  """Adds ``compression``, ``speedup``, ``ppl_vs_baseline``, ``ppl_vs_control``,
  ``valid_vs_reference`` and the Pareto marks; sorts by size.

  ``ppl_vs_baseline`` and ``ppl_vs_control`` are on ``eval_split`` (reported):
  against the baseline's fp32 ``.tflite``, and against the fp32 ``.tflite`` of
  the row's own control (``row["control"]``: the base model fine-tuned with
  the row's recipe; ``baseline`` where the recipe does not fine-tune).
  ``valid_vs_reference`` is on validation, against :func:`reference`: the
  figure "within X%" is read from.
  """
  key = ppl_key(eval_split)
  base = next(iter(_fp32(rows, BASELINE)), None)
  fp32_by_variant = {r["variant"]: r for r in _fp32(rows, BASELINE) + _fp32(rows, CONTROL)
                     if "variant" in r}
  ref = reference(rows)
  out = []
  for row in rows:
    row = dict(row)
    if base is not None:
      row["compression"] = base["tflite_bytes"] / row["tflite_bytes"]
      if base.get("latency_ms_p50") and row.get("latency_ms_p50"):
        row["speedup"] = base["latency_ms_p50"] / row["latency_ms_p50"]
      row["ppl_vs_baseline"] = _ratio(row.get(key), base.get(key))
    control = fp32_by_variant.get(row.get("control"))
    row["ppl_vs_control"] = _ratio(row.get(key), control and control.get(key))
    row["valid_vs_reference"] = _ratio(row.get(CHOICE_KEY), ref and ref[CHOICE_KEY])
    out.append(row)
  for mark, flags in (("pareto_size", pareto_flags(out, "tflite_bytes")),
                      ("pareto_latency", pareto_flags(out, "latency_ms_p50"))):
    for row, flag in zip(out, flags):
      row[mark] = flag
  return sorted(out, key=lambda r: (r["tflite_bytes"], r["name"]))


def best_within(rows: list[dict], max_bytes: int | None, max_latency_ms: float | None
                ) -> dict | None:
  """The row of lowest validation perplexity within the budget (None if none fits).

  Rows whose perplexities tie with the lowest (:func:`ties`) go to the smallest
  one, or the fastest for a budget on latency alone.
  """
  fits = [r for r in rows if r.get(CHOICE_KEY) is not None and
          Budget("", "", max_bytes, max_latency_ms).fits(r)]
  if not fits:
    return None
  lowest = min(r[CHOICE_KEY] for r in fits)
  tied = [r for r in fits if ties(r[CHOICE_KEY], lowest)]
  if max_latency_ms is not None and max_bytes is None:
    order = lambda r: (r.get("latency_ms_p50") or float("inf"), r[CHOICE_KEY], r["tflite_bytes"])
  else:
    order = lambda r: (r["tflite_bytes"], r[CHOICE_KEY], r.get("latency_ms_p50") or float("inf"))
  return min(tied, key=order)


def select_best(rows: list[dict], max_bytes: int | None, max_latency_ms: float | None) -> dict:
  """:func:`best_within`, with a clear error when no row fits."""
  if not rows:
    raise UserError("no finished variants to choose from")
  if not any(r.get(CHOICE_KEY) is not None for r in rows):
    raise UserError("no finished variant has a validation perplexity of its .tflite (exported "
                    "before it was measured): rerun without --report_only to measure it")
  best = best_within(rows, max_bytes, max_latency_ms)
  if best is None:
    smallest = min(r["tflite_bytes"] for r in rows)
    fastest = min((r["latency_ms_p50"] for r in rows if r.get("latency_ms_p50")), default=None)
    raise UserError(
        f"no model meets --max_bytes={max_bytes} --max_latency_ms={max_latency_ms}: the smallest "
        f"is {smallest:,} bytes and the fastest {fastest} ms per token")
  return best


@dataclasses.dataclass(frozen=True)
class Budget:
  """A size and/or latency limit; its bundle goes to ``best/<name>/``.

  Attributes:
    name: folder name under ``best/``.
    label: how the summary names it.
    max_bytes, max_latency_ms: the limits (None: no limit).
  """

  name: str
  label: str
  max_bytes: int | None = None
  max_latency_ms: float | None = None

  def fits(self, row: dict) -> bool:
    """Whether a row (or a screened export) with ``tflite_bytes`` and, for a latency
    limit, ``latency_ms_p50`` is within both limits; an untimed one fits no latency
    limit."""
    return ((self.max_bytes is None or row["tflite_bytes"] <= self.max_bytes) and
            (self.max_latency_ms is None or
             (row.get("latency_ms_p50") or float("inf")) <= self.max_latency_ms))


def budgets(rows: list[dict], max_bytes: int | None = None,
            max_latency_ms: float | None = None,
            fractions: tuple[int, ...] = BUDGET_FRACTIONS,
            sizes: tuple[int, ...] = ()) -> list[Budget]:
  """1/4, 1/10 and 1/20 of the baseline's fp32 ``.tflite`` bytes (or ``sizes`` in bytes,
  e.g. ``--budgets``, when given), then the user's ``--max_bytes``/``--max_latency_ms``."""
  out = []
  base = next(iter(_fp32(rows, BASELINE)), None)
  if sizes:
    out += [Budget(f"size_{size}", f"<= {size:,} B", max_bytes=size) for size in sizes]
  elif base is not None:
    for n in fractions:
      limit = base["tflite_bytes"] // n
      out.append(Budget(f"size_1of{n}", f"1/{n} of the baseline ({limit:,} B)", max_bytes=limit))
  if max_bytes is not None or max_latency_ms is not None:
    parts = ([f"max_bytes_{max_bytes}"] if max_bytes is not None else []) + (
        [f"max_latency_{max_latency_ms:g}ms"] if max_latency_ms is not None else [])
    label = ", ".join(([f"<= {max_bytes:,} B"] if max_bytes is not None else []) +
                      ([f"<= {max_latency_ms:g} ms/token"] if max_latency_ms is not None else []))
    out.append(Budget("_".join(parts), f"your budget ({label})", max_bytes, max_latency_ms))
  return out


def summary(rows: list[dict], budget_list: list[Budget]) -> list[dict]:
  """For each budget: the best row by validation perplexity (or None) and its bundle path."""
  out = []
  for budget in budget_list:
    best = best_within(rows, budget.max_bytes, budget.max_latency_ms)
    out.append({"budget": dataclasses.asdict(budget), "name": best and best["name"],
                "bundle": f"best/{budget.name}" if best else None})
  return out


def is_compose_row(row: dict) -> bool:
  """A row of a chain the composition search fine-tuned."""
  return row["variant"].startswith(COMPOSE_PREFIX)


def is_single_method_row(row: dict) -> bool:
  """A row of one method alone (not the baseline, a control or a chain)."""
  return (row["method"] not in (BASELINE, CONTROL) and "+" not in row["method"]
          and not is_compose_row(row))


def composition(rows: list[dict], budget_list: list[Budget]) -> list[dict]:
  """Per budget: the best chain of the composition search and the best single method
  that fit it, each by validation perplexity of the .tflite (names, or None)."""
  chains = [r for r in rows if is_compose_row(r)]
  singles = [r for r in rows if is_single_method_row(r)]
  out = []
  for budget in budget_list:
    chain = best_within(chains, budget.max_bytes, budget.max_latency_ms)
    single = best_within(singles, budget.max_bytes, budget.max_latency_ms)
    out.append({"budget": dataclasses.asdict(budget), "chain": chain and chain["name"],
                "single": single and single["name"]})
  return out


def headline(rows: list[dict], within: float = HEADLINE_WITHIN) -> dict:
  """The smallest and the fastest row within ``within`` of the reference (on validation)."""
  near = [r for r in rows if r.get("valid_vs_reference") is not None and
          r["valid_vs_reference"] <= within]
  smallest = min(near, key=lambda r: (r["tflite_bytes"], r[CHOICE_KEY]), default=None)
  timed = [r for r in near if r.get("latency_ms_p50")]
  fastest = min(timed, key=lambda r: (r["latency_ms_p50"], r[CHOICE_KEY]), default=None)
  return {"within": within, "smallest": smallest and smallest["name"],
          "fastest": fastest and fastest["name"]}


def _fmt(value, spec: str) -> str:
  return "" if value is None else format(value, spec)


def _pct(value) -> str:
  return "" if value is None else f"{100 * value:+.2f}%"


def _by_name(report: dict) -> dict:
  return {r["name"]: r for r in report["rows"]}


def _reference_sentence(report: dict, bold: str = "") -> str:
  split = report["eval_split"]
  ref, base = report.get("reference"), report.get("baseline")
  if ref is None:
    return "Reference: none (no fp32 baseline or control row with a validation perplexity)."
  def ppls(r):
    return (f"valid {r[CHOICE_KEY]:.2f}, {split} "
            f"{_fmt(r.get(ppl_key(split)), '.2f')}")
  text = f"Reference: {bold}{ref['name']}{bold} ({ppls(ref)}; fp32 .tflite)"
  others = [r for r in report.get("uncompressed", []) if r["name"] != ref["name"]]
  if others:
    text += "; " + "; ".join(f"{r['name']} {ppls(r)}" for r in others)
  return text + "."


def summary_lines(report: dict, output_dir: str = "") -> list[str]:
  """The answer of the run, as printed at its end."""
  split = report["eval_split"]
  rows = _by_name(report)
  lines = [_reference_sentence(report)]
  if report.get("corpus_bound"):
    lines.append(f"Corpus bound: {report['corpus_bound']:.2f} (entropy rate of the generated "
                 "source: no model can go below it).")
  lines.append("Best model within each budget, by validation perplexity of the .tflite "
               f"({split} perplexity reported, never used to choose):")
  for entry in report.get("summary", []):
    label = entry["budget"]["label"]
    if entry["name"] is None:
      lines.append(f"  {label}: no model fits")
      continue
    r = rows[entry["name"]]
    where = os.path.join(output_dir, entry["bundle"]) if output_dir else entry["bundle"]
    lines.append(
        f"  {label}: {r['name']}  valid {r[CHOICE_KEY]:.2f}  {split} "
        f"{_fmt(r.get(ppl_key(split)), '.2f')} ({_pct(r.get('valid_vs_reference'))} valid vs "
        f"reference)  {r['tflite_bytes']:,} B  {_fmt(r.get('latency_ms_p50'), '.4g')} ms/token"
        f"  -> {where}/")
  head = report.get("headline") or {}
  if head.get("smallest"):
    lines.append(_headline_sentence(report))
  return lines


_SMALLER = "smaller than the baseline's fp32 file"
_FASTER = "faster than the baseline's fp32"


def _headline_sentence(report: dict) -> str:
  head, rows = report["headline"], _by_name(report)
  small, fast = rows[head["smallest"]], rows[head["fastest"]] if head["fastest"] else None
  text = (f"Within {100 * head['within']:g}% of the reference (validation): smallest "
          f"{small['name']} ({small['tflite_bytes']:,} B"
          f"{_ratio_clause(small.get('compression'), _SMALLER)})")
  if fast is not None:
    text += (f", fastest {fast['name']} ({fast['latency_ms_p50']:.4g} ms/token"
             f"{_ratio_clause(fast.get('speedup'), _FASTER)})")
  return text + "."


def _ratio_clause(ratio: float | None, phrase: str) -> str:
  """``", 3.20x <phrase>"``, or nothing when there is no baseline row to divide by."""
  return "" if ratio is None else f", {ratio:.2f}x {phrase}"


LEGEND = [
    ("model", "variant name, `+MODE` for a post-training-quantized export"),
    ("method", "compression method (`control`: the base model fine-tuned with a variant's "
     "recipe, uncompressed; `baseline`: the base model as trained); `KD: T` when fine-tuned "
     "on the soft targets of teacher T"),
    ("PTQ", "post-training quantization of the export (`none`: fp32)"),
    ("params", "parameters of the Keras model"),
    (".tflite bytes", "size of the exported step model"),
    ("compression", "baseline's fp32 .tflite bytes / this row's"),
    (".tflite valid ppl", "validation perplexity of the .tflite: every choice is made on it"),
    (".tflite {split} ppl", "{split} perplexity of the .tflite: reported, never used to choose"),
    ("vs baseline", "{split} ppl vs the baseline's fp32 .tflite"),
    ("vs control", "{split} ppl vs the fp32 .tflite of this row's control (the base model "
     "fine-tuned with the same recipe: epochs, learning rate, dropout, distillation)"),
    ("ms/token p50", "median host latency of one step, one thread"),
    ("x floor", "latency / the memory-bandwidth floor of its weights"),
    ("max abs logit diff", "largest |Keras - .tflite| logit over the parity check"),
    ("Pareto", "no other row is at least as small (fast) and better on validation ppl; "
     "ppls within {resolution:g}% are ties, won by the smaller (faster) row"),
]


def markdown(report: dict) -> str:
  split = report["eval_split"]
  key = ppl_key(split)
  rows = report["rows"]
  title = report.get("title") or "Compression results"
  lines = [f"# {title}", "", _reference_sentence(report, bold="**"), ""]
  if report.get("corpus_bound"):
    lines += [f"Corpus bound: **{report['corpus_bound']:.2f}**, the entropy-rate perplexity of "
              "the generated source: no model can go below it.", ""]
  if report.get("summary"):
    by_name = _by_name(report)
    lines += ["## Best model within each budget", "",
              f"Chosen on the validation perplexity of the .tflite; {split} perplexity "
              "reported, never used to choose.", "",
              f"| budget | model | .tflite valid ppl | .tflite {split} ppl | valid vs reference | "
              "bytes | ms/token p50 | bundle |", "|" + "---|" * 8]
    for entry in report["summary"]:
      if entry["name"] is None:
        lines.append(f"| {entry['budget']['label']} | no model fits | | | | | | |")
        continue
      r = by_name[entry["name"]]
      lines.append(
          f"| {entry['budget']['label']} | {r['name']} | {r[CHOICE_KEY]:.2f} | "
          f"{_fmt(r.get(key), '.2f')} | {_pct(r.get('valid_vs_reference'))} | "
          f"{r['tflite_bytes']:,} | {_fmt(r.get('latency_ms_p50'), '.4g')} | "
          f"`{entry['bundle']}/` |")
    lines.append("")
  if (report.get("headline") or {}).get("smallest"):
    lines += [_headline_sentence(report), ""]
  if report.get("composition"):
    lines += _composition_markdown(report)
  missing = sum(r.get(CHOICE_KEY) is None for r in rows)
  if missing:
    lines += [f"{missing} rows lack a validation perplexity of their .tflite (exported before "
              "it was measured): they are not marked nor chosen; a rerun measures it.", ""]
  lines += ["## All rows", ""]
  for name, text in LEGEND:
    fill = {"split": split, "resolution": 100 * PPL_RESOLUTION}
    lines.append(f"- **{name.format(**fill)}**: {text.format(**fill)}")
  lines += [
      "",
      f"| model | method | PTQ | params | .tflite bytes | compression | .tflite valid ppl | "
      f".tflite {split} ppl | vs baseline | vs control | ms/token p50 | x floor | "
      "max abs logit diff | Pareto (size / latency) |",
      "|" + "---|" * 14,
  ]
  for r in rows:
    marks = " / ".join(m for m, f in (("size", r.get("pareto_size")),
                                      ("latency", r.get("pareto_latency"))) if f)
    method = r["method"] + (f", KD: {r.get('teacher') or BASELINE}" if r.get("distill") else "")
    lines.append(
        f"| {r['name']} | {method} | {r['quantize']} | {_fmt(r.get('params'), ',')} | "
        f"{r['tflite_bytes']:,} | {_fmt(r.get('compression'), '.2f')}x | "
        f"{_fmt(r.get(CHOICE_KEY), '.2f')} | {_fmt(r.get(key), '.2f')} | "
        f"{_pct(r.get('ppl_vs_baseline'))} | {_pct(r.get('ppl_vs_control'))} | "
        f"{_fmt(r.get('latency_ms_p50'), '.4g')} | {_fmt(r.get('latency_floor_ratio'), '.2f')} | "
        f"{_fmt(r.get('max_abs_logit_diff'), '.1e')} | {'**' + marks + '**' if marks else ''} |")
  if report.get("published"):
    lines += ["", "Published (same data and model size):", "",
              "| source | params | valid ppl | test ppl |", "|---|---|---|---|"]
    for p in report["published"]:
      lines.append(f"| {p['name']} | {_fmt(p.get('params'), ',')} | "
                   f"{_fmt(p.get('valid_ppl'), '.1f')} | {_fmt(p.get('test_ppl'), '.1f')} |")
  return "\n".join(lines) + "\n"


def _composition_cells(r: dict | None, split: str) -> str:
  if r is None:
    return "none fits | | | | | | |"
  return (f"{r['name']} ({r['method']}) | {r[CHOICE_KEY]:.2f} | "
          f"{_fmt(r.get(ppl_key(split)), '.2f')} | {_pct(r.get('valid_vs_reference'))} | "
          f"{r['tflite_bytes']:,} | {_fmt(r.get('latency_ms_p50'), '.4g')} | "
          f"{_fmt(r.get('latency_floor_ratio'), '.2f')} |")


def _composition_markdown(report: dict) -> list[str]:
  split, by_name = report["eval_split"], _by_name(report)
  head = (f"model | .tflite valid ppl | .tflite {split} ppl | valid vs reference | bytes | "
          "ms/token p50 | x floor |")
  lines = ["## Composition search: the best chain and the best single method per budget", "",
           "Chains screened without fine-tuning (exact .tflite bytes, perplexity on a slice of "
           "the validation split), the best per budget fine-tuned with the full recipe and "
           f"distilled (`{COMPOSE_PREFIX}*` rows); both columns chosen on validation.", "",
           f"| budget | best chain: {head} best single method: {head}",
           "|" + "---|" * 15]
  for entry in report["composition"]:
    chain = by_name.get(entry["chain"]) if entry["chain"] else None
    single = by_name.get(entry["single"]) if entry["single"] else None
    lines.append(f"| {entry['budget']['label']} | {_composition_cells(chain, split)} "
                 f"{_composition_cells(single, split)}")
  return lines + [""]


def composition_lines(report: dict) -> list[str]:
  """The composition search's answer, as printed at the end of the run."""
  split, by_name = report["eval_split"], _by_name(report)
  lines = ["Composition search (best chain vs best single method, by validation ppl):"]
  for entry in report.get("composition", []):
    parts = []
    for kind in ("chain", "single"):
      r = by_name.get(entry[kind]) if entry[kind] else None
      parts.append(f"{kind} none fits" if r is None else
                   f"{kind} {r['name']} valid {r[CHOICE_KEY]:.2f} {split} "
                   f"{_fmt(r.get(ppl_key(split)), '.2f')} {r['tflite_bytes']:,} B")
    lines.append(f"  {entry['budget']['label']}: " + "; ".join(parts))
  return lines if len(lines) > 1 else []


def _ppl_axis_top(rows: list[dict], key: str) -> float:
  """The perplexity axis ends at 3x the baseline's (diverged runs would squash the rest)."""
  worst = max(r[key] for r in rows)
  base = [r[key] for r in rows if r.get("method") == BASELINE]
  return min(worst, 3 * min(base)) if base else worst


def pareto_front(points) -> list[tuple[float, float]]:
  """The lower-left frontier of ``(x, y)`` points (lower is better on both).

  Sorted by x (then y), a point is kept when its y is below that of every point
  of smaller x: the best y reachable within each x. Of points with equal x only
  the lowest is kept; of points with equal y, the one of smallest x.

  Args:
    points: ``(x, y)`` pairs, any order.

  Returns:
    The frontier's points by increasing x (and so decreasing y).
  """
  front = []
  for x, y in sorted(points):
    if not front or y < front[-1][1]:
      front.append((x, y))
  return front


_MARK_OF = {"tflite_bytes": "pareto_size", "latency_ms_p50": "pareto_latency"}


def _front(rows: list[dict], x_key: str, key: str, top: float) -> list[tuple[float, float]]:
  """The step line of a panel: through the rows marked Pareto on validation (the
  report's marks), drawn at their ``key`` perplexity, so the line shows what was
  chosen, not a front re-chosen on the plotted split. Rows without marks (a plot
  of rows that were never annotated) get the front of the plotted perplexity.
  """
  mark = _MARK_OF.get(x_key)
  if mark and any(mark in r for r in rows):
    return sorted((r[x_key], min(r[key], top)) for r in rows if r.get(mark))
  return pareto_front([(r[x_key], min(r[key], top)) for r in rows])


def _short_label(budget_label: str) -> str:
  """A budget's label without its parenthesis, for the plot: "1/4 of the baseline"."""
  return budget_label.split(" (", 1)[0]


def _plot_winners(rows: list[dict], summary_entries: list[dict]) -> list[tuple[str, dict]]:
  """``(short budget label, row)`` for each budget of :func:`summary` that a row fits."""
  by_name = {r["name"]: r for r in rows}
  return [(_short_label(e["budget"]["label"]), by_name[e["name"]]) for e in summary_entries
          if e["name"] in by_name]


def _merged_winners(winners) -> list[tuple[str, dict]]:
  """One ``("label, label: name", row)`` per row that wins one or more budgets."""
  labels, by_name = {}, {}
  for label, row in winners or ():
    labels.setdefault(row["name"], []).append(label)
    by_name[row["name"]] = row
  return [(f"{', '.join(labels[name])}: {name}", by_name[name]) for name in labels]


_PANELS = (("tflite_bytes", ".tflite bytes", "perplexity vs size"),
           ("latency_ms_p50", "ms per token (p50, host)", "perplexity vs latency"))
_MARKERS = "os^vD<>pP*hX"


def _draw(rows: list[dict], eval_split: str, reference_ppl: float | None = None,
          corpus_bound: float | None = None, baseline_ppl: float | None = None,
          winners: list[tuple[str, dict]] | None = None):
  """The figure of :func:`plot` (not saved), or None when no row has a perplexity.

  Args:
    rows: the report's rows.
    eval_split: the split whose ``.tflite`` perplexity is drawn.
    reference_ppl: the reference's perplexity on ``eval_split`` (a line, the band
      within :data:`HEADLINE_WITHIN` of it shaded, its point ringed).
    corpus_bound: the corpus bound's perplexity (a line).
    baseline_ppl: the baseline's fp32 perplexity on ``eval_split`` (a line, its
      point ringed).
    winners: ``(budget label, row)`` per budget; each winning row is annotated
      with its budgets and name.

  Returns:
    A ``matplotlib.figure.Figure`` with two axes (size, latency).
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  key = ppl_key(eval_split)
  rows = [r for r in rows if r.get(key) is not None]
  if not rows:
    return None
  families = sorted({r["method"] for r in rows})
  top = _ppl_axis_top(rows, key)
  uncompressed = _fp32(rows, BASELINE) + _fp32(rows, CONTROL)
  marks = []  # (perplexity, label, color, the rows ringed) of the baseline and the reference.
  if baseline_ppl is not None:
    same = baseline_ppl == reference_ppl
    marks.append((baseline_ppl, f"baseline{' = reference' if same else ' fp32'} "
                  f"({baseline_ppl:.1f})", "black" if same else "tab:gray",
                  [r for r in _fp32(rows, BASELINE) if r[key] == baseline_ppl]))
  if reference_ppl is not None and reference_ppl != baseline_ppl:
    marks.append((reference_ppl, f"reference ({reference_ppl:.1f})", "black",
                  [r for r in uncompressed if r[key] == reference_ppl]))
  winners = _merged_winners(winners)

  fig = Figure(figsize=(10, 4.6), layout="constrained")
  axes = fig.subplots(1, 2, sharey=True)
  for ax, (x_key, x_label, title) in zip(axes, _PANELS):
    shown = [r for r in rows if r.get(x_key)]
    for i, family in enumerate(families):
      pts = [(r[x_key], min(r[key], top)) for r in shown if r["method"] == family]
      if pts:
        ax.scatter(*zip(*pts), marker=_MARKERS[i % len(_MARKERS)], label=family, s=40,
                   zorder=3)
    front = _front(shown, x_key, key, top)
    if front:
      ax.step(*zip(*front), where="post", color="0.25", lw=1.4, zorder=2,
              label="Pareto front")
    for ppl, label, color, marked in marks:
      ax.axhline(ppl, color=color, lw=0.9, ls=":", label=label)
      pts = [(r[x_key], min(r[key], top)) for r in marked if r.get(x_key)]
      if pts:
        ax.scatter(*zip(*pts), s=180, facecolors="none", edgecolors=color, linewidths=1.5,
                   zorder=4)
    if reference_ppl is not None:
      ax.axhspan(reference_ppl, (1 + HEADLINE_WITHIN) * reference_ppl, color="tab:green",
                 alpha=0.12, lw=0, label=f"within {HEADLINE_WITHIN:.0%} of the reference")
    if corpus_bound is not None:
      ax.axhline(corpus_bound, color="tab:red", lw=0.8, ls="-.",
                 label=f"corpus bound ({corpus_bound:.1f})")
    for i, (_, row) in enumerate(winners):
      if row.get(x_key) and row.get(key) is not None:
        # A short tag by the point (long names ran off the panel); the key is on top.
        ax.annotate(str(i + 1), (row[x_key], min(row[key], top)), xytext=(7, 10),
                    textcoords="offset points", fontsize=8, fontweight="bold", zorder=5,
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "0.4",
                          "alpha": 0.9},
                    arrowprops={"arrowstyle": "-", "color": "0.4", "lw": 0.7})
    ax.set_xscale("log")
    ax.set_xlabel(x_label)
    off = sum(r[key] > top for r in shown)
    if off:
      ax.axhline(top, color="gray", lw=0.8, ls="--", label=f"above {top:.0f} (clipped)")
      title += f"\n{off} rows above {top:.0f} drawn on the dashed line"
    if not shown:
      ax.text(0.5, 0.5, "not measured", transform=ax.transAxes, ha="center", color="gray")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
  axes[0].set_ylabel(f"{eval_split} perplexity (.tflite)")
  legend = {}
  for ax in axes:
    for handle, label in zip(*ax.get_legend_handles_labels()):
      legend.setdefault(label, handle)
  fig.legend(list(legend.values()), list(legend), loc="upper center",
             bbox_to_anchor=(0.5, 0), ncol=min(4, len(legend)), fontsize=9, frameon=False)
  if winners:
    fig.suptitle("Best per budget (validation): " + "   ".join(
        f"{i + 1}: {text}" for i, (text, _) in enumerate(winners)), fontsize=8, wrap=True)
  return fig


def plot(rows: list[dict], path: str, eval_split: str, reference_ppl: float | None = None,
         corpus_bound: float | None = None, baseline_ppl: float | None = None,
         winners: list[tuple[str, dict]] | None = None) -> None:
  """Writes perplexity vs size and vs latency (log x) as a PNG; nothing when no row has a
  perplexity.

  Each panel has one marker per method family, the rows' Pareto front as a step
  line, the baseline's and the reference's perplexities as lines (their points
  ringed), the band within :data:`HEADLINE_WITHIN` of the reference shaded, the
  corpus bound and the winner of each budget annotated. See :func:`_draw` for the
  arguments.
  """
  fig = _draw(rows, eval_split, reference_ppl, corpus_bound, baseline_ppl, winners)
  if fig is None:
    return
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
  io_utils.atomic_write_bytes(path, buffer.getvalue())


def build(rows: list[dict], eval_split: str, published: list[dict],
          budget_list: list[Budget] | None = None, corpus_bound: float | None = None,
          title: str = "") -> dict:
  """The report's content: annotated rows, the reference, the answer per budget."""
  rows = annotate(rows, eval_split)
  budget_list = budget_list if budget_list is not None else budgets(rows)
  ref = reference(rows)
  uncompressed = sorted(_fp32(rows, BASELINE) + _fp32(rows, CONTROL),
                        key=lambda r: (r["method"] != BASELINE, r["name"]))
  return {"title": title, "eval_split": eval_split, "choice_split": CHOICE_SPLIT,
          "ppl_resolution": PPL_RESOLUTION, "corpus_bound": corpus_bound,
          "reference": ref, "baseline": next(iter(_fp32(rows, BASELINE)), None),
          "uncompressed": uncompressed,
          "summary": summary(rows, budget_list),
          "composition": (composition(rows, budget_list)
                          if any(is_compose_row(r) for r in rows) else []),
          "headline": headline(rows), "rows": rows, "published": published}


def write(rows: list[dict], output_dir: str, eval_split: str, published: list[dict],
          budget_list: list[Budget] | None = None, corpus_bound: float | None = None,
          title: str = "") -> dict:
  """Writes results.json, results.md and pareto.png; returns the report (see :func:`build`)."""
  report = build(rows, eval_split, published, budget_list, corpus_bound, title)
  io_utils.atomic_write_json(os.path.join(output_dir, "results.json"), report)
  io_utils.atomic_write_text(os.path.join(output_dir, "results.md"), markdown(report))
  if report["rows"]:
    ref = report["reference"]
    base = report["baseline"]
    plot(report["rows"], os.path.join(output_dir, "pareto.png"), eval_split,
         ref and ref.get(ppl_key(eval_split)), corpus_bound,
         baseline_ppl=base and base.get(ppl_key(eval_split)),
         winners=_plot_winners(report["rows"], report["summary"]))
  return report
