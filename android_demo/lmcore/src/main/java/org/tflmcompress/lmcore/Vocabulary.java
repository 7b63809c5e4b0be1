package org.tflmcompress.lmcore;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The frequency-sorted word list of a bundle ({@code vocab.txt}).
 *
 * <p>The JVM twin of {@code tflm_compress/data/vocab.py}: one word per line in id order, optionally
 * {@code word<TAB>count}; blank lines skipped; {@code <eos>} and {@code <unk>} always present; an
 * unknown word reads as {@code <unk>}.
 */
public final class Vocabulary {
  public static final String EOS = "<eos>";
  public static final String UNK = "<unk>";

  private final String[] words;
  private final Map<String, Integer> index;
  private final long[] counts; // null when the file has no counts
  private final int eosId;
  private final int unkId;

  /**
   * @param words the words in id order; no duplicates, none empty or holding whitespace
   * @param counts training count per word, or null
   */
  public Vocabulary(List<String> words, long[] counts) throws BundleException {
    this(words, counts, "vocabulary");
  }

  private Vocabulary(List<String> words, long[] counts, String source) throws BundleException {
    this.words = words.toArray(new String[0]);
    this.index = new HashMap<String, Integer>(words.size() * 2);
    for (int i = 0; i < this.words.length; i++) {
      String w = this.words[i];
      Integer previous = index.put(w, i);
      if (previous != null) {
        throw new BundleException(source + ": vocabulary has the word '" + w + "' twice (ids "
            + previous + " and " + i + ")");
      }
      if (w.isEmpty() || PythonText.hasSpace(w)) {
        throw new BundleException(source + ": vocabulary entry " + i + " ('" + w
            + "') is empty or contains whitespace");
      }
    }
    for (String special : new String[] {EOS, UNK}) {
      if (!index.containsKey(special)) {
        throw new BundleException(source + ": vocabulary lacks the special word '" + special
            + "'");
      }
    }
    if (counts != null && counts.length != this.words.length) {
      throw new BundleException(source + ": vocabulary has " + this.words.length + " words but "
          + counts.length + " counts");
    }
    this.counts = counts == null ? null : counts.clone();
    this.eosId = index.get(EOS);
    this.unkId = index.get(UNK);
  }

  /**
   * Reads a {@code vocab.txt} as {@code Vocabulary.load} does.
   *
   * @param source the file's name or path, for messages
   */
  public static Vocabulary parse(byte[] bytes, String source) throws BundleException {
    String text = Utf8.decode(bytes, "vocabulary file " + source);
    List<String> words = new ArrayList<String>();
    List<Long> counts = new ArrayList<Long>();
    int lineNo = 0;
    for (String line : PythonText.splitLines(text)) {
      lineNo++;
      if (PythonText.strip(line).isEmpty()) {
        continue;
      }
      String[] parts = line.split("\t", -1);
      words.add(PythonText.strip(parts[0]));
      if (parts.length > 1) {
        counts.add(parseCount(parts[1], source, lineNo));
      }
    }
    if (words.isEmpty()) {
      throw new BundleException("vocabulary file " + source + " is empty");
    }
    long[] countArray = null;
    if (counts.size() == words.size()) {
      countArray = new long[counts.size()];
      for (int i = 0; i < countArray.length; i++) {
        countArray[i] = counts.get(i);
      }
    }
    return new Vocabulary(words, countArray, source);
  }

  private static long parseCount(String field, String source, int lineNo)
      throws BundleException {
    String digits = PythonText.strip(field);
    try {
      return Long.parseLong(digits.startsWith("+") ? digits.substring(1) : digits);
    } catch (NumberFormatException e) {
      throw new BundleException(source + ":" + lineNo + ": bad count '" + field + "'");
    }
  }

  /** Checks that this is the vocabulary {@code meta} describes. */
  public void checkMatches(ModelMeta meta, String source) throws BundleException {
    if (size() != meta.getVocabSize()) {
      throw new BundleException(source + " has " + size() + " words but model_meta.json says "
          + "vocab_size=" + meta.getVocabSize() + "; copy the files of one bundle together");
    }
    if (eosId != meta.getEosId() || unkId != meta.getUnkId()) {
      throw new BundleException(source + " has <eos>=" + eosId + " and <unk>=" + unkId
          + " but model_meta.json says eos_id=" + meta.getEosId() + " and unk_id="
          + meta.getUnkId() + "; copy the files of one bundle together");
    }
  }

  public int size() {
    return words.length;
  }

  public int getEosId() {
    return eosId;
  }

  public int getUnkId() {
    return unkId;
  }

  /** The id of {@code word}, or the {@code <unk>} id if it is not in the vocabulary. */
  public int id(String word) {
    Integer id = index.get(word);
    return id == null ? unkId : id;
  }

  public boolean contains(String word) {
    return index.containsKey(word);
  }

  public String word(int id) {
    return words[id];
  }

  /** Training count of {@code id}, or -1 if the file has no counts. */
  public long count(int id) {
    return counts == null ? -1 : counts[id];
  }

  /** {@code Vocabulary.encode}: words to ids, unknown words to {@code <unk>}. */
  public int[] encode(List<String> tokens) {
    int[] ids = new int[tokens.size()];
    for (int i = 0; i < ids.length; i++) {
      ids[i] = id(tokens.get(i));
    }
    return ids;
  }
}
