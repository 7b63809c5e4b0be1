"""The Python API: load, compress, fine-tune, strip, export, evaluate, benchmark.

Shaped like TF Model Optimization's: a method is a config object
(``tflm_compress.LowRank(rank=32)``, ``tflm_compress.Prune(sparsity=0.8)``, ...);
``compress(model, *methods)`` returns a Keras model that trains with the
package's loop (:func:`finetune`) or with plain ``model.fit`` plus
:func:`training_callbacks` (penalties such as ISS's group lasso are attached
with ``add_loss``); :func:`strip` gives the deployable model, and
:func:`export_tflite` the bundle a phone loads. The scripts in ``scripts/``
are thin absl wrappers over the same library code.

Example::

  import tflm_compress as tc
  model = tc.load_model("runs/tiny")              # a run dir, or a Keras file
  corpus = tc.read_corpus(run="runs/tiny")        # the corpus it was trained on
  model = tc.compress(model, tc.LowRank(embedding_rank=16), tc.ISS(lambda_=0.001),
                      corpus=corpus)
  model = tc.finetune(model, corpus, epochs=1)
  model = tc.strip(model)
  tc.export_tflite(model, "out/", quantize="dynamic", corpus=corpus)
  print(tc.evaluate("out/model.tflite", corpus)["ppl"])
"""

import dataclasses
import os
import types
import typing
import weakref

import tensorflow as tf
import tf_keras as keras

from tflm_compress import artifacts, compression, io_utils
from tflm_compress.benchmark import host
from tflm_compress.benchmark import report as benchmark_report
from tflm_compress.data.corpus import Corpus, load_corpus
from tflm_compress.data.vocab import Vocabulary
from tflm_compress.errors import UserError
from tflm_compress.evaluation import evaluate_perplexity
from tflm_compress.export import bundle, parity, runtime
from tflm_compress.export.step_model import vocab_size_of
from tflm_compress.methods import REGISTRY, parse_spec
from tflm_compress.methods.base import CompressionContext
from tflm_compress.models import adapt
from tflm_compress.models.config import ModelConfig, TrainConfig, get_preset
from tflm_compress.models.loading import load_model as load_model_file
from tflm_compress.training import (Distillation, ProjectionCallback, Trainer,
                                    train_language_model)

MODEL_FILE = "model.tflite"

# What a model returned by compress() was made with, and its vocabulary when
# known. Weak keys: the record lives as long as the model.
_PLANS: "weakref.WeakKeyDictionary[keras.Model, list]" = weakref.WeakKeyDictionary()
_VOCABS: "weakref.WeakKeyDictionary[keras.Model, Vocabulary]" = weakref.WeakKeyDictionary()
# The method chain a model was made with ("low_rank+iss"), kept through strip().
_METHODS: "weakref.WeakKeyDictionary[keras.Model, str]" = weakref.WeakKeyDictionary()
# The training recipe of the run a model was loaded from (its config.json).
_RECIPES: "weakref.WeakKeyDictionary[keras.Model, TrainConfig]" = weakref.WeakKeyDictionary()


# ----- Method configs ----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class MethodConfig:
  """Base of the public method configs (``LowRank``, ``ISS``, ...).

  Each is its method's ``Config`` with plain field names: the scripts' flag
  prefixes (``iss_``, ``gr_``, ...) are dropped, and ``lambda`` is spelt
  ``lambda_``. Validation is the method's own (at construction).
  """

  def __post_init__(self):
    self.to_method_config()  # Bad values fail here, with the flag named.

  @classmethod
  def method(cls) -> types.ModuleType:
    return REGISTRY[cls.method_name]

  @classmethod
  def from_flags(cls, values: dict) -> "MethodConfig":
    """The config with the values of the method's flags (``{"iss_lambda": 0.01, ...}``).

    Flags of other methods are ignored; missing ones keep their defaults.
    """
    return cls(**{plain: values[flag] for plain, flag in _plain_names(cls.method()).items()
                  if flag in values})

  def to_flags(self) -> dict:
    """The method's flag names with these values (the inverse of :meth:`from_flags`)."""
    return {flag: getattr(self, plain) for plain, flag in _plain_names(self.method()).items()}

  def to_method_config(self):
    """The method module's ``Config`` with these values."""
    module = self.method()
    return module.Config(**self.to_flags())


