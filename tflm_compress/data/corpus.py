"""A corpus: a vocabulary and the id streams of its train/valid/test splits."""

import dataclasses

import numpy as np
import tensorflow as tf

from tflm_compress.data import reader
from tflm_compress.data.generated import GeneratedCorpusConfig, MarkovWordSource
from tflm_compress.data.vocab import Vocabulary
from tflm_compress.errors import UserError


@dataclasses.dataclass
class Corpus:
  """Attributes:
    vocab: frequency-sorted vocabulary built from the training split.
    splits: split name -> int32 id stream [num_tokens] (``<eos>`` included).
    source: where it came from: a data dir, or ``generated``.
    generated_config: the generated source's parameters, if generated.
  """

  vocab: Vocabulary
  splits: dict[str, np.ndarray]
  source: str
  generated_config: GeneratedCorpusConfig | None = None

  def split(self, name: str) -> np.ndarray:
    if name not in self.splits:
      raise UserError(f"unknown split {name!r}; this corpus has {sorted(self.splits)}")
    return self.splits[name]

  def describe(self) -> dict:
    """JSON-ready description; :func:`corpus_from_description` reloads it."""
    d = {"source": self.source, "vocab_size": len(self.vocab),
         **{f"{k}_tokens": int(len(v)) for k, v in self.splits.items()}}
    if self.generated_config is not None:
      d["generated_config"] = dataclasses.asdict(self.generated_config)
    return d


def load_text_corpus(data_dir: str, vocab: Vocabulary | None = None,
                     max_vocab_size: int | None = None,
                     on_bad_bytes: str = "error") -> Corpus:
  """Reads ``DATA_DIR/ptb.{train,valid,test}.txt`` (or ``{split}.txt``).

  The vocabulary is built from the training split unless ``vocab`` is given
  (e.g. the vocabulary a model was trained with). Words not in it read as
  ``<unk>``.
  """
  if not tf.io.gfile.isdir(data_dir):
    raise UserError(f"--data_dir={data_dir!r} is not a directory")
  paths = {s: reader.split_path(data_dir, s) for s in reader.SPLITS}
  tokens = {s: reader.read_tokens(p, on_bad_bytes) for s, p in paths.items()}
  if vocab is None:
    vocab = Vocabulary.from_token_stream(tokens["train"], max_size=max_vocab_size)
  splits = {s: vocab.encode(t) for s, t in tokens.items()}
  return Corpus(vocab=vocab, splits=splits, source=data_dir)


def generated_corpus(config: GeneratedCorpusConfig = GeneratedCorpusConfig(),
                     vocab: Vocabulary | None = None) -> Corpus:
  """The built-in generated corpus (see :mod:`tflm_compress.data.generated`)."""
  source = MarkovWordSource(config)
  streams = source.sample_splits()
  if vocab is None:
    vocab = Vocabulary.from_token_stream(streams["train"])
  splits = {s: vocab.encode(t) for s, t in streams.items()}
  return Corpus(vocab=vocab, splits=splits, source="generated", generated_config=config)


def load_corpus(data_dir: str, vocab: Vocabulary | None = None,
                generated: GeneratedCorpusConfig | None = None, **kwargs) -> Corpus:
  """A text corpus from ``data_dir``, or the generated one if it is empty.

  Args:
    generated: parameters of the generated corpus (default: the built-in one).
    **kwargs: passed to :func:`load_text_corpus`.
  """
  if data_dir:
    return load_text_corpus(data_dir, vocab=vocab, **kwargs)
  return generated_corpus(generated or GeneratedCorpusConfig(), vocab=vocab)


def corpus_from_description(description: dict, vocab: Vocabulary | None = None) -> Corpus:
  """Reloads the corpus a run was trained on (from its ``config.json``)."""
  if description.get("source") == "generated":
    return generated_corpus(GeneratedCorpusConfig(**description.get("generated_config", {})),
                            vocab=vocab)
  return load_text_corpus(description["source"], vocab=vocab)
