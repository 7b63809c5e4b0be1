"""Intrinsic Sparse Structures: remove whole hidden units of each LSTM layer.

Wen et al., "Learning Intrinsic Sparse Structures within Long Short-Term
Memory" (ICLR 2018, arXiv 1709.05027). The ISS component ``k`` of an LSTM
layer with ``H`` units is every weight tied to hidden unit ``k``:

* columns ``k, H+k, 2H+k, 3H+k`` (the four gates i, f, c, o) of the input
  ``kernel`` ``[input_dim, 4H]``, the ``recurrent_kernel`` ``[H, 4H]`` and the
  ``bias`` ``[4H]``: everything that computes unit ``k``;
* row ``k`` of the ``recurrent_kernel`` (all gates) and row ``k`` of the
  consumer's input kernel (the next LSTM's ``kernel``, or the softmax
  ``Dense`` kernel for the last layer): everything that reads ``h[k]``.

When a component is all zero, unit ``k`` is dead (from a zero state its
``c`` and ``h`` stay 0, and nothing reads it), so deleting it (with its ``h``
and ``c`` state entries) leaves the model's outputs unchanged and what
remains is an ordinary, smaller, dense LSTM. The pipeline:

1. ``compress``: checks the model; with ``--iss_keep`` it removes at once the
   lowest-norm components of each layer (a direct, non-learned baseline);
   otherwise the model is returned as is.
2. fine-tuning adds ``extra_loss``, the group Lasso
   ``iss_lambda * sum_layers sum_k w_layer * ||component_k||_2``; the
   callback zeroes components whose norm is below ``--iss_threshold`` every
   ``--iss_threshold_every`` batches (the paper thresholds after every
   iteration to make the sparsity exact and stable).
   Once a component is all zero it stays so under SGD: the data gradient of
   a dead unit is 0 (nothing reads it, nothing feeds it) and the regularizer
   is written to have gradient 0 at a zero group.
3. ``strip``: a last thresholding pass, then surgery: every zero component
   is deleted and a new, smaller model of the same layer classes, names and
   inputs (``h{i}``, ``c{i}`` with the new sizes) carries the remaining
   weights over exactly.

Group weights: the reference code (``iss-rnns``, ``ptb/ptb_word_lm.py``,
``add_structure_grouplasso``) sums plain group norms, every group weighted 1,
with one global strength (``global_decay`` 0.00245 for the 2x1500 PTB
model, with the same "sum over time of the batch-mean NLL" cost as ours);
that is our default (``--iss_group_weight=none``). Within a layer every
group has the same size, so ``--iss_group_weight=sqrt_size`` (the classic
``sqrt(p_g)`` of Yuan & Lin) only rebalances layers against each other.

Two differences from the reference code, both so that deletion is exact:
the bias columns belong to the group (otherwise a unit with zero weights but
a nonzero bias keeps a constant, nonzero ``h``), and each weight is counted
once (``recurrent_kernel[k, gH+k]`` is in both the column and row parts of
component ``k``; the reference sums its square twice). The threshold acts on
whole groups by their norm, not on single weights by magnitude as the
reference code does, since only a fully zero group can be deleted.

Tied embeddings: the last LSTM's size must equal the embedding size, so its
units are never removed (only the layers below it are shrunk).
"""

import dataclasses
import math
import weakref
from typing import Sequence

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tflm_compress.errors import UserError
from tflm_compress.layers.lstm import LSTM
from tflm_compress.layers.tied_embedding import TiedEmbedding
from tflm_compress.methods.base import CompressionContext, find_layer
from tflm_compress.models.config import get_preset
from tflm_compress.models.lstm_lm import build_language_model
from tflm_compress.names import EMBEDDING, SOFTMAX, lstm_name

NAME = "iss"
# The public config class, ``tflm_compress.ISS``: ``Config`` with its fields' flag
# prefixes dropped (see :mod:`tflm_compress.api`).
API_NAME = "ISS"
FLAG_PREFIXES = ("iss_",)

GROUP_WEIGHTS = ("none", "sqrt_size")

