import numpy as np
import pytest

from tflm_compress.data import EOS, UNK, Vocabulary
from tflm_compress.errors import UserError


def test_ids_are_sorted_by_frequency_ties_by_first_appearance():
  vocab = Vocabulary.from_token_stream("b a c a b a <eos> d".split())
  assert vocab.words[:4] == ["a", "b", "c", "<eos>"]  # a:3 b:2, then c, <eos>, d by first seen
  assert vocab.words[-1] == UNK  # absent from training: count 0, last
  counts = vocab.counts
  assert list(counts[:2]) == [3, 2]
  assert np.all(np.diff(counts) <= 0)


def test_unknown_words_encode_to_unk():
  vocab = Vocabulary.from_token_stream("a b <eos>".split())
  np.testing.assert_array_equal(vocab.encode(["a", "zzz", "<eos>"]),
                                [vocab.id("a"), vocab.unk_id, vocab.eos_id])
  assert vocab.decode(vocab.encode(["a", "b"])) == ["a", "b"]


def test_max_size_folds_rare_words_into_unk():
  vocab = Vocabulary.from_token_stream("a a a b b c d <eos>".split(), max_size=4)
  assert len(vocab) == 4 and EOS in vocab.words and UNK in vocab.words
  assert vocab.id("d") == vocab.unk_id
  assert vocab.counts[vocab.unk_id] == 2  # c and d


def test_save_load_round_trip(tmp_path):
  vocab = Vocabulary.from_token_stream("x y y z é <eos>".split())
  path = str(tmp_path / "vocab.txt")
  vocab.save(path)
  loaded = Vocabulary.load(path)
  assert loaded == vocab
  np.testing.assert_array_equal(loaded.counts, vocab.counts)
  assert (loaded.eos_id, loaded.unk_id) == (vocab.eos_id, vocab.unk_id)


@pytest.mark.parametrize("content, message", [
    ("a\na\n<eos>\n<unk>\n", "twice"),
    ("a\nb\n", "lacks the special word"),
    ("", "is empty"),
    ("a\tx\n<eos>\n<unk>\n", "bad count"),
])
def test_bad_vocab_files_give_clear_errors(tmp_path, content, message):
  path = tmp_path / "vocab.txt"
  path.write_text(content)
  with pytest.raises(UserError, match=message):
    Vocabulary.load(str(path))


def test_missing_vocab_file(tmp_path):
  with pytest.raises(UserError, match="not found"):
    Vocabulary.load(str(tmp_path / "nope.txt"))
