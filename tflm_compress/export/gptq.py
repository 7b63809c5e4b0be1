"""GPTQ rounding for the sub-8-bit exports (``--algorithm=gptq``).

Rounding each weight to its nearest grid value (``min_max``) treats every
input of a FULLY_CONNECTED as equally important and every rounding error as
independent. GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training
Quantization for Generative Pre-trained Transformers", arXiv 2210.17323)
rounds one input column at a time and moves the error of that column onto
the columns not yet rounded, weighted by the inverse of the input Hessian
``H = X^T X`` of calibration activations, so that ``X W`` (the layer's
output on real text), not ``W``, stays close to the float layer's.

Here the rounding happens on the Keras model, before conversion, on exactly
the grid the export's ``min_max`` scales give (symmetric, ``max|w| / 7`` per
output channel, or per block of inputs with a bfloat16 scale, as
:func:`nearest`; ``int4_qat`` trains on the same): each channel's (each
block's) largest weight is kept where it is, so the export recomputes the same
scale, and the quantizer then stores the rounded values exactly (tested: the
int4 file computes the rounded model's float logits).

First, each pair of low-rank factors is turned by a random rotation that their
product absorbs (:func:`rotate_factor_pairs`). Then, what is rounded, in model
order, each on the activations of the model rounded so far (the "sequential"
calibration of the paper):

* the embedding: a looked-up row has no input, but its error reaches the model
  through the next matmul ``M`` only (a low-rank embedding's projection, else
  the first LSTM's input kernel), so each row is rounded by GPTQ with
  ``H = M M^T``; a low-rank embedding's projection is then fitted on the
  rounded rows;
* each LSTM: a dense LSTM's ``[kernel; recurrent_kernel]`` as the one
  FULLY_CONNECTED over ``[x, h]`` of its step; a low-rank LSTM's factors one
  by one (``kernel_u`` on ``x``, ``kernel_v`` on ``x @ kernel_u``, ...);
* the softmax (dense, low-rank, or a tied table as the logits' weight).

Before rounding, a weight fed by already-rounded inputs is refitted to the
float layer's output (``W' = W + (X_q^T X_q + lambda)^{-1} X_q^T (X_f - X_q) W``,
ridge towards ``W``): the error of the layers below is absorbed where it can
be. Other layers (tensor-train, slim, GroupReduce, ...) are left to the
export's ``min_max`` rounding. Calibration text is the training split (the
exports' ``calibration_ids``): validation stays for choosing, test for
reporting.
"""

import contextlib

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tflm_compress.errors import UserError
from tflm_compress.layers.low_rank import LowRankDense, LowRankEmbedding, LowRankLSTM
from tflm_compress.layers.lstm import LSTM
from tflm_compress.layers.tied_embedding import TiedEmbedding
from tflm_compress.names import EMBEDDING, SOFTMAX

# Calibration: this many sequences of this many tokens from the training text, each from
# a zero state (65,536 tokens; PTB small int4 valid: 120.58 -> 120.30 against 16,384, the
# low-rank r=32 model's 120.99 -> 120.54). No activation as wide as the vocabulary is held.
CALIBRATION_SEQUENCES = 1024
CALIBRATION_STEPS = 64
DAMPING = 0.01  # Added to H's diagonal, as a fraction of its mean (the paper's 1%).
REFIT_RIDGE = 0.01  # The refit's ridge, as a fraction of the mean of X_q^T X_q's diagonal.
# Each row's scale is max|w| / levels times the one of these with the least GPTQ loss
# (w - q) H (w - q)^T: clipping the largest weights buys a finer grid for the rest.
CLIP_RATIOS = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75)


def levels(bits: int) -> int:
  """Grid values each side of zero: 7 at 4 bits (the scale is ``max|w| / levels``)."""
  return 2 ** (bits - 1) - 1


def _bfloat16(values: np.ndarray) -> np.ndarray:
  return tf.cast(tf.cast(values, tf.bfloat16), tf.float64).numpy()


def _scales(w: np.ndarray, top: int, blocked: bool) -> np.ndarray:
  scale = np.maximum(np.abs(w).max(axis=-1), 1e-9) / top  # ai-edge-quantizer's floor.
  return _bfloat16(scale) if blocked else scale


