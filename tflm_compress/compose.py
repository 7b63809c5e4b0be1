"""The composition search (``run_pipeline.py --search=compose``): chains of methods under budgets.

Grachev et al. (2019) apply to a recurrent LM whichever methods suit each part
of it. A chain here is one choice for the LSTMs (ISS, low-rank, or none) and
one for the embedding and softmax (low-rank, GroupReduce, slim embeddings,
tensor-train on the softmax, or none), each with its size knobs on a grid,
then a PTQ mode. The search spends in two steps:

1. **Screen** (cheap, one resumable stage per chain): the base model is
   compressed by the chain without fine-tuning, stripped, exported in each
   fixed PTQ mode (``SCREEN_MODES`` of the pipeline's ``--quantize``), and each
   ``.tflite`` gives its exact bytes and its perplexity on the first
   ``slice_tokens`` of the **validation** split.
   Each export is also timed for a moment (``SCREEN_BENCHMARK``, one thread), so
   a latency budget (``--max_latency_ms``) screens as a size budget does.
2. **Spend**: for each budget, the ``finalists`` chains with the lowest
   screened perplexity among exports that fit become pipeline variants
   (``compose.<chain>``), fine-tuned with the full recipe and distilled (from
   the reference model: the recipe's control when it beats the base model),
   exported in every mode, verified and benchmarked like every variant.

The winner per budget is then chosen on validation perplexity of the
``.tflite`` among all rows (``report.best_within``); the report puts the best
single-method row of the same budget beside it. Test is reported, never used.
"""

import dataclasses
import os
import shutil
from typing import Callable

from tflm_compress import compression, io_utils, names, report, stages
from tflm_compress.benchmark.host import BenchmarkSettings, benchmark_step_model
from tflm_compress.data.corpus import Corpus
from tflm_compress.errors import UserError
from tflm_compress.export.bundle import export_step_model
from tflm_compress.export.runtime import TFLiteStepModel
from tflm_compress.methods.base import CompressionContext
from tflm_compress.models.loading import load_model
from tflm_compress.pipeline import Pipeline, PipelineConfig, Variant

PREFIX = report.COMPOSE_PREFIX
GRIDS = ("small", "full")
# The modes a chain is screened in: those with a fixed recipe (auto/mixed choose bits per
# model; they are measured on the finalists only).
SCREEN_MODES = ("none", "dynamic", "float16", "int8", "int4")
# A screened export's timing: a moment of one-thread runs, enough to rank chains against a
# latency budget (the finalists get the pipeline's full benchmark).
SCREEN_BENCHMARK = BenchmarkSettings(num_runs=30, min_secs=0.1, warmup_min_secs=0.05)
_SIZE_UNITS = {"": 1, "k": 1000, "m": 1000 ** 2, "g": 1000 ** 3}
# (method spec, PTQ mode) -> export_step_model keyword arguments (Pipeline.export_settings).
ExportSettings = Callable[[str, str], dict]


def parse_sizes(text: str) -> list[int]:
  """``"250k,500k,1M,2M,5M"`` -> byte counts (k = 1000, M = 10^6), ascending."""
  sizes = []
  for item in (t.strip() for t in text.split(",")):
    if not item:
      continue
    number, unit = (item[:-1], item[-1].lower()) if item[-1].isalpha() else (item, "")
    try:
      value = float(number) * _SIZE_UNITS[unit]
    except (ValueError, KeyError):
      raise UserError(f"--budgets: {item!r} is not a size; write e.g. 250k, 1M or 1500000"
                      ) from None
    if value < 1:
      raise UserError(f"--budgets: {item!r} must be at least one byte")
    sizes.append(int(value))
  if not sizes:
    raise UserError(f"--budgets={text!r} lists no size; write e.g. --budgets=250k,1M")
  return sorted(set(sizes))


def model_dims(model) -> tuple[int, list[int]]:
  """The embedding size and the LSTM widths of a package model."""
  embedding = model.get_layer(names.EMBEDDING)
  width = getattr(embedding, "output_dim", None) or int(embedding.get_weights()[0].shape[-1])
  hidden = [int(layer.units) for layer in model.layers if names.layer_kind(layer) == "lstm"]
  return int(width), hidden


