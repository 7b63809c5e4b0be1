"""The run's report: results.json, results.md (Pareto rows marked), pareto.png, budget choice."""

import io
import os

from tflm_compress import io_utils
from tflm_compress.errors import UserError

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


def pareto_flags(rows: list[dict], x_key: str, y_key: str) -> list[bool]:
  """True for rows no other row beats on both keys (lower is better), ties kept."""
  flags = []
  for row in rows:
    x, y = row.get(x_key), row.get(y_key)
    if x is None or y is None:
      flags.append(False)
      continue
    dominated = any(
        o.get(x_key) is not None and o.get(y_key) is not None and
        o[x_key] <= x and o[y_key] <= y and (o[x_key] < x or o[y_key] < y)
        for o in rows)
    flags.append(not dominated)
  return flags


def annotate(rows: list[dict], eval_split: str = "test") -> list[dict]:
  """Adds ``compression``, ``speedup`` and the Pareto marks; sorts by size."""
  ppl_key = f"tflite_{eval_split}_ppl"
  base = next((r for r in rows if r["method"] == "baseline" and r["quantize"] == "none"), None)
  out = []
  for row in rows:
    row = dict(row)
    if base is not None:
      row["compression"] = base["tflite_bytes"] / row["tflite_bytes"]
      if base.get("latency_ms_p50") and row.get("latency_ms_p50"):
        row["speedup"] = base["latency_ms_p50"] / row["latency_ms_p50"]
      row["ppl_vs_baseline"] = row[ppl_key] / base[ppl_key] - 1.0
    out.append(row)
  for key, flags in (("pareto_size", pareto_flags(out, "tflite_bytes", ppl_key)),
                     ("pareto_latency", pareto_flags(out, "latency_ms_p50", ppl_key))):
    for row, flag in zip(out, flags):
      row[key] = flag
  return sorted(out, key=lambda r: r["tflite_bytes"])


def select_best(rows: list[dict], max_bytes: int | None, max_latency_ms: float | None,
                eval_split: str = "test") -> dict:
  """The lowest-perplexity row within the budget; a clear error if none fits."""
  ppl_key = f"tflite_{eval_split}_ppl"
  if not rows:
    raise UserError("no finished variants to choose from")
  fits = [r for r in rows
          if (max_bytes is None or r["tflite_bytes"] <= max_bytes) and
          (max_latency_ms is None or (r.get("latency_ms_p50") or float("inf")) <= max_latency_ms)]
  if not fits:
    smallest = min(r["tflite_bytes"] for r in rows)
    fastest = min((r["latency_ms_p50"] for r in rows if r.get("latency_ms_p50")), default=None)
    raise UserError(
        f"no model meets --max_bytes={max_bytes} --max_latency_ms={max_latency_ms}: the smallest "
        f"is {smallest:,} bytes and the fastest {fastest} ms per token")
  return min(fits, key=lambda r: r[ppl_key])


def _fmt(value, spec: str) -> str:
  return "" if value is None else format(value, spec)


def markdown(rows: list[dict], eval_split: str, published: list[dict]) -> str:
  ppl_key = f"tflite_{eval_split}_ppl"
  lines = [
      f"| model | method | PTQ | params | .tflite bytes | compression | Keras valid ppl | "
      f"Keras {eval_split} ppl | .tflite {eval_split} ppl | vs baseline | ms/token p50 | "
      "x floor | max abs logit diff | Pareto (size / latency) |",
      "|" + "---|" * 14,
  ]
  for r in rows:
    marks = " / ".join(m for m, f in (("size", r.get("pareto_size")),
                                      ("latency", r.get("pareto_latency"))) if f)
    lines.append(
        f"| {r['name']} | {r['method']} | {r['quantize']} | {_fmt(r['params'], ',')} | "
        f"{r['tflite_bytes']:,} | {_fmt(r.get('compression'), '.2f')}x | "
        f"{_fmt(r['valid_ppl'], '.2f')} | {_fmt(r['test_ppl'], '.2f')} | {r[ppl_key]:.2f} | "
        f"{_fmt(100 * r['ppl_vs_baseline'] if 'ppl_vs_baseline' in r else None, '+.2f')}% | "
        f"{_fmt(r['latency_ms_p50'], '.4g')} | {_fmt(r['latency_floor_ratio'], '.2f')} | "
        f"{r['max_abs_logit_diff']:.1e} | {'**' + marks + '**' if marks else ''} |")
  if published:
    lines += ["", "Published (same data and model size):", "",
              "| source | params | valid ppl | test ppl |", "|---|---|---|---|"]
    for p in published:
      lines.append(f"| {p['name']} | {_fmt(p.get('params'), ',')} | "
                   f"{_fmt(p.get('valid_ppl'), '.1f')} | {_fmt(p.get('test_ppl'), '.1f')} |")
  return "\n".join(lines) + "\n"


def _ppl_axis_top(rows: list[dict], ppl_key: str) -> float:
  """The perplexity axis ends at 3x the baseline's (diverged runs would squash the rest)."""
  worst = max(r[ppl_key] for r in rows)
  base = [r[ppl_key] for r in rows if r.get("method") == "baseline"]
  return min(worst, 3 * min(base)) if base else worst


def plot(rows: list[dict], path: str, eval_split: str) -> None:
  """Perplexity vs size and vs latency (log x), one marker per method family."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  ppl_key = f"tflite_{eval_split}_ppl"
  markers = "os^vD<>pP*hX"
  families = sorted({r["method"] for r in rows})
  top = _ppl_axis_top(rows, ppl_key)
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
  for ax, x_key, label in ((axes[0], "tflite_bytes", ".tflite bytes"),
                           (axes[1], "latency_ms_p50", "ms per token (p50, host)")):
    for i, family in enumerate(families):
      pts = [(r[x_key], min(r[ppl_key], top)) for r in rows
             if r["method"] == family and r.get(x_key)]
      if pts:
        ax.scatter(*zip(*pts), marker=markers[i % len(markers)], label=family, s=40)
    ax.set_xscale("log")
    ax.set_xlabel(label)
    ax.set_ylabel(f"{eval_split} perplexity (.tflite)")
    off = sum(r[ppl_key] > top for r in rows if r.get(x_key))
    if off:
      ax.axhline(top, color="gray", lw=0.8, ls="--")
      ax.set_title(f"{off} rows above {top:.0f} drawn on the dashed line", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
  axes[0].legend(fontsize=8)
  fig.tight_layout()
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=110)
  plt.close(fig)
  io_utils.atomic_write_bytes(path, buffer.getvalue())


def write(rows: list[dict], output_dir: str, eval_split: str, published: list[dict]) -> dict:
  rows = annotate(rows, eval_split)
  report = {"eval_split": eval_split, "rows": rows, "published": published}
  io_utils.atomic_write_json(os.path.join(output_dir, "results.json"), report)
  io_utils.atomic_write_text(os.path.join(output_dir, "results.md"),
                             markdown(rows, eval_split, published))
  if rows:
    plot(rows, os.path.join(output_dir, "pareto.png"), eval_split)
  return report