def nearest(weight: np.ndarray, bits: int, block_size: int = 0) -> np.ndarray:
  """``weight`` (``[out, in]``) rounded to nearest on ``min_max``'s grid, as the export
  rounds it: a scale ``max|w| / levels(bits)`` per row, or per block of ``block_size``
  inputs where it divides ``in`` (bfloat16)."""
  w = np.asarray(weight, np.float64)
  out_dim, in_dim = w.shape
  top = levels(bits)
  blocked = bool(block_size) and in_dim % block_size == 0  # A block may be the whole row.
  span = block_size if blocked else in_dim
  blocks = w.reshape(out_dim, in_dim // span, span)
  scale = _scales(blocks, top, blocked)[..., None]
  q = np.clip(np.round(blocks / scale), -top - 1, top) * scale
  return q.reshape(out_dim, in_dim).astype(np.float32)


def gptq_round(weight: np.ndarray, hessian: np.ndarray, bits: int, block_size: int = 0,
               damping: float = DAMPING, clip_ratios: tuple[float, ...] = (1.0,)
               ) -> np.ndarray:
  """``weight`` (``[out, in]``, a FULLY_CONNECTED's layout) on the ``min_max`` grid, GPTQ's way.

  A scale per output row, ``max|w| / levels(bits)`` over the row, or, where
  ``block_size`` divides ``in``, per run of ``block_size`` inputs (bfloat16,
  computed when the block is reached, from the weights as updated so far).
  Inputs are rounded in order; each one's error is spread over the later
  inputs of the same row by the upper Cholesky factor of ``H^-1``. The
  largest weight of each row (block) takes no update, so it lands on
  ``±levels`` and the export recomputes the same scale; values are clipped to
  ``±levels`` for the same reason. Weights that are exactly zero (pruned) stay zero
  and take no update.

  Args:
    weight: ``[out, in]``.
    hessian: ``[in, in]``, ``X^T X`` of the inputs (any positive scale).
    bits: 2, 4 or 8.
    block_size: 0 for a scale per row.
    damping: added to the diagonal, a fraction of its mean.
    clip_ratios: scales tried per row, as fractions of ``max|w| / levels``; each row
      keeps the rounding of least ``(w - q) H (w - q)^T``. A clipped row's largest
      weights land on ``±levels``, so the export's scale is still its own.

  Returns:
    The rounded weight, float32, every row (block) a multiple of its scale.
  """
  w = np.asarray(weight, np.float64)
  h = np.array(hessian, np.float64)
  if h.shape != (w.shape[1], w.shape[1]):
    raise ValueError(f"hessian {h.shape} does not match weight {w.shape}")
  best, best_loss = None, None
  for ratio in clip_ratios:
    q = _gptq_round(w, h, bits, block_size, damping, ratio)
    d = w - q
    loss = np.sum((d @ h) * d, axis=1)
    if best is None:
      best, best_loss = q, loss
    else:
      better = loss < best_loss
      best[better], best_loss[better] = q[better], loss[better]
  return best.astype(np.float32)


def _gptq_round(weight, hessian, bits, block_size, damping, ratio) -> np.ndarray:
  """:func:`gptq_round` at one clip ratio (float64)."""
  w = np.array(weight, np.float64)
  out_dim, in_dim = w.shape
  top = levels(bits)
  h = np.array(hessian, np.float64)
  blocked = bool(block_size) and in_dim % block_size == 0  # A block may be the whole row.
  span = block_size if blocked else in_dim
  dead = np.diag(h) <= 0  # An input never active: its column rounds with nothing to move.
  h[dead, dead] = 1.0
  h += damping * float(np.mean(np.diag(h))) * np.eye(in_dim)
  # H^-1 = U^T U: row i of U says how the inputs after i absorb input i's error.
  u = np.linalg.cholesky(np.linalg.inv(h)).T
  rows = np.arange(out_dim)
  pruned = w == 0  # Zeros stay zeros: a pruned model's sparsity survives.
  q = np.empty_like(w)
  for i in range(in_dim):
    if i % span == 0:
      block = w[:, i:i + span]
      scale = _scales(ratio * block, top, blocked)
      pin_cols = i + np.abs(block).argmax(axis=1)
      pin_vals = w[rows, pin_cols]
    column = w[:, i]
    q[:, i] = np.clip(np.round(column / scale), -top, top) * scale
    if i + 1 < in_dim:
      error = (column - q[:, i]) / u[i, i]
      w[:, i + 1:] -= np.outer(error, u[i, i + 1:])
      later = pin_cols > i
      w[rows[later], pin_cols[later]] = pin_vals[later]
      w[:, i + 1:][pruned[:, i + 1:]] = 0.0
  return q


def refit(weight: np.ndarray, x_rounded: np.ndarray, x_float: np.ndarray,
          ridge: float = REFIT_RIDGE) -> np.ndarray:
  """``weight`` (``[in, out]``) moved so that ``x_rounded @ W'`` fits ``x_float @ weight``.

  Ridge regression towards ``weight``: directions the calibration text hardly
  visits keep the float weight.
  """
  xq = np.asarray(x_rounded, np.float64)
  xf = np.asarray(x_float, np.float64)
  gram = xq.T @ xq
  gram += ridge * max(float(np.mean(np.diag(gram))), 1e-12) * np.eye(gram.shape[0])
  delta = np.linalg.solve(gram, (xq.T @ (xf - xq)) @ np.asarray(weight, np.float64))
  return (np.asarray(weight, np.float64) + delta).astype(np.float32)


def _short(variable) -> str:
  return variable.name.split("/")[-1].split(":")[0]


def _name(layer, variable, groups: set[str]) -> str:
  """The weight group of ``variable``: ``LAYER.WEIGHT`` or, alone in its layer, ``LAYER``."""
  full = f"{layer.name}.{_short(variable)}"
  return full if full in groups else layer.name


def _relative_error(x_q, w_q, x_f, w, chunk: int = 4096) -> float:
  """``|x_q @ w_q - x_f @ w| / |x_f @ w|``, a chunk of rows at a time."""
  num = den = 0.0
  for start in range(0, len(x_q), chunk):
    exact = x_f[start:start + chunk] @ w
    num += float(np.sum((x_q[start:start + chunk] @ w_q - exact) ** 2))
    den += float(np.sum(exact ** 2))
  return float(np.sqrt(num / max(den, 1e-30)))


def _flat(x) -> np.ndarray:
  x = np.asarray(x, np.float32)
  return x.reshape(-1, x.shape[-1])


def _round_matmul(unit_weight: np.ndarray, x_rounded: np.ndarray, x_float: np.ndarray,
                  bits: int, block_size: int, refitting: bool,
                  clip_ratios: tuple[float, ...]) -> np.ndarray:
  """A ``[in, out]`` matmul weight fed ``x_rounded`` (float model: ``x_float``), rounded."""
  w = refit(unit_weight, x_rounded, x_float) if refitting else unit_weight
  w = np.where(unit_weight == 0, 0.0, w)  # A pruned weight stays pruned.
  hessian = np.asarray(x_rounded, np.float64).T @ np.asarray(x_rounded, np.float64)
  return gptq_round(w.T, hessian, bits, block_size, clip_ratios=clip_ratios).T


# Low-rank layers' factor pairs ``(A, B)`` whose product ``A @ B`` is what the model
# computes: ``A @ R`` and ``R^T @ B`` compute it too, for any orthogonal ``R``.
_FACTOR_PAIRS = {LowRankEmbedding: (("embeddings", "projection"),),
                 LowRankLSTM: (("kernel_u", "kernel_v"), ("recurrent_u", "recurrent_v")),
                 LowRankDense: (("kernel_u", "kernel_v"),)}
ROTATION_SEED = 0


def rotate_factor_pairs(model: keras.Model, seed: int = ROTATION_SEED) -> list[str]:
  """Turns every low-rank factor pair ``(A, B)`` into ``(A R, R^T B)``, ``R`` a random
  orthogonal ``[r, r]`` matrix; returns the pairs turned (``LAYER.A+B``).

  The float model computes the same function (up to float rounding), and no op is
  added: the rotation lives in the factors. Rounding likes it: a random rotation
  spreads a row's few large values over all of its ``r`` entries (incoherence,
  as in QuIP, Chee et al. 2023), so a row's ``max|w| / levels`` scale is finer for
  the rest. It is ai-edge-quantizer's ``hadamard`` rotation, for free: that one
  rotates a FULLY_CONNECTED's input at run time. PTB small, low-rank r=32, int4 in
  blocks of 32: valid 122.69 without, 120.99 with (fp32 117.07).
  """
  rng = np.random.default_rng(seed)
  turned = []
  for layer in model.layers:
    for a_name, b_name in _FACTOR_PAIRS.get(type(layer), ()):
      a, b = getattr(layer, a_name, None), getattr(layer, b_name, None)
      if a is None or b is None:
        continue
      if not (np.all(a.numpy()) and np.all(b.numpy())):  # Pruned factors keep their zeros.
        continue
      rank = int(a.shape[-1])
      rotation, _ = np.linalg.qr(rng.normal(size=(rank, rank)))
      a.assign((a.numpy().astype(np.float64) @ rotation).astype(np.float32))
      b.assign((rotation.T @ b.numpy().astype(np.float64)).astype(np.float32))
      turned.append(f"{layer.name}.{a_name}+{b_name}")
  return turned


def _calibration_tokens(ids: np.ndarray, sequences: int, steps: int) -> tf.Tensor:
  """``[sequences, steps]`` windows spread evenly over ``ids``."""
  ids = np.asarray(ids, np.int64)
  if len(ids) < 2:
    raise UserError("--algorithm=gptq needs calibration text (the training split); "
                    f"got {len(ids)} tokens")
  steps = max(1, min(steps, len(ids)))
  count = max(1, min(sequences, len(ids) // steps))
  starts = np.linspace(0, len(ids) - steps, count).astype(np.int64)
  return tf.constant(np.stack([ids[s:s + steps] for s in starts]), tf.int32)


@contextlib.contextmanager
def rounded(model: keras.Model, bits: dict[str, int], calibration_ids: np.ndarray,
            granularity: dict[str, str] | None = None, refitting: bool = True,
            clip_ratios: tuple[float, ...] = CLIP_RATIOS, bias_correction: bool = True,
            rotate: bool = True,
            sequences: int = CALIBRATION_SEQUENCES, steps: int = CALIBRATION_STEPS,
            report: dict | None = None):
  """``model`` with its weights GPTQ-rounded for ``bits`` inside the ``with``; restored after.

  Args:
    model: a language model of this package (embedding, LSTMs, softmax).
    bits: the export's bits per weight group (``sub8bit.weight_groups`` names); groups
      below 8 bits are rounded, the rest keep their float weights.
    calibration_ids: training token ids.
    granularity: the export's plan per group (``sub8bit.plan_granularity``:
      ``CHANNELWISE`` or ``BLOCKWISE_<n>``); a group not in it has a scale per channel.
    refitting: refit each weight fed by rounded inputs first (see module doc).
    clip_ratios: the row scales tried (:func:`gptq_round`).
    bias_correction: add to each layer's float bias the mean, over the calibration
      text, of what rounding took from its output (LSTM gates, logits).
    rotate: first turn each pair of low-rank factors by a random rotation
      (:func:`rotate_factor_pairs`): the same float model, easier to round.
    sequences, steps: the calibration windows.
    report: filled with ``{"groups": the groups rounded, "tokens": calibration tokens,
      "output_error": {group: |X_q W_q - X_f W| / |X_f W|}, ...}``.
  """
  saved = [v.numpy() for v in model.weights]
  try:
    _Rounder(model, bits, granularity or {}, refitting, tuple(clip_ratios), bias_correction,
             rotate, report if report is not None else {}).run(
                 _calibration_tokens(calibration_ids, sequences, steps))
    yield model
  finally:
    for variable, value in zip(model.weights, saved):
      variable.assign(value)


class _Rounder:
  """Rounds a model in order; ``x_f`` / ``x_q``: a layer's input in the float / rounded model.

  Each layer's float outputs are computed before the layer is rounded, its rounded
  outputs after.
  """

  def __init__(self, model, bits, granularity, refitting, clip_ratios, bias_correction,
               rotate, report):
    self.model, self.bits, self.granularity, self.refitting = model, bits, granularity, refitting
    self.clip_ratios, self.bias_correction, self.rotate = clip_ratios, bias_correction, rotate
    self.report = report
    report.update({"groups": [], "refit": refitting, "damping": DAMPING,
                   "clip_ratios": list(clip_ratios), "output_error": {},
                   "bias_shift": {}})

  def correct_bias(self, layer, bias, shift: np.ndarray) -> None:
    """``bias += shift``: the mean of ``x_f W - x_q W_q`` over the calibration tokens."""
    if not self.bias_correction or bias is None:
      return
    bias.assign(bias.numpy() + shift.astype(np.float32))
    self.report["bias_shift"][layer.name] = float(np.linalg.norm(shift))

  def width(self, name: str) -> int:
    """The bits ``name`` is rounded to, or 0 (8 bits and float are left to the export)."""
    value = self.bits.get(name, 32)
    return value if value < 8 else 0

  def block_size(self, name: str) -> int:
    plan = self.granularity.get(name, "CHANNELWISE")
    return int(plan.split("_")[1]) if plan.startswith("BLOCKWISE_") else 0

  def matmul(self, layer, variables: list, x_q: np.ndarray, x_f: np.ndarray,
             transposed: bool = False, outputs: bool = True):
    """Rounds ``variables`` (``[in, out]`` weights stacked along inputs; ``transposed``: one
    ``[out, in]`` table) fed ``x_q`` (float model: ``x_f``).

    Returns the outputs ``(x_q @ W_rounded, x_f @ W)``, or ``(None, None)`` without
    ``outputs`` (a softmax's logits are never held for every calibration token), and sets
    ``self.shortfall``: ``mean(x_f @ W - x_q @ W_rounded)`` over the tokens.
    """
    name = (_name(layer, variables[0], set(self.bits)) if len(variables) == 1
            else layer.name)
    weight = np.concatenate([v.numpy() for v in variables], axis=0)
    if transposed:
      weight = weight.T
    new = weight
    width = self.width(name)
    if width:
      new = _round_matmul(weight, x_q, x_f, width, self.block_size(name), self.refitting,
                          self.clip_ratios)
      self.report["groups"].append(name)
      self.report["output_error"][name] = _relative_error(x_q, new, x_f, weight)
      if transposed:
        variables[0].assign(new.T)
      else:
        offset = 0
        for v in variables:
          v.assign(new[offset:offset + v.shape[0]])
          offset += v.shape[0]
    self.shortfall = x_f.mean(axis=0) @ weight - x_q.mean(axis=0) @ new
    if not outputs:
      return None, None
    return x_q @ new, x_f @ weight

  def run(self, tokens: tf.Tensor) -> None:
    model = self.model
    self.report["tokens"] = int(np.prod(tokens.shape))
    if self.rotate:
      self.report["rotated_pairs"] = rotate_factor_pairs(model)
    x_q, x_f = self.embedding(_layer(model, EMBEDDING), tokens)
    for layer in [l for l in model.layers if isinstance(l, LSTM)]:
      x_q, x_f = self.lstm(layer, x_q, x_f)
    softmax = _layer(model, SOFTMAX)
    if softmax is None and type(_layer(model, EMBEDDING)) is TiedEmbedding:
      softmax = _layer(model, EMBEDDING)
    self.softmax(softmax, _flat(x_q), _flat(x_f))

  def embedding(self, layer, tokens):
    if layer is None:
      raise UserError(f"--algorithm=gptq: model {self.model.name!r} has no {EMBEDDING!r} "
                      "layer")
    shape = list(tokens.shape)
    if type(layer) not in (keras.layers.Embedding, LowRankEmbedding):
      x = np.asarray(layer(tokens))  # Tied (rounded as the softmax) or left to the export.
      return x, x
    # A looked-up row has no input to calibrate on, but its error reaches the model only
    # through the next matmul M (the projection, or the first LSTM's input kernel): each
    # row is rounded by GPTQ with H = M M^T, which weighs the error |e M|^2.
    table = layer.embeddings.numpy()
    name = _name(layer, layer.embeddings, set(self.bits))
    rows_f = _flat(tf.gather(table, tokens))
    if self.width(name):
      after = self.next_matmul(layer)
      if after is None:
        table = nearest(table, self.width(name), self.block_size(name))
      else:
        table = gptq_round(table, after @ after.T, self.width(name), self.block_size(name))
        layer.embeddings.assign(table)
      self.report["groups"].append(name)
    rows_q = _flat(tf.gather(table, tokens))
    if type(layer) is LowRankEmbedding:
      rows_q, rows_f = self.matmul(layer, [layer.projection], rows_q, rows_f)
    return rows_q.reshape(shape + [-1]), rows_f.reshape(shape + [-1])

  def next_matmul(self, embedding) -> np.ndarray | None:
    """``[D, out]``: the linear map an embedding row goes through first, if known."""
    if type(embedding) is LowRankEmbedding:
      return embedding.projection.numpy()
    first = next((l for l in self.model.layers if isinstance(l, LSTM)), None)
    if type(first) is LSTM:
      return first.kernel.numpy()
    if type(first) is LowRankLSTM:
      if first.input_rank:
        return first.kernel_u.numpy() @ first.kernel_v.numpy()
      return first.kernel.numpy()
    return None

  def lstm(self, layer, x_q, x_f):
    if type(layer) not in (LSTM, LowRankLSTM):  # Left to the export's rounding.
      return _lstm_outputs(layer, x_q), _lstm_outputs(layer, x_f)
    in_f, h_prev_f, out_f = _lstm_run(layer, x_f)
    in_q, h_prev_q, _ = _lstm_run(layer, x_q)
    if type(layer) is LSTM:  # The step's one FULLY_CONNECTED over [x, h].
      self.matmul(layer, [layer.kernel, layer.recurrent_kernel],
                  np.concatenate([in_q, h_prev_q], 1), np.concatenate([in_f, h_prev_f], 1),
                  outputs=False)
      self.correct_bias(layer, layer.bias, self.shortfall)
    else:
      shortfall = 0.0
      chains = [([layer.kernel_u, layer.kernel_v] if layer.input_rank else [layer.kernel],
                 in_q, in_f),
                ([layer.recurrent_u, layer.recurrent_v] if layer.recurrent_rank
                 else [layer.recurrent_kernel], h_prev_q, h_prev_f)]
      for variables, q, f in chains:
        for i, variable in enumerate(variables):
          q, f = self.matmul(layer, [variable], q, f, outputs=i + 1 < len(variables))
        shortfall = shortfall + self.shortfall
      self.correct_bias(layer, layer.bias, shortfall)
    return _lstm_outputs(layer, x_q), out_f

  def softmax(self, layer, x_q, x_f):
    if type(layer) is keras.layers.Dense:
      self.matmul(layer, [layer.kernel], x_q, x_f, outputs=False)
    elif type(layer) is LowRankDense:
      q, f = self.matmul(layer, [layer.kernel_u], x_q, x_f)
      self.matmul(layer, [layer.kernel_v], q, f, outputs=False)
    elif type(layer) is TiedEmbedding:
      self.matmul(layer, [layer.embeddings], x_q, x_f, transposed=True, outputs=False)
    else:
      return
    self.correct_bias(layer, getattr(layer, "bias", None), self.shortfall)


def _layer(model: keras.Model, name: str):
  return next((layer for layer in model.layers if layer.name == name), None)


def _lstm_run(layer, x) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """``(x_t, h_{t-1}, outputs)`` of ``layer`` on ``x`` (``[B, T, D]``) from a zero state,
  flattened over batch and time (outputs kept ``[B, T, H]``)."""
  x = tf.convert_to_tensor(x, tf.float32)
  zeros = tf.zeros([tf.shape(x)[0], layer.units])
  outputs = layer.run_steps(x, zeros, zeros)[0]
  previous = tf.concat([zeros[:, None], outputs[:, :-1]], axis=1)
  return _flat(x), _flat(previous), outputs.numpy()


def _lstm_outputs(layer, x) -> np.ndarray:
  return _lstm_run(layer, x)[2]
