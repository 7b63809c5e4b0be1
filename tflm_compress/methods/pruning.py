"""Magnitude pruning with TF Model Optimization (``tfmot.sparsity.keras``).

Targets, each with its own final sparsity: the embedding, each LSTM's input
and recurrent kernels (four gates together; biases stay dense) and the
softmax kernel. ``compress`` wraps each targeted layer in TFMOT's
``PruneLowMagnitude`` (our LSTM and tied embedding through
``PrunableLayer.get_prunable_weights``, see ``tfmot_support``); fine-tuning
then zeroes the smallest-magnitude weights on a schedule (Zhu & Gupta 2017:
polynomial ramp ``s_t = s (1 - (1 - t)^3)``, or a constant sparsity), driven
by the wrappers' step counter that :func:`callbacks`' ``UpdatePruningStep``
starts. ``strip`` finishes the schedule (TFMOT's own mask update at its final
step, so the stripped model has the target sparsity even if fine-tuning
ended early or was skipped), removes the wrappers with ``strip_pruning`` and
returns plain package layers.

A pruned model is as big as a dense one in ``model.keras`` and in a plain
``.tflite``; :func:`tflm_compress.export.sparsity.sparsity_sizes` says what the
zeros are worth: gzip of the file, and TFLite's sparse tensor encoding
(``Optimize.EXPERIMENTAL_SPARSITY``, alone and with int8); the fine-tuning run
adds it to this method's report.
"""

import dataclasses
import math

import numpy as np
import tensorflow as tf
import tf_keras as keras
import tensorflow_model_optimization as tfmot
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

from tflm_compress.errors import UserError
from tflm_compress.layers.pruning import PrunableLSTM, PrunableTiedEmbedding, PruneLowMagnitude
from tflm_compress.methods import tfmot_support
from tflm_compress.methods.base import CompressionContext, layer_kind, replace_layers

NAME = "prune"
# The public config class, ``tflm_compress.Prune``: ``Config`` with its fields' flag
# prefixes dropped (see :mod:`tflm_compress.api`).
API_NAME = "Prune"
FLAG_PREFIXES = ("pruning_", "prune_")
SCHEDULES = ("polynomial", "constant")
# Without a known fine-tuning length (and no --pruning_end_step), the ramp
# takes this many steps; strip() completes the schedule either way.
DEFAULT_RAMP_STEPS = 1000
# Mask updates along a derived ramp (TFMOT's ``frequency`` = ramp / this).
MASK_UPDATES_PER_RAMP = 20

FLAG_HELP = {
    "sparsity": "Prune: final fraction of zero weights for every targeted tensor, in [0, 1).",
    "embedding_sparsity": "Prune: sparsity of the embedding (overrides --sparsity; 0 = dense).",
    "lstm_sparsity": "Prune: sparsity of each LSTM kernel, input and recurrent (overrides "
                     "--sparsity; 0 = dense).",
    "softmax_sparsity": "Prune: sparsity of the softmax kernel (overrides --sparsity; 0 = dense).",
    "pruning_schedule": f"Prune: {' or '.join(SCHEDULES)} (Zhu & Gupta's cubic ramp from 0, "
                        "or the final sparsity from the first step).",
    "prune_block_size": "Prune: block sparsity 'H,W' (e.g. '1,4'): zero whole HxW blocks of "
                        "each 2-D weight ('' = single weights).",
    "pruning_begin_step": "Prune: fine-tuning step at which pruning starts.",
    "pruning_end_step": "Prune: step at which the ramp reaches the final sparsity (0 = half of "
                        "the fine-tuning when known, else begin + 1000).",
    "pruning_frequency": "Prune: steps between mask updates (0 = 1/20 of the ramp).",
}


def parse_block_size(text: str) -> tuple[int, int]:
  """``'1,4'`` -> ``(1, 4)``; ``''`` -> ``(1, 1)`` (no blocks)."""
  if not text.strip():
    return (1, 1)
  parts = [p.strip() for p in text.split(",")]
  try:
    dims = tuple(int(p) for p in parts)
  except ValueError:
    dims = ()
  if len(dims) != 2 or min(dims) < 1:
    raise UserError(f"--prune_block_size={text!r}; use 'H,W' with two positive ints, "
                    "e.g. '1,4' (or '' for no blocks)")
  return dims


