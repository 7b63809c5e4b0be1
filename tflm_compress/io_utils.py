"""Atomic artifact writes through ``tf.io.gfile``.

Every artifact (JSON, text, ``.keras``, ``.tflite``) is written to a temporary
name in the destination folder and renamed into place, so a killed process never
leaves a half-written file under the final name. Paths go through ``tf.io.gfile``
so an output dir on any filesystem TensorFlow can open works like a local one.
"""

import json
import os
import re
import tempfile
import uuid

import tensorflow as tf

from tflm_compress.errors import UserError


def _tmp_name(path: str) -> str:
  directory, base = os.path.split(path)
  return os.path.join(directory, f".{base}.tmp-{uuid.uuid4().hex[:8]}")


def makedirs(path: str) -> None:
  """Creates ``path`` (and parents); a clear error if that is impossible."""
  try:
    tf.io.gfile.makedirs(path)
  except (tf.errors.OpError, OSError) as e:
    raise UserError(f"cannot create output directory {path!r}: {_reason(e)}") from None
  if not _is_writable(path):
    raise UserError(f"output directory {path!r} is not writable")


def _is_writable(path: str) -> bool:
  if "://" in path:
    return True  # Remote filesystems: let the first write tell.
  return os.access(path, os.W_OK)


def _reason(e: Exception) -> str:
  return getattr(e, "message", None) or getattr(e, "strerror", None) or str(e)


def atomic_write_bytes(path: str, data: bytes) -> None:
  """Writes ``data`` to ``path`` atomically (temp file + rename).

  Interrupted (Ctrl-C) or failed, it leaves ``path`` as it was and no temp file.
  """
  tmp = _tmp_name(path)
  try:
    with tf.io.gfile.GFile(tmp, "wb") as f:
      f.write(data)
    tf.io.gfile.rename(tmp, path, overwrite=True)
  except (tf.errors.OpError, OSError) as e:
    _remove_quietly(tmp)
    raise UserError(f"cannot write {path!r}: {_reason(e)}") from None
  except BaseException:
    _remove_quietly(tmp)
    raise


def atomic_write_text(path: str, text: str) -> None:
  atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str, obj) -> None:
  atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str):
  try:
    with tf.io.gfile.GFile(path, "r") as f:
      return json.load(f)
  except tf.errors.NotFoundError:
    raise UserError(f"file not found: {path!r}") from None
  except json.JSONDecodeError as e:
    raise UserError(f"{path!r} is not valid JSON: {e}") from None


def atomic_save_keras(model, path: str) -> None:
  """Saves a Keras model to ``path`` (``.keras``) atomically."""
  if not path.endswith(".keras"):
    raise UserError(f"Keras model path must end with .keras, got {path!r}")
  # Keras needs a local path ending in .keras; write there, then move.
  with tempfile.TemporaryDirectory() as tmp_dir:
    local = os.path.join(tmp_dir, "model.keras")
    model.save(local)
    with open(local, "rb") as f:
      atomic_write_bytes(path, f.read())


def _remove_quietly(path: str) -> None:
  try:
    if tf.io.gfile.exists(path):
      tf.io.gfile.remove(path)
  except (tf.errors.OpError, OSError):
    pass


# Files by which a folder is recognised as one this package wrote: name -> test of its
# JSON; None: the name alone (it may be mid-write by another process of a fan-out).
_SIGNATURE_FILES = {
    "config.json": lambda obj: isinstance(obj, dict) and {"model", "train"} <= set(obj),
    "metrics.json": lambda obj: isinstance(obj, dict) and ("config" in obj or "params" in obj),
    "history.json": lambda obj: isinstance(obj, list),
    "results.json": lambda obj: isinstance(obj, dict) and "rows" in obj,
    "model_meta.json": None,
    "STAGE.json": None,
    "DONE.json": None,
    "CLAIM.json": None,
}
_STAGE_FILES = ("STAGE.json", "DONE.json", "CLAIM.json")
_TMP_NAME = re.compile(r"^\..+\.tmp-[0-9a-f]{8}$")  # _tmp_name's, left by a killed write.


def _has_signature(folder: str, names) -> bool:
  for name in names:
    if name not in _SIGNATURE_FILES:
      continue
    path = os.path.join(folder, name)
    test = _SIGNATURE_FILES[name]
    if test is None:
      if not tf.io.gfile.isdir(path):
        return True
      continue
    try:
      with tf.io.gfile.GFile(path) as f:
        obj = json.load(f)
    except (tf.errors.OpError, OSError, ValueError):
      continue  # Not JSON: not a signature.
    if test(obj):
      return True
  return False


def is_package_output_dir(path: str) -> bool:
  """Whether ``path`` is a folder this package wrote.

  Recognised by its files: a run dir (``config.json`` of a run, ``metrics.json``,
  ``history.json``), a converted bundle (``model_meta.json``), a pipeline stage
  (``STAGE.json``, ``DONE.json``, ``CLAIM.json``) or report (``results.json``),
  or a pipeline output dir (a subfolder holding a stage's files, e.g. ``baseline/``).
  """
  try:
    names = [entry.rstrip("/") for entry in tf.io.gfile.listdir(path)]
  except (tf.errors.OpError, OSError):
    return False
  if _has_signature(path, names):
    return True
  for name in sorted(names):
    folder = os.path.join(path, name)
    if tf.io.gfile.isdir(folder) and _has_signature(folder, _STAGE_FILES):
      return True
  return False


def _first_file(path: str) -> str | None:
  """A file under ``path`` (relative to it), or None if it holds only folders."""
  for root, _, files in tf.io.gfile.walk(path):
    files = sorted(f for f in files if not _TMP_NAME.match(f))
    if files:
      return os.path.relpath(os.path.join(root, files[0]), path)
  return None


def check_output_dir(path: str, overwrite: bool = False, flag: str = "--output_dir") -> None:
  """Refuses (:class:`UserError`, one line) to write into a folder of someone else's files.

  Fine: ``path`` does not exist, holds no files (only folders), or is a
  folder this package wrote (:func:`is_package_output_dir`: a rerun resumes or
  replaces it), or ``overwrite`` is set (the caller's ``--overwrite``). Anything
  else, e.g. a folder of the user's own files, is refused, naming one of them.
  A path that is a file is refused even with ``overwrite``. Nothing is created,
  changed or deleted here; ``flag`` names the path in the message.
  """
  if not tf.io.gfile.exists(path):
    return
  if not tf.io.gfile.isdir(path):
    raise UserError(f"{flag}={path!r} is a file, not a folder")
  if overwrite or is_package_output_dir(path):
    return
  foreign = _first_file(path)
  if foreign is None:
    return  # Only folders (or the temp files of an interrupted write).
  raise UserError(f"{flag}={path!r} holds files tflm_compress did not write (e.g. {foreign!r}); "
                  "use a new or empty folder, or pass --overwrite to write into it anyway")
