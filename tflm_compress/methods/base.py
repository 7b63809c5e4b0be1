"""What every compression method shares: the context, layer surgery, validation.

A method is a module in ``tflm_compress/methods/`` with:

* ``NAME``: its registry name (``low_rank``, ``tt``, ...).
* ``Config``: a frozen dataclass of its parameters, validated in
  ``__post_init__``. Field names are the ``scripts/compress.py`` flag names
  (so they must be unique across methods) and ``FLAG_HELP`` maps each field to
  its help text; ``scripts/compress.py`` defines the flags from these.
* ``compress(model, config, context) -> keras.Model``: a new model with the
  method's layers in place, initialised from ``model``'s weights; it checks
  ``config`` against the model's dims first (one clear error each).
* optional ``extra_loss(model, config) -> scalar`` (a regularizer added during
  fine-tuning), ``callbacks(model, config) -> [keras callbacks]``,
  ``weight_projections(model, config) -> [projection]`` (weights swapped for
  rounded values around each training step and evaluation, then restored:
  ``project()`` / ``restore()``, see ``training.Trainer``),
  ``strip(model, config) -> keras.Model`` (after fine-tuning, before export), ``report(model) -> dict``.

Methods compose: each replaces only the layers it targets and leaves the
others (including other methods' layers) as they are.
"""

import dataclasses
from typing import Callable

import numpy as np
import tf_keras as keras

from tflm_compress.data.vocab import Vocabulary
from tflm_compress.errors import UserError
from tflm_compress.layers.lstm import LSTM
from tflm_compress.names import layer_kind


@dataclasses.dataclass
class CompressionContext:
  """What a method may need besides the model.

  Attributes:
    vocab: the model's vocabulary (ids frequency-sorted; ``vocab.counts`` are
      the training counts when known).
    seed: for methods with random choices.
    finetune_steps: optimizer steps the fine-tuning will run (None: unknown),
      e.g. for a pruning schedule that must finish within them.
  """

  vocab: Vocabulary | None = None
  seed: int = 0
  finetune_steps: int | None = None

  def word_counts(self, vocab_size: int) -> np.ndarray:
    """Training counts per id, or a Zipf stand-in (ids are frequency-sorted)."""
    if self.vocab is not None and self.vocab.counts is not None:
      counts = self.vocab.counts.astype(np.float64)
      if len(counts) == vocab_size:
        return counts
    return 1.0 / np.arange(1, vocab_size + 1)


def lstm_layers(model: keras.Model) -> list[keras.layers.Layer]:
  """The model's LSTM layers, bottom first (named ``lstm_0``, ``lstm_1``...)."""
  return [l for l in model.layers if isinstance(l, LSTM)]


def find_layer(model: keras.Model, name: str) -> keras.layers.Layer | None:
  try:
    return model.get_layer(name)
  except ValueError:
    return None


def replace_layers(model: keras.Model,
                   make_layer: Callable[[keras.layers.Layer], keras.layers.Layer | None],
                   init_layer: Callable[[keras.layers.Layer, keras.layers.Layer], None]
                   ) -> keras.Model:
  """Clones ``model``, swapping some layers for new ones.

  Args:
    make_layer: ``old_layer -> new_layer``, or None to keep a copy of the old.
    init_layer: ``(new_layer, old_layer) -> None``, sets a new (built) layer's
      weights from the old one's.

  Returns:
    The new functional model (same inputs, outputs and layer names); kept
    layers carry their weights over exactly.
  """
  pairs = []

  def clone_function(layer):
    new = make_layer(layer)
    replaced = new is not None
    if new is None:
      new = layer.__class__.from_config(layer.get_config())
    pairs.append((new, layer, replaced))
    return new

  clone = keras.models.clone_model(model, clone_function=clone_function)
  for new, old, replaced in pairs:
    if replaced:
      init_layer(new, old)
    else:
      new.set_weights(old.get_weights())
  return clone


def replace_planned_layers(
    model: keras.Model,
    plans: dict[str, tuple[keras.layers.Layer, dict[str, np.ndarray]]]) -> keras.Model:
  """:func:`replace_layers` for the common case: a new layer per name, with values.

  Args:
    plans: layer name -> (new layer, {weight short name: initial value}). A
      weight without a value keeps its initializer; a value naming no weight
      of the new layer is an error (a typo would otherwise be silent).
  """

  def make_layer(layer):
    return plans[layer.name][0] if layer.name in plans else None

  def init_layer(new, old):
    values = dict(plans[old.name][1])
    for weight in new.weights:
      short = weight.name.split("/")[-1].split(":")[0]
      if short in values:
        weight.assign(values.pop(short))
    if values:
      raise ValueError(f"{new.name}: no weights named {sorted(values)}")

  return replace_layers(model, make_layer, init_layer)


def word_vector_tables(model: keras.Model, targets):
  """The dense embedding and softmax layers among ``targets``, with their word vectors.

  Yields ``(layer, kind, rows)``: ``rows`` is ``[V, D]``, one vector per word:
  the embedding table, or the softmax kernel transposed. Tied embeddings and
  layers other methods already replaced are skipped.
  """
  for layer in model.layers:
    kind = layer_kind(layer)
    if kind not in targets:
      continue
    if kind == "embedding" and type(layer) is keras.layers.Embedding:
      yield layer, kind, layer.embeddings.numpy()
    elif kind == "softmax" and type(layer) is keras.layers.Dense and layer.use_bias:
      yield layer, kind, layer.kernel.numpy().T


def check_rank(flag: str, rank: int, shape: tuple[int, int], layer_name: str) -> None:
  """A clear error for a rank that cannot be used on a ``shape`` matrix."""
  max_rank = min(shape)
  if not 1 <= rank <= max_rank:
    raise UserError(f"--{flag}={rank} does not fit {layer_name} ({shape[0]}x{shape[1]}); "
                    f"use 1..{max_rank}")
