"""Slim embedding layers: word vectors built from a shared pool of sub-vectors.

Li et al. 2018, "Slim Embedding Layers for Recurrent Neural Language Models"
(AAAI 2018, arXiv 1711.09873). Each word's ``D``-vector is the concatenation
of ``K`` sub-vectors of size ``D / K``, sub-vector ``k`` of word ``w`` being
``pool[assignment[w, k]]``; ``pool`` is ``[M, D / K]`` and ``assignment`` a
fixed random ``[V, K]`` int table drawn from a seed. The table is a
non-trainable int32 weight: it travels through ``model.keras``, checkpoints
and the ``.tflite`` as int data, never as float parameters.
"""

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tflm_compress.layers.lstm import PACKAGE, fresh_initializer


def random_assignment(vocab_size: int, num_subvectors: int, pool_size: int,
                      seed: int) -> np.ndarray:
  """The fixed ``[V, K]`` pool ids of every word's sub-vectors (int32).

  A seeded shuffle of ``V*K`` slots filled with ``0..M-1`` in turn, so the
  draw is uniform but balanced: each pool entry serves ``floor`` or ``ceil``
  of ``V*K / M`` slots (none unused when ``M <= V*K``). The same arguments
  give the same table.
  """
  slots = np.arange(vocab_size * num_subvectors, dtype=np.int64) % pool_size
  rng = np.random.default_rng(seed)
  return rng.permutation(slots).reshape(vocab_size, num_subvectors).astype(np.int32)


def _check(dim: int, num_subvectors: int, pool_size: int, what: str) -> None:
  if num_subvectors < 1 or dim % num_subvectors:
    raise ValueError(f"slim {what}: num_subvectors={num_subvectors} does not divide {dim}")
  if pool_size < 1:
    raise ValueError(f"slim {what}: pool_size={pool_size}; must be >= 1")


class _Assignment:
  """Mixin: the ``[V, K]`` int32 assignment table, drawn from ``seed`` in build."""

  def _build_assignment(self, vocab_size: int):
    table = random_assignment(vocab_size, self.num_subvectors, self.pool_size, self.seed)

    def initializer(shape, dtype=None):
      del shape
      return tf.constant(table, dtype=dtype or tf.int32)

    self.assignment = self.add_weight("assignment", shape=table.shape, dtype=tf.int32,
                                      trainable=False, initializer=initializer)


