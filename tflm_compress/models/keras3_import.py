"""Keras 3 models (``import keras``; ``model.save("lm.keras")``) imported onto the package's model.

Since TensorFlow 2.16 ``pip install tensorflow`` gives Keras 3, while this
package runs on ``tf_keras`` (Keras 2; TF Model Optimization needs it). A
Keras 3 ``.keras`` or ``.h5`` file says so itself (the zip's ``metadata.json``,
the HDF5 file's ``keras_version`` attribute: :func:`saved_keras_version`).
Such a file is loaded with Keras 3, in this same process (both Kerases work
side by side on the TensorFlow backend), and its graph is walked by
:mod:`tflm_compress.models.adapt` with Keras 3's classes; the weights map one
to one (Keras 3's LSTM has tf_keras's gate order and kernel layouts).

Why load with Keras 3 rather than read ``config.json`` + ``model.weights.h5``
ourselves: Keras 3's loader is the only complete reader of its own formats
(weights keyed by snake-cased class name and counter in ``.keras``, by layer
name in ``.h5``, wrappers, shared layers, user layers with their own
``save_own_variables``), and a reader of our own would drift with each Keras
release and could only be tested against the files we thought of. Tied
outputs are recognised by what they compute, which needs the user's layer to
run: a config reader cannot call a custom layer. And the import checks itself:
the package's model must reproduce the loaded Keras 3 model's outputs
(:func:`tflm_compress.models.adapt.adapt_keras_model`).

``model.export(dir)`` writes a SavedModel with serving functions and variables
but no Keras graph: which variable is which layer's, and what the output layer
computes, can only be guessed, so such a dir is refused with one line saying
what it is and how to save instead (:func:`graphless_saved_model_error`).

Every error is one line: the file, the Keras version it was saved with, what
was found and what is supported.
"""

import json
import os
import re
import types
import zipfile

import h5py
import tf_keras

from tflm_compress.errors import UserError
from tflm_compress.models import adapt

# The package's model imported from a Keras 3 file is written beside it under
# this suffix (lm.keras -> lm.keras.tflm.keras) by write_imported_model.
IMPORTED_SUFFIX = ".tflm.keras"

_MESSAGE_LIMIT = 300  # Characters of a Keras error kept in ours (its configs run to kilobytes).


def saved_keras_version(path: str) -> str | None:
  """The Keras version a model file records, e.g. ``'3.15.1'``; None if it records none.

  ``.keras`` zips record it in ``metadata.json``, ``.h5`` files in their
  ``keras_version`` attribute; directories and other files give None.
  """
  if not os.path.isfile(path):
    return None
  try:
    if zipfile.is_zipfile(path):
      with zipfile.ZipFile(path) as archive:
        version = json.loads(archive.read("metadata.json")).get("keras_version")
    elif h5py.is_hdf5(path):
      with h5py.File(path, "r") as f:
        version = f.attrs.get("keras_version")
    else:
      return None
  except (OSError, KeyError, ValueError, AttributeError):
    return None
  if isinstance(version, bytes):
    version = version.decode("utf-8", "replace")
  return str(version) if version else None


def is_keras3_file(path: str) -> bool:
  """True for a ``.keras`` or ``.h5`` model file saved by Keras 3 or later."""
  version = saved_keras_version(path)
  major = version.split(".")[0] if version else ""
  return major.isdigit() and int(major) >= 3


def is_graphless_saved_model(path: str) -> bool:
  """True for a SavedModel dir without Keras metadata (what Keras 3's ``model.export()`` writes).

  tf_keras SavedModels carry ``keras_metadata.pb`` (their Keras graph) and load
  as before.
  """
  return (os.path.isdir(path) and os.path.isfile(os.path.join(path, "saved_model.pb")) and
          not os.path.isfile(os.path.join(path, "keras_metadata.pb")))


def graphless_saved_model_error(path: str) -> UserError:
  """The one-line refusal of a SavedModel dir with no Keras graph."""
  signatures = _signature_names(path)
  # Keras 3's ExportArchive names its default endpoint "serve";
  # tf.saved_model.save writes "serving_default" only.
  what = ("a Keras 3 model.export() artifact" if "serve" in signatures else
          "a SavedModel without Keras metadata (tf.saved_model.save?)")
  return UserError(f"cannot import {path!r}: it is {what}, with no Keras graph (only the "
                   f"serving functions {signatures} and variables), so its layers cannot be "
                   "mapped reliably; supported: a .keras or .h5 model file: save the model with "
                   "model.save('lm.keras')")


def _signature_names(path: str) -> list[str]:
  from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=g-import-not-at-top

  saved_model = saved_model_pb2.SavedModel()
  try:
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
      saved_model.ParseFromString(f.read())
  except (OSError, ValueError):
    return []
  # "__saved_model_init_op" is TensorFlow's own, in every SavedModel.
  return sorted({name for graph in saved_model.meta_graphs for name in graph.signature_def
                 if not name.startswith("__")})


def _keras3(where: str) -> types.ModuleType:
  """Keras 3, imported on first use (importing the package must not pull it in)."""
  try:
    import keras  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise UserError(f"{where}: Keras 3 is not installed (pip install 'keras>=3')") from None
  if adapt.keras3_module() is None:
    raise UserError(f"{where}: `import keras` gives Keras {keras.__version__}, not Keras 3")
  return keras