def configs_from_flags(spec: str, values: dict) -> list[MethodConfig]:
  """The configs of ``spec``'s methods (``"low_rank+iss"``) from the scripts' flag values."""
  return [METHOD_CONFIGS[m.API_NAME].from_flags(values) for m in parse_spec(spec)]


def _plain_name(flag: str, prefixes: tuple[str, ...]) -> str:
  for prefix in prefixes:
    if flag.startswith(prefix):
      flag = flag[len(prefix):]
      break
  return flag + "_" if flag in ("lambda", "global") else flag


def _plain_names(module: types.ModuleType) -> dict[str, str]:
  """Public field name -> the method's flag name, in field order."""
  return {_plain_name(f.name, module.FLAG_PREFIXES): f.name
          for f in dataclasses.fields(module.Config)}


def _public_config_class(module: types.ModuleType) -> type:
  hints = typing.get_type_hints(module.Config)
  fields = []
  for plain, flag in _plain_names(module).items():
    default = next(f for f in dataclasses.fields(module.Config) if f.name == flag).default
    fields.append((plain, hints[flag], dataclasses.field(default=default)))
  help_lines = "\n".join(f"    {plain}: {module.FLAG_HELP.get(flag, '')} (``--{flag}``)"
                         for plain, flag in _plain_names(module).items())
  cls = dataclasses.make_dataclass(
      module.API_NAME, fields, bases=(MethodConfig,), frozen=True,
      namespace={"method_name": module.NAME, "__module__": "tflm_compress",
                 "__doc__": f"The ``{module.NAME}`` method's settings "
                            f"(:mod:`{module.__name__}`).\n\n  Attributes:\n{help_lines}\n"})
  return cls


# One public class per registered method, by its API_NAME.
METHOD_CONFIGS: dict[str, type] = {m.API_NAME: _public_config_class(m) for m in REGISTRY.values()}


# ----- Models and data --------------------------------------------------------------------

def load_model(path_or_model, vocab=None, custom_objects=None) -> keras.Model:
  """A package model from a run dir, a Keras file, or an in-memory Keras model.

  Args:
    path_or_model: a run dir (``model.keras`` + ``vocab.txt``), a ``.keras`` /
      ``.h5`` file or SavedModel dir of a user's LSTM language model, or a
      Keras model object; a user's model is mapped onto the package's with
      the same weights (:mod:`tflm_compress.models.adapt`).
    vocab: ``vocab.txt`` path or a :class:`Vocabulary` (default: beside the
      model, if there).
    custom_objects: a Python file defining the model's custom layers, or a
      dict ``{name: class}``.
  """
  if isinstance(custom_objects, dict):
    keras.utils.get_custom_objects().update(custom_objects)
  elif custom_objects:
    adapt.register_custom_objects(custom_objects)
  if not isinstance(path_or_model, (str, os.PathLike)):
    model = path_or_model if adapt.is_package_model(path_or_model) else (
        adapt.adapt_keras_model(path_or_model))
    vocab_path = None
  else:
    path = os.fspath(path_or_model)
    is_run_dir = tf.io.gfile.isdir(path) and tf.io.gfile.exists(os.path.join(path, "model.keras"))
    model_path = os.path.join(path, "model.keras") if is_run_dir else path
    model = load_model_file(model_path)
    vocab_path = os.path.join(os.path.dirname(model_path), "vocab.txt")
    config_path = os.path.join(os.path.dirname(model_path), "config.json")
    if tf.io.gfile.exists(config_path):
      run_config = io_utils.read_json(config_path)
      if "train" in run_config:
        _RECIPES[model] = TrainConfig(**run_config["train"])
  if isinstance(vocab, Vocabulary):
    _VOCABS[model] = vocab
  elif vocab or (vocab_path and tf.io.gfile.exists(vocab_path)):
    _VOCABS[model] = Vocabulary.load(vocab or vocab_path)
  return model


