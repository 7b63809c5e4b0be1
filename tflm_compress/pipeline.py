"""The pipeline: baseline -> compress + fine-tune -> export per PTQ mode -> verify -> benchmark -> report.

Data flows one way through stage folders under the output dir::

  baseline/                        the trained baseline (a run dir)
  variants/<variant>/model/        the compressed, fine-tuned model (a run dir)
  variants/<control>/model/        a control: the base model fine-tuned, uncompressed
  variants/<variant>/<mode>/       bundle (model.tflite, model_meta.json, vocab.txt),
                                   parity and perplexity (valid and test) on the .tflite
  variants/<variant>/<mode>/bench/ host benchmark and floor ratio
  results.json, results.md, pareto.png, best/<budget>/ (the bundle chosen per budget)

**Controls.** Fine-tuning alone improves a base model (PTB ``small``, trained
without dropout, gains 10% from three more epochs), so a compressed model is
compared with the base model fine-tuned by exactly the same recipe
(:class:`Recipe`: epochs, learning rate, dropout, distillation), uncompressed:
one control per distinct recipe of the variants, named after how its recipe
differs from the pipeline's (``control``, ``control.e6``, ``control_kd.do0.3``)
and exported and measured like any variant (rows ``method: "control"``). A
distilled recipe's teacher is its undistilled control when that beats the base
model on validation (the row's ``teacher`` says which), for the variants and
their control alike.

Every stage is resumable and skipped when up to date (see
:mod:`tflm_compress.stages`). ``only`` runs some variants (one per machine,
say) against a shared output dir; ``report_only`` merges what has finished.
"""

import dataclasses
import json
import os
import shutil
from typing import Callable

import tensorflow as tf

from tflm_compress import compression, io_utils, methods, report, stages
from tflm_compress.data.corpus import Corpus
from tflm_compress.errors import UserError
from tflm_compress.export.bundle import export_step_model
from tflm_compress.export import sub8bit
from tflm_compress.export.modes import EXPORT_MODES, SUB8BIT_MODES
from tflm_compress.export.meta import META_FILE
from tflm_compress.export.parity import check_parity
from tflm_compress.export.runtime import TFLiteStepModel
from tflm_compress.models.config import Preset
from tflm_compress.methods.base import CompressionContext
from tflm_compress.models.loading import load_model
from tflm_compress.models.lstm_lm import build_language_model, count_params
from tflm_compress.training import (MODEL_FILE, VOCAB_FILE, Distillation, evaluate_perplexity,
                                    run_training, train_language_model)

BASELINE = report.BASELINE
CONTROL = report.CONTROL


