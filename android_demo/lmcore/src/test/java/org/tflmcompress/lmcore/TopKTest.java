package org.tflmcompress.lmcore;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.List;
import java.util.Random;
import org.junit.Test;

public class TopKTest {
  @Test
  public void largestFirstTiesToTheLowerIdNanNeverChosen() {
    float[] logits = {1f, 5f, Float.NaN, 5f, -2f, 7f, 5f};
    assertArrayEquals(new int[] {5, 1, 3}, TopK.select(logits, 3, TopK.ALL));
    assertArrayEquals(new int[] {5, 1, 3, 6, 0, 4}, TopK.select(logits, 10, TopK.ALL));
    assertArrayEquals(new int[] {}, TopK.select(logits, 0, TopK.ALL));
  }

  @Test
  public void filteredIdsAreSkipped() {
    float[] logits = {9f, 8f, 7f, 6f, 5f};
    TopK.IdFilter noEvens = new TopK.IdFilter() {
      @Override
      public boolean accept(int id) {
        return id % 2 == 1;
      }
    };
    assertArrayEquals(new int[] {1, 3}, TopK.select(logits, 3, noEvens));
  }

  @Test
  public void matchesAStableSortOnRandomLogitsWithManyTies() {
    Random random = new Random(0);
    for (int trial = 0; trial < 300; trial++) {
      final float[] logits = new float[1 + random.nextInt(60)];
      for (int i = 0; i < logits.length; i++) {
        logits[i] = random.nextInt(7) - 3 + (random.nextInt(10) == 0 ? Float.NaN : 0f);
      }
      final int skip = random.nextInt(logits.length);
      int k = random.nextInt(6);
      List<Integer> order = new ArrayList<Integer>();
      for (int i = 0; i < logits.length; i++) {
        if (!Float.isNaN(logits[i]) && i != skip) {
          order.add(i);
        }
      }
      // Collections.sort is stable: equal logits keep ascending ids, like numpy's stable argsort.
      Collections.sort(order, new Comparator<Integer>() {
        @Override
        public int compare(Integer a, Integer b) {
          return Float.compare(logits[b], logits[a]);
        }
      });
      int[] expected = new int[Math.min(k, order.size())];
      for (int i = 0; i < expected.length; i++) {
        expected[i] = order.get(i);
      }
      int[] actual = TopK.select(logits, k, new TopK.IdFilter() {
        @Override
        public boolean accept(int id) {
          return id != skip;
        }
      });
      assertArrayEquals("trial " + trial, expected, actual);
    }
  }

  @Test
  public void probabilitiesAreASoftmaxThatCannotOverflow() {
    float[] logits = {1000f, 1000f, 999f, -1e30f};
    double[] p = TopK.probabilities(logits, new int[] {0, 1, 2, 3});
    double e = Math.exp(-1);
    assertEquals(1 / (2 + e), p[0], 1e-12);
    assertEquals(1 / (2 + e), p[1], 1e-12);
    assertEquals(e / (2 + e), p[2], 1e-12);
    assertEquals(0.0, p[3], 0.0);
    assertEquals(1000 + Math.log(2 + e), TopK.logSumExp(logits), 1e-9);
  }

  @Test
  public void probabilitiesOfAllIdsSumToOne() {
    Random random = new Random(1);
    float[] logits = new float[500];
    int[] ids = new int[logits.length];
    for (int i = 0; i < logits.length; i++) {
      logits[i] = (float) (random.nextGaussian() * 5);
      ids[i] = i;
    }
    double sum = 0;
    for (double p : TopK.probabilities(logits, ids)) {
      assertTrue(p > 0 && p < 1);
      sum += p;
    }
    assertEquals(1.0, sum, 1e-9);
  }
}