def _lstm_parts(hidden: int, grid: str) -> list[tuple[str, str, dict]]:
  """(short name, method, params) for the LSTMs."""
  parts = [("", "", {}),
           ("iss50", "iss", {"iss_keep": 0.5}),
           (f"lrL{hidden // 4}", "low_rank", {"lstm_rank": max(hidden // 4, 1)})]
  if grid == "full":
    parts += [("iss25", "iss", {"iss_keep": 0.25}),
              (f"lrL{hidden // 8}", "low_rank", {"lstm_rank": max(hidden // 8, 1)})]
  return parts


def _output_parts(width: int, grid: str) -> list[tuple[str, str, dict]]:
  """(short name, method, params) for the embedding and the softmax."""
  blocks = 4 if width < 100 else 8
  group_reduce = {"gr_num_blocks": blocks, "gr_rank_power": 0.5, "gr_refine_rounds": 2}
  parts = [("", "", {}),
           (f"lrE{width // 4}", "low_rank", {"embedding_rank": max(width // 4, 1),
                                             "softmax_rank": max(width // 4, 1)}),
           ("gr25", "group_reduce", {**group_reduce, "gr_budget": 0.25})]
  if grid == "full":
    parts += [(f"lrE{width // 8}", "low_rank", {"embedding_rank": max(width // 8, 1),
                                                "softmax_rank": max(width // 8, 1)}),
              ("gr10", "group_reduce", {**group_reduce, "gr_budget": 0.1}),
              ("slim", "slim_embedding", {"slim_k": 4, "slim_m": 250 if width < 100 else 2000}),
              (f"ttS{width // 4}", "tt", {"tt_softmax_rank": max(width // 4, 2)})]
  return parts


def chain_grid(width: int, hidden: list[int], grid: str = "small") -> tuple[Variant, ...]:
  """Every chain of one LSTM part and one embedding/softmax part (not both empty).

  The LSTM method runs first; two low-rank parts merge into one low-rank
  method with both groups' ranks. Variants are distilled (see the module doc).
  """
  if grid not in GRIDS:
    raise UserError(f"--compose_grid={grid!r}; use one of {GRIDS}")
  chains = []
  for lstm_name, lstm_method, lstm_params in _lstm_parts(min(hidden), grid):
    for out_name, out_method, out_params in _output_parts(width, grid):
      if not lstm_method and not out_method:
        continue
      spec = [m for m in dict.fromkeys((lstm_method, out_method)) if m]
      name = PREFIX + "+".join(n for n in (lstm_name, out_name) if n)
      chains.append(Variant(name, "+".join(spec), {**lstm_params, **out_params}, distill=True))
  return tuple(chains)


def screen_chain(base_model_path: str, variant: Variant, corpus: Corpus, modes: list[str],
                 slice_tokens: int, folder: str, calibration_steps: int = 200,
                 export_settings: ExportSettings | None = None) -> dict:
  """One chain, not fine-tuned: ``{mode: {"tflite_bytes", "slice_ppl", "latency_ms_p50"}}``
  (see the module doc).

  ``export_settings(method, mode)``: the export's keyword arguments (block size,
  scale algorithm), as the pipeline gives its variants, so screened bytes are
  the finalists' bytes.
  """
  plan = compression.check_params(variant.method, variant.params)
  model = compression.strip_methods(
      compression.apply_methods(load_model(base_model_path), plan,
                                CompressionContext(vocab=corpus.vocab, seed=0)), plan)
  ids = corpus.split("valid")[:slice_tokens]
  out = {}
  for mode in modes:
    path = os.path.join(folder, mode, "model.tflite")
    settings = export_settings(variant.method, mode) if export_settings else {}
    summary = export_step_model(model, corpus.vocab, path, mode,
                                calibration_ids=corpus.split("train"),
                                calibration_steps=calibration_steps, method=variant.method,
                                log=lambda line: None, **settings)
    out[mode] = {"tflite_bytes": summary["tflite_bytes"],
                 "slice_ppl": TFLiteStepModel(path).perplexity(ids, progress=False)["ppl"],
                 "latency_ms_p50": benchmark_step_model(path, SCREEN_BENCHMARK).latency_ms.p50}
    shutil.rmtree(os.path.dirname(path))  # The finalists are exported again, and verified.
  return out


def screen(base_model_path: str, base_hash: str, chains: tuple[Variant, ...], corpus: Corpus,
           quantize: tuple[str, ...], slice_tokens: int, output_dir: str,
           log: Callable[[str], None] = print,
           export_settings: ExportSettings | None = None) -> dict[str, dict]:
  """:func:`screen_chain` for every chain, each a resumable stage (progress line + ETA)."""
  modes = [m for m in quantize if m in SCREEN_MODES]
  if not modes:
    raise UserError(f"--search=compose screens in {SCREEN_MODES}; --quantize="
                    f"{','.join(quantize)} lists none of them")
  runner = stages.StageRunner(total=len(chains), log=log)
  results = {}
  for chain in chains:
    config = {"stage": "compose_screen", "baseline": base_hash, "method": chain.method,
              "params": chain.params, "modes": modes, "slice_tokens": slice_tokens,
              "benchmark": SCREEN_BENCHMARK.to_dict()}
    settings = {m: export_settings(chain.method, m) for m in modes} if export_settings else {}
    if any(settings.values()):  # Absent when empty: earlier screens keep their hash.
      config["export_settings"] = settings
    results[chain.name] = runner.run(
        os.path.join(output_dir, "compose", "screen", chain.name), f"compose: screen {chain.name}",
        config, lambda folder, chain=chain: screen_chain(
            base_model_path, chain, corpus, modes, slice_tokens, folder,
            export_settings=export_settings))
  return results


def finalists(chains: tuple[Variant, ...], screened: dict[str, dict],
              budgets: list[report.Budget], per_budget: int = 2) -> tuple[Variant, ...]:
  """The chains worth fine-tuning: per budget (bytes and/or ms per token), the
  ``per_budget`` of lowest screened validation-slice perplexity among their exports
  that fit (ties: the smaller export)."""
  chosen = []
  for budget in budgets:
    fits = []
    for chain in chains:
      exports = [e for e in screened.get(chain.name, {}).values() if budget.fits(e)]
      if exports:
        best = min(exports, key=lambda e: (e["slice_ppl"], e["tflite_bytes"]))
        fits.append((best["slice_ppl"], best["tflite_bytes"], chain.name, chain))
    for *_, chain in sorted(fits)[:per_budget]:
      if chain not in chosen:
        chosen.append(chain)
  return tuple(chosen)


def check_dropouts(dropouts: tuple[float, ...]) -> None:
  """One clear error for a ``--compose_dropouts`` rate outside [0, 1)."""
  for rate in dropouts:
    compression.check_dropout(rate, flag="--compose_dropouts")


def with_recipes(chains: tuple[Variant, ...], dropouts: tuple[float, ...] = ()
                 ) -> tuple[Variant, ...]:
  """Each chain once per fine-tuning dropout of ``dropouts`` (``<chain>.do<rate>``; its
  control is the control of that dropout), so the recipe is chosen per chain, on
  validation, like its sizes; no dropouts: the chains as given (the pipeline's recipe).

  Dropout helps some chains and hurts others: on PTB ``small`` at 3 epochs 0.3 took
  the dense control from 124.6 to 98.9 test, and low-rank r=32 from 113.2 to 119.1.
  """
  check_dropouts(dropouts)
  if not dropouts:
    return chains
  return tuple(dataclasses.replace(c, name=f"{c.name}.do{rate:g}", finetune_dropout=rate)
               for c in chains for rate in dict.fromkeys(dropouts))


def screen_table(chains: tuple[Variant, ...], screened: dict[str, dict]) -> list[dict]:
  """One row per screened export, for ``compose/screen.json``."""
  return [{"chain": c.name, "method": c.method, "params": c.params, "quantize": mode, **e}
          for c in chains for mode, e in screened.get(c.name, {}).items()]


def _new_variants(config: PipelineConfig, chosen: tuple[Variant, ...]) -> tuple[Variant, ...]:
  """The finalists not already configured (``--variants`` may list a finalist, e.g. one
  written out after an earlier search); one of the same name but other settings is an
  error, not a silent choice between the two."""
  configured = {v.name: v for v in config.variants}
  for variant in chosen:
    if configured.get(variant.name, variant) != variant:
      raise UserError(f"variant {variant.name!r} of --variants is not the composition "
                      f"search's chain of that name ({variant.method}, {variant.params}); "
                      "rename it")
  return tuple(v for v in chosen if v.name not in configured)


def search(config: PipelineConfig, runner: Pipeline,
           make_pipeline: Callable[[PipelineConfig, list[str] | None], Pipeline],
           budgets: list[report.Budget], training: bool, grid: str = "small",
           slice_tokens: int = 5000, per_budget: int = 2, dropouts: tuple[float, ...] = (),
           log: Callable[[str], None] = print) -> PipelineConfig:
  """``--search=compose``: screens the chains of ``grid`` on ``runner``'s base model,
  fine-tunes the finalists of ``budgets`` as variants (when ``training``; else their
  finished stages are only merged) and returns ``config`` with them added.

  ``make_pipeline(config, only)`` builds the pipeline that runs the finalists
  (the caller's corpus, output dir and strategy); ``dropouts``: each finalist is
  fine-tuned once per rate (:func:`with_recipes`). Writes
  ``<output_dir>/compose/screen.json``, one row per screened export, and
  ``compose/finalists.json``, the finalists as a ``--variants`` file (what rebuilds
  them, or lists them in a results page).
  """
  base_path = runner.baseline_model_path()
  width, hidden = model_dims(load_model(base_path))
  chains = chain_grid(width, hidden, grid)
  if training:
    chains = tuple(runner.check_variants(list(chains), skip_invalid=True))
  screened = screen(base_path, runner.baseline_hash(), chains, runner.corpus, config.quantize,
                    slice_tokens, runner.output_dir, log=log,
                    export_settings=runner.export_settings)
  io_utils.atomic_write_json(os.path.join(runner.output_dir, "compose", "screen.json"),
                             screen_table(chains, screened))
  chosen = with_recipes(finalists(chains, screened, budgets, per_budget), dropouts)
  log(f"compose: {len(chains)} chains screened; fine-tuning {len(chosen)} finalists: "
      f"{', '.join(v.name for v in chosen) or '(none fits a budget)'}")
  config = dataclasses.replace(config, variants=config.variants + _new_variants(config, chosen))
  io_utils.atomic_write_json(os.path.join(runner.output_dir, "compose", "finalists.json"),
                             [v.to_dict() for v in chosen])
  if training and chosen:
    make_pipeline(config, [v.name for v in chosen]).run()
  return config


__all__ = ["GRIDS", "PREFIX", "SCREEN_BENCHMARK", "SCREEN_MODES", "chain_grid",
           "check_dropouts", "finalists", "model_dims", "parse_sizes", "screen",
           "screen_chain", "screen_table", "search", "with_recipes"]