@dataclasses.dataclass(frozen=True)
class Config:
  """Target sparsity per tensor group and the pruning schedule.

  Attributes:
    sparsity: final fraction of zeros for every group, in ``[0, 1)``.
    embedding_sparsity, lstm_sparsity, softmax_sparsity: per-group overrides
      (``None`` = use ``sparsity``; 0 = leave that group dense).
    pruning_schedule: ``polynomial`` (0 -> target, cubic, over
      ``[begin, end]``) or ``constant`` (the target from ``begin`` on).
    prune_block_size: ``'H,W'`` block sparsity, ``''`` for single weights.
    pruning_begin_step, pruning_end_step, pruning_frequency: the schedule in
      fine-tuning steps (0 for end/frequency = derived, see ``schedule_steps``).
  """

  sparsity: float = 0.0
  embedding_sparsity: float | None = None
  lstm_sparsity: float | None = None
  softmax_sparsity: float | None = None
  pruning_schedule: str = "polynomial"
  prune_block_size: str = ""
  pruning_begin_step: int = 0
  pruning_end_step: int = 0
  pruning_frequency: int = 0

  def __post_init__(self):
    for name in ("sparsity", "embedding_sparsity", "lstm_sparsity", "softmax_sparsity"):
      value = getattr(self, name)
      if value is not None and not 0.0 <= value < 1.0:
        raise UserError(f"--{name}={value}; must be in [0, 1) (the fraction of weights set "
                        "to zero; 0 = dense)")
    if self.pruning_schedule not in SCHEDULES:
      raise UserError(f"--pruning_schedule={self.pruning_schedule!r}; use one of {SCHEDULES}")
    parse_block_size(self.prune_block_size)
    for name in ("pruning_begin_step", "pruning_end_step", "pruning_frequency"):
      if getattr(self, name) < 0:
        raise UserError(f"--{name}={getattr(self, name)}; must be >= 0")
    if self.pruning_end_step and self.pruning_end_step <= self.pruning_begin_step:
      raise UserError(f"--pruning_end_step={self.pruning_end_step} must be after "
                      f"--pruning_begin_step={self.pruning_begin_step} (or 0 = derived)")
    if not any(self.group_sparsity(g) for g in tfmot_support.GROUPS):
      raise UserError("prune needs a target: set --sparsity (e.g. 0.9) or one of "
                      "--embedding_sparsity, --lstm_sparsity, --softmax_sparsity")

  def group_sparsity(self, group: str) -> float:
    value = getattr(self, f"{group}_sparsity")
    return self.sparsity if value is None else value

  @property
  def block_size(self) -> tuple[int, int]:
    return parse_block_size(self.prune_block_size)