FLAG_HELP = {
    "iss_lambda": "ISS: group-Lasso strength on the ISS components during fine-tuning "
                  "(0 = no regularizer).",
    "iss_threshold": "ISS: components whose group norm falls below this are zeroed "
                     "(and deleted by the final surgery).",
    "iss_threshold_every": "ISS: zero the components below --iss_threshold every this many "
                           "batches of fine-tuning (0 = only at the end).",
    "iss_min_units": "ISS: keep at least this many hidden units in each LSTM layer.",
    "iss_units_multiple": "ISS: round each layer's kept units up to a multiple of this (8: "
                          "hidden sizes XNNPACK's float kernels run at full speed; 1 = off). "
                          "Give it to every ISS stage of a chain: a later stage without it "
                          "zeroes and deletes the extra units again.",
    "iss_keep": "ISS: remove at once all but this fraction of each LSTM layer's units, the "
                "top-norm ones (a non-learned baseline; unset = learn with --iss_lambda).",
    "iss_group_weight": f"ISS: weight of each group norm in the regularizer: {GROUP_WEIGHTS} "
                        "(none = the paper's code; sqrt_size = sqrt(group size)).",
}


@dataclasses.dataclass(frozen=True)
class Config:
  """ISS parameters (the field names are the ``scripts/compress.py`` flags).

  Attributes:
    iss_lambda: group-Lasso strength ``lambda`` (>= 0).
    iss_threshold: group-norm threshold (>= 0); components below it (or
      exactly zero) are zeroed and removed. The default 1e-2 is far below a
      live group (norms ~1..10 in the tiny and PTB models) and above the
      norm at which the regularizer leaves a dying group oscillating (about
      the step size: lr * lambda with SGD, ~3e-3 with Adam on the tiny run).
    iss_threshold_every: batches between thresholding passes during
      fine-tuning (0 = only in ``strip``).
    iss_min_units: units kept per layer at least (>= 1).
    iss_units_multiple: the kept units of each layer are rounded up to a
      multiple of this (capped at the layer's size) by keeping the top-norm
      components below the threshold too. On x86 XNNPACK's float GEMM runs a
      gate matmul of ``4H`` columns at ~1.7x the time per weight when ``4H``
      rounded up to 16 is an odd multiple of 16 (``docs/notes/2026-11-25-ptb-small-methods.md``,
      ISS section); ``H`` a multiple of 8 avoids it (and suits ARM's 8- and 16-wide
      kernels). 1 = no rounding. The extra units are below the threshold, so a
      later ISS stage (e.g. ``--iss_keep=1.0`` fine-tuning) run without the
      same multiple zeroes and deletes them again.
    iss_keep: if set, a fraction in (0, 1]: ``compress`` keeps the
      ``round(iss_keep * H)`` top-norm units of each layer (at least
      ``iss_min_units``, rounded up to ``iss_units_multiple``) and deletes
      the rest before fine-tuning.
    iss_group_weight: ``none`` (every group weighted 1) or ``sqrt_size``.
  """

  iss_lambda: float = 0.0
  iss_threshold: float = 1e-2
  iss_threshold_every: int = 1
  iss_min_units: int = 1
  iss_units_multiple: int = 1
  iss_keep: float | None = None
  iss_group_weight: str = "none"

  def __post_init__(self):
    if not (math.isfinite(self.iss_lambda) and self.iss_lambda >= 0):
      raise UserError(f"--iss_lambda={self.iss_lambda}; must be a number >= 0")
    if not (math.isfinite(self.iss_threshold) and self.iss_threshold >= 0):
      raise UserError(f"--iss_threshold={self.iss_threshold}; must be a number >= 0")
    if self.iss_threshold_every < 0:
      raise UserError(f"--iss_threshold_every={self.iss_threshold_every}; must be >= 0 "
                      "(0 = only at the end)")
    if self.iss_min_units < 1:
      raise UserError(f"--iss_min_units={self.iss_min_units}; must be >= 1")
    if self.iss_units_multiple < 1:
      raise UserError(f"--iss_units_multiple={self.iss_units_multiple}; must be >= 1 "
                      "(1 = no rounding)")
    if self.iss_keep is not None and not 0.0 < self.iss_keep <= 1.0:
      raise UserError(f"--iss_keep={self.iss_keep}; must be in (0, 1] (a fraction of units)")
    if self.iss_group_weight not in GROUP_WEIGHTS:
      raise UserError(f"--iss_group_weight={self.iss_group_weight!r}; use one of "
                      f"{list(GROUP_WEIGHTS)}")
    if self.iss_lambda == 0 and self.iss_keep is None:
      raise UserError("iss needs --iss_lambda > 0 (learn which units to remove) or "
                      "--iss_keep=FRACTION (keep the top-norm units at once)")