@dataclasses.dataclass(frozen=True)
class Variant:
  """One model to build: a method spec and its parameters (``baseline``: none).

  Attributes:
    name: unique name (folder name; letters, digits, ``_-+.``).
    method: method spec, e.g. ``low_rank`` or ``tt+group_reduce``; ``""`` for
      the baseline itself.
    params: method parameters by flag name.
    finetune_epochs: overrides the pipeline's fine-tuning epochs.
    finetune_learning_rate: overrides the pipeline's fine-tuning learning rate
      (e.g. QAT and clustering, which start from the trained weights and do
      best with a gentler one).
    distill: fine-tune on the baseline's soft targets too (knowledge
      distillation, with the pipeline's ``distillation`` settings).
    finetune_dropout: dropout rate on non-recurrent connections during
      fine-tuning (None: the model's own; see ``compression.set_dropout``).
    from_scratch: train the compressed architecture from a random init with
      the baseline's recipe (the preset's, ``--epochs`` included) instead of
      compressing the base model and fine-tuning it
      (:func:`compression.train_from_scratch`); its control is the baseline,
      trained by the same recipe, so it takes no ``finetune_*`` or ``distill``.
  """

  name: str
  method: str = ""
  params: dict = dataclasses.field(default_factory=dict)
  finetune_epochs: int | None = None
  finetune_learning_rate: float | None = None
  distill: bool = False
  finetune_dropout: float | None = None
  from_scratch: bool = False

  def __post_init__(self):
    if self.from_scratch:
      if not self.method:
        raise UserError(f"variant {self.name!r}: from_scratch needs a method")
      fine_tuning = [name for name in ("finetune_epochs", "finetune_learning_rate",
                                       "finetune_dropout", "distill")
                     if getattr(self, name) not in (None, False)]
      if fine_tuning:
        raise UserError(f"variant {self.name!r}: from_scratch trains with the baseline's "
                        f"recipe; drop {', '.join(fine_tuning)}")
    if self.finetune_dropout is not None:
      try:
        compression.check_dropout(self.finetune_dropout)
      except UserError as e:
        raise UserError(f"variant {self.name!r}: {e}") from None
    if not self.name or not all(c.isalnum() or c in "_-+." for c in self.name):
      raise UserError(f"variant name {self.name!r} must be letters, digits and _-+.")
    if self.method:
      try:
        compression.check_params(self.method, self.params)
      except UserError as e:
        raise UserError(f"variant {self.name!r}: {e}") from None
    elif self.params:
      raise UserError(f"variant {self.name!r} has params but no method")

  def to_dict(self) -> dict:
    # Options left at their defaults are omitted, so a variant keeps its
    # identity (stage hash) when an option is added to this class.
    d = dataclasses.asdict(self)
    for name in ("finetune_learning_rate", "distill", "finetune_dropout", "from_scratch"):
      if d[name] == getattr(Variant, name):
        del d[name]
    return d


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """Everything that decides the pipeline's results (hashed per stage).

  Attributes:
    preset: the named model/training preset of the baseline.
    baseline_model: an existing model.keras to use instead of training one.
    variants: the variants besides the baseline.
    quantize: PTQ modes every variant is exported in (``EXPORT_MODES``: the
      converter's and ai-edge-quantizer's int4/mixed/auto).
    bits: ``mixed``'s bits per weight group (``sub8bit.parse_bits``).
    max_ppl_increase: ``auto``'s allowed validation perplexity increase over
      the float32 ``.tflite`` of the same variant.
    block_size: the int4/mixed/auto exports' scales: 0, one per output channel;
      else one per block of that many inputs where it divides the width
      (``sub8bit.plan_granularity``).
    algorithm: how the int4/mixed/auto exports choose the 4-bit values
      (``sub8bit.ALGORITHMS``; empty: ``sub8bit.DEFAULT_ALGORITHM``); a chain holding
      a method trained for one (``int4_qat``: ``min_max``) keeps that one.
    finetune_epochs, finetune_learning_rate: the fine-tuning recipe (the
      learning rate defaults to the base one / 4).
    finetune_dropout: dropout while fine-tuning variants that set none (None:
      the model's own).
    eval_split: the split perplexities are reported on (``valid`` is always
      measured too, with Keras).
    parity_steps: steps of the Keras vs ``.tflite`` parity check.
    benchmark_threads, benchmark_runs: host benchmark settings.
    benchmark_secs: seconds of timed runs per export (at least ``benchmark_runs``
      of them), after a fifth of that warming up. Shorter than
      ``benchmark_model``'s 1 s: a step of these models takes microseconds to a
      millisecond, so even a quarter second is thousands of runs.
    distillation: the soft-target recipe of variants with ``distill=True``.
  """

  preset: Preset
  preset_name: str
  variants: tuple[Variant, ...]
  baseline_model: str = ""
  quantize: tuple[str, ...] = ("none", "dynamic")
  finetune_epochs: int = 2
  finetune_learning_rate: float | None = None
  finetune_dropout: float | None = None
  eval_split: str = "test"
  parity_steps: int = 50
  benchmark_threads: int = 1
  benchmark_runs: int = 200
  benchmark_secs: float = 0.25
  distillation: Distillation = Distillation()
  bits: str = ""
  max_ppl_increase: str = "1%"
  block_size: int = 0
  algorithm: str = ""

  def __post_init__(self):
    bad = [q for q in self.quantize if q not in EXPORT_MODES]
    if bad or not self.quantize:
      raise UserError(f"--quantize={','.join(self.quantize)}; use some of {EXPORT_MODES}")
    if self.bits and "mixed" not in self.quantize:
      raise UserError(f"--bits={self.bits} is for --quantize=mixed, which --quantize="
                      f"{','.join(self.quantize)} does not list")
    if "mixed" in self.quantize:
      if not self.bits:
        raise UserError(f"--quantize=mixed needs --bits, e.g. --bits={sub8bit.BITS_EXAMPLE}")
      sub8bit.parse_bits(self.bits)
    if "auto" in self.quantize:
      sub8bit.parse_ppl_increase(self.max_ppl_increase)
    if self.block_size not in sub8bit.BLOCK_SIZES:
      raise UserError(f"--block_size={self.block_size}; use one of {sub8bit.BLOCK_SIZES} "
                      "(0 = per channel)")
    if self.algorithm and self.algorithm not in sub8bit.ALGORITHMS:
      raise UserError(f"--algorithm={self.algorithm!r}; use one of {tuple(sub8bit.ALGORITHMS)}")
    if self.algorithm and not set(self.quantize) & set(SUB8BIT_MODES):
      raise UserError(f"--algorithm={self.algorithm} is for the sub-8-bit modes "
                      f"{SUB8BIT_MODES}, which --quantize={','.join(self.quantize)} does not list")
    if self.block_size and not set(self.quantize) & set(SUB8BIT_MODES):
      raise UserError(f"--block_size={self.block_size} is for the sub-8-bit modes "
                      f"{SUB8BIT_MODES}, which --quantize={','.join(self.quantize)} does not list")
    names = [BASELINE] + [v.name for v in self.variants]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
      raise UserError(f"variant names must be unique (and not {BASELINE!r}): {dupes}")
    reserved = sorted(n for n in names if is_control_name(n))
    if reserved:
      raise UserError(f"variant names {reserved}: names starting with {CONTROL!r} are the "
                      "pipeline's controls; rename the variant")


@dataclasses.dataclass(frozen=True)
class Recipe:
  """How a model is fine-tuned: everything a variant and its control share.

  Attributes:
    epochs: fine-tuning epochs (0: none; the control of such a recipe is the
      baseline itself).
    learning_rate: the initial fine-tuning learning rate (decayed as
      :func:`compression.finetune_config` does).
    dropout: dropout on non-recurrent connections (None: the model's own).
    distill: fine-tuned on a teacher's soft targets too.
  """

  epochs: int
  learning_rate: float
  dropout: float | None = None
  distill: bool = False


def is_control_name(name: str) -> bool:
  return name == CONTROL or name.startswith((f"{CONTROL}_", f"{CONTROL}."))


