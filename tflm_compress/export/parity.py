"""Numerical parity between a Keras language model and its ``.tflite`` step model."""

import numpy as np
import tf_keras as keras

from tflm_compress.export.runtime import TFLiteStepModel
from tflm_compress.export.step_model import state_layout


def keras_stream_logits(model: keras.Model, token_ids: np.ndarray) -> np.ndarray:
  """Logits after each token, the whole stream as one sequence from zero state, [T, V]."""
  _, sizes = state_layout(model)
  token_ids = np.asarray(token_ids, np.int32)[None, :]
  outputs = model([token_ids] + [np.zeros((1, s), np.float32) for s in sizes], training=False)
  return np.asarray(outputs[0])[0]


def check_parity(model: keras.Model, tflite_model: TFLiteStepModel,
                 token_ids: np.ndarray) -> dict:
  """Feeds one token stream through both and compares the logits of every step.

  Keras runs the stream as one sequence; the ``.tflite`` runs it token by
  token with the state carried, so this also checks the state plumbing.

  Returns:
    ``{'steps', 'max_abs_logit_diff', 'mean_abs_logit_diff', 'argmax_agreement'}``.
  """
  expected = keras_stream_logits(model, token_ids)
  actual = tflite_model.run(token_ids)
  diff = np.abs(expected - actual)
  return {
      "steps": int(len(token_ids)),
      "max_abs_logit_diff": float(diff.max()),
      "mean_abs_logit_diff": float(diff.mean()),
      "argmax_agreement": float(np.mean(expected.argmax(-1) == actual.argmax(-1))),
  }
