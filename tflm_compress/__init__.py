"""tflm_compress: compress Keras LSTM language models for on-device next-word prediction.

The public API (see :mod:`tflm_compress.api` and the README's Python example)::

  load_model, read_corpus, compress, finetune, training_callbacks, strip,
  export_tflite, evaluate, benchmark; train and compress_run (the resumable run
  dirs scripts/train.py and scripts/compress.py write); and one config class per method:
  Prune, QAT, Cluster, LowRank, TensorTrain, GroupReduce, SlimEmbedding, ISS.

Importing the package registers every layer of :mod:`tflm_compress.layers`
with Keras serialization, so ``tf_keras.models.load_model`` reads any model
the package saved. It also sets ``TF_USE_LEGACY_KERAS=1`` (unless already
set) before TensorFlow is first imported, because TF Model Optimization only
works with Keras 2 (``tf_keras``): in this process ``tf.keras`` then means
``tf_keras``, while ``import keras`` (Keras 3) keeps working. Nothing else
about the process changes (logging is the scripts' business).
"""

import os as _os

_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

# pylint: disable=wrong-import-position
from tflm_compress import layers  # noqa: E402,F401  (registers every layer with Keras)
from tflm_compress.api import (METHOD_CONFIGS, MethodConfig, benchmark, compress,  # noqa: E402
                               compress_run, configs_from_flags, evaluate, export_tflite,
                               finetune, load_model, read_corpus, strip, train,
                               training_callbacks, vocab_of)
from tflm_compress.data.corpus import Corpus  # noqa: E402
from tflm_compress.errors import UserError  # noqa: E402
from tflm_compress.export.suggest import Suggester, suggest_next_words  # noqa: E402

globals().update(METHOD_CONFIGS)  # Prune, QAT, Cluster, LowRank, TensorTrain, ...

__version__ = "0.1.0"

__all__ = ["Corpus", "MethodConfig", "Suggester", "UserError", "__version__", "benchmark",
           "compress", "compress_run", "configs_from_flags", "evaluate", "export_tflite",
           "finetune", "load_model",
           "read_corpus", "strip", "suggest_next_words", "train", "training_callbacks",
           "vocab_of", *sorted(METHOD_CONFIGS)]