def recipe_of(config: PipelineConfig, variant: Variant) -> Recipe:
  """The fine-tuning recipe of ``variant``: its own settings, else the pipeline's."""
  def setting(name):
    value = getattr(variant, f"finetune_{name}")
    return value if value is not None else getattr(config, f"finetune_{name}")

  lr = setting("learning_rate")
  return Recipe(epochs=setting("epochs"),
                learning_rate=lr if lr is not None else config.preset.train.learning_rate / 4,
                dropout=setting("dropout"), distill=variant.distill)


def control_name(config: PipelineConfig, recipe: Recipe) -> str:
  """``control``, ``_kd`` if distilled, then each setting that differs from the pipeline's:
  ``.e<epochs>``, ``.lr<learning rate>``, ``.do<dropout>`` (e.g. ``control_kd.e6.do0.3``)."""
  default = recipe_of(config, Variant(BASELINE))
  name = CONTROL + ("_kd" if recipe.distill else "")
  if recipe.epochs != default.epochs:
    name += f".e{recipe.epochs}"
  if recipe.learning_rate != default.learning_rate:
    name += f".lr{recipe.learning_rate:g}"
  if recipe.dropout != default.dropout:
    name += f".do{'own' if recipe.dropout is None else format(recipe.dropout, 'g')}"
  return name


def control_variants(config: PipelineConfig) -> tuple[Variant, ...]:
  """One control per distinct recipe that fine-tunes, undistilled ones first.

  Every distilled recipe also gets its undistilled control (the candidate
  teacher), whether or not a variant fine-tunes that way.
  """
  recipes = []
  for variant in config.variants:
    recipe = recipe_of(config, variant)
    if not variant.method or recipe.epochs == 0 or variant.from_scratch:
      continue  # Not fine-tuned: the baseline is its control.
    for r in ((dataclasses.replace(recipe, distill=False), recipe) if recipe.distill
              else (recipe,)):
      if r not in recipes:
        recipes.append(r)
  recipes.sort(key=lambda r: r.distill)  # Stable: teachers before their students.
  return tuple(Variant(control_name(config, r), finetune_epochs=r.epochs,
                       finetune_learning_rate=r.learning_rate, finetune_dropout=r.dropout,
                       distill=r.distill) for r in recipes)


def finetune_uncompressed(base_model_path: str, corpus: Corpus, train_config, output_dir: str,
                          strategy: tf.distribute.Strategy | None = None, progress: bool = True,
                          log: Callable[[str], None] = print,
                          distillation: Distillation | None = None,
                          finetune_dropout: float | None = None,
                          teacher_model_path: str | None = None) -> dict:
  """Fine-tunes ``base_model_path`` as it is: a control.

  The training loop and arguments of :func:`compression.compress_and_finetune`
  without a method: the same recipe, dropout handling and teacher, so a
  control differs from its variants by the compression alone.
  """
  if teacher_model_path and not distillation:
    raise UserError("a teacher needs distillation")
  teacher_path = teacher_model_path or base_model_path
  if finetune_dropout is not None:
    compression.check_dropout(finetune_dropout)
  dropout_rates = {}

  def model_fn():
    model = load_model(base_model_path)
    if finetune_dropout is not None:
      dropout_rates.update(compression.set_dropout(model, finetune_dropout))
    return model

  def finalize(model):
    compression.restore_dropout(dropout_rates)
    return model

  run_config = {"base_model": base_model_path, "method": CONTROL,
                "distillation": dataclasses.asdict(distillation) if distillation else None}
  if finetune_dropout is not None:
    run_config["finetune_dropout"] = finetune_dropout
  if teacher_model_path:
    run_config["teacher_model"] = teacher_model_path
  return run_training(model_fn, corpus, train_config, output_dir, run_config, strategy=strategy,
                      progress=progress, log=log, finalize_fn=finalize,
                      teacher_fn=(lambda: load_model(teacher_path)) if distillation else None,
                      distillation=distillation)


def sub8bit_algorithm(spec: str, default: str = "") -> str:
  """How a variant's int4 / mixed / auto exports choose scales: the algorithm a
  method of its chain trained for (``int4_qat``: ``min_max``), else ``default`` (the
  run's ``--algorithm``), else ``sub8bit.DEFAULT_ALGORITHM``."""
  wanted = sorted({m.EXPORT_ALGORITHM for m in (methods.parse_spec(spec) if spec else [])
                   if getattr(m, "EXPORT_ALGORITHM", None)})
  return wanted[0] if wanted else (default or sub8bit.DEFAULT_ALGORITHM)


