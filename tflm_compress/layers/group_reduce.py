"""GroupReduce layers: a vocabulary split into blocks, each block low-rank.

Chen et al. 2018, "GroupReduce: Block-Wise Low-Rank Approximation for Neural
Language Model Shrinking" (arXiv 1806.06950). Word ``w`` belongs to block
``word_block[w]`` and is row ``word_position[w]`` of that block; block ``b``
(``n_b`` words) stores its rows as ``U_b V_b`` with ``U_b`` ``[n_b, r_b]`` and
``V_b`` ``[r_b, D]``. The two int tables are non-trainable int32 weights, so
they travel through ``model.keras``, checkpoints and the ``.tflite`` (as int32
constants, never quantized) and an assignment that is not contiguous in id
order (after GroupReduce's refinement) costs no float parameters.

Both layers lower to builtin TFLite ops only: GATHER, MINIMUM, EQUAL, CAST,
MUL, CONCATENATION, SPLIT_V, FULLY_CONNECTED, ADD, RESHAPE.
"""

from typing import Sequence

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tflm_compress.layers.lstm import PACKAGE, fresh_initializer


def contiguous_assignment(block_sizes: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
  """``(word_block, word_position)`` of blocks that are contiguous id ranges."""
  sizes = np.asarray(block_sizes, np.int64)
  word_block = np.repeat(np.arange(len(sizes)), sizes)
  offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
  word_position = np.arange(int(sizes.sum())) - offsets[word_block]
  return word_block.astype(np.int32), word_position.astype(np.int32)


def _check_blocks(vocab_size: int, block_sizes: Sequence[int], ranks: Sequence[int]) -> None:
  if len(block_sizes) != len(ranks) or not block_sizes:
    raise ValueError(f"GroupReduce needs one rank per block; got block_sizes={list(block_sizes)}"
                     f" and ranks={list(ranks)}")
  if sum(block_sizes) != vocab_size:
    raise ValueError(f"GroupReduce block_sizes={list(block_sizes)} sum to {sum(block_sizes)}, "
                     f"not the vocabulary size {vocab_size}")
  if min(block_sizes) < 1 or min(ranks) < 1:
    raise ValueError(f"GroupReduce block sizes and ranks must be >= 1; got "
                     f"block_sizes={list(block_sizes)}, ranks={list(ranks)}")


def _int_table(values: np.ndarray):
  """An initializer that yields the fixed int table ``values``."""

  def initializer(shape, dtype=None):
    del shape
    return tf.constant(values, dtype=dtype or tf.int32)

  return initializer


class _BlockTables:
  """Mixin: the word -> (block, position) int tables shared by both layers."""

  def _build_tables(self):
    word_block, word_position = contiguous_assignment(self.block_sizes)
    vocab_size = len(word_block)
    self.word_block = self.add_weight("word_block", shape=(vocab_size,), dtype=tf.int32,
                                      trainable=False, initializer=_int_table(word_block))
    self.word_position = self.add_weight("word_position", shape=(vocab_size,), dtype=tf.int32,
                                         trainable=False, initializer=_int_table(word_position))

  @property
  def num_blocks(self) -> int:
    return len(self.block_sizes)


@keras.utils.register_keras_serializable(package=PACKAGE)
class GroupReduceEmbedding(_BlockTables, keras.layers.Layer):
  """An embedding ``[V, E]`` stored as one low-rank factorization per word block.

  Row ``w`` is ``U_b[p] @ V_b`` with ``b = word_block[w]``, ``p =
  word_position[w]``. The lookup gathers each block's ``U_b`` row (positions
  clipped into range), zeroes the blocks the token is not in, concatenates the
  ``[..., r_b]`` pieces and multiplies once by ``concat_b V_b`` ``[sum r_b, E]``:
  exact (the masks are 0 or 1), ``sum r_b * E`` multiply-adds per token.
  Parameters: ``sum_b r_b * (n_b + E)``; plus two int32 tables of ``V``.

  Args:
    input_dim: vocabulary size ``V``.
    output_dim: embedding size ``E``.
    block_sizes: words per block ``n_b`` (sums to ``V``).
    ranks: rank ``r_b`` of each block.
    embeddings_initializer: initializer of the factors.
    **kwargs: passed to ``keras.layers.Layer``.

  Call arguments:
    inputs: int ids ``[...]``; returns float ``[..., E]``.

  Weights:
    ``block{b}_u`` ``[n_b, r_b]``, ``block{b}_v`` ``[r_b, E]``, ``word_block``
    and ``word_position`` int32 ``[V]`` (non-trainable; contiguous blocks in
    id order until set otherwise).

  Reference:
    Chen et al. 2018, arXiv 1806.06950.
  """

  # The TFLite ops this layer lowers to in the step graph (export.check_exportable).
  tflite_lowering = "GATHER per block + CONCATENATION + FULLY_CONNECTED"

  def __init__(self, input_dim: int, output_dim: int, block_sizes: Sequence[int],
               ranks: Sequence[int], embeddings_initializer="uniform", **kwargs):
    super().__init__(**kwargs)
    self.input_dim = int(input_dim)
    self.output_dim = int(output_dim)
    self.block_sizes = [int(n) for n in block_sizes]
    self.ranks = [int(r) for r in ranks]
    _check_blocks(self.input_dim, self.block_sizes, self.ranks)
    self.embeddings_initializer = keras.initializers.get(embeddings_initializer)

  def build(self, input_shape):
    self.u = [self.add_weight(f"block{b}_u", shape=(n, r),
                              initializer=fresh_initializer(self.embeddings_initializer))
              for b, (n, r) in enumerate(zip(self.block_sizes, self.ranks))]
    self.v = [self.add_weight(f"block{b}_v", shape=(r, self.output_dim),
                              initializer=fresh_initializer(self.embeddings_initializer))
              for b, r in enumerate(self.ranks)]
    self._build_tables()
    super().build(input_shape)

  def call(self, inputs):
    ids = tf.cast(inputs, tf.int32)
    block = tf.gather(self.word_block, ids)
    position = tf.gather(self.word_position, ids)
    pieces = []
    for b, size in enumerate(self.block_sizes):
      rows = tf.gather(self.u[b], tf.minimum(position, size - 1))  # [..., r_b]
      if self.num_blocks > 1:
        rows *= tf.cast(tf.equal(block, b), rows.dtype)[..., None]
      pieces.append(rows)
    codes = tf.concat(pieces, axis=-1) if len(pieces) > 1 else pieces[0]
    shape = tf.shape(codes)
    basis = tf.concat(self.v, axis=0) if len(self.v) > 1 else self.v[0]
    out = tf.matmul(tf.reshape(codes, [-1, sum(self.ranks)]), basis)
    return tf.reshape(out, tf.concat([shape[:-1], [self.output_dim]], 0))

  def compute_output_shape(self, input_shape):
    return tf.TensorShape(input_shape).concatenate([self.output_dim])

  def get_config(self):
    config = super().get_config()
    config.update({
        "input_dim": self.input_dim, "output_dim": self.output_dim,
        "block_sizes": list(self.block_sizes), "ranks": list(self.ranks),
        "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer)})
    return config


@keras.utils.register_keras_serializable(package=PACKAGE)
class GroupReduceSoftmax(_BlockTables, keras.layers.Layer):
  """Logits over ``V`` words from one low-rank factorization per word block.

  The output vectors of block ``b``'s words (``kernel[:, words]^T``,
  ``[n_b, H]``) are ``U_b V_b``; stored in matmul layout as ``block{b}_basis``
  = ``V_b^T`` ``[H, r_b]`` and ``block{b}_words`` = ``U_b^T`` ``[r_b, n_b]``.
  ``h @ concat_b basis_b`` (one matmul) is split per block, each piece times
  its ``words_b``, the ``[N, n_b]`` results concatenated (block order) and
  put back in vocabulary order by one GATHER of the fixed permutation
  ``offset[word_block] + word_position``; then ``+ bias``. Parameters:
  ``sum_b r_b * (n_b + H) + V``.

  Args:
    units: vocabulary size ``V``.
    block_sizes: words per block ``n_b`` (sums to ``V``).
    ranks: rank ``r_b`` of each block.
    kernel_initializer: initializer of the factors.
    **kwargs: passed to ``keras.layers.Layer``.

  Call arguments:
    inputs: float ``[..., H]``; returns logits ``[..., V]``.

  Reference:
    Chen et al. 2018, arXiv 1806.06950.
  """

  # The TFLite ops this layer lowers to in the step graph (export.check_exportable).
  tflite_lowering = (
      "FULLY_CONNECTED + SPLIT_V + FULLY_CONNECTED per block + CONCATENATION + GATHER")

  def __init__(self, units: int, block_sizes: Sequence[int], ranks: Sequence[int],
               kernel_initializer="glorot_uniform", **kwargs):
    super().__init__(**kwargs)
    self.units = int(units)
    self.block_sizes = [int(n) for n in block_sizes]
    self.ranks = [int(r) for r in ranks]
    _check_blocks(self.units, self.block_sizes, self.ranks)
    self.kernel_initializer = keras.initializers.get(kernel_initializer)

  def build(self, input_shape):
    input_dim = int(input_shape[-1])
    self.basis = [self.add_weight(f"block{b}_basis", shape=(input_dim, r),
                                  initializer=fresh_initializer(self.kernel_initializer))
                  for b, r in enumerate(self.ranks)]
    self.words = [self.add_weight(f"block{b}_words", shape=(r, n),
                                  initializer=fresh_initializer(self.kernel_initializer))
                  for b, (n, r) in enumerate(zip(self.block_sizes, self.ranks))]
    self.bias = self.add_weight("bias", shape=(self.units,), initializer="zeros")
    self._build_tables()
    super().build(input_shape)

  def call(self, inputs):
    shape = tf.shape(inputs)
    flat = tf.reshape(inputs, [-1, inputs.shape[-1]])
    basis = tf.concat(self.basis, axis=1) if len(self.basis) > 1 else self.basis[0]
    codes = tf.matmul(flat, basis)  # [N, sum r_b]
    pieces = tf.split(codes, self.ranks, axis=1) if self.num_blocks > 1 else [codes]
    block_logits = [tf.matmul(p, w) for p, w in zip(pieces, self.words)]
    logits = tf.concat(block_logits, axis=1) if len(block_logits) > 1 else block_logits[0]
    offsets = tf.constant(np.concatenate([[0], np.cumsum(self.block_sizes)[:-1]]), tf.int32)
    order = tf.gather(offsets, self.word_block) + self.word_position  # vocab id -> column
    logits = tf.gather(logits, order, axis=1) + self.bias
    return tf.reshape(logits, tf.concat([shape[:-1], [self.units]], 0))

  def compute_output_shape(self, input_shape):
    return tf.TensorShape(input_shape)[:-1].concatenate([self.units])

  def get_config(self):
    config = super().get_config()
    config.update({
        "units": self.units, "block_sizes": list(self.block_sizes), "ranks": list(self.ranks),
        "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)})
    return config
