"""tflm_compress: compress Keras LSTM language models for on-device next-word prediction.

Importing the package sets ``TF_USE_LEGACY_KERAS=1`` before TensorFlow is first
imported, because TF Model Optimization only works with Keras 2 (``tf_keras``).
"""

import os as _os

_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tflm_compress.errors import UserError  # noqa: E402

__version__ = "0.1.0"

__all__ = ["UserError", "__version__"]
