"""Low-rank factorized layers: ``W ~ U V`` with a rank ``r`` inner dimension."""

import tensorflow as tf
import tf_keras as keras

from tflm_compress.layers.lstm import LSTM, PACKAGE, fresh_initializer


@keras.utils.register_keras_serializable(package=PACKAGE)
class LowRankDense(keras.layers.Layer):
  """``y = (x @ kernel_u) @ kernel_v + bias``: a Dense with a rank-``r`` kernel.

  ``kernel_u`` is ``[input_dim, rank]``, ``kernel_v`` ``[rank, units]``: the
  parameter count is ``rank * (input_dim + units) + units`` instead of
  ``input_dim * units + units``. Used for the softmax (``logits = (h U) V + b``).

  Args:
    units: output size.
    rank: inner dimension ``r``.
    kernel_initializer: initializer of both factors.
    **kwargs: passed to ``keras.layers.Layer``.

  Call arguments:
    inputs: float ``[..., input_dim]``.
  """

  # The TFLite ops this layer lowers to in the step graph (export.check_exportable).
  tflite_lowering = "FULLY_CONNECTED x2 (GATHER + FULLY_CONNECTED for the embedding)"

  def __init__(self, units: int, rank: int, kernel_initializer="glorot_uniform", **kwargs):
    super().__init__(**kwargs)
    self.units = int(units)
    self.rank = int(rank)
    self.kernel_initializer = keras.initializers.get(kernel_initializer)

  def build(self, input_shape):
    input_dim = int(input_shape[-1])
    self.kernel_u = self.add_weight("kernel_u", shape=(input_dim, self.rank),
                                    initializer=self.kernel_initializer)
    self.kernel_v = self.add_weight("kernel_v", shape=(self.rank, self.units),
                                    initializer=fresh_initializer(self.kernel_initializer))
    self.bias = self.add_weight("bias", shape=(self.units,), initializer="zeros")
    super().build(input_shape)

  def call(self, inputs):
    shape = tf.shape(inputs)
    flat = tf.reshape(inputs, [-1, inputs.shape[-1]])
    out = tf.matmul(tf.matmul(flat, self.kernel_u), self.kernel_v) + self.bias
    return tf.reshape(out, tf.concat([shape[:-1], [self.units]], 0))

  def compute_output_shape(self, input_shape):
    return tf.TensorShape(input_shape)[:-1].concatenate([self.units])

  def get_config(self):
    config = super().get_config()
    config.update({"units": self.units, "rank": self.rank,
                   "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)})
    return config


@keras.utils.register_keras_serializable(package=PACKAGE)
class LowRankEmbedding(keras.layers.Layer):
  """``E ~ A B``: a narrow ``[V, r]`` embedding followed by an ``[r, E]`` projection.

  Args:
    input_dim: vocabulary size ``V``.
    output_dim: embedding size ``E``.
    rank: inner dimension ``r``.
    embeddings_initializer: initializer of both factors.
    **kwargs: passed to ``keras.layers.Layer``.

  Call arguments:
    inputs: int ids ``[...]``; returns ``[..., E]``.
  """

  # The TFLite ops this layer lowers to in the step graph (export.check_exportable).
  tflite_lowering = "FULLY_CONNECTED x2 (GATHER + FULLY_CONNECTED for the embedding)"

  def __init__(self, input_dim: int, output_dim: int, rank: int,
               embeddings_initializer="uniform", **kwargs):
    super().__init__(**kwargs)
    self.input_dim = int(input_dim)
    self.output_dim = int(output_dim)
    self.rank = int(rank)
    self.embeddings_initializer = keras.initializers.get(embeddings_initializer)

  def build(self, input_shape):
    self.embeddings = self.add_weight("embeddings", shape=(self.input_dim, self.rank),
                                      initializer=self.embeddings_initializer)
    self.projection = self.add_weight("projection", shape=(self.rank, self.output_dim),
                                      initializer=fresh_initializer(self.embeddings_initializer))
    super().build(input_shape)

  def call(self, inputs):
    rows = tf.gather(self.embeddings, tf.cast(inputs, tf.int32))  # [..., r]
    shape = tf.shape(rows)
    out = tf.matmul(tf.reshape(rows, [-1, self.rank]), self.projection)
    return tf.reshape(out, tf.concat([shape[:-1], [self.output_dim]], 0))

  def compute_output_shape(self, input_shape):
    return tf.TensorShape(input_shape).concatenate([self.output_dim])

  def get_config(self):
    config = super().get_config()
    config.update({
        "input_dim": self.input_dim, "output_dim": self.output_dim, "rank": self.rank,
        "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer)})
    return config


@keras.utils.register_keras_serializable(package=PACKAGE)
class LowRankLSTM(LSTM):
  """An :class:`LSTM` whose input and recurrent kernels are rank-factorized.

  ``kernel ~ kernel_u @ kernel_v`` (``[input_dim, r_in] x [r_in, 4H]``) and
  ``recurrent_kernel ~ recurrent_u @ recurrent_v`` (``[H, r_rec] x [r_rec, 4H]``),
  each over the four gates stacked (i, f, c, o). A rank of 0 keeps that kernel
  dense.

  Args:
    units: hidden size ``H``.
    input_rank: rank of the input kernel (0 = dense).
    recurrent_rank: rank of the recurrent kernel (0 = dense).
    **kwargs: passed to :class:`LSTM`.
  """

  # The TFLite ops this layer lowers to in the step graph (export.check_exportable).
  tflite_lowering = "FULLY_CONNECTED x2 (GATHER + FULLY_CONNECTED for the embedding)"

  def __init__(self, units: int, input_rank: int = 0, recurrent_rank: int = 0, **kwargs):
    super().__init__(units, **kwargs)
    self.input_rank = int(input_rank)
    self.recurrent_rank = int(recurrent_rank)

  def build_kernels(self, input_dim: int) -> None:
    gates = 4 * self.units
    if self.input_rank:
      self.kernel_u = self.add_weight("kernel_u", shape=(input_dim, self.input_rank),
                                      initializer=self.kernel_initializer)
      self.kernel_v = self.add_weight("kernel_v", shape=(self.input_rank, gates),
                                      initializer=fresh_initializer(self.kernel_initializer))
    else:
      self.kernel = self.add_weight("kernel", shape=(input_dim, gates),
                                    initializer=self.kernel_initializer)
    if self.recurrent_rank:
      self.recurrent_u = self.add_weight("recurrent_u", shape=(self.units, self.recurrent_rank),
                                         initializer=self.recurrent_initializer)
      self.recurrent_v = self.add_weight("recurrent_v", shape=(self.recurrent_rank, gates),
                                         initializer=fresh_initializer(self.recurrent_initializer))
    else:
      self.recurrent_kernel = self.add_weight("recurrent_kernel", shape=(self.units, gates),
                                              initializer=self.recurrent_initializer)

  def input_projection(self, x):
    if self.input_rank:
      return tf.matmul(tf.matmul(x, self.kernel_u), self.kernel_v)
    return tf.matmul(x, self.kernel)

  def recurrent_projection(self, h):
    if self.recurrent_rank:
      return tf.matmul(tf.matmul(h, self.recurrent_u), self.recurrent_v)
    return tf.matmul(h, self.recurrent_kernel)

  def get_config(self):
    config = super().get_config()
    config.update({"input_rank": self.input_rank, "recurrent_rank": self.recurrent_rank})
    return config