def read_corpus(data_dir: str | None = None, vocab=None, run: str | None = None,
                **kwargs) -> Corpus:
  """A corpus, its words read as ``vocab``'s ids.

  Args:
    data_dir: a folder of ``ptb.{train,valid,test}.txt`` (or ``{split}.txt``);
      without it (and without ``run``), the built-in generated corpus.
    vocab: a ``vocab.txt`` path or :class:`Vocabulary` that fixes the ids (the
      model's); default: built from the training split.
    run: a run dir: its vocabulary, and without ``data_dir`` the corpus it
      was trained on (as the scripts do).
    **kwargs: passed to ``data.corpus.load_corpus`` (e.g. ``generated=``).
  """
  if isinstance(vocab, (str, os.PathLike)):
    vocab = Vocabulary.load(os.fspath(vocab))
  if run:
    source = artifacts.resolve(model_dir=run)
    return source.corpus(data_dir, vocab or source.vocab())
  return load_corpus(data_dir or "", vocab=vocab, **kwargs)


def vocab_of(model: keras.Model) -> Vocabulary | None:
  """The vocabulary :func:`load_model` or :func:`compress` recorded for ``model``."""
  return _VOCABS.get(model)


# ----- Compress, fine-tune, strip ----------------------------------------------------------

def _plan(methods) -> list:
  plan = []
  for method in methods:
    if not isinstance(method, MethodConfig):
      raise UserError(f"compress() takes method configs such as tflm_compress.LowRank(rank=32); "
                      f"got {method!r}")
    plan.append((method.method(), method.to_method_config()))
  names = [m.NAME for m, _ in plan]
  if len(set(names)) != len(names):
    raise UserError(f"compress() got a method twice: {names}")
  return plan


def _plan_of(model: keras.Model) -> list:
  return _PLANS.get(model, [])


def _remember(model: keras.Model, plan: list, source: keras.Model,
              vocab: Vocabulary | None = None) -> keras.Model:
  """Records ``plan`` for ``model``, with the vocabulary and recipe of ``source``."""
  _PLANS[model] = plan
  methods = "+".join(m.NAME for m, _ in plan) or _METHODS.get(source)
  if methods:
    _METHODS[model] = methods
  vocab = vocab or vocab_of(source)
  if vocab is not None:
    _VOCABS[model] = vocab
  if source in _RECIPES:
    _RECIPES[model] = _RECIPES[source]
  return model


def compress(model: keras.Model, *methods: MethodConfig, corpus: Corpus | None = None,
             seed: int = 0) -> keras.Model:
  """``model`` with each method applied in order (a new Keras model).

  Args:
    methods: method configs, e.g. ``LowRank(rank=32), ISS(lambda_=0.04)``.
    corpus: gives the vocabulary's word counts to frequency-aware methods
      (GroupReduce); without it they assume Zipf's law.
    seed: for methods with random choices (slim embeddings' assignment).

  The penalties of the methods (ISS's group lasso) are attached with
  ``add_loss``, so ``model.fit`` trains with them; :func:`finetune` adds the
  same penalty through the package's loop instead.
  """
  plan = _plan(methods)
  vocab = corpus.vocab if corpus is not None else vocab_of(model)
  context = CompressionContext(vocab=vocab, seed=seed)
  compressed = compression.apply_methods(model, plan, context)
  if compressed is model:  # E.g. ISS before its surgery: still a new model, the input untouched.
    compressed = keras.models.clone_model(model)
    compressed.set_weights(model.get_weights())
  for module, config in compression.with_hook(plan, "extra_loss"):
    compressed.add_loss(lambda module=module, config=config: module.extra_loss(compressed,
                                                                                config))
  return _remember(compressed, plan, model, vocab)


