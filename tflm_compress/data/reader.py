"""Reader for PTB-format text: one sentence per line, whitespace-tokenized.

Each non-empty line becomes its tokens followed by ``<eos>``. Empty (or
whitespace-only) lines are skipped; CRLF line ends and tabs are whitespace.
Invalid UTF-8 is an error naming the file and line, unless
``on_bad_bytes='replace'`` (then each bad byte reads as U+FFFD).
"""

import os

import tensorflow as tf

from tflm_compress.data.vocab import EOS
from tflm_compress.errors import UserError

BAD_BYTES_POLICIES = ("error", "replace")
SPLITS = ("train", "valid", "test")


def read_tokens(path: str, on_bad_bytes: str = "error") -> list[str]:
  """Returns the token stream of a text file, ``<eos>`` after every line."""
  if on_bad_bytes not in BAD_BYTES_POLICIES:
    raise UserError(f"on_bad_bytes={on_bad_bytes!r}; use one of {BAD_BYTES_POLICIES}")
  if not tf.io.gfile.exists(path):
    raise UserError(f"data file not found: {path!r}")
  if tf.io.gfile.isdir(path):
    raise UserError(f"expected a text file, got a directory: {path!r}")
  with tf.io.gfile.GFile(path, "rb") as f:
    raw = f.read()
  tokens = []
  for line_no, line in enumerate(raw.splitlines(), start=1):
    try:
      text = line.decode("utf-8")
    except UnicodeDecodeError as e:
      if on_bad_bytes == "error":
        raise UserError(
            f"{path}:{line_no}: invalid UTF-8 at byte {e.start} of the line; "
            "fix the file or pass --on_bad_bytes=replace") from None
      text = line.decode("utf-8", errors="replace")
    words = text.split()
    if words:
      tokens.extend(words)
      tokens.append(EOS)
  if not tokens:
    raise UserError(f"data file {path!r} holds no words")
  return tokens


def split_path(data_dir: str, split: str, prefix: str = "ptb") -> str:
  """``DATA_DIR/ptb.SPLIT.txt`` (or ``SPLIT.txt`` if that is what exists)."""
  if split not in SPLITS:
    raise UserError(f"unknown split {split!r}; use one of {SPLITS}")
  for name in (f"{prefix}.{split}.txt", f"{split}.txt"):
    path = os.path.join(data_dir, name)
    if tf.io.gfile.exists(path):
      return path
  raise UserError(
      f"--data_dir={data_dir!r} has no {split} split: expected {prefix}.{split}.txt or {split}.txt")
