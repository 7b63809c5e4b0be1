package org.tflmcompress.lmcore;

/** A suggested next word. */
public final class Suggestion {
  public final int id;
  public final String word;
  /** Softmax probability of the word over the whole vocabulary, in [0, 1]. */
  public final double probability;

  public Suggestion(int id, String word, double probability) {
    this.id = id;
    this.word = word;
    this.probability = probability;
  }

  @Override
  public String toString() {
    return word + " (" + id + ", p=" + probability + ")";
  }
}