# ----- The groups, as plain functions on arrays -----------------------------------------------

def gate_columns(units: int, components) -> np.ndarray:
  """Columns of a ``[., 4*units]`` gate matrix that belong to ``components``.

  Gate-major (all i columns, then f, c, o), so ``matrix[:, gate_columns(H,
  keep)]`` is the gate matrix of an LSTM with units ``keep``.
  """
  components = np.asarray(components, np.int64).reshape(-1)
  return (np.arange(4)[:, None] * units + components[None, :]).reshape(-1)


def component_masks(k: int, units: int, input_dim: int,
                    consumer_width: int | None) -> dict[str, np.ndarray]:
  """Boolean masks of the weights in ISS component ``k`` of one LSTM layer.

  Args:
    k: the hidden unit, ``0 <= k < units``.
    units: ``H``.
    input_dim: rows of the layer's input ``kernel``.
    consumer_width: columns of the consumer's input kernel (``4 * H_next``
      for an LSTM, ``V`` for the softmax); None when no weight reads ``h``.

  Returns:
    ``{"kernel": [input_dim, 4H], "recurrent_kernel": [H, 4H], "bias": [4H],
    "consumer_kernel": [H, consumer_width]}`` (the last one absent without a
    consumer), True where the weight belongs to component ``k``.
  """
  cols = gate_columns(units, [k])
  kernel = np.zeros((input_dim, 4 * units), bool)
  kernel[:, cols] = True
  recurrent = np.zeros((units, 4 * units), bool)
  recurrent[:, cols] = True
  recurrent[k, :] = True
  bias = np.zeros(4 * units, bool)
  bias[cols] = True
  masks = {"kernel": kernel, "recurrent_kernel": recurrent, "bias": bias}
  if consumer_width is not None:
    consumer = np.zeros((units, consumer_width), bool)
    consumer[k, :] = True
    masks["consumer_kernel"] = consumer
  return masks


def group_size(units: int, input_dim: int, consumer_width: int | None) -> int:
  """Weights in one ISS component (each counted once): ``4*in + 8H + width``."""
  return 4 * input_dim + 8 * units + (consumer_width or 0)


def group_norms(kernel, recurrent_kernel, bias, consumer_kernel=None) -> tf.Tensor:
  """The L2 norm of every ISS component of one layer, ``[H]``.

  Args:
    kernel: ``[input_dim, 4H]``; recurrent_kernel: ``[H, 4H]``; bias: ``[4H]``.
    consumer_kernel: ``[H, width]`` (rows read ``h``), or None.

  The same as ``sqrt(sum(w[mask]**2))`` over :func:`component_masks` (each
  weight once), computed with column/row sums. Differentiable everywhere,
  with gradient 0 at a zero group (a zero group stays put).
  """
  recurrent_kernel = tf.convert_to_tensor(recurrent_kernel)
  units = recurrent_kernel.shape[0]

  def per_unit(gate_vector):  # [4H] -> [H], summed over the four gates
    return tf.reduce_sum(tf.reshape(gate_vector, [4, units]), axis=0)

  recurrent_sq = tf.square(recurrent_kernel)
  # recurrent_kernel[k, g*H + k] is both in column k and in row k: count it once.
  diagonal = tf.linalg.diag_part(tf.transpose(tf.reshape(recurrent_sq, [units, 4, units]),
                                              [1, 0, 2]))  # [4, H]
  sq = (per_unit(tf.reduce_sum(tf.square(kernel), axis=0))
        + per_unit(tf.reduce_sum(recurrent_sq, axis=0))
        + tf.reduce_sum(recurrent_sq, axis=1)
        - tf.reduce_sum(diagonal, axis=0)
        + per_unit(tf.square(bias)))
  if consumer_kernel is not None:
    sq += tf.reduce_sum(tf.square(consumer_kernel), axis=1)
  sq = tf.maximum(sq, 0.0)  # The diagonal subtraction can round below 0.
  positive = sq > 0
  # The double where keeps the gradient finite (0) at a zero group.
  return tf.where(positive, tf.sqrt(tf.where(positive, sq, tf.ones_like(sq))),
                  tf.zeros_like(sq))


