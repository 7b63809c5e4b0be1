"""Frequency-sorted word vocabulary.

Ids are sorted by training-set frequency (most frequent first; ties broken by
first appearance), so id ranges are frequency bands: GroupReduce blocks and slim
embeddings rely on that. ``<eos>`` and ``<unk>`` are always present.
"""

import collections
from typing import Iterable, Sequence

import numpy as np
import tensorflow as tf

from tflm_compress import io_utils
from tflm_compress.errors import UserError

EOS = "<eos>"
UNK = "<unk>"


class Vocabulary:
  """Maps words to frequency-sorted integer ids and back.

  Args:
    words: the words, in id order (id 0 is the most frequent). Must contain
      ``<eos>`` and ``<unk>`` and no duplicates.
    counts: optional training-set count per word, aligned with ``words``.
  """

  def __init__(self, words: Sequence[str], counts: Sequence[int] | None = None):
    words = list(words)
    index = {}
    for i, w in enumerate(words):
      if w in index:
        raise UserError(f"vocabulary has the word {w!r} twice (ids {index[w]} and {i})")
      if not w or any(ch.isspace() for ch in w):
        raise UserError(f"vocabulary entry {i} ({w!r}) is empty or contains whitespace")
      index[w] = i
    for special in (EOS, UNK):
      if special not in index:
        raise UserError(f"vocabulary lacks the special word {special!r}")
    if counts is not None and len(counts) != len(words):
      raise UserError(f"vocabulary has {len(words)} words but {len(counts)} counts")
    self._words = words
    self._index = index
    self._counts = None if counts is None else np.asarray(counts, dtype=np.int64)

  @classmethod
  def from_token_stream(cls, tokens: Iterable[str], max_size: int | None = None) -> "Vocabulary":
    """Builds the vocabulary of a training token stream (``<eos>`` included).

    Words beyond ``max_size`` (by frequency) are left out and read as ``<unk>``.
    """
    counter = collections.Counter()
    first_seen = {}
    for i, tok in enumerate(tokens):
      counter[tok] += 1
      first_seen.setdefault(tok, i)
    for special in (EOS, UNK):
      if special not in counter:
        counter[special] = 0
        first_seen[special] = len(first_seen) + 10**12
    ordered = sorted(counter, key=lambda w: (-counter[w], first_seen[w]))
    if max_size is not None:
      if max_size < 2:
        raise UserError(f"max vocabulary size must be >= 2 (for <eos> and <unk>), got {max_size}")
      regular = [w for w in ordered if w not in (EOS, UNK)]
      kept, dropped = regular[:max_size - 2], regular[max_size - 2:]
      counter[UNK] += sum(counter[w] for w in dropped)
      ordered = sorted(kept + [EOS, UNK], key=lambda w: (-counter[w], first_seen[w]))
    return cls(ordered, [counter[w] for w in ordered])

  def __len__(self) -> int:
    return len(self._words)

  def __eq__(self, other) -> bool:
    return isinstance(other, Vocabulary) and self._words == other._words

  @property
  def words(self) -> list[str]:
    return list(self._words)

  @property
  def counts(self) -> np.ndarray | None:
    """Training-set count per id (int64 [V]), or None if unknown."""
    return None if self._counts is None else self._counts.copy()

  @property
  def eos_id(self) -> int:
    return self._index[EOS]

  @property
  def unk_id(self) -> int:
    return self._index[UNK]

  def id(self, word: str) -> int:
    return self._index.get(word, self._index[UNK])

  def word(self, idx: int) -> str:
    return self._words[idx]

  def encode(self, tokens: Iterable[str]) -> np.ndarray:
    """Token strings -> int32 ids; unknown words become ``<unk>``."""
    unk = self.unk_id
    return np.fromiter((self._index.get(t, unk) for t in tokens), dtype=np.int32)

  def decode(self, ids: Iterable[int]) -> list[str]:
    return [self._words[int(i)] for i in ids]

  def save(self, path: str) -> None:
    """Writes ``vocab.txt``: one word per line in id order, ``word<TAB>count``."""
    if self._counts is None:
      lines = self._words
    else:
      lines = [f"{w}\t{c}" for w, c in zip(self._words, self._counts)]
    io_utils.atomic_write_text(path, "\n".join(lines) + "\n")

  @classmethod
  def load(cls, path: str) -> "Vocabulary":
    """Reads a ``vocab.txt`` written by :meth:`save` (counts optional)."""
    if not tf.io.gfile.exists(path):
      raise UserError(f"vocabulary file not found: {path!r}")
    with tf.io.gfile.GFile(path, "rb") as f:
      raw = f.read()
    try:
      text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
      raise UserError(f"vocabulary file {path!r} is not UTF-8 (byte {e.start})") from None
    words, counts = [], []
    for line_no, line in enumerate(text.splitlines(), start=1):
      if not line.strip():
        continue
      parts = line.split("\t")
      words.append(parts[0].strip())
      if len(parts) > 1:
        try:
          counts.append(int(parts[1]))
        except ValueError:
          raise UserError(f"{path}:{line_no}: bad count {parts[1]!r}") from None
    if not words:
      raise UserError(f"vocabulary file {path!r} is empty")
    try:
      return cls(words, counts if len(counts) == len(words) else None)
    except UserError as e:
      raise UserError(f"{path}: {e}") from None
