package org.tflmcompress.lmcore;

import java.util.ArrayList;
import java.util.List;

/**
 * Carries the LSTM states of a step model along a token sequence that the user keeps editing.
 *
 * <p>{@link #advanceTo} brings the model to the state after a whole sequence, running only what
 * changed: appending a word runs one step; deleting or editing words rolls back to the state saved
 * before the first changed token and re-feeds from there. The result is always the one a fresh
 * feed from the zero state would give (the step model is deterministic). States saved per position
 * cost {@code 4 * sum(state_sizes)} bytes each; only the last {@code maxSnapshots} are kept, and an
 * edit further back re-feeds the sequence from the zero state.
 */
public final class ContextFeeder {
  private final StepModel model;
  private final int[] stateSizes;
  private final int maxSnapshots;
  private final float[] logits;

  private float[][] state;
  private float[][] scratch;
  private int[] fed = new int[0];
  private int fedCount;
  // before.get(i): the states before fed[i] was fed, or null once dropped (position 0 is zeros).
  private final List<float[][]> before = new ArrayList<float[][]>();
  private int firstKept;

  /**
   * @param maxSnapshots how many per-position states to keep for cheap rollbacks (>= 1)
   */
  public ContextFeeder(ModelMeta meta, StepModel model, int maxSnapshots) {
    if (maxSnapshots < 1) {
      throw new IllegalArgumentException("maxSnapshots=" + maxSnapshots + " must be >= 1");
    }
    this.model = model;
    this.stateSizes = meta.getStateSizes();
    this.maxSnapshots = maxSnapshots;
    this.logits = new float[meta.getVocabSize()];
    this.state = zeros();
    this.scratch = zeros();
  }

  /** The zero state, {@code [num_states][state_size]}. */
  public float[][] zeros() {
    float[][] z = new float[stateSizes.length][];
    for (int i = 0; i < z.length; i++) {
      z[i] = new float[stateSizes[i]];
    }
    return z;
  }

  /**
   * Runs the model so that it has consumed exactly {@code ids}.
   *
   * @param ids the whole context, at least one token (apps start it with {@code <eos>})
   * @return the number of steps run (0 when {@code ids} is what was fed already)
   */
  public int advanceTo(int[] ids) {
    if (ids.length == 0) {
      throw new IllegalArgumentException("the context needs at least one token");
    }
    for (int id : ids) {
      if (id < 0 || id >= logits.length) {
        throw new IllegalArgumentException("token id " + id + " is outside [0, " + logits.length
            + ")");
      }
    }
    int common = 0;
    while (common < fedCount && common < ids.length && fed[common] == ids[common]) {
      common++;
    }
    if (common == ids.length && common == fedCount) {
      return 0;
    }
    // The logits are those after the last token, so at least that token is run again.
    int start = Math.min(common, ids.length - 1);
    if (start < fedCount) {
      while (start > 0 && (start < firstKept || before.get(start) == null)) {
        start--;
      }
      restore(start);
    }
    int steps = 0;
    try {
      ensureCapacity(ids.length);
      for (int t = start; t < ids.length; t++) {
        before.add(copy(state));
        model.step(ids[t], state, scratch, logits);
        float[][] swap = state;
        state = scratch;
        scratch = swap;
        fed[t] = ids[t];
        fedCount = t + 1;
        steps++;
        dropOldSnapshots();
      }
    } catch (RuntimeException e) {
      reset(); // the states may be half written: start over next time
      throw e;
    }
    return steps;
  }

  private void restore(int position) {
    float[][] saved = position == 0 ? null : before.get(position);
    if (saved == null) {
      state = zeros();
    } else {
      for (int i = 0; i < state.length; i++) {
        System.arraycopy(saved[i], 0, state[i], 0, saved[i].length);
      }
    }
    while (before.size() > position) {
      before.remove(before.size() - 1);
    }
    fedCount = position;
    if (firstKept > position) {
      firstKept = position;
    }
  }

  private void dropOldSnapshots() {
    while (before.size() - firstKept > maxSnapshots) {
      before.set(firstKept, null);
      firstKept++;
    }
  }

  private void ensureCapacity(int n) {
    if (fed.length < n) {
      int[] bigger = new int[Math.max(n, fed.length * 2)];
      System.arraycopy(fed, 0, bigger, 0, fedCount);
      fed = bigger;
    }
  }

  private static float[][] copy(float[][] states) {
    float[][] out = new float[states.length][];
    for (int i = 0; i < states.length; i++) {
      out[i] = states[i].clone();
    }
    return out;
  }

  /** Forgets everything fed: the next {@link #advanceTo} starts from the zero state. */
  public void reset() {
    state = zeros();
    scratch = zeros();
    fedCount = 0;
    before.clear();
    firstKept = 0;
  }

  /** The logits after the last token fed, {@code [vocab_size]}; read only, until the next call. */
  public float[] logits() {
    if (fedCount == 0) {
      throw new IllegalStateException("nothing fed yet");
    }
    return logits;
  }

  /** A copy of the states after the last token fed. */
  public float[][] states() {
    return copy(state);
  }

  /** The tokens fed so far. */
  public int[] fedIds() {
    int[] out = new int[fedCount];
    System.arraycopy(fed, 0, out, 0, fedCount);
    return out;
  }
}
