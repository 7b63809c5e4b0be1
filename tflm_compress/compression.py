"""Compress a trained model with one or more methods, then fine-tune it.

``compress_and_finetune`` is what ``scripts/compress.py`` and the pipeline
call: it loads the base model inside the strategy scope, applies each method
of the spec in order, fine-tunes with the training loop (with the methods'
regularizers and callbacks), strips training-only wrappers, and writes a run
dir that ``convert``/``evaluate``/``benchmark`` accept. ``train_from_scratch``
trains the compressed architecture from a random init instead
(``scripts/train.py --method``).
"""

import dataclasses
import types
from typing import Callable

import tensorflow as tf
import tf_keras as keras

from tflm_compress import methods
from tflm_compress.data.corpus import Corpus
from tflm_compress.errors import UserError
from tflm_compress.export import sparsity
from tflm_compress.layers.lstm import LSTM
from tflm_compress.methods.base import CompressionContext
from tflm_compress.models.config import ModelConfig, TrainConfig
from tflm_compress.models.loading import load_model
from tflm_compress.models.lstm_lm import build_language_model, count_params
from tflm_compress.training import Distillation, run_training


def method_config(module: types.ModuleType, values: dict):
  """``module.Config`` from the entries of ``values`` named like its fields."""
  fields = {f.name for f in dataclasses.fields(module.Config)}
  return module.Config(**{k: v for k, v in values.items() if k in fields and v is not None})


def check_params(spec: str, values: dict) -> list[tuple[types.ModuleType, object]]:
  """The methods of ``spec`` with their configs, refusing parameters none of them has.

  For a pipeline variant, whose parameters are listed by hand: a misspelt
  name would otherwise be ignored silently.
  """
  modules = methods.parse_spec(spec)
  fields = {f.name for m in modules for f in dataclasses.fields(m.Config)}
  unknown = sorted(set(values) - fields)
  if unknown:
    raise UserError(f"parameters {unknown} are not options of {spec!r}; its options: "
                    f"{sorted(fields)}")
  return [(m, method_config(m, values)) for m in modules]


def apply_methods(model: keras.Model, plan: list[tuple[types.ModuleType, object]],
                  context: CompressionContext) -> keras.Model:
  for module, config in plan:
    model = module.compress(model, config, context)
  return model


def set_dropout(model: keras.Model, rate: float) -> dict:
  """Sets the dropout on the non-recurrent connections of ``model`` to ``rate``.

  A model built with dropout gets its ``Dropout`` layers' rate changed; one
  without (PTB ``small``, most users' models) gets it inside its LSTMs: on
  each LSTM's input and on the last one's output, where Zaremba et al. put
  it. Layers wrapped by TFMOT (pruning, QAT) are reached through the wrapper.

  Returns:
    The previous rates, for :func:`restore_dropout`.
  """
  check_dropout(rate)
  previous = {}
  dropouts = [l for l in model.layers if isinstance(l, keras.layers.Dropout)]
  if dropouts:
    for layer in dropouts:
      previous[layer] = {"rate": layer.rate}
      layer.rate = rate
    return previous
  lstms = [getattr(l, "layer", l) for l in model.layers]
  lstms = [l for l in lstms if isinstance(l, LSTM)]
  if not lstms:
    raise UserError("--finetune_dropout needs a model with LSTM or Dropout layers")
  for i, lstm in enumerate(lstms):
    previous[lstm] = {"input_dropout": lstm.input_dropout, "output_dropout": lstm.output_dropout}
    lstm.input_dropout = rate
    lstm.output_dropout = rate if i == len(lstms) - 1 else 0.0
  return previous


def check_dropout(rate: float, flag: str = "--finetune_dropout") -> None:
  """One clear error, naming ``flag``, for a dropout rate outside [0, 1)."""
  if not 0.0 <= rate < 1.0:
    raise UserError(f"{flag}={rate}; must be in [0, 1)")


def restore_dropout(previous: dict) -> None:
  for layer, rates in previous.items():
    for name, value in rates.items():
      setattr(layer, name, value)


# Facts of a method's report that take a conversion to measure (methods do not
# import export): method name -> {report key: model -> value}.
_EXPORT_REPORTS = {"prune": {"sizes": sparsity.sparsity_sizes}}


