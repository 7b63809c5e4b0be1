"""The LSTM language model: a functional Keras model with explicit state.

Inputs: ``tokens`` int32 ``[B, T]`` and, for each LSTM layer ``i``, ``h{i}``
and ``c{i}`` float ``[B, H_i]``. Outputs: ``logits`` ``[B, T, V]`` followed by
the new ``h{i}``, ``c{i}``. Layer names are stable (``embedding``,
``lstm_{i}``, ``dropout_*``, ``softmax``) so compression methods and the
exporter find the pieces by name.
"""

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tflm_compress.errors import UserError
from tflm_compress.layers import LSTM, TiedEmbedding
from tflm_compress.models.config import ModelConfig
from tflm_compress.names import EMBEDDING, SOFTMAX, lstm_name, state_names


def build_language_model(config: ModelConfig, batch_size: int | None = None,
                         num_steps: int | None = None, seed: int | None = None) -> keras.Model:
  """Builds the model of ``config`` (weights freshly initialised).

  Args:
    config: the architecture; ``config.vocab_size`` must be set.
    batch_size, num_steps: static input dims (None = dynamic).
    seed: seeds the initializers, so the same seed gives the same weights.
  """
  if config.vocab_size <= 0:
    raise UserError("ModelConfig.vocab_size is not set; take it from the vocabulary")

  def initializer(offset):
    # A fresh initializer per weight, each with its own seed: one object
    # reused would give identical matrices.
    return keras.initializers.RandomUniform(
        -config.init_scale, config.init_scale, seed=None if seed is None else seed * 1000 + offset)

  tokens = keras.Input(shape=(num_steps,), batch_size=batch_size, dtype=tf.int32, name="tokens")
  states = [keras.Input(shape=(h,), batch_size=batch_size, name=name)
            for h, name in zip(np.repeat(config.hidden_sizes, 2), state_names(len(config.hidden_sizes)))]
  if config.tie_embeddings:
    embedding = TiedEmbedding(config.vocab_size, config.embedding_size,
                              embeddings_initializer=initializer(1), name=EMBEDDING)
  else:
    embedding = keras.layers.Embedding(config.vocab_size, config.embedding_size,
                                       embeddings_initializer=initializer(1), name=EMBEDDING)
  x = embedding(tokens)
  new_states = []
  for i, units in enumerate(config.hidden_sizes):
    if config.dropout:
      x = keras.layers.Dropout(config.dropout, seed=None if seed is None else seed + i,
                               name=f"dropout_{i}")(x)
    lstm = LSTM(units, kernel_initializer=initializer(10 + 3 * i),
                recurrent_initializer=initializer(11 + 3 * i),
                bias_initializer="zeros", name=lstm_name(i))
    x, h, c = lstm([x, states[2 * i], states[2 * i + 1]])
    new_states += [h, c]
  if config.dropout:
    x = keras.layers.Dropout(config.dropout, seed=None if seed is None else seed + 100,
                             name=f"dropout_{len(config.hidden_sizes)}")(x)
  if config.tie_embeddings:
    logits = embedding(x, mode="logits")
  else:
    logits = keras.layers.Dense(config.vocab_size, kernel_initializer=initializer(2),
                                bias_initializer="zeros", name=SOFTMAX)(x)
  return keras.Model([tokens] + states, [logits] + new_states, name="lstm_lm")


def zero_states(config: ModelConfig, batch_size: int) -> list[tf.Tensor]:
  return [tf.zeros([batch_size, h]) for h in config.hidden_sizes for _ in range(2)]


def custom_objects() -> dict:
  """The package's layers, for ``keras.models.load_model``.

  Every layer of :mod:`tflm_compress.layers` is registered as Keras
  serializable (package ``tflm_compress``) on import, so compressed models
  load too.
  """
  # Registered names only: a bare "LSTM" would shadow keras.layers.LSTM in
  # users' models.
  return {"tflm_compress>LSTM": LSTM, "tflm_compress>TiedEmbedding": TiedEmbedding}


def count_params(model: keras.Model) -> int:
  return int(sum(np.prod(w.shape) for w in model.trainable_weights))
