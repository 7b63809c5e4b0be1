"""An embedding shared by the input lookup and the output softmax."""

import tensorflow as tf
import tf_keras as keras

from tflm_compress.layers.lstm import PACKAGE


@keras.utils.register_keras_serializable(package=PACKAGE)
class TiedEmbedding(keras.layers.Layer):
  """Input embedding and output softmax with one ``[V, E]`` matrix.

  Called on int ids it looks rows up (``[..., E]``); called with
  ``mode="logits"`` on float features ``[..., E]`` it returns
  ``features @ embeddings^T + bias`` (``[..., V]``). Use the same layer object
  for both calls (a shared layer) so the matrix is stored once (Press & Wolf,
  2017; Inan et al., 2017).

  Args:
    input_dim: vocabulary size ``V``.
    output_dim: embedding size ``E`` (must equal the last LSTM's units).
    embeddings_initializer: initializer of the matrix.
    **kwargs: passed to ``keras.layers.Layer``.

  Call arguments:
    inputs: int ids (``mode="embed"``) or float features (``mode="logits"``).
    mode: ``"embed"`` or ``"logits"``.
  """

  # The TFLite ops this layer lowers to in the step graph (export.check_exportable).
  tflite_lowering = "GATHER + FULLY_CONNECTED"

  def __init__(self, input_dim: int, output_dim: int, embeddings_initializer="uniform",
               **kwargs):
    super().__init__(**kwargs)
    self.input_dim = int(input_dim)
    self.output_dim = int(output_dim)
    self.embeddings_initializer = keras.initializers.get(embeddings_initializer)

  def build(self, input_shape):
    self.embeddings = self.add_weight("embeddings", shape=(self.input_dim, self.output_dim),
                                      initializer=self.embeddings_initializer)
    self.bias = self.add_weight("bias", shape=(self.input_dim,), initializer="zeros")
    super().build(input_shape)

  def call(self, inputs, mode: str = "embed"):
    if mode == "embed":
      return tf.gather(self.embeddings, tf.cast(inputs, tf.int32))
    if mode == "logits":
      shape = tf.shape(inputs)
      flat = tf.reshape(inputs, [-1, self.output_dim])
      logits = tf.matmul(flat, self.embeddings, transpose_b=True) + self.bias
      return tf.reshape(logits, tf.concat([shape[:-1], [self.input_dim]], 0))
    raise ValueError(f"TiedEmbedding mode={mode!r}; use 'embed' or 'logits'")

  def get_config(self):
    config = super().get_config()
    config.update({
        "input_dim": self.input_dim,
        "output_dim": self.output_dim,
        "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
    })
    return config