def method_report(model: keras.Model, plan) -> dict:
  """Every method's ``report(model)`` by method name, with its export facts."""
  out = {}
  for m, _ in with_hook(plan, "report"):
    out[m.NAME] = m.report(model)
    for key, measure in _EXPORT_REPORTS.get(m.NAME, {}).items():
      out[m.NAME][key] = measure(model)
  return out


def with_hook(plan, hook: str):
  """The (method, config) pairs of ``plan`` whose module defines ``hook``.

  A method that is ``settled`` by its ``compress`` (ISS with ``iss_keep`` alone) and
  is followed by another method is left out: its work is done, and the later
  methods may have replaced the layers its hooks read.
  """
  last = len(plan) - 1
  return [(m, c) for i, (m, c) in enumerate(plan)
          if hasattr(m, hook) and not (i < last and hasattr(m, "settled") and m.settled(c))]


def strip_methods(model: keras.Model, plan) -> keras.Model:
  """``model`` after each method's ``strip`` in plan order (see :func:`with_hook`)."""
  for module, config in with_hook(plan, "strip"):
    model = module.strip(model, config)
  return model


def compress_and_finetune(base_model_path: str, spec: str, method_values: dict,
                          corpus: Corpus, train_config: TrainConfig, output_dir: str,
                          base_run_config: dict | None = None,
                          strategy: tf.distribute.Strategy | None = None,
                          progress: bool = True, log: Callable[[str], None] = print,
                          distillation: Distillation | None = None,
                          finetune_dropout: float | None = None,
                          teacher_model_path: str | None = None) -> dict:
  """Compresses ``base_model_path`` by ``spec`` (e.g. ``low_rank``), fine-tunes, saves.

  Args:
    method_values: parameter values by name (flag names); each method takes
      the ones named like its ``Config`` fields.
    train_config: the fine-tuning recipe (``epochs=0`` skips fine-tuning).
    distillation: if given, fine-tune on the base model's soft targets too.
    finetune_dropout: if given, the dropout rate on non-recurrent connections
      during fine-tuning (see :func:`set_dropout`); the saved model keeps the
      base model's rates. Compressed models of a base trained without dropout
      overfit in fine-tuning otherwise.
    teacher_model_path: the teacher of ``distillation`` (default: the base
      model), e.g. the original model when the base is an intermediate one
      (a model shrunk by ISS that is being fine-tuned further).

  Returns:
    The metrics of the compressed, fine-tuned model.
  """
  strategy = strategy or tf.distribute.get_strategy()
  plan = [(m, method_config(m, method_values)) for m in methods.parse_spec(spec)]
  context = _context(plan, corpus, train_config)
  if finetune_dropout is not None:
    check_dropout(finetune_dropout)
  if teacher_model_path and not distillation:
    raise UserError("--distill_teacher needs --distill")
  teacher_path = teacher_model_path or base_model_path
  if teacher_model_path:
    load_model(teacher_model_path)  # Validates the path before any work.
  base = load_model(base_model_path)  # Validates the path before any work.
  base_params = count_params(base)
  # Validate the configs against the model's dims before anything is written.
  apply_methods(base, plan, context)
  del base

  dropout_rates = {}

  def model_fn():
    model = apply_methods(load_model(base_model_path), plan, context)
    if finetune_dropout is not None:
      dropout_rates.update(set_dropout(model, finetune_dropout))
    return model

  def finalize(model):
    restore_dropout(dropout_rates)
    return strip_methods(model, plan)

  run_config = {
      "base_model": base_model_path,
      "method": spec,
      "method_config": {m.NAME: dataclasses.asdict(c) for m, c in plan},
      "base_model_config": (base_run_config or {}).get("model"),
      "distillation": dataclasses.asdict(distillation) if distillation else None,
  }
  if finetune_dropout is not None:  # Absent otherwise: earlier runs keep their identity.
    run_config["finetune_dropout"] = finetune_dropout
  if teacher_model_path:
    run_config["teacher_model"] = teacher_model_path
  return run_training(model_fn, corpus, train_config, output_dir, run_config, strategy=strategy,
                      progress=progress, log=log, finalize_fn=finalize,
                      teacher_fn=(lambda: load_model(teacher_path)) if distillation else None,
                      distillation=distillation, **_hooks(plan, base_params))