def schedule_steps(config: Config, finetune_steps: int | None = None) -> tuple[int, int, int]:
  """``(begin, end, frequency)`` of the schedule, in training steps.

  Derived values: the ramp ends halfway through fine-tuning (the second half
  recovers at the final sparsity), or ``DEFAULT_RAMP_STEPS`` after ``begin``
  when the fine-tuning length is unknown; masks are updated
  ``MASK_UPDATES_PER_RAMP`` times along it. ``end`` is rounded up so that
  ``end - begin`` is a multiple of ``frequency`` (TFMOT updates masks only on
  multiples, so the last update lands exactly on the final sparsity).
  """
  begin = config.pruning_begin_step
  end = config.pruning_end_step
  if not end:
    ramp = max(1, finetune_steps // 2 - begin) if finetune_steps else DEFAULT_RAMP_STEPS
    end = begin + ramp
  frequency = config.pruning_frequency or max(1, (end - begin) // MASK_UPDATES_PER_RAMP)
  end = begin + frequency * math.ceil((end - begin) / frequency)
  return begin, end, frequency


def _make_schedule(config: Config, target: float, steps: tuple[int, int, int], calls: int):
  """TFMOT's schedule for one layer; ``calls`` scales steps for a layer called twice a step."""
  begin, end, frequency = (s * calls for s in steps)
  if config.pruning_schedule == "constant":
    return tfmot.sparsity.keras.ConstantSparsity(target, begin_step=begin, end_step=-1,
                                                 frequency=frequency)
  return tfmot.sparsity.keras.PolynomialDecay(initial_sparsity=0.0, final_sparsity=target,
                                              begin_step=begin, end_step=end, power=3,
                                              frequency=frequency)


def _prunable(layer: keras.layers.Layer) -> keras.layers.Layer | None:
  """A fresh prunable copy of a targeted package layer, or None if not targeted."""
  return tfmot_support.targeted_copy(layer, PrunableLSTM, PrunableTiedEmbedding)


def _check_block_size(config: Config, layer: keras.layers.Layer, group: str) -> None:
  block = config.block_size
  for short, weight in tfmot_support.targeted_weights(layer).items():
    shape = tuple(weight.shape)
    if block[0] > shape[0] or block[1] > shape[1]:
      raise UserError(f"--prune_block_size={config.prune_block_size!r} is larger than "
                      f"{layer.name}/{short} {shape[0]}x{shape[1]} ({group}); use a block "
                      "that fits every targeted matrix")


def compress(model: keras.Model, config: Config,
             context: CompressionContext | None = None) -> keras.Model:
  """Wraps each targeted layer of ``model`` in ``PruneLowMagnitude``.

  The fine-tuning length in steps, if ``context`` carries it
  (``context.finetune_steps``), places the default schedule (see
  :func:`schedule_steps`).
  """
  steps = schedule_steps(config, getattr(context, "finetune_steps", None))
  plans = {}  # layer name -> (group, sparsity, calls per step)
  for layer in model.layers:
    kind = layer_kind(layer)
    if kind not in tfmot_support.GROUPS or _prunable(layer) is None:
      continue
    target = config.group_sparsity(kind)
    if target:
      _check_block_size(config, layer, kind)
      plans[layer.name] = (kind, target, tfmot_support.call_count(layer))
  if not plans:
    raise UserError("prune found no dense embedding, LSTM or softmax layer for the requested "
                    "groups (layers of other methods are left alone; tied embeddings count as "
                    "the embedding group)")

  def make_layer(layer):
    if layer.name not in plans:
      return None
    _, target, calls = plans[layer.name]
    # What tfmot.sparsity.keras.prune_low_magnitude(layer, ...) builds for
    # one layer, with the strategy-aware subclass above.
    return PruneLowMagnitude(
        _prunable(layer), pruning_schedule=_make_schedule(config, target, steps, calls),
        block_size=config.block_size, block_pooling_type="AVG")

  def init_layer(new, old):
    new.set_weights(old.get_weights())  # The wrapper passes them to the wrapped layer.

  return replace_layers(model, make_layer, init_layer)


class UpdatePruningStep(tfmot.sparsity.keras.UpdatePruningStep):
  """TFMOT's ``UpdatePruningStep``, run in the strategy the model was built under.

  ``model.fit`` calls callbacks inside its strategy's scope; the package's
  training loop calls them outside it. TFMOT's end-of-epoch re-masking
  (``weight_mask_op``) then takes the default replica context's path and
  fails on mirrored variables, so each hook enters
  ``model.distribute_strategy.scope()`` first (a no-op without a strategy).
  """

  def on_train_begin(self, logs=None):
    with self.model.distribute_strategy.scope():
      super().on_train_begin(logs)

  def on_epoch_end(self, batch, logs=None):
    with self.model.distribute_strategy.scope():
      super().on_epoch_end(batch, logs)


def callbacks(model: keras.Model, config: Config) -> list:
  """``UpdatePruningStep``: starts the wrappers' step counters, re-masks after each epoch.

  The wrappers count training calls themselves (TFMOT 0.8), so the loop's
  ``on_train_batch_begin`` needs to do nothing.
  """
  del model, config
  return [UpdatePruningStep()]


def _final_step(schedule) -> int:
  if isinstance(schedule, tfmot.sparsity.keras.ConstantSparsity):
    return schedule.begin_step
  return schedule.end_step


def complete_schedules(model: keras.Model) -> None:
  """Brings every pruning wrapper of ``model`` to its schedule's final step.

  Runs TFMOT's own mask update (``Pruning.conditional_mask_update``) at the
  final step, then applies the masks to the weights. A no-op on masks that
  already reached the final sparsity; otherwise it completes the ramp, so the
  weights have exactly the target sparsity.
  """
  # In the model's strategy scope (cross-replica): plain assigns of every copy.
  with model.distribute_strategy.scope():
    for layer in model.layers:
      if isinstance(layer, pruning_wrapper.PruneLowMagnitude):
        layer.pruning_step.assign(_final_step(layer.pruning_schedule))
        layer.pruning_obj.conditional_mask_update()
        layer.pruning_obj.weight_mask_op()


def strip(model: keras.Model, config: Config | None = None) -> keras.Model:
  """Final masks, ``strip_pruning``, and package layers again: a normal, sparse model."""
  del config  # Everything strip needs is in the wrappers.
  complete_schedules(model)
  return tfmot_support.to_package_layers(tfmot.sparsity.keras.strip_pruning(model))


def measured_sparsity(model: keras.Model) -> dict[str, float]:
  """Fraction of exact zeros in each targeted tensor (``lstm_0/kernel``...)."""
  return {name: float(np.mean(value == 0))
          for name, value in tfmot_support.target_tensors(model).items()}


def report(model: keras.Model) -> dict:
  """Measured sparsity per targeted tensor and overall.

  ``nonzero_params`` counts the trainable weights that are not exactly zero
  (``params`` in ``metrics.json`` counts the zeros too).
  """
  tensors = tfmot_support.target_tensors(model)
  zeros = sum(int(np.sum(v == 0)) for v in tensors.values())
  total = sum(v.size for v in tensors.values())
  return {"sparsity": measured_sparsity(model),
          "overall_sparsity": zeros / max(total, 1),
          "nonzero_params": int(sum(np.count_nonzero(w.numpy()) for w in model.trainable_weights))}
