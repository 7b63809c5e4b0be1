package org.tflmcompress.lmcore;

/**
 * One run of the step graph: a token id and the LSTM states in, the next-word logits and the new
 * states out. The app implements it over LiteRT; tests over plain Java.
 */
public interface StepModel {
  /**
   * Feeds one token.
   *
   * @param tokenId the input token, in {@code [0, vocab_size)}
   * @param states the states in {@code ModelMeta.getStateInputs()} order,
   *     {@code [i][state_sizes[i]]}; read only
   * @param nextStates where to write the new states, same layout
   * @param logits where to write the logits, {@code [vocab_size]}
   */
  void step(int tokenId, float[][] states, float[][] nextStates, float[] logits);
}