def train_from_scratch(corpus: Corpus, model_config: ModelConfig, train_config: TrainConfig,
                       output_dir: str, spec: str, method_values: dict,
                       strategy: tf.distribute.Strategy | None = None, progress: bool = True,
                       log: Callable[[str], None] = print,
                       extra_config: dict | None = None) -> dict:
  """Trains the compressed architecture of ``spec`` from a random init; writes a run dir.

  The dense model of ``model_config`` is built with fresh weights and each
  method applied to it, so the compressed layers (low-rank factors, TT cores,
  slim pools and their seeded assignments, GroupReduce blocks sized by the
  corpus's word frequencies) start from the decomposition of a random init,
  then train with the full recipe ``train_config`` and the methods' hooks
  (penalties, pruning schedule over the whole run), resumable and under
  ``strategy`` like the baseline (:func:`training.train_language_model`).

  Returns:
    The metrics written to ``metrics.json``.
  """
  plan = [(m, method_config(m, method_values)) for m in methods.parse_spec(spec)]
  model_config = model_config.with_vocab_size(len(corpus.vocab))
  context = _context(plan, corpus, train_config)

  def build():
    return build_language_model(model_config, seed=train_config.seed)

  dense = build()
  dense_params = count_params(dense)
  apply_methods(dense, plan, context)  # Validates the configs before anything is written.
  del dense
  run_config = {"model": model_config.to_dict(), "method": spec, "from_scratch": True,
                "method_config": {m.NAME: dataclasses.asdict(c) for m, c in plan},
                **(extra_config or {})}
  return run_training(lambda: apply_methods(build(), plan, context), corpus, train_config,
                      output_dir, run_config, strategy=strategy, progress=progress, log=log,
                      finalize_fn=lambda model: strip_methods(model, plan),
                      **_hooks(plan, dense_params))


def _context(plan, corpus: Corpus, train_config: TrainConfig) -> CompressionContext:
  """What the methods may read: the vocabulary, the seed, the training steps ahead."""
  steps_per_epoch = ((len(corpus.split("train")) // train_config.batch_size - 1) //
                     train_config.num_steps)
  return CompressionContext(vocab=corpus.vocab, seed=train_config.seed,
                            finetune_steps=train_config.epochs * steps_per_epoch or None)


def weight_projections(plan, model: keras.Model) -> list:
  """The weight projections of ``plan``'s methods on ``model`` (``training.Trainer``)."""
  return [p for m, c in with_hook(plan, "weight_projections")
          for p in m.weight_projections(model, c)]


def _hooks(plan, base_params: int) -> dict:
  """``run_training``'s method hooks: penalties, callbacks, weight projections and the
  metrics report."""

  def extra_loss(model):
    return tf.add_n([m.extra_loss(model, c) for m, c in with_hook(plan, "extra_loss")])

  def callbacks(model):
    return [cb for m, c in with_hook(plan, "callbacks") for cb in m.callbacks(model, c)]

  def report(model):
    out = {"base_params": base_params, "compression_of_params":
           base_params / max(count_params(model), 1)}
    out.update(method_report(model, plan))
    return out

  return {"extra_loss_fn": extra_loss if with_hook(plan, "extra_loss") else None,
          "callbacks_fn": callbacks if with_hook(plan, "callbacks") else None,
          "projections_fn": ((lambda model: weight_projections(plan, model))
                             if with_hook(plan, "weight_projections") else None),
          "report_fn": report}


def finetune_config(base: TrainConfig, epochs: int, learning_rate: float | None = None,
                    **overrides) -> TrainConfig:
  """The fine-tuning recipe derived from the base run's training recipe.

  By default: the base optimizer at a quarter of its initial learning rate,
  decayed by the base ``lr_decay`` after every epoch but the first.
  ``epochs=0`` evaluates the compressed model without fine-tuning.
  """
  lr = learning_rate if learning_rate is not None else base.learning_rate / 4
  return dataclasses.replace(base, epochs=epochs, learning_rate=lr, decay_start_epoch=1,
                             **overrides)