def load_keras3_model(path: str) -> tf_keras.Model:
  """The package's model with the weights of a Keras 3 ``.keras`` or ``.h5`` file.

  Custom layer classes come from the files given to
  :func:`tflm_compress.models.adapt.register_custom_objects`
  (``--custom_objects``) and from Keras 3's registry.

  Returns:
    The package's (``tf_keras``) model, giving the file's model's logits (for
    a softmax output: logits of the same probabilities).

  Raises:
    UserError: one line naming the file, its Keras version, what was found and
      what is supported.
  """
  version = saved_keras_version(path) or "unknown"
  where = f"cannot import {path!r} (saved with Keras {version})"
  keras = _keras3(where)
  known = {}
  for name, cls in adapt.user_objects(keras).items():
    known[name] = cls
    known[keras.saving.get_registered_name(cls)] = cls
  missing = _unknown_layer_classes(_saved_config(path), known, keras)
  if missing:
    raise UserError(f"{where}: {_missing_classes_message(missing)}")
  try:
    user_model = keras.saving.load_model(path, custom_objects=known, compile=False)
  except Exception as e:  # pylint: disable=broad-except  (user layers can raise anything)
    raise UserError(f"{where}: Keras 3 cannot load it: {_keras_error_line(e)}") from None
  if not isinstance(user_model, keras.Model):
    raise UserError(f"{where}: it holds a {type(user_model).__name__}, not a Keras model")
  try:
    return adapt.adapt_keras_model(user_model)
  except UserError as e:
    raise UserError(f"{where}: {e}") from None


def write_imported_model(path: str) -> str:
  """Imports a Keras 3 file (:func:`load_keras3_model`) and saves the result beside it.

  The scripts load models by path, so a Keras 3 file becomes a package model
  file, ``PATH`` + :data:`IMPORTED_SUFFIX`, that every script and
  :func:`tflm_compress.models.load_model` read as it is. It is written only
  once the import has succeeded, atomically (a temporary name, then a rename).

  Returns:
    The path of the written file.

  Raises:
    UserError: the import failed (nothing is written) or the folder is not
      writable.
  """
  model = load_keras3_model(path)
  target = path + IMPORTED_SUFFIX
  folder, name = os.path.split(target)
  temporary = os.path.join(folder, f".{name}.{os.getpid()}.tmp.keras")
  try:
    model.save(temporary)
    os.replace(temporary, target)
  except OSError as e:
    raise UserError(f"cannot write the model imported from {path!r} to {target!r} "
                    f"({e.strerror or e}); copy the model to a writable folder") from None
  finally:
    if os.path.exists(temporary):
      os.remove(temporary)
  return target


def _saved_config(path: str) -> dict:
  """The model's architecture as saved: ``config.json`` of a zip, ``model_config`` of an .h5."""
  try:
    if zipfile.is_zipfile(path):
      with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("config.json"))
    with h5py.File(path, "r") as f:
      return json.loads(f.attrs["model_config"])
  except (OSError, KeyError, ValueError):
    return {}


def _unknown_layer_classes(config: dict, known: dict, keras) -> list[str]:
  """Layer classes the saved architecture names that Keras 3 and ``known`` lack.

  A ``.keras`` config names each layer's ``module`` (``keras.layers`` for
  built-ins, so ``ReversibleEmbedding`` is one); a Keras 3 ``.h5`` config has
  no module and names registered classes ``package>Class``.
  """
  unknown = set()

  def walk(node):
    if isinstance(node, dict):
      inner = node.get("config")
      if isinstance(node.get("class_name"), str) and isinstance(inner, dict) and (
          "trainable" in inner):
        class_name, module = node["class_name"], node.get("module")
        names = [n for n in (class_name, node.get("registered_name")) if n]
        built_in = (module == "keras" or module.startswith("keras.") if module else
                    hasattr(keras.layers, class_name) or
                    class_name in ("Functional", "Sequential", "Model"))
        if not built_in and not any(n in known or keras.saving.get_registered_object(n)
                                    for n in names):
          unknown.add(class_name.split(">")[-1])
      for value in node.values():
        walk(value)
    elif isinstance(node, list):
      for value in node:
        walk(value)

  walk(config)
  return sorted(unknown)


def _missing_classes_message(missing: list[str]) -> str:
  """Which custom layers are missing, and what each ``--custom_objects`` file did define."""
  files = adapt.custom_objects_files()
  if not files:
    return (f"it uses custom layers {missing}; pass --custom_objects=FILE.py, a Python file "
            "defining them (Keras 3 classes: subclasses of keras.layers.Layer after "
            "`import keras`)")
  described = []
  for path, classes in files.items():
    tf_keras_names = sorted(n for n, c in classes.items() if adapt.layer_class_keras(c) is tf_keras)
    keras3_names = sorted(n for n in classes if n not in tf_keras_names)
    text = f"--custom_objects={path!r} defines Keras 3 layers {keras3_names}"
    if tf_keras_names:
      text += (f" and tf_keras layers {tf_keras_names}, which cannot rebuild a Keras 3 model "
               "(after `import tflm_compress`, tf.keras is tf_keras: use `import keras`)")
    described.append(text)
  return f"it uses custom layers {missing}, which no --custom_objects file defines: " + \
      "; ".join(described)


def _keras_error_line(error: Exception) -> str:
  """The first line of a Keras loading error, without its config dump, with a hint."""
  text = str(error).strip()
  lines = [l.strip() for l in text.splitlines() if l.strip()] or [type(error).__name__]
  line = lines[0]
  if line.endswith(":") and len(lines) > 1:  # "... Example error message for object <...>:"
    line += " " + lines[1]
  line = re.split(r"\s*(?:Full object config|config=|\. Received: config)", line)[0]
  if len(line) > _MESSAGE_LIMIT:
    line = line[:_MESSAGE_LIMIT].rstrip() + " ..."
  if re.search(r"expected \d+ variables, but received \d+ variables", text):
    line += (" (the file holds fewer weights than the layer makes: Keras 3 saves only what a "
             "layer serialises; a Keras 3 Embedding subclass that adds a weight must list it in "
             "variable_serialization_spec)")
  return line