def kept_units(count: int, units: int, min_units: int = 1, units_multiple: int = 1) -> int:
  """``count`` raised to ``min_units`` and rounded up to ``units_multiple``, at most ``units``."""
  count = max(count, min_units)
  return min(units, -(-count // units_multiple) * units_multiple)


def components_to_remove(norms, threshold: float, min_units: int,
                         units_multiple: int = 1) -> np.ndarray:
  """Bool ``[H]``: groups with norm below ``threshold`` (or exactly 0).

  The survivors number at least ``min_units`` and a multiple of
  ``units_multiple`` (or all ``H``): the top-norm ones of those below the
  threshold make up the difference (ties: lower index first; a zero group
  kept this way is a dead unit, and keeping it changes no output).
  """
  norms = np.asarray(norms, np.float64)
  remove = (norms < threshold) | (norms == 0)
  survivors = len(norms) - int(remove.sum())
  keep_count = kept_units(survivors, len(norms), min_units, units_multiple)
  if keep_count > survivors:
    order = np.argsort(-norms, kind="stable")
    remove = np.ones(len(norms), bool)
    remove[order[:keep_count]] = False
  return remove


def top_components(norms, keep_count: int) -> np.ndarray:
  """Sorted indices of the ``keep_count`` largest norms (ties: lower index)."""
  order = np.argsort(-np.asarray(norms, np.float64), kind="stable")
  return np.sort(order[:keep_count])


def slice_lstm(kernel, recurrent_kernel, bias, keep, input_keep=None):
  """Weights of the LSTM with only units ``keep`` (and inputs ``input_keep``).

  Returns:
    ``(kernel [len(input_keep), 4K], recurrent_kernel [K, 4K], bias [4K])``
    with ``K = len(keep)``, in the LSTM's gate layout.
  """
  units = np.shape(recurrent_kernel)[0]
  cols = gate_columns(units, keep)
  kernel = np.asarray(kernel)
  if input_keep is not None:
    kernel = kernel[np.asarray(input_keep, np.int64)]
  return (kernel[:, cols], np.asarray(recurrent_kernel)[np.asarray(keep, np.int64)][:, cols],
          np.asarray(bias)[cols])


# ----- The model's ISS sites ------------------------------------------------------------------

@dataclasses.dataclass
class Site:
  """One LSTM layer and the layer that reads its ``h``.

  Attributes:
    lstm: the LSTM layer.
    consumer: the next LSTM, the softmax ``Dense`` or the ``TiedEmbedding``.
    prunable: False for the last layer of a tied-embedding model (its size
      must equal the embedding size).
  """

  lstm: keras.layers.Layer
  consumer: keras.layers.Layer
  prunable: bool

  @property
  def consumer_kernel(self):
    return None if isinstance(self.consumer, TiedEmbedding) else self.consumer.kernel

  def norms(self) -> tf.Tensor:
    return group_norms(self.lstm.kernel, self.lstm.recurrent_kernel, self.lstm.bias,
                       self.consumer_kernel)

  def group_size(self) -> int:
    width = None if self.consumer_kernel is None else int(self.consumer_kernel.shape[1])
    return group_size(self.lstm.units, int(self.lstm.kernel.shape[0]), width)


def sites(model: keras.Model) -> list[Site]:
  """The model's LSTM layers (bottom first) with their consumers.

  Raises:
    UserError: if the model is not a plain LSTM LM of this package (an LSTM
      replaced by another method, an unknown softmax) or has nothing ISS can
      shrink.
  """
  lstms = []
  while find_layer(model, lstm_name(len(lstms))) is not None:
    lstms.append(model.get_layer(lstm_name(len(lstms))))
  if not lstms:
    raise UserError(f"iss found no LSTM layer ({lstm_name(0)}, ...) in model {model.name!r}")
  for layer in lstms:
    if type(layer) is not LSTM:
      raise UserError(
          f"iss needs the package's plain LSTM layers, but {layer.name} is "
          f"{type(layer).__name__}: run scripts/compress.py with --method=iss on its own "
          "first, then compress its output with the other method")
  embedding = find_layer(model, EMBEDDING)
  tied = isinstance(embedding, TiedEmbedding)
  softmax = embedding if tied else find_layer(model, SOFTMAX)
  if not tied and type(softmax) is not keras.layers.Dense:
    found = "none" if softmax is None else type(softmax).__name__
    raise UserError(f"iss needs a Dense {SOFTMAX!r} layer after the last LSTM (found {found}): "
                    "run --method=iss on its own first, then compress its output with the "
                    "other method")
  result = [Site(lstm, lstms[i + 1] if i + 1 < len(lstms) else softmax,
                 prunable=not (tied and i == len(lstms) - 1))
            for i, lstm in enumerate(lstms)]
  if not any(s.prunable for s in result):
    raise UserError("iss cannot shrink a one-layer model with tied embeddings: its LSTM size "
                    "must stay equal to the embedding size")
  return result


def _check_min_units(model_sites: list[Site], config: Config) -> None:
  for site in model_sites:
    if site.prunable and config.iss_min_units > site.lstm.units:
      raise UserError(f"--iss_min_units={config.iss_min_units} exceeds the hidden size of "
                      f"{site.lstm.name} ({site.lstm.units}); use 1..{site.lstm.units}")


# ----- Regularizer and thresholding -----------------------------------------------------------

def group_lasso(model: keras.Model, group_weight: str = "none") -> tf.Tensor:
  """``sum over shrinkable layers of w * sum_k ||component_k||_2`` (no lambda)."""
  terms = []
  for site in sites(model):
    if site.prunable:
      weight = math.sqrt(site.group_size()) if group_weight == "sqrt_size" else 1.0
      terms.append(weight * tf.reduce_sum(site.norms()))
  return tf.add_n(terms)


def extra_loss(model: keras.Model, config: Config) -> tf.Tensor:
  """The group-Lasso term ``iss_lambda * group_lasso(model)`` for fine-tuning."""
  if config.iss_lambda == 0:
    return tf.constant(0.0)
  return config.iss_lambda * group_lasso(model, config.iss_group_weight)


def zero_components(site: Site, remove) -> None:
  """Sets every weight of the components ``remove`` (bool ``[H]``) to 0, in place."""
  unit_keep = tf.constant(~np.asarray(remove, bool), tf.float32)
  col_keep = tf.tile(unit_keep, [4])  # column g*H + k -> unit k
  lstm = site.lstm
  lstm.kernel.assign(lstm.kernel * col_keep[None, :])
  lstm.recurrent_kernel.assign(lstm.recurrent_kernel * col_keep[None, :] * unit_keep[:, None])
  lstm.bias.assign(lstm.bias * col_keep)
  if site.consumer_kernel is not None:
    site.consumer_kernel.assign(site.consumer_kernel * unit_keep[:, None])


def apply_threshold(model: keras.Model, threshold: float, min_units: int,
                    norms_fn=None, units_multiple: int = 1) -> dict[str, np.ndarray]:
  """Zeroes the components below ``threshold`` in every shrinkable layer
  (:func:`components_to_remove` chooses them).

  Args:
    norms_fn: optional ``() -> [norms per shrinkable site]`` (a compiled
      :func:`norms_function`); by default computed eagerly.

  Returns:
    ``{layer name: bool [H]}``, the components that are now zero (removable).
  """
  shrinkable = [s for s in sites(model) if s.prunable]
  all_norms = norms_fn() if norms_fn is not None else [s.norms() for s in shrinkable]
  removed = {}
  for site, norms in zip(shrinkable, all_norms):
    norms = np.asarray(norms)
    remove = components_to_remove(norms, threshold, min_units, units_multiple)
    if np.any(norms[remove] > 0):  # Assign only when something changes.
      zero_components(site, remove)
    removed[site.lstm.name] = remove
  return removed


def norms_function(model: keras.Model):
  """A compiled ``() -> [group norms of each shrinkable site]`` for ``model``."""
  shrinkable = [s for s in sites(model) if s.prunable]
  return tf.function(lambda: [s.norms() for s in shrinkable])


class ThresholdCallback(keras.callbacks.Callback):
  """Zeroes the components below the threshold every ``every`` batches and at epoch ends.

  Args:
    threshold, min_units, units_multiple: as :func:`apply_threshold`.
    every: batches between passes (0 = only at epoch ends).
  """

  def __init__(self, threshold: float, min_units: int, every: int, units_multiple: int = 1):
    super().__init__()
    self.threshold = threshold
    self.min_units = min_units
    self.units_multiple = units_multiple
    self.every = every
    self._norms_fn = None

  def set_model(self, model):
    super().set_model(model)
    self._norms_fn = None

  def _apply(self):
    if self._norms_fn is None:  # Compiled once: per-batch eager ops would cost more.
      self._norms_fn = norms_function(self.model)
    apply_threshold(self.model, self.threshold, self.min_units, self._norms_fn,
                    self.units_multiple)

  def on_train_batch_begin(self, batch, logs=None):
    if self.every and batch % self.every == 0:
      self._apply()

  def on_epoch_end(self, epoch, logs=None):
    self._apply()


# ----- Surgery ---------------------------------------------------------------------------------

# What each model made by surgery came from: {"units_before": {name: H}, "kept": {name:
# original indices}, "lstm_params_before": int}. Weak keys: the record lives with the model.
_RECORDS: "weakref.WeakKeyDictionary[keras.Model, dict]" = weakref.WeakKeyDictionary()


def _lstm_params(model_sites: list[Site]) -> int:
  return int(sum(np.prod(w.shape) for s in model_sites for w in s.lstm.trainable_weights))


def remove_components(model: keras.Model, keep: dict[str, np.ndarray]) -> keras.Model:
  """The smaller model with only the units ``keep[name]`` of each named LSTM.

  Layers not named keep all their units. Every layer keeps its class, name
  and config (but ``units``); the state inputs ``h{i}``, ``c{i}`` get the new
  sizes; kept weights are copied exactly, so if the removed components were
  zero the outputs are unchanged (logits, and the kept state entries).

  Args:
    model: a language model of this package (see :func:`sites`).
    keep: ``{lstm name: indices of the units to keep}`` (sorted, unique).
  """
  model_sites = sites(model)
  by_name = {s.lstm.name: s for s in model_sites}
  for name, indices in keep.items():
    if name not in by_name:
      raise UserError(f"iss: no LSTM layer {name!r}; the model has {sorted(by_name)}")
    units = by_name[name].lstm.units
    indices = np.asarray(indices, np.int64)
    if (indices.ndim != 1 or not len(indices) or np.any(np.diff(indices) <= 0)
        or indices[0] < 0 or indices[-1] >= units):
      raise UserError(f"iss: units to keep in {name} must be sorted unique indices in "
                      f"0..{units - 1}, at least one; got {indices.tolist()}")
    if not by_name[name].prunable and len(indices) != units:
      raise UserError(f"iss: {name} feeds the tied embedding, so its {units} units must stay")
  keep = {name: np.asarray(keep.get(name, np.arange(s.lstm.units)), np.int64)
          for name, s in by_name.items()}
  input_keep = {s.consumer.name: keep[s.lstm.name] for s in model_sites
                if s.consumer_kernel is not None}

  # New inputs: the same tokens input, states of the new sizes, same names.
  # (The package's models take tokens, h0, c0, h1, c1, ...: input 1 + 2i and 2 + 2i are
  # the state of lstm_i.)
  new_inputs = []
  for i, (tensor, name) in enumerate(zip(model.inputs, model.input_names)):
    shape = tuple(tensor.shape[1:])
    if i >= 1:
      shape = (len(keep[lstm_name((i - 1) // 2)]),)
    new_inputs.append(keras.Input(shape=shape, batch_size=tensor.shape[0], dtype=tensor.dtype,
                                  name=name))

  def clone_function(layer):
    config = layer.get_config()
    if layer.name in keep:
      config["units"] = len(keep[layer.name])
    return layer.__class__.from_config(config)

  new_model = keras.models.clone_model(model, input_tensors=new_inputs,
                                       clone_function=clone_function)
  for layer in model.layers:
    if isinstance(layer, keras.layers.InputLayer):
      continue
    new = new_model.get_layer(layer.name)
    if layer.name in keep:
      kernel, recurrent, bias = slice_lstm(layer.kernel.numpy(), layer.recurrent_kernel.numpy(),
                                           layer.bias.numpy(), keep[layer.name],
                                           input_keep.get(layer.name))
      new.kernel.assign(kernel)
      new.recurrent_kernel.assign(recurrent)
      new.bias.assign(bias)
    elif layer.name in input_keep:  # The softmax Dense.
      new.kernel.assign(layer.kernel.numpy()[input_keep[layer.name]])
      new.bias.assign(layer.bias.numpy())
    else:
      new.set_weights(layer.get_weights())

  previous = _RECORDS.get(model)
  units_before = {n: s.lstm.units for n, s in by_name.items()}
  kept = {n: k for n, k in keep.items()}
  record = {"units_before": units_before, "kept": kept,
            "lstm_params_before": _lstm_params(model_sites)}
  if previous is not None:  # Compose with an earlier surgery: indices of the original model.
    record = {"units_before": previous["units_before"],
              "kept": {n: np.asarray(previous["kept"][n])[k] for n, k in kept.items()},
              "lstm_params_before": previous["lstm_params_before"]}
  _RECORDS[new_model] = record
  return new_model


# ----- The method contract ---------------------------------------------------------------------

def compress(model: keras.Model, config: Config,
             context: CompressionContext | None = None) -> keras.Model:
  """Checks the model; with ``iss_keep``, deletes all but the top-norm units now."""
  del context
  model_sites = sites(model)
  _check_min_units(model_sites, config)
  if config.iss_keep is None:
    return model
  keep = {}
  for site in model_sites:
    if site.prunable:
      units = site.lstm.units
      count = kept_units(int(round(config.iss_keep * units)), units, config.iss_min_units,
                         config.iss_units_multiple)
      keep[site.lstm.name] = top_components(site.norms().numpy(), count)
  return remove_components(model, keep)


def settled(config: Config) -> bool:
  """Whether ``compress`` leaves nothing to do: ``iss_keep`` without a penalty removes the
  units at once, so in a chain (``iss+low_rank``) the later methods may change the layers
  ISS's hooks read (the softmax), and ISS's hooks are not run."""
  return config.iss_keep is not None and config.iss_lambda == 0


def callbacks(model: keras.Model, config: Config) -> list:
  """The periodic thresholding; also checks, before training starts, that ISS fits ``model``."""
  _check_min_units(sites(model), config)
  if config.iss_threshold_every == 0 or config.iss_threshold == 0:
    return []
  return [ThresholdCallback(config.iss_threshold, config.iss_min_units,
                            config.iss_threshold_every, config.iss_units_multiple)]


def strip_with(model: keras.Model, threshold: float, min_units: int,
               units_multiple: int = 1) -> keras.Model:
  """Thresholds, then deletes every zero component (see :func:`remove_components`).

  Returns ``model`` itself when nothing is removed.
  """
  removed = apply_threshold(model, threshold, min_units, units_multiple=units_multiple)
  if not any(r.any() for r in removed.values()):
    return model
  return remove_components(model, {name: np.flatnonzero(~r) for name, r in removed.items()})


def strip(model: keras.Model, config: Config) -> keras.Model:
  """The last thresholding pass and the surgery: the smaller dense model."""
  return strip_with(model, config.iss_threshold, config.iss_min_units, config.iss_units_multiple)


def report(model: keras.Model) -> dict:
  """Per LSTM layer: units before/after and the kept units; LSTM params before/after."""
  model_sites = sites(model)
  record = _RECORDS.get(model)
  layers = {}
  for site in model_sites:
    name, units = site.lstm.name, site.lstm.units
    kept = record["kept"][name] if record else np.arange(units)
    layers[name] = {"units_before": record["units_before"][name] if record else units,
                    "units_after": units, "kept": [int(k) for k in kept]}
  after = _lstm_params(model_sites)
  return {"hidden_sizes": [s.lstm.units for s in model_sites], "layers": layers,
          "lstm_params_before": record["lstm_params_before"] if record else after,
          "lstm_params_after": after}


def preset_iss_models(preset: str, keeps: Sequence[float]) -> dict[str, keras.Model]:
  """A preset's architecture (vocabulary 100, random weights), then its
  ISS-shrunk selves keeping each fraction of ``keeps`` of every layer's units.

  For timing how a relative cut of the LSTM units pays off at each size, and
  how latency falls with the units kept (the fixed cost is what remains):
  latency does not depend on the weights' values.
  """
  if not keeps:
    raise UserError("give at least one --iss_keep fraction")
  if len(set(keeps)) != len(keeps):
    raise UserError(f"--iss_keep={','.join(f'{k:g}' for k in keeps)} repeats a fraction")
  model = build_language_model(get_preset(preset).model.with_vocab_size(100), seed=0)
  models = {preset: model}
  for keep in keeps:
    models[f"{preset}_iss{keep:g}"] = compress(model, Config(iss_keep=keep))
  return models
