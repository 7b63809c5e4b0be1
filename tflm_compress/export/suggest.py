"""Next-word suggestions from an exported bundle, as the Android demo makes them.

The context is what the app feeds its step model: ``<eos>`` (a sentence
start), then the words of the text (unknown words as ``<unk>``); the
suggestions are the top-``k`` words of the last step's logits in a stable
order, never ``<eos>`` or ``<unk>`` (tests/test_android_contract.py holds the
app to the same rule).
"""

import os

import numpy as np

from tflm_compress.data.vocab import Vocabulary
from tflm_compress.errors import UserError
from tflm_compress.export.meta import META_FILE, ModelMeta
from tflm_compress.export.runtime import TFLiteStepModel, log_softmax


class Suggester:
  """A bundle (``model_meta.json``, its ``.tflite`` and ``vocab.txt``) loaded once."""

  def __init__(self, bundle_dir: str, num_threads: int = 1):
    meta_path = os.path.join(bundle_dir, META_FILE)
    if not os.path.isfile(meta_path):
      raise UserError(f"{bundle_dir!r} is not a bundle: no {META_FILE} in it (export one with "
                      "scripts/convert.py or tflm_compress.export_tflite)")
    self.meta = ModelMeta.load(meta_path)
    for name in (self.meta.model_file, self.meta.vocab_file):
      if not os.path.isfile(os.path.join(bundle_dir, name)):
        raise UserError(f"{meta_path} names {name!r}, which is not in {bundle_dir!r}")
    self.vocab = Vocabulary.load(os.path.join(bundle_dir, self.meta.vocab_file))
    self.model = TFLiteStepModel(os.path.join(bundle_dir, self.meta.model_file),
                                 num_threads=num_threads)
    if self.model.vocab_size != len(self.vocab):
      raise UserError(f"{bundle_dir}: the model has {self.model.vocab_size} logits but "
                      f"{self.meta.vocab_file} has {len(self.vocab)} words")

  def context_ids(self, text: str) -> list[int]:
    """``<eos>`` then the ids of ``text``'s whitespace-separated words."""
    return [self.vocab.eos_id] + self.vocab.encode(text.split()).tolist()

  def suggest(self, text: str, k: int = 3) -> list[tuple[str, float]]:
    """The ``k`` likeliest next words after ``text``, each with its probability."""
    if k < 1:
      raise UserError(f"k={k}; ask for at least one suggestion")
    logits = self.model.run(np.asarray(self.context_ids(text), np.int32))[-1]
    log_probs = log_softmax(logits.astype(np.float64))
    order = np.argsort(-log_probs, kind="stable")
    skip = (self.vocab.eos_id, self.vocab.unk_id)
    top = [int(i) for i in order if i not in skip][:k]
    return [(self.vocab.words[i], float(np.exp(log_probs[i]))) for i in top]


def suggest_next_words(bundle_dir: str, text: str, k: int = 3) -> list[tuple[str, float]]:
  """``Suggester(bundle_dir).suggest(text, k)``: the top-``k`` next words with probabilities."""
  return Suggester(bundle_dir).suggest(text, k)
