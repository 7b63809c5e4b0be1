package org.tflmcompress.lmcore;

import java.util.List;
import java.util.Locale;

/**
 * Text to token ids the way the Python side reads text.
 *
 * <p>Words are split as Python's {@code str.split()} does; unknown words become {@code <unk>};
 * every finished line ends with {@code <eos>} ({@code tflm_compress/data/reader.py}). Case is kept, as in
 * the Python reader; {@code lowercase} is an opt-in for apps whose model was trained on lowercase
 * text (PTB) while people type capitals.
 */
public final class Tokenizer {
  private final Vocabulary vocab;
  private final boolean lowercase;

  public Tokenizer(Vocabulary vocab, boolean lowercase) {
    this.vocab = vocab;
    this.lowercase = lowercase;
  }

  /** Like the Python side: case kept. */
  public Tokenizer(Vocabulary vocab) {
    this(vocab, false);
  }

  public boolean isLowercase() {
    return lowercase;
  }

  /** {@code text.split()}, lowercased if this tokenizer lowercases. */
  public List<String> words(String text) {
    return PythonText.split(normalize(text));
  }

  /** {@code vocab.encode(text.split())}: no {@code <eos>} added. */
  public int[] encodeWords(String text) {
    return vocab.encode(words(text));
  }

  /**
   * {@code vocab.encode(read_tokens(file))} for a file holding {@code text}: each non-blank line
   * (split at LF, CR or CRLF) gives its words and then {@code <eos>}; the last line counts even
   * without a line break, as in the reader.
   */
  public int[] encodeLines(String text) {
    IntList ids = new IntList();
    for (String line : PythonText.splitFileLines(normalize(text))) {
      appendLine(ids, line);
    }
    return ids.toArray();
  }

  /**
   * What to feed the step model for text being typed, and the word being typed.
   *
   * <p>The context starts with {@code <eos>} (a sentence starts after one, as in the training
   * stream), then every finished line (words, then {@code <eos>}), then the finished words of the
   * line being typed. A word counts as finished once whitespace follows it; the unfinished tail is
   * {@link Context#partialWord}, which apps use to filter suggestions, not to run the model.
   */
  public Context context(String text) {
    String normalized = normalize(text);
    IntList ids = new IntList();
    ids.add(vocab.getEosId());
    List<String> lines = PythonText.splitFileLines(normalized);
    boolean lastLineOpen =
        !normalized.isEmpty() && !normalized.endsWith("\n") && !normalized.endsWith("\r");
    int finished = lastLineOpen ? lines.size() - 1 : lines.size();
    for (int i = 0; i < finished; i++) {
      appendLine(ids, lines.get(i));
    }
    String partial = "";
    if (lastLineOpen) {
      String line = lines.get(lines.size() - 1);
      List<String> words = PythonText.split(line);
      int end = line.length();
      boolean wordOpen = end > 0 && !PythonText.isSpace(line.codePointBefore(end));
      if (wordOpen && !words.isEmpty()) {
        partial = words.remove(words.size() - 1);
      }
      for (String word : words) {
        ids.add(vocab.id(word));
      }
    }
    return new Context(ids.toArray(), partial);
  }

  // A finished line: its words, then <eos>; a blank line adds nothing, as in the reader.
  private void appendLine(IntList ids, String line) {
    List<String> words = PythonText.split(line);
    if (words.isEmpty()) {
      return;
    }
    for (String word : words) {
      ids.add(vocab.id(word));
    }
    ids.add(vocab.getEosId());
  }

  private String normalize(String text) {
    return lowercase ? text.toLowerCase(Locale.ROOT) : text;
  }

  /** Token ids to feed, and the unfinished word after them. */
  public static final class Context {
    /** Ids to feed the model, starting with {@code <eos>}; never empty. */
    public final int[] ids;
    /** The word being typed (no whitespace after it yet), or "". */
    public final String partialWord;

    Context(int[] ids, String partialWord) {
      this.ids = ids;
      this.partialWord = partialWord;
    }
  }

  /** A growable int array (boxing every id of a long text would be wasteful on a phone). */
  static final class IntList {
    private int[] data = new int[16];
    private int size;

    void add(int value) {
      if (size == data.length) {
        int[] bigger = new int[size * 2];
        System.arraycopy(data, 0, bigger, 0, size);
        data = bigger;
      }
      data[size++] = value;
    }

    int[] toArray() {
      int[] out = new int[size];
      System.arraycopy(data, 0, out, 0, size);
      return out;
    }
  }
}