def training_callbacks(model: keras.Model) -> list:
  """The Keras callbacks the methods of ``model`` need in ``model.fit``.

  Pruning: TFMOT's ``UpdatePruningStep`` (strategy-aware); ISS: the periodic
  thresholding of weak hidden units; int4 QAT: rounding the weights to the
  export's grid around each batch and evaluation. The ISS penalty is already
  in ``model.losses`` (see :func:`compress`).
  """
  plan = _plan_of(model)
  return ([cb for m, c in compression.with_hook(plan, "callbacks")
           for cb in m.callbacks(model, c)] +
          [ProjectionCallback(p) for p in compression.weight_projections(plan, model)])


def _in_strategy(model: keras.Model, strategy: tf.distribute.Strategy) -> keras.Model:
  """``model`` itself under the default strategy; a copy made in ``strategy``'s scope
  otherwise (its variables must be created there)."""
  if strategy is tf.distribute.get_strategy():
    return model
  with strategy.scope():
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
  return copy


def finetune(model: keras.Model, corpus: Corpus, epochs: int = 1,
             learning_rate: float | None = None, dropout: float | None = None,
             distill_from: keras.Model | str | None = None,
             distillation: Distillation = Distillation(),
             strategy: tf.distribute.Strategy | None = None,
             base_recipe: TrainConfig | None = None, progress: bool = False) -> keras.Model:
  """Fine-tunes ``model`` with the package's loop and every hook its methods need.

  The recipe is the one ``scripts/compress.py`` uses: ``base_recipe`` (default:
  the recipe of the run :func:`load_model` read the model from, else
  :class:`TrainConfig`'s defaults) at ``learning_rate`` (default a quarter of
  its rate), decayed after every epoch but the first; the methods' penalties, callbacks and weight
  projections; optional dropout
  on the non-recurrent connections while training (restored after); optional
  distillation from ``distill_from`` (a model or a model file).

  Returns:
    The fine-tuned model (not stripped; see :func:`strip`).
  """
  plan = _plan_of(model)
  base_recipe = base_recipe or _RECIPES.get(model) or TrainConfig()
  recipe = compression.finetune_config(base_recipe, epochs, learning_rate)
  strategy = strategy or tf.distribute.get_strategy()
  teacher = load_model(distill_from) if isinstance(distill_from, str) else distill_from
  keras.utils.set_random_seed(recipe.seed)
  trainable = _in_strategy(model, strategy)
  previous = compression.set_dropout(trainable, dropout) if dropout is not None else {}
  extra = compression.with_hook(plan, "extra_loss")
  trainer = Trainer(
      lambda: trainable, recipe, strategy,
      extra_loss_fn=(lambda m: tf.add_n([h.extra_loss(m, c) for h, c in extra])) if extra
      else None,
      callbacks_fn=(lambda m: [cb for h, c in compression.with_hook(plan, "callbacks")
                               for cb in h.callbacks(m, c)]),
      teacher_fn=(lambda: _in_strategy(teacher, strategy)) if teacher is not None else None,
      distillation=distillation if teacher is not None else None,
      projections_fn=lambda m: compression.weight_projections(plan, m))
  for epoch in range(epochs):
    trainer.optimizer.learning_rate.assign(recipe.learning_rate_at(epoch))
    trainer.train_epoch(corpus.split("train"), progress=progress)
  compression.restore_dropout(previous)
  return _remember(trainer.model, plan, model, vocab_of(model) or corpus.vocab)


