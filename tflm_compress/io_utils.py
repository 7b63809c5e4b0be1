"""Atomic artifact writes through ``tf.io.gfile``.

Every artifact (JSON, text, ``.keras``, ``.tflite``) is written to a temporary
name in the destination folder and renamed into place, so a killed process never
leaves a half-written file under the final name. Paths go through ``tf.io.gfile``
so an output dir on any filesystem TensorFlow can open works like a local one.
"""

import json
import os
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
  """Writes ``data`` to ``path`` atomically (temp file + rename)."""
  tmp = _tmp_name(path)
  try:
    with tf.io.gfile.GFile(tmp, "wb") as f:
      f.write(data)
    tf.io.gfile.rename(tmp, path, overwrite=True)
  except (tf.errors.OpError, OSError) as e:
    _remove_quietly(tmp)
    raise UserError(f"cannot write {path!r}: {_reason(e)}") from None


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
