import pytest

from tflm_compress.data import load_text_corpus, read_tokens
from tflm_compress.errors import UserError


def test_lines_get_eos_and_blank_lines_are_skipped(tmp_path):
  path = tmp_path / "t.txt"
  path.write_bytes(b" the cat \r\n\n\t\nsat\tdown  \nna\xc3\xafve\n")
  assert read_tokens(str(path)) == ["the", "cat", "<eos>", "sat", "down", "<eos>",
                                    "naïve", "<eos>"]


def test_bad_utf8_is_an_error_with_line_number_or_replaced(tmp_path):
  path = tmp_path / "t.txt"
  path.write_bytes(b"ok line\nbad \xff byte\n")
  with pytest.raises(UserError, match=r"t.txt:2: invalid UTF-8"):
    read_tokens(str(path))
  assert read_tokens(str(path), on_bad_bytes="replace")[4] == "\ufffd"


@pytest.mark.parametrize("content", [b"", b"\n  \n"])
def test_empty_file_is_an_error(tmp_path, content):
  path = tmp_path / "t.txt"
  path.write_bytes(content)
  with pytest.raises(UserError, match="holds no words"):
    read_tokens(str(path))


def test_text_corpus_builds_vocab_from_train_and_maps_unknowns(tmp_path):
  (tmp_path / "ptb.train.txt").write_text("a b a\nb c\n")
  (tmp_path / "ptb.valid.txt").write_text("a z\n")
  (tmp_path / "test.txt").write_text("c\n")
  corpus = load_text_corpus(str(tmp_path))
  vocab = corpus.vocab
  assert vocab.decode(corpus.split("train")) == "a b a <eos> b c <eos>".split()
  assert vocab.decode(corpus.split("valid")) == ["a", "<unk>", "<eos>"]
  assert len(corpus.split("test")) == 2


def test_missing_split_and_missing_dir(tmp_path):
  (tmp_path / "ptb.train.txt").write_text("a\n")
  with pytest.raises(UserError, match="has no valid split"):
    load_text_corpus(str(tmp_path))
  with pytest.raises(UserError, match="is not a directory"):
    load_text_corpus(str(tmp_path / "nope"))


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40),
                max_size=20),
       st.sampled_from(["\n", "\r\n"]))
def test_reader_on_random_text_matches_split_per_line(tmp_path_factory, lines, newline):
  """Any UTF-8 text reads as the whitespace-split words of each non-blank line + <eos>."""
  path = tmp_path_factory.mktemp("hyp") / "t.txt"
  text = newline.join(lines)
  path.write_bytes(text.encode("utf-8"))
  expected = []
  for line in text.encode("utf-8").splitlines():
    words = line.decode("utf-8").split()
    if words:
      expected += words + ["<eos>"]
  if not expected:
    with pytest.raises(UserError, match="holds no words"):
      read_tokens(str(path))
  else:
    tokens = read_tokens(str(path))
    assert tokens == expected
    assert all(t and not any(c.isspace() for c in t) for t in tokens)