def strip(model: keras.Model) -> keras.Model:
  """The deployable model: training-only wrappers off, ISS's surgery done.

  Runs each method's ``strip`` (pruning: final masks and ``strip_pruning``;
  clustering: ``strip_clustering``; ISS: the last threshold and the smaller
  dense LSTMs). A model :func:`compress` did not make is searched for TFMOT
  pruning and clustering wrappers.
  """
  plan = _plan_of(model) or [(m, m.Config()) for m in _wrapped_methods(model)]
  stripped = compression.strip_methods(model, plan)
  if stripped.losses:
    # The penalties compress() attached (a strip may return the model itself); the
    # deployable model has none: a copy without them (they would also break conversion).
    copy = keras.models.clone_model(stripped)
    copy.set_weights(stripped.get_weights())
    stripped = copy
  return _remember(stripped, [], model)


def _wrapped_methods(model: keras.Model) -> list[types.ModuleType]:
  from tensorflow_model_optimization.python.core.clustering.keras import cluster_wrapper  # pylint: disable=g-import-not-at-top
  from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper  # pylint: disable=g-import-not-at-top

  found = []
  if any(isinstance(l, pruning_wrapper.PruneLowMagnitude) for l in model.layers):
    found.append(REGISTRY["prune"])
  if any(isinstance(l, cluster_wrapper.ClusterWeights) for l in model.layers):
    found.append(REGISTRY["cluster"])
  return found


# ----- Resumable runs (what scripts/train.py and scripts/compress.py write) ---------------

def train(corpus: Corpus, output_dir: str, model_config: ModelConfig | str = "tiny",
          recipe: TrainConfig | None = None, *methods: MethodConfig,
          strategy: tf.distribute.Strategy | None = None,
          progress: bool = False, log=print, preset: str | None = None) -> dict:
  """Trains a fresh LSTM language model into the run dir ``output_dir``.

  ``model_config`` is a :class:`ModelConfig` or a preset name (``tiny``,
  ``small``, ``medium``, ``large``: the Zaremba et al. 2014 recipes);
  ``recipe`` defaults to the preset's (or :class:`TrainConfig`'s). Every epoch
  is checkpointed there, and a call with the same arguments resumes an
  interrupted run (a different configuration is refused). Writes
  ``model.keras, vocab.txt, metrics.json, config.json, history.json``;
  ``load_model(output_dir)`` reads the model back. ``preset`` names the preset
  a ``ModelConfig`` was derived from (recorded in ``config.json``).

  With ``methods`` (e.g. ``tc.TensorTrain(tt_rank=0, softmax_rank=16)``), the
  compressed architecture is trained from a random init with the full recipe
  instead of compressing a trained model (``scripts/train.py --method``): the
  methods are applied to a freshly initialised dense model, their hooks run
  over the whole training, and the saved model is stripped.

  Returns:
    The metrics written to ``metrics.json`` (train/valid/test perplexity).
  """
  if isinstance(model_config, str):
    preset = model_config
    model_config, recipe = get_preset(preset).model, recipe or get_preset(preset).train
  extra = {"preset": preset} if preset else None
  if methods:
    plan = _plan(methods)
    values = {flag: value for method in methods for flag, value in method.to_flags().items()}
    return compression.train_from_scratch(
        corpus, model_config, recipe or TrainConfig(), output_dir,
        "+".join(m.NAME for m, _ in plan), values, strategy=strategy, progress=progress,
        log=log, extra_config=extra)
  return train_language_model(corpus, model_config, recipe or TrainConfig(), output_dir,
                              strategy=strategy, progress=progress, log=log, extra_config=extra)


