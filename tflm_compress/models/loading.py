"""Loading models: the package's own, or a user's Keras LSTM language model.

Sits above :mod:`tflm_compress.models.lstm_lm` (the package model) and
:mod:`tflm_compress.models.adapt` (mapping a user's model onto it).
"""

import tensorflow as tf
import tf_keras as keras

from tflm_compress.errors import UserError
from tflm_compress.models import adapt, keras3_import
from tflm_compress.models.lstm_lm import custom_objects


def load_model(path: str) -> keras.Model:
  """Loads a model: one of this package's, or a user's Keras LSTM language model.

  A user's model (``.keras``, ``.h5`` or a SavedModel dir, saved by tf.keras or
  by Keras 3) is mapped onto the package's model with the same weights (see
  :mod:`tflm_compress.models.adapt` and :mod:`tflm_compress.models.keras3_import`).
  """
  if not tf.io.gfile.exists(path):
    raise UserError(f"model file not found: {path!r}")
  if keras3_import.is_graphless_saved_model(path):
    raise keras3_import.graphless_saved_model_error(path)
  if keras3_import.is_keras3_file(path):
    return keras3_import.load_keras3_model(path)
  known = {**adapt.user_objects(), **custom_objects()}
  try:
    model = keras.models.load_model(path, custom_objects=known, compile=False)
  except (ValueError, OSError, TypeError, KeyError, ImportError) as e:
    unknown = adapt.unknown_layer_classes(path, known)
    if unknown:
      raise UserError(f"cannot load Keras model {path!r}: it uses custom layers {unknown}; pass "
                      "--custom_objects=FILE.py, a Python file defining them") from None
    message = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise UserError(f"cannot load Keras model {path!r}: {message}") from None
  if not isinstance(model, keras.Model):
    raise UserError(f"{path!r} is not a Keras model (a SavedModel without Keras metadata?)")
  if adapt.is_package_model(model):
    return model
  return adapt.adapt_keras_model(model)
