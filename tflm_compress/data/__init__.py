"""Corpora: reader, frequency-sorted vocabulary, generated source, batching."""

from tflm_compress.data.batching import batchify, distributed_lm_dataset, lm_dataset
from tflm_compress.data.corpus import (Corpus, corpus_from_description, generated_corpus,
                                       load_corpus, load_text_corpus)
from tflm_compress.data.generated import GeneratedCorpusConfig, MarkovWordSource
from tflm_compress.data.reader import read_tokens
from tflm_compress.data.vocab import EOS, UNK, Vocabulary

__all__ = ["batchify", "corpus_from_description", "distributed_lm_dataset", "lm_dataset", "Corpus", "generated_corpus",
           "load_corpus", "load_text_corpus", "GeneratedCorpusConfig", "MarkovWordSource",
           "read_tokens", "EOS", "UNK", "Vocabulary"]