def compress_run(model_path: str, *methods: MethodConfig, corpus: Corpus, output_dir: str,
                 epochs: int = 2, learning_rate: float | None = None,
                 dropout: float | None = None, distill_from: str | None = None,
                 distillation: Distillation | None = None,
                 strategy: tf.distribute.Strategy | None = None,
                 base_recipe: TrainConfig | None = None, progress: bool = False, log=print,
                 **recipe_overrides) -> dict:
  """:func:`compress` + :func:`finetune` + :func:`strip`, as a resumable run dir.

  What ``scripts/compress.py`` does: ``methods`` applied in order to the model
  in ``model_path`` (a run dir or a Keras file of the package), fine-tuned
  ``epochs`` epochs with the recipe :func:`finetune` uses (``base_recipe``:
  default the recipe of the run the model came from; ``recipe_overrides`` such
  as ``optimizer``, ``batch_size``, ``seed``), checkpointed every epoch,
  stripped and saved to ``output_dir`` with ``metrics.json`` (its
  ``method_report`` says what each method did). A call with the same
  arguments resumes. With ``distillation`` (e.g. ``Distillation()``), the
  soft targets come from ``distill_from`` (default: the model being
  compressed). ``load_model(output_dir)`` reads the model back.

  Returns:
    The metrics written to ``metrics.json``.
  """
  plan = _plan(methods)
  model_file = (os.path.join(model_path, artifacts.MODEL_FILE)
                if tf.io.gfile.isdir(model_path) else model_path)
  config_path = os.path.join(os.path.dirname(model_file), artifacts.CONFIG_FILE)
  run_config = io_utils.read_json(config_path) if tf.io.gfile.exists(config_path) else None
  if base_recipe is None:
    base_recipe = TrainConfig(**run_config["train"]) if run_config else TrainConfig()
  recipe = compression.finetune_config(base_recipe, epochs, learning_rate, **recipe_overrides)
  values = {flag: value for method in methods for flag, value in method.to_flags().items()}
  return compression.compress_and_finetune(
      model_file, "+".join(m.NAME for m, _ in plan), values, corpus, recipe, output_dir,
      base_run_config=run_config, strategy=strategy, progress=progress, log=log,
      distillation=distillation, finetune_dropout=dropout, teacher_model_path=distill_from)


# ----- Export, evaluate, benchmark ---------------------------------------------------------

def export_tflite(model: keras.Model, output_dir: str, quantize: str = "dynamic",
                  corpus: Corpus | None = None, vocab: Vocabulary | None = None,
                  parity_steps: int = 200, calibration_steps: int = 500,
                  method: str | None = None, eval_split: str | None = None,
                  log=print, **sub8bit_settings) -> dict:
  """Writes the bundle ``output_dir/{model.tflite, model_meta.json, vocab.txt}``.

  Also writes ``model.json``: the report ``scripts/convert.py`` prints (bytes
  per tensor group, ops, quantized ops, and with a corpus the parity of the
  ``.tflite`` against Keras over ``parity_steps`` validation tokens).
  ``quantize="int8"`` calibrates on the corpus's training split.

  Args:
    output_dir: the bundle's folder; or a path ending in ``.tflite`` to name
      the model file itself (its report is then ``NAME.json`` beside it).
    quantize: one of ``export.EXPORT_MODES``: the converter's ``none``,
      ``dynamic``, ``float16``, ``int8``, or ai-edge-quantizer's ``int4``,
      ``mixed`` (``bits="embedding:8,lstm:8,softmax:4"``) and ``auto``
      (``max_ppl_increase="1%"``, measured on the corpus's valid split).
    eval_split: also measure the ``.tflite``'s perplexity on this split of
      ``corpus`` (``valid`` or ``test``): the report's ``{split}_ppl``.
    log: where ``auto`` reports its measurements.
    sub8bit_settings: ``bits``, ``block_size``, ``compute``, ``algorithm``,
      ``embedding_op``, ``max_ppl_increase`` (see ``scripts/convert.py``).

  Returns:
    That report.
  """
  vocab = vocab or (corpus.vocab if corpus is not None else vocab_of(model))
  if vocab is None:
    raise UserError("export_tflite needs the vocabulary: pass corpus= or vocab=")
  if quantize in ("int8", "auto") and corpus is None:
    raise UserError(f"quantize={quantize!r} needs corpus= (int8 calibrates on its training "
                    "split, auto chooses bits on its valid split)")
  if eval_split not in (None, "", "valid", "test"):
    raise UserError(f"eval_split={eval_split!r}; use valid, test or None")
  if eval_split and corpus is None:
    raise UserError(f"eval_split={eval_split!r} needs corpus=")
  unknown = sorted(set(sub8bit_settings) - _SUB8BIT_SETTINGS)
  if unknown:
    raise UserError(f"export_tflite got unknown settings {unknown}; the sub-8-bit ones are "
                    f"{sorted(_SUB8BIT_SETTINGS)}")
  output_dir = os.fspath(output_dir)
  output = output_dir if output_dir.endswith(".tflite") else os.path.join(output_dir, MODEL_FILE)
  method = method or _METHODS.get(model) or "baseline"
  summary = bundle.export_step_model(
      model, vocab, output, quantize,
      calibration_ids=corpus.split("train") if corpus is not None else None,
      calibration_steps=calibration_steps, method=method,
      validation_ids=corpus.split("valid") if quantize == "auto" else None,
      log=log, **sub8bit_settings)
  tflite_model = runtime.TFLiteStepModel(output)
  if corpus is not None and parity_steps:
    summary["parity"] = parity.check_parity(model, tflite_model,
                                            corpus.split("valid")[:parity_steps])
  if eval_split:
    summary[f"{eval_split}_ppl"] = tflite_model.perplexity(corpus.split(eval_split))["ppl"]
  io_utils.atomic_write_json(os.path.splitext(output)[0] + ".json", summary)
  return summary