@keras.utils.register_keras_serializable(package=PACKAGE)
class SlimEmbedding(_Assignment, keras.layers.Layer):
  """An input embedding ``[V, E]`` whose rows are ``K`` pooled sub-vectors each.

  Lookup: GATHER the ``[..., K]`` pool ids of the tokens, GATHER the pool rows
  ``[..., K, E/K]``, RESHAPE to ``[..., E]``. Parameters: ``M * E / K``
  (plus the int32 table ``[V, K]``).

  Args:
    input_dim: vocabulary size ``V``.
    output_dim: embedding size ``E`` (a multiple of ``num_subvectors``).
    num_subvectors: ``K``, sub-vectors per word.
    pool_size: ``M``, shared sub-vectors.
    seed: seed of the assignment table.
    embeddings_initializer: initializer of the pool.
    **kwargs: passed to ``keras.layers.Layer``.

  Call arguments:
    inputs: int ids ``[...]``; returns float ``[..., E]``.

  Reference:
    Li et al. 2018, arXiv 1711.09873.
  """

  # The TFLite ops this layer lowers to in the step graph (export.check_exportable).
  tflite_lowering = "GATHER x2 + RESHAPE"

  def __init__(self, input_dim: int, output_dim: int, num_subvectors: int, pool_size: int,
               seed: int = 0, embeddings_initializer="uniform", **kwargs):
    super().__init__(**kwargs)
    self.input_dim = int(input_dim)
    self.output_dim = int(output_dim)
    self.num_subvectors = int(num_subvectors)
    self.pool_size = int(pool_size)
    self.seed = int(seed)
    _check(self.output_dim, self.num_subvectors, self.pool_size, "embedding")
    self.embeddings_initializer = keras.initializers.get(embeddings_initializer)

  @property
  def subvector_size(self) -> int:
    return self.output_dim // self.num_subvectors

  def build(self, input_shape):
    self.pool = self.add_weight("pool", shape=(self.pool_size, self.subvector_size),
                                initializer=self.embeddings_initializer)
    self._build_assignment(self.input_dim)
    super().build(input_shape)

  def call(self, inputs):
    ids = tf.gather(self.assignment, tf.cast(inputs, tf.int32))  # [..., K]
    parts = tf.gather(self.pool, ids)  # [..., K, E/K]
    return tf.reshape(parts, tf.concat([tf.shape(ids)[:-1], [self.output_dim]], 0))

  def compute_output_shape(self, input_shape):
    return tf.TensorShape(input_shape).concatenate([self.output_dim])

  def get_config(self):
    config = super().get_config()
    config.update({
        "input_dim": self.input_dim, "output_dim": self.output_dim,
        "num_subvectors": self.num_subvectors, "pool_size": self.pool_size, "seed": self.seed,
        "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer)})
    return config


@keras.utils.register_keras_serializable(package=PACKAGE)
class SlimSoftmax(_Assignment, keras.layers.Layer):
  """Logits ``h . w_v + b_v`` with each output vector ``w_v`` made of ``K`` pooled sub-vectors.

  Since ``h . w_v = sum_k h_k . pool[a[v, k]]`` (``h_k`` the ``k``-th chunk of
  ``h``), the one-token step computes all chunk-pool scores ``[K, M]`` with
  one FULLY_CONNECTED (``K * M * H/K = M * H`` multiply-adds instead of
  ``V * H``), GATHERs each word's ``K`` scores (index ``k * M + a[v, k]``)
  and SUMs them: ``[1, V]``, then ``+ bias``. Over more rows (training,
  batched evaluation) it multiplies by the ``[V, H]`` vectors gathered from
  the pool instead (:meth:`vectors`). Parameters: ``M * H / K + V``.

  Args:
    units: vocabulary size ``V``.
    num_subvectors: ``K`` (must divide the input size ``H``).
    pool_size: ``M``.
    seed: seed of the assignment table.
    kernel_initializer: initializer of the pool.
    **kwargs: passed to ``keras.layers.Layer``.

  Call arguments:
    inputs: float ``[..., H]``; returns logits ``[..., V]``.

  Reference:
    Li et al. 2018, arXiv 1711.09873.
  """

  # The TFLite ops this layer lowers to in the step graph (export.check_exportable).
  tflite_lowering = "FULLY_CONNECTED [K*M scores] + GATHER + SUM + ADD"

  def __init__(self, units: int, num_subvectors: int, pool_size: int, seed: int = 0,
               kernel_initializer="glorot_uniform", **kwargs):
    super().__init__(**kwargs)
    self.units = int(units)
    self.num_subvectors = int(num_subvectors)
    self.pool_size = int(pool_size)
    self.seed = int(seed)
    if self.num_subvectors < 1 or self.pool_size < 1:
      raise ValueError(f"slim softmax: num_subvectors={num_subvectors} and "
                       f"pool_size={pool_size} must be >= 1")
    self.kernel_initializer = keras.initializers.get(kernel_initializer)

  def build(self, input_shape):
    input_dim = int(input_shape[-1])
    _check(input_dim, self.num_subvectors, self.pool_size, "softmax")
    self.input_dim = input_dim
    self.pool = self.add_weight("pool", shape=(self.pool_size, input_dim // self.num_subvectors),
                                initializer=fresh_initializer(self.kernel_initializer))
    self.bias = self.add_weight("bias", shape=(self.units,), initializer="zeros")
    self._build_assignment(self.units)
    super().build(input_shape)

  def call(self, inputs):
    shape = tf.shape(inputs)
    flat = tf.reshape(inputs, [-1, self.input_dim])  # [N, H]
    if inputs.shape[:-1].num_elements() == 1:
      logits = self._pooled_logits(flat)  # The one-token step graph.
    else:
      logits = tf.matmul(flat, self.vectors(), transpose_b=True)
    logits += self.bias  # [N, V]
    return tf.reshape(logits, tf.concat([shape[:-1], [self.units]], 0))

  def vectors(self) -> tf.Tensor:
    """The ``[V, H]`` output vectors, each the concatenation of its ``K`` pool rows.

    Training and batched evaluation compute the logits as one matmul with
    them: at ``N`` rows the gather of ``[N, V, K]`` scores and its gradient cost
    more than the ``V * H`` products saved (a PTB-shaped training step, ``N =
    400``, ``K = 4``, ``M = 2000``: 68 ms against 310 ms, the dense softmax's 72, on a busy
    2-core host).
    """
    return tf.reshape(tf.gather(self.pool, self.assignment), [self.units, self.input_dim])

  def _pooled_logits(self, flat: tf.Tensor) -> tf.Tensor:
    """``[N, V]`` logits as chunk-pool scores gathered per word (the class doc)."""
    k, m = self.num_subvectors, self.pool_size
    chunks = tf.reshape(flat, [-1, self.input_dim // k])  # [N*K, H/K]
    scores = tf.matmul(chunks, self.pool, transpose_b=True)  # [N*K, M]
    scores = tf.reshape(scores, [-1, k * m])  # [N, K*M]
    columns = self.assignment + tf.range(k, dtype=tf.int32)[None, :] * m  # [V, K]
    return tf.reduce_sum(tf.gather(scores, columns, axis=1), axis=-1)

  def compute_output_shape(self, input_shape):
    return tf.TensorShape(input_shape)[:-1].concatenate([self.units])

  def get_config(self):
    config = super().get_config()
    config.update({
        "units": self.units, "num_subvectors": self.num_subvectors,
        "pool_size": self.pool_size, "seed": self.seed,
        "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)})
    return config
