"""Shared checks for layer and export tests (used by every layer's test)."""

import os
import tempfile

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tflm_compress.models.lstm_lm import custom_objects


def run_layer_test(layer_cls, init_kwargs: dict, input_data, expected_output_shapes,
                   atol: float = 1e-6) -> keras.layers.Layer:
  """Config round trip, eager and symbolic calls, a training step.

  Args:
    layer_cls: the layer class.
    init_kwargs: constructor arguments.
    input_data: the call's input (a tensor or a list of tensors).
    expected_output_shapes: the shape of each output (list of tuples).

  Returns:
    The eagerly-built layer.
  """
  layer = layer_cls(**init_kwargs)
  outputs = tf.nest.flatten(layer(input_data))
  assert [tuple(o.shape) for o in outputs] == [tuple(s) for s in expected_output_shapes]
  # Config round trip: same config, and with copied weights the same outputs.
  config = layer.get_config()
  clone = layer_cls.from_config(config)
  assert clone.get_config() == config
  clone(input_data)
  clone.set_weights(layer.get_weights())
  for a, b in zip(outputs, tf.nest.flatten(clone(input_data))):
    np.testing.assert_allclose(a, b, atol=atol)
  # Symbolic call in a functional model.
  symbolic_inputs = tf.nest.map_structure(
      lambda t: keras.Input(shape=t.shape[1:], dtype=t.dtype), input_data)
  model = keras.Model(symbolic_inputs, layer(symbolic_inputs))
  for a, b in zip(outputs, tf.nest.flatten(model(input_data))):
    np.testing.assert_allclose(a, b, atol=atol)
  # One gradient step moves every trainable weight that the output depends on.
  with tf.GradientTape() as tape:
    loss = sum(tf.reduce_sum(tf.square(o)) for o in tf.nest.flatten(layer(input_data))
               if o.dtype.is_floating)
  grads = tape.gradient(loss, layer.trainable_weights)
  assert all(g is not None for g in grads), [w.name for w, g in
                                             zip(layer.trainable_weights, grads) if g is None]
  return layer


def save_and_reload(model: keras.Model) -> keras.Model:
  """Round trip through ``model.keras`` with the package's custom objects."""
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "model.keras")
    model.save(path)
    return keras.models.load_model(path, custom_objects=custom_objects(), compile=False)


def assert_tflite_matches_keras(model: keras.Model, token_ids, atol: float = 1e-4,
                                quantize: str = "none") -> dict:
  """Converts the step model and checks logits step by step against Keras."""
  from tflm_compress import export  # pylint: disable=g-import-not-at-top

  tflite_model = export.TFLiteStepModel(export.convert_step_model(model, quantize))
  parity = export.check_parity(model, tflite_model, np.asarray(token_ids))
  assert parity["max_abs_logit_diff"] <= atol, parity
  return parity