_SUB8BIT_SETTINGS = frozenset(("bits", "block_size", "compute", "algorithm", "embedding_op",
                               "max_ppl_increase"))


def evaluate(model_or_tflite, corpus: Corpus, split: str = "test", batch_size: int = 1,
             num_steps: int = 35, threads: int = 1) -> dict:
  """Perplexity over ``split`` with state carried (``scripts/evaluate.py``'s dict).

  ``model_or_tflite``: a Keras model, a model file / run dir, or a ``.tflite``
  step model (scored token by token in LiteRT). ``batch_size`` and
  ``num_steps`` apply to Keras only.
  """
  if isinstance(model_or_tflite, (str, os.PathLike)) and os.fspath(model_or_tflite).endswith(
      ".tflite"):
    path = os.fspath(model_or_tflite)
    tflite_model = runtime.TFLiteStepModel(path, num_threads=threads)
    _check_vocab_size(path, tflite_model.vocab_size, corpus.vocab)
    stats = tflite_model.perplexity(corpus.split(split))
    return {"model": path, "format": "tflite", "split": split, **stats}
  model = model_or_tflite
  name = None
  if isinstance(model, (str, os.PathLike)):
    name = os.fspath(model)
    model = load_model(name)
  _check_vocab_size(name or model.name, vocab_size_of(model), corpus.vocab)
  stats = evaluate_perplexity(model, corpus.split(split), batch_size, num_steps)
  return {"model": name or model.name, "format": "keras", "split": split, **stats}


def _check_vocab_size(model_name: str, num_logits: int, vocab: Vocabulary) -> None:
  if num_logits != len(vocab):
    raise UserError(f"{model_name} has {num_logits} logits but the corpus's vocabulary has "
                    f"{len(vocab)} words; read the corpus with the vocab.txt the model was "
                    "trained with")


def benchmark(tflite_path: str, threads: int = 1, floor: bool = True,
              litert_benchmark: bool = False,
              settings: host.BenchmarkSettings | None = None) -> dict:
  """Host latency and memory per token of a step ``.tflite`` (``scripts/benchmark.py``'s
  dict), with the floor reference measured in the same run."""
  settings = settings or host.BenchmarkSettings(num_threads=threads)
  return benchmark_report.host_report(tflite_path, settings, floor=floor,
                                      litert_benchmark=litert_benchmark)


__all__ = ["METHOD_CONFIGS", "MethodConfig", "benchmark", "compress", "evaluate",
           "export_tflite", "finetune", "load_model", "read_corpus", "strip",
           "training_callbacks", "vocab_of"]
