"""Finding a run's model, vocabulary and corpus from script flags.

A ``--model`` saved by Keras 3 (``.keras`` or ``.h5``) is imported here, at the
boundary, before any work: the package's model is written beside it
(``lm.keras`` -> ``lm.keras.tflm.keras``, see
:func:`tflm_compress.models.keras3_import.write_imported_model`) and the
scripts load that file. A ``model.export()`` SavedModel dir is refused here
with one line.
"""

import dataclasses
import os

import tensorflow as tf

from tflm_compress import io_utils
from tflm_compress.data.corpus import Corpus, corpus_from_description, load_corpus
from tflm_compress.data.vocab import Vocabulary
from tflm_compress.errors import UserError
from tflm_compress.models import keras3_import
from tflm_compress.models.adapt import register_custom_objects
from tflm_compress.training import CONFIG_FILE, MODEL_FILE, VOCAB_FILE


@dataclasses.dataclass
class ModelSource:
  """Attributes:
    model_path: a ``.keras`` or ``.tflite`` file the package loads as it is.
    vocab_path: its ``vocab.txt``.
    run_config: the run's ``config.json`` contents, if there is a run dir.
    imported_from: the user's Keras 3 file that ``model_path`` was imported
      from, if any.
  """

  model_path: str
  vocab_path: str
  run_config: dict | None
  imported_from: str | None = None

  @property
  def is_tflite(self) -> bool:
    return self.model_path.lower().endswith(".tflite")

  def vocab(self) -> Vocabulary:
    return Vocabulary.load(self.vocab_path)

  def corpus(self, data_dir: str | None, vocab: Vocabulary) -> Corpus:
    """``data_dir`` if given; else the corpus the run was trained on; else generated."""
    if data_dir:
      return load_corpus(data_dir, vocab=vocab)
    if self.run_config and "corpus" in self.run_config:
      return corpus_from_description(self.run_config["corpus"], vocab=vocab)
    return load_corpus("", vocab=vocab)


def resolve(model_dir: str = "", model: str = "", vocab: str = "",
            custom_objects: str = "") -> ModelSource:
  """``--model_dir=RUN`` or ``--model=FILE [--vocab=vocab.txt] [--custom_objects=FILE.py]``.

  ``custom_objects`` names a Python file defining a user model's custom layers
  (e.g. a tied softmax); it is imported so that the model loads. A Keras 3
  ``--model`` is imported onto the package's model last, once every other
  flag is known to be good, and ``model_path`` is the imported file.

  Raises:
    UserError: a missing or unusable file, in one line; nothing is written.
  """
  if custom_objects:
    register_custom_objects(custom_objects)
  if bool(model_dir) == bool(model):
    raise UserError("pass exactly one of --model_dir=RUN_DIR or --model=FILE")
  if model_dir:
    if not tf.io.gfile.isdir(model_dir):
      raise UserError(f"--model_dir={model_dir!r} is not a directory")
    model = os.path.join(model_dir, MODEL_FILE)
    if not tf.io.gfile.exists(model):
      raise UserError(f"--model_dir={model_dir!r} has no {MODEL_FILE} (is the run finished?)")
  elif not tf.io.gfile.exists(model):
    raise UserError(f"--model={model!r} does not exist")
  elif keras3_import.is_graphless_saved_model(model):
    raise keras3_import.graphless_saved_model_error(model)
  folder = os.path.dirname(model)
  vocab = vocab or os.path.join(folder, VOCAB_FILE)
  if not tf.io.gfile.exists(vocab):
    raise UserError(f"no vocabulary for {model!r}: {vocab!r} does not exist; pass --vocab=vocab.txt")
  config_path = os.path.join(model_dir or folder, CONFIG_FILE)
  run_config = io_utils.read_json(config_path) if tf.io.gfile.exists(config_path) else None
  if not model_dir and keras3_import.is_keras3_file(model):
    return ModelSource(keras3_import.write_imported_model(model), vocab, run_config,
                       imported_from=model)
  return ModelSource(model, vocab, run_config)