def default_variants(preset_name: str) -> tuple[Variant, ...]:
  """One setting of every method family that is built, sized for the preset."""
  hidden = {"tiny": 32, "small": 200, "medium": 650, "large": 1500}.get(preset_name, 200)
  small = hidden < 100
  candidates = [  # (method, params); the variant is named after its method.
      ("low_rank", {"rank": max(hidden // 4, 2)}),
      ("tt", {"tt_rank": max(hidden // 4, 2)}),
      ("group_reduce", {"gr_num_blocks": 4 if small else 8, "gr_budget": 0.25 if small else 0.15,
                        "gr_refine_rounds": 2}),
      ("slim_embedding", {"slim_k": 4, "slim_m": 250 if small else 2000}),
      ("iss", {"iss_keep": 0.5}),
      ("prune", {"sparsity": 0.8}),
      ("qat", {}),
      ("cluster", {"num_clusters": 16}),
  ]
  return tuple(Variant(method, method, params) for method, params in candidates
               if method in methods.REGISTRY)


DISTILL_MODES = ("none", "both", "only")


def with_distillation(variants: tuple[Variant, ...], mode: str) -> tuple[Variant, ...]:
  """``none``: as given; ``only``: every variant distilled; ``both``: each
  variant with and without distillation (the distilled one named ``NAME_kd``).
  A ``from_scratch`` variant has no teacher to distil from and stays as given."""
  if mode not in DISTILL_MODES:
    raise UserError(f"--distill={mode!r}; use one of {DISTILL_MODES}")
  if mode == "none":
    return variants
  distilled = tuple(dataclasses.replace(v, name=f"{v.name}_kd" if mode == "both" else v.name,
                                        distill=True) for v in variants if not v.from_scratch)
  if mode == "both":
    return variants + distilled
  return tuple(v for v in variants if v.from_scratch) + distilled


def _int_steps(value):
  """Sizes one step (about sqrt 2) down and up: ranks, pool sizes, clusters."""
  value = int(value)
  return sorted({max(1, round(value / 2 ** 0.5)), round(value * 2 ** 0.5)} - {value})


def _sparsity_steps(value):
  return sorted({round(min(max(value + d, 0.0), 0.99), 4) for d in (-0.05, 0.05)} - {value})


def _fraction_steps(value):
  """Fractions of a matrix or a layer kept (budget, units): x / sqrt 2 and x * sqrt 2, <= 1."""
  return sorted({round(value / 2 ** 0.5, 4), round(min(value * 2 ** 0.5, 1.0), 4)} - {value})


# The size parameters --search steps around, and how.
SEARCH_STEPS = {
    **{name: _int_steps for name in ("rank", "embedding_rank", "lstm_rank", "softmax_rank",
                                     "tt_rank", "tt_embedding_rank", "tt_lstm_rank",
                                     "tt_softmax_rank", "slim_m", "num_clusters")},
    **{name: _sparsity_steps for name in ("sparsity", "embedding_sparsity", "lstm_sparsity",
                                          "softmax_sparsity")},
    **{name: _fraction_steps for name in ("gr_budget", "iss_keep")},
}


def search_variants(rows: list[dict], variants: tuple[Variant, ...], max_bytes: int | None,
                    max_latency_ms: float | None) -> tuple[Variant, ...]:
  """The ``--search`` grid: neighbours of the best configured variant within the budget.

  The best row among the configured variants, the baseline and the controls
  is found as :func:`report.select_best` does (on validation perplexity; when
  an uncompressed model wins there is no grid); each of its variant's size parameters
  (:data:`SEARCH_STEPS`) is moved one step down and one step up, one at a time,
  giving variants named ``NAME.PARAMVALUE`` (e.g. ``low_rank_32.rank45``).
  Only configured variants seed the grid, so the grid is the same on every
  rerun (a resumed or ``report_only`` run finds the same names).
  """
  configured = {v.name: v for v in variants}
  candidates = [r for r in rows if r["variant"] in configured or r["variant"] == BASELINE or
                is_control_name(r["variant"])]
  best = report.select_best(candidates, max_bytes, max_latency_ms)
  variant = configured.get(best["variant"])
  if variant is None:
    return ()
  existing = {(v.method, json.dumps(v.params, sort_keys=True)) for v in variants}
  grid = []
  for key, value in sorted(variant.params.items()):
    if key not in SEARCH_STEPS or value is None:
      continue
    for new in SEARCH_STEPS[key](value):
      params = {**variant.params, key: new}
      if (variant.method, json.dumps(params, sort_keys=True)) in existing:
        continue
      grid.append(dataclasses.replace(variant, name=f"{variant.name}.{key}{new:g}",
                                      params=params))
  return tuple(grid)


def load_variants(path: str) -> tuple[Variant, ...]:
  """Variants from a JSON file: a list of ``{name, method, params, finetune_epochs,
  finetune_learning_rate, distill, finetune_dropout, from_scratch}``."""
  data = io_utils.read_json(path)
  if not isinstance(data, list):
    raise UserError(f"--variants={path!r} must hold a JSON list of variants")
  try:
    return tuple(Variant(**v) for v in data)
  except TypeError as e:
    raise UserError(f"--variants={path!r}: {e}") from None


class Pipeline:
  """Runs (or resumes) the pipeline of ``config`` on ``corpus`` into ``output_dir``.

  Args:
    strategy: the ``tf.distribute`` strategy for training and fine-tuning.
    only: variant (or control) names to run (None: all). The baseline runs
      too (unless every name is a ``from_scratch`` variant), and so do the
      controls of the selected variants' recipes (with their teachers).
    log: where progress lines go.
  """

  def __init__(self, config: PipelineConfig, corpus: Corpus, output_dir: str,
               strategy: tf.distribute.Strategy | None = None, only: list[str] | None = None,
               progress: bool = False, log: Callable[[str], None] = print):
    self.config = config
    self.corpus = corpus
    self.output_dir = output_dir
    self.strategy = strategy
    self.progress = progress
    self.log = log
    self.controls = control_variants(config)
    known = {v.name for v in self._all_variants()}
    unknown = sorted(set(only or []) - known)
    if unknown:
      raise UserError(f"--only names unknown variants {unknown}; known: {sorted(known)}")
    wanted = set(known if only is None else only) or {BASELINE}
    for variant in self._all_variants():
      if variant.name in wanted:
        wanted |= set(self._needed_controls(variant))
        # Every variant but a from-scratch one starts from the base model; and every
        # ratio and "vs" figure of the report is against the baseline's rows (its exports
        # are cheap). A fan-out process running from-scratch variants alone skips it.
        if not variant.from_scratch:
          wanted.add(BASELINE)
    self.selected = [v for v in self._all_variants() if v.name in wanted]

  def _all_variants(self) -> list[Variant]:
    return [Variant(BASELINE)] + list(self.controls) + list(self.config.variants)

  def _variant_dir(self, name: str) -> str:
    return os.path.join(self.output_dir, "variants", name)

  def _is_control(self, variant: Variant) -> bool:
    return is_control_name(variant.name)  # PipelineConfig keeps these names for controls.

  def recipe(self, variant: Variant) -> Recipe:
    return recipe_of(self.config, variant)

  def control_of(self, variant: Variant) -> str:
    """The name of ``variant``'s control (``baseline`` if its recipe does not fine-tune)."""
    if not variant.method and not self._is_control(variant):
      return BASELINE  # The baseline (or a variant without a method: the base model as is).
    if variant.from_scratch:
      return BASELINE  # Trained from a random init by the baseline's own recipe.
    recipe = self.recipe(variant)
    return BASELINE if recipe.epochs == 0 else control_name(self.config, recipe)

  def _teacher_candidate(self, variant: Variant) -> str | None:
    """The undistilled control whose soft targets a distilled recipe may use."""
    recipe = self.recipe(variant)
    if not recipe.distill or self.control_of(variant) == BASELINE:
      return None
    return control_name(self.config, dataclasses.replace(recipe, distill=False))

  def _needed_controls(self, variant: Variant) -> list[str]:
    names = [self.control_of(variant), self._teacher_candidate(variant)]
    return [n for n in names if n and n != BASELINE and n != variant.name]

  # ----- stages -----
  def _baseline_config(self) -> dict:
    preset = self.config.preset
    return {"stage": "baseline", "model": preset.model.to_dict(), "train": preset.train.to_dict(),
            "baseline_model": self.config.baseline_model, "corpus": self.corpus.describe()}

  def _run_baseline(self, runner: stages.StageRunner) -> dict:
    folder = os.path.join(self.output_dir, "baseline")

    def fn(folder):
      if self.config.baseline_model:
        model = load_model(self.config.baseline_model)
        return {"model": self.config.baseline_model, "params": count_params(model),
                **{f"{split}_ppl": evaluate_perplexity(model, self.corpus.split(split))["ppl"]
                   for split in ("valid", "test")}}
      metrics = train_language_model(self.corpus, self.config.preset.model,
                                     self.config.preset.train, folder, strategy=self.strategy,
                                     progress=self.progress, log=self.log,
                                     extra_config={"preset": self.config.preset_name})
      return {"model": os.path.join(folder, MODEL_FILE), "params": metrics["params"],
              "valid_ppl": metrics["valid_ppl"], "test_ppl": metrics["test_ppl"]}

    return runner.run(folder, "baseline: train", self._baseline_config(), fn)

  def baseline_model_path(self) -> str:
    """The base model every variant starts from (the user's, or the trained baseline's)."""
    return self.config.baseline_model or os.path.join(self.output_dir, "baseline", MODEL_FILE)

  def baseline_hash(self) -> str:
    """The baseline stage's config hash (downstream stages key on it)."""
    return stages.config_hash(self._baseline_config())

  def teacher(self, variant: Variant, baseline: dict, model_results: dict) -> dict | None:
    """The teacher of a distilled ``variant`` when it is not the base model.

    Its undistilled control, when that control's validation perplexity (Keras)
    is lower than the base model's. Returns ``{"name", "model", "hash"}`` (the
    control's model stage hash, for the student's stage config) or None.
    """
    name = self._teacher_candidate(variant)
    if name is None:
      return None
    result = model_results.get(name)
    if result is None:
      raise UserError(f"{variant.name}: its teacher candidate {name} has not finished")
    if result["valid_ppl"] >= baseline["valid_ppl"]:
      return None
    return {"name": name, "model": result["model"], "hash": result["stage_hash"]}

  def _variant_model_config(self, variant: Variant, baseline_hash: str,
                            teacher: dict | None = None) -> dict:
    if variant.from_scratch:
      preset = self.config.preset
      return {"stage": "from_scratch", "variant": variant.to_dict(),
              "model": preset.model.to_dict(), "train": preset.train.to_dict(),
              "corpus": self.corpus.describe()}
    if self._is_control(variant):
      recipe = self.recipe(variant)
      config = {"stage": "control", "baseline": baseline_hash,
                "finetune_epochs": recipe.epochs, "finetune_learning_rate": recipe.learning_rate}
    else:
      config = {"stage": "compress", "variant": variant.to_dict(), "baseline": baseline_hash,
                "finetune_epochs": self._finetune(variant, "epochs"),
                "finetune_learning_rate": self._finetune(variant, "learning_rate")}
    if variant.distill:
      config["distillation"] = dataclasses.asdict(self.config.distillation)
      if teacher is not None:  # Absent for the base model: earlier runs keep their hash.
        config["teacher"] = teacher["hash"]
    dropout = self._finetune(variant, "dropout")
    if dropout is not None:  # Absent otherwise: stable stage hashes.
      config["finetune_dropout"] = dropout
    return config

  def _finetune(self, variant: Variant, setting: str):
    """``finetune_{setting}`` of ``variant``, or the pipeline's where the variant sets none."""
    value = getattr(variant, f"finetune_{setting}")
    return value if value is not None else getattr(self.config, f"finetune_{setting}")

  def finetune_args(self, variant: Variant, teacher: dict | None) -> dict:
    """The fine-tuning arguments of ``variant``, the same for its control."""
    recipe = self.recipe(variant)
    return {"train_config": compression.finetune_config(self.config.preset.train, recipe.epochs,
                                                        recipe.learning_rate),
            "distillation": self.config.distillation if recipe.distill else None,
            "finetune_dropout": recipe.dropout,
            "teacher_model_path": teacher["model"] if recipe.distill and teacher else None}

  def _run_variant_model(self, runner, variant: Variant, baseline: dict, config: dict,
                         teacher: dict | None = None) -> dict:
    if not variant.method and not self._is_control(variant):
      return baseline
    folder = os.path.join(self._variant_dir(variant.name), "model")

    def fn(folder):
      if variant.from_scratch:  # The baseline's recipe: no fine-tuning arguments.
        metrics = compression.train_from_scratch(
            self.corpus, self.config.preset.model, self.config.preset.train, folder,
            variant.method, variant.params, strategy=self.strategy, progress=self.progress,
            log=self.log, extra_config={"preset": self.config.preset_name})
      else:
        common = {"output_dir": folder, "strategy": self.strategy, "progress": self.progress,
                  "log": self.log, **self.finetune_args(variant, teacher)}
        metrics = (finetune_uncompressed(baseline["model"], self.corpus, **common)
                   if self._is_control(variant) else
                   compression.compress_and_finetune(baseline["model"], variant.method,
                                                     variant.params, self.corpus, **common))
      return {"model": os.path.join(folder, MODEL_FILE), "params": metrics["params"],
              "valid_ppl": metrics["valid_ppl"], "test_ppl": metrics["test_ppl"],
              "method_report": metrics.get("method_report", {}),
              "teacher": teacher["name"] if variant.distill and teacher else BASELINE,
              "stage_hash": stages.config_hash(config)}

    what = ("train from scratch" if variant.from_scratch else
            "fine-tune uncompressed" if self._is_control(variant) else "compress + fine-tune")
    return runner.run(folder, f"{variant.name}: {what}", config, fn)

  def _export_splits(self) -> list[str]:
    return sorted({report.CHOICE_SPLIT, self.config.eval_split})

  def export_settings(self, method: str, mode: str) -> dict:
    """The keyword arguments of ``export_step_model`` this run gives a chain of ``method``
    in ``mode`` (empty for the converter's modes; the composition search screens with them)."""
    settings = {}
    if mode == "mixed":
      settings = {"bits": self.config.bits}
    elif mode == "auto":
      settings = {"max_ppl_increase": self.config.max_ppl_increase}
    if mode in SUB8BIT_MODES:  # Exports made with another default are redone.
      settings["algorithm"] = sub8bit_algorithm(method, self.config.algorithm)
      if self.config.block_size:  # Absent at 0: earlier per-channel stages keep their hash.
        # Blocks where they fit: per channel for a row whose widths the block divides none of.
        settings.update(block_size=self.config.block_size, require_blocks=False)
    return settings

  def _run_export(self, runner, variant: Variant, mode: str, model_result: dict,
                  upstream: dict) -> dict:
    folder = os.path.join(self._variant_dir(variant.name), mode)
    config = {"stage": "export", "quantize": mode, "upstream": stages.config_hash(upstream),
              "parity_steps": self.config.parity_steps, "splits": self._export_splits()}
    settings = self.export_settings(variant.method, mode)
    config.update(settings)  # Only sub-8-bit stages carry them: other stage hashes stay.

    def fn(folder):
      model = load_model(model_result["model"])
      path = os.path.join(folder, "model.tflite")
      summary = export_step_model(model, self.corpus.vocab, path, mode,
                                  calibration_ids=self.corpus.split("train"),
                                  method=variant.method or
                                  (CONTROL if self._is_control(variant) else BASELINE),
                                  validation_ids=(self.corpus.split("valid")
                                                  if mode == "auto" else None),
                                  log=lambda line: self.log(f"{variant.name}+{mode}: {line}"),
                                  **settings)
      tflite_model = TFLiteStepModel(path)
      parity = check_parity(model, tflite_model,
                            self.corpus.split("valid")[: self.config.parity_steps])
      ppl = {split: tflite_model.perplexity(self.corpus.split(split))["ppl"]
             for split in self._export_splits()}
      result = {"tflite": path, "tflite_bytes": summary["tflite_bytes"],
                "weight_bytes_by_group": summary["weight_bytes_by_group"],
                "ops": summary["ops"], "parity": parity,
                "tflite_ppl": ppl[self.config.eval_split], "tflite_ppl_by_split": ppl}
      if mode in SUB8BIT_MODES:
        report8 = summary["sub8bit"]
        result["bits"] = report8["bits"]
        result["quantization"] = report8["quantization"]
        if "auto" in report8:
          result["sensitivity"] = report8["auto"].get("sensitivity")
      return result

    return runner.run(folder, f"{variant.name}+{mode}: export + verify", config, fn)

  def _run_benchmark(self, runner, variant: Variant, mode: str, export_result: dict,
                     upstream: dict) -> dict:
    folder = os.path.join(self._variant_dir(variant.name), mode, "bench")
    config = {"stage": "benchmark", "upstream": stages.config_hash(upstream),
              "threads": self.config.benchmark_threads, "runs": self.config.benchmark_runs,
              "secs": self.config.benchmark_secs}

    def fn(folder):
      return self._benchmark(export_result["tflite"], folder)

    return runner.run(folder, f"{variant.name}+{mode}: benchmark", config, fn)

  def _benchmark(self, tflite_path: str, folder: str) -> dict:
    """Host benchmark + floor of one ``.tflite``; writes ``folder/benchmark.json``."""
    from tflm_compress.benchmark import host, report as bench_report  # pylint: disable=g-import-not-at-top

    settings = host.BenchmarkSettings(num_threads=self.config.benchmark_threads,
                                      num_runs=self.config.benchmark_runs,
                                      min_secs=self.config.benchmark_secs,
                                      warmup_min_secs=self.config.benchmark_secs / 5)
    result = bench_report.host_report(tflite_path, settings, floor=True, litert_benchmark=False)
    io_utils.atomic_write_json(os.path.join(folder, "benchmark.json"), result)
    latency = result["results"]["host-litert"]["latency_ms"]
    floor = result.get("floor") or {}
    return {"latency_ms_p50": latency["p50"], "latency_ms_p95": latency["p95"],
            "latency_floor_ratio": floor.get("ratio")}

  def rebenchmark(self, rounds: int = 3) -> int:
    """Re-times every finished export side by side in this process, in ``rounds``
    interleaved rounds (A, B, ..., A, B, ...), so machine noise hits all alike.

    Latencies measured at different times on a shared machine do not compare;
    this re-measures all of them (e.g. on a quiet machine, after the fan-out),
    replacing each benchmark stage's result with the median round's p50 and p95
    (the floor ratio follows it) and the rounds' p50s. Returns the count.
    """
    if rounds < 1:
      raise UserError(f"--rebenchmark_rounds={rounds}; must be >= 1")
    exports = []
    for variant in self._all_variants():
      for mode in self.config.quantize:
        export_result = stages.read_done(os.path.join(self._variant_dir(variant.name), mode))
        if export_result is not None:
          folder = os.path.join(self._variant_dir(variant.name), mode, "bench")
          io_utils.makedirs(folder)
          exports.append((f"{variant.name}+{mode}", export_result["tflite"], folder))
    timed = {name: [] for name, _, _ in exports}
    for round_index in range(rounds):
      for name, tflite, folder in exports:
        round_folder = os.path.join(folder, "rounds", str(round_index))
        io_utils.makedirs(round_folder)
        timed[name].append(self._benchmark(tflite, round_folder))
    for name, _, folder in exports:
      results = timed[name]
      p50s = [r["latency_ms_p50"] for r in results]
      median = sorted(range(rounds), key=lambda i: p50s[i])[(rounds - 1) // 2]
      result = {**results[median], "latency_round_p50s": p50s}
      # The median round's full report becomes the export's benchmark.json.
      os.replace(os.path.join(folder, "rounds", str(median), "benchmark.json"),
                 os.path.join(folder, "benchmark.json"))
      shutil.rmtree(os.path.join(folder, "rounds"))
      stages.replace_result(folder, result)
      self.log(f"{name}: re-benchmarked, p50 {result['latency_ms_p50']} ms "
               f"(rounds: {', '.join(f'{p:.4g}' for p in p50s)})")
    return len(exports)

  # ----- driver -----
  def run(self) -> list[dict]:
    """Runs the selected variants (baseline and controls first); returns their report rows."""
    with_baseline = any(v.name == BASELINE for v in self.selected)
    stage_count = int(with_baseline) + sum((1 if v.method or self._is_control(v) else 0) +
                          2 * len(self.config.quantize)
                          for v in self.selected)
    runner = stages.StageRunner(total=stage_count, log=self.log)
    self.check_variants()
    baseline = self._run_baseline(runner) if with_baseline else None  # From-scratch only.
    baseline_hash = self.baseline_hash()
    model_results = {}
    rows = []
    for variant in self.selected:  # Baseline, undistilled controls, distilled ones, variants.
      teacher = self.teacher(variant, baseline, model_results)
      model_config = self._variant_model_config(variant, baseline_hash, teacher)
      model_result = self._run_variant_model(runner, variant, baseline, model_config, teacher)
      model_results[variant.name] = model_result
      for mode in self.config.quantize:
        upstream = {"model": model_config, "mode": mode}
        export_result = self._run_export(runner, variant, mode, model_result, upstream)
        bench = self._run_benchmark(runner, variant, mode, export_result,
                                    {**upstream, "export": export_result["tflite_bytes"]})
        rows.append(self._row(variant, mode, model_result, export_result, bench))
    return rows

  def check_variants(self, variants: list[Variant] | None = None, skip_invalid: bool = False
                     ) -> list[Variant]:
    """Applies each variant's methods to a model of the baseline's shape.

    Ranks larger than a matrix, TT shapes that do not fit, K not dividing the
    embedding size... fail here, in seconds, before the baseline trains and
    before any variant fine-tunes for hours.

    Args:
      variants: the variants to check (default: the selected ones).
      skip_invalid: log and drop a variant that does not fit instead of
        raising (for the ``--search`` grid, whose steps may overshoot a dim).

    Returns:
      The variants that fit.
    """
    context = CompressionContext(vocab=self.corpus.vocab, seed=0)
    valid = []
    for variant in self.selected if variants is None else variants:
      if variant.method:
        if self.config.baseline_model and not variant.from_scratch:
          model = load_model(self.config.baseline_model)
        else:  # The preset's architecture (a from-scratch variant's, whatever --model is).
          model = build_language_model(self.config.preset.model.with_vocab_size(
              len(self.corpus.vocab)))
        try:
          compression.apply_methods(
              model, compression.check_params(variant.method, variant.params), context)
        except UserError as e:
          if not skip_invalid:
            raise UserError(f"variant {variant.name!r}: {e}") from None
          self.log(f"search: skipping {variant.name}: {e}")
          continue
      valid.append(variant)
    return valid

  def _row(self, variant, mode, model_result, export_result, bench) -> dict:
    family = variant.method or (CONTROL if self._is_control(variant) else BASELINE)
    row = {
        "name": variant.name if mode == "none" else f"{variant.name}+{mode}",
        "variant": variant.name, "method": family, "quantize": mode, "distill": variant.distill,
        "control": self.control_of(variant),
        "params": model_result.get("params"),
        "tflite_bytes": export_result["tflite_bytes"],
        "valid_ppl": model_result.get("valid_ppl"), "test_ppl": model_result.get("test_ppl"),
        f"tflite_{self.config.eval_split}_ppl": export_result["tflite_ppl"],
        **{f"tflite_{split}_ppl": ppl
           for split, ppl in export_result.get("tflite_ppl_by_split", {}).items()},
        "latency_ms_p50": bench["latency_ms_p50"],
        "latency_floor_ratio": bench["latency_floor_ratio"],
        "max_abs_logit_diff": export_result["parity"]["max_abs_logit_diff"],
        "argmax_agreement": export_result["parity"]["argmax_agreement"],
        "tflite": export_result["tflite"],
    }
    if variant.distill:
      row["teacher"] = model_result.get("teacher", BASELINE)
    if variant.from_scratch:
      row["from_scratch"] = True
    for key in ("bits", "quantization", "sensitivity"):  # int4 / mixed / auto exports.
      if key in export_result:
        row[key] = export_result[key]
    if "latency_round_p50s" in bench:  # Re-timed in interleaved rounds (rebenchmark).
      row["latency_round_p50s"] = bench["latency_round_p50s"]
    return row

  def collect_rows(self) -> list[dict]:
    """Rows of every variant whose stages have all finished (for ``report_only``)."""
    rows = []
    for variant in self._all_variants():
      if variant.method or self._is_control(variant):
        model_result = stages.read_done(os.path.join(self._variant_dir(variant.name), "model"))
      else:
        model_result = stages.read_done(os.path.join(self.output_dir, "baseline"))
      if model_result is None:
        continue
      for mode in self.config.quantize:
        folder = os.path.join(self._variant_dir(variant.name), mode)
        export_result = stages.read_done(folder)
        bench = stages.read_done(os.path.join(folder, "bench"))
        if export_result is not None and bench is not None:
          rows.append(self._row(variant, mode, model_result, export_result, bench))
    return rows


def export_bundles(report_data: dict, output_dir: str) -> list[str]:
  """Copies the bundle of each budget's best row to ``output_dir/best/<budget>/``.

  Each folder holds ``model.tflite``, ``model_meta.json``, ``vocab.txt`` (a
  bundle like any export) and ``best.json`` (the row and the budget). Folders
  of budgets this report no longer has, which this function wrote (they hold
  a ``best.json``), are removed, as is the single bundle earlier versions
  wrote into ``best/`` itself. Returns the folders written.
  """
  rows = {r["name"]: r for r in report_data["rows"]}
  best_dir = os.path.join(output_dir, "best")
  written = []
  for entry in report_data.get("summary", []):
    if entry["name"] is None:
      continue
    row = rows[entry["name"]]
    folder = os.path.dirname(row["tflite"])
    target = os.path.join(output_dir, entry["bundle"])
    io_utils.makedirs(target)
    for name in ("model.tflite", META_FILE, VOCAB_FILE):
      with tf.io.gfile.GFile(os.path.join(folder, name), "rb") as f:
        io_utils.atomic_write_bytes(os.path.join(target, name), f.read())
    io_utils.atomic_write_json(os.path.join(target, "best.json"),
                               {"row": row, "budget": entry["budget"],
                                "chosen_on": f"{report.CHOICE_SPLIT} perplexity of the .tflite"})
    written.append(target)
  if tf.io.gfile.isdir(best_dir):
    if tf.io.gfile.exists(os.path.join(best_dir, "best.json")):  # The old single bundle.
      for name in ("model.tflite", META_FILE, VOCAB_FILE, "best.json"):
        if tf.io.gfile.exists(os.path.join(best_dir, name)):
          tf.io.gfile.remove(os.path.join(best_dir, name))
    for name in tf.io.gfile.listdir(best_dir):
      sub = os.path.join(best_dir, name.rstrip("/"))
      if (sub not in written and tf.io.gfile.isdir(sub) and
          tf.io.gfile.exists(os.path.join(sub, "best.json"))):
        tf.io.gfile.rmtree(sub)
  return written
