package org.tflmcompress.lmcore;

/** The k best ids of a logits vector, and softmax probabilities, without sorting all of it. */
public final class TopK {
  private TopK() {}

  /** Which ids may be suggested. */
  public interface IdFilter {
    boolean accept(int id);
  }

  /** Accepts every id. */
  public static final IdFilter ALL = new IdFilter() {
    @Override
    public boolean accept(int id) {
      return true;
    }
  };

  /**
   * The ids of the {@code k} largest logits that {@code filter} accepts, largest first.
   *
   * <p>Ties go to the lower id, which is the order of numpy's {@code argsort(-logits,
   * kind="stable")}; NaN is never chosen. Fewer than {@code k} ids come back when fewer pass the
   * filter. O(V k): k is a handful of suggestions.
   *
   * @param logits float32 {@code [V]}
   */
  public static int[] select(float[] logits, int k, IdFilter filter) {
    if (k < 0) {
      throw new IllegalArgumentException("k=" + k + " must be >= 0");
    }
    int[] bestIds = new int[k];
    float[] bestValues = new float[k];
    int count = 0;
    for (int id = 0; id < logits.length && k > 0; id++) {
      float value = logits[id];
      if (Float.isNaN(value) || (count == k && !(value > bestValues[k - 1]))) {
        continue;
      }
      if (!filter.accept(id)) {
        continue;
      }
      // Insert after every kept value >= this one, so equal values keep the lower id first.
      int pos = count < k ? count : k - 1;
      while (pos > 0 && bestValues[pos - 1] < value) {
        bestIds[pos] = bestIds[pos - 1];
        bestValues[pos] = bestValues[pos - 1];
        pos--;
      }
      bestIds[pos] = id;
      bestValues[pos] = value;
      if (count < k) {
        count++;
      }
    }
    if (count == k) {
      return bestIds;
    }
    int[] out = new int[count];
    System.arraycopy(bestIds, 0, out, 0, count);
    return out;
  }

  /** {@code log(sum(exp(logits)))} in double, shifted by the max so it cannot overflow. */
  public static double logSumExp(float[] logits) {
    double max = Double.NEGATIVE_INFINITY;
    for (float v : logits) {
      if (v > max) {
        max = v;
      }
    }
    if (Double.isInfinite(max)) {
      return max;
    }
    double sum = 0;
    for (float v : logits) {
      sum += Math.exp(v - max);
    }
    return max + Math.log(sum);
  }

  /** Softmax probability of each of {@code ids} under {@code logits}. */
  public static double[] probabilities(float[] logits, int[] ids) {
    double logZ = logSumExp(logits);
    double[] out = new double[ids.length];
    for (int i = 0; i < ids.length; i++) {
      out[i] = Math.exp(logits[ids[i]] - logZ);
    }
    return out;
  }
}
