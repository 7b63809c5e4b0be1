package org.tflmcompress.lmcore;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.util.Arrays;
import java.util.Random;
import org.junit.Test;

public class ContextFeederTest {
  private final ModelMeta meta;

  public ContextFeederTest() throws Exception {
    meta = TestBundles.meta();
  }

  /** The logits and states a fresh feed of {@code ids} from the zero state gives. */
  private ContextFeeder fresh(int[] ids) {
    ContextFeeder feeder = new ContextFeeder(meta, new TestBundles.FakeStepModel(), 1000);
    assertEquals(ids.length, feeder.advanceTo(ids));
    return feeder;
  }

  private static void assertSameResult(ContextFeeder expected, ContextFeeder actual) {
    assertArrayEquals(expected.fedIds(), actual.fedIds());
    assertArrayEquals(expected.logits(), actual.logits(), 0f);
    float[][] a = expected.states();
    float[][] b = actual.states();
    for (int i = 0; i < a.length; i++) {
      assertArrayEquals(a[i], b[i], 0f);
    }
  }

  @Test
  public void runsOnlyWhatChanged() {
    TestBundles.FakeStepModel model = new TestBundles.FakeStepModel();
    ContextFeeder feeder = new ContextFeeder(meta, model, 1000);
    assertEquals(1, feeder.advanceTo(new int[] {0}));
    assertEquals(2, feeder.advanceTo(new int[] {0, 1, 2}));
    assertEquals(0, feeder.advanceTo(new int[] {0, 1, 2}));
    assertSameResult(fresh(new int[] {0, 1, 2}), feeder);
    assertEquals(1, feeder.advanceTo(new int[] {0, 1, 2, 4}));
    // Deleting the last word re-runs the token before it (its logits were not kept).
    assertEquals(1, feeder.advanceTo(new int[] {0, 1, 2}));
    assertSameResult(fresh(new int[] {0, 1, 2}), feeder);
    // Editing a word re-feeds from it.
    assertEquals(2, feeder.advanceTo(new int[] {0, 5, 2}));
    assertSameResult(fresh(new int[] {0, 5, 2}), feeder);
    // A new first token re-feeds everything.
    assertEquals(3, feeder.advanceTo(new int[] {1, 5, 2}));
    assertSameResult(fresh(new int[] {1, 5, 2}), feeder);
    assertEquals(1 + 2 + 1 + 1 + 2 + 3, model.steps);
  }

  @Test
  public void randomEditsAlwaysEqualAFreshFeed() {
    Random random = new Random(42);
    ContextFeeder feeder = new ContextFeeder(meta, new TestBundles.FakeStepModel(), 1000);
    int[] ids = {0};
    int totalSteps = 0;
    int freshSteps = 0;
    for (int edit = 0; edit < 200; edit++) {
      ids = randomEdit(random, ids);
      totalSteps += feeder.advanceTo(ids);
      freshSteps += ids.length;
      assertSameResult(fresh(ids), feeder);
    }
    assertTrue(totalSteps + " steps vs " + freshSteps, totalSteps * 3 < freshSteps);
  }

  @Test
  public void fewSnapshotsStillGiveTheRightResult() {
    Random random = new Random(7);
    ContextFeeder feeder = new ContextFeeder(meta, new TestBundles.FakeStepModel(), 2);
    int[] ids = {0, 1, 2, 4, 5, 6, 7, 1, 2};
    feeder.advanceTo(ids);
    // An edit far behind the kept snapshots re-feeds from the zero state.
    int[] edited = ids.clone();
    edited[2] = 7;
    assertEquals(edited.length, feeder.advanceTo(edited));
    assertSameResult(fresh(edited), feeder);
    for (int edit = 0; edit < 100; edit++) {
      ids = randomEdit(random, ids);
      feeder.advanceTo(ids);
      assertSameResult(fresh(ids), feeder);
    }
  }

  @Test
  public void aFailedStepResetsSoTheNextCallStartsOver() {
    TestBundles.FakeStepModel model = new TestBundles.FakeStepModel();
    ContextFeeder feeder = new ContextFeeder(meta, model, 1000);
    feeder.advanceTo(new int[] {0, 1});
    model.failAtStep = 3;
    try {
      feeder.advanceTo(new int[] {0, 1, 2, 4});
      fail();
    } catch (IllegalStateException expected) {
      // from the model
    }
    assertEquals(0, feeder.fedIds().length);
    assertEquals(4, feeder.advanceTo(new int[] {0, 1, 2, 4}));
    assertSameResult(fresh(new int[] {0, 1, 2, 4}), feeder);
  }

  @Test
  public void badInputIsRefused() {
    ContextFeeder feeder = new ContextFeeder(meta, new TestBundles.FakeStepModel(), 10);
    for (int[] ids : new int[][] {{}, {0, 8}, {-1}}) {
      try {
        feeder.advanceTo(ids);
        fail(Arrays.toString(ids));
      } catch (IllegalArgumentException expected) {
        // named in the message
      }
    }
    try {
      feeder.logits();
      fail();
    } catch (IllegalStateException expected) {
      // nothing fed
    }
  }

  @Test
  public void zeroStateHasTheMetaLayout() {
    ContextFeeder feeder = new ContextFeeder(meta, new TestBundles.FakeStepModel(), 10);
    float[][] zeros = feeder.zeros();
    assertEquals(4, zeros.length);
    assertArrayEquals(new float[3], zeros[3], 0f);
    assertEquals(4, zeros[0].length);
  }

  private static int[] randomEdit(Random random, int[] ids) {
    int kind = random.nextInt(10);
    if (kind < 5) { // type a word
      int[] out = Arrays.copyOf(ids, ids.length + 1);
      out[ids.length] = random.nextInt(TestBundles.VOCAB_SIZE);
      return out;
    }
    if (kind < 7 && ids.length > 1) { // delete the last word
      return Arrays.copyOf(ids, ids.length - 1);
    }
    if (kind < 9) { // change a word somewhere
      int[] out = ids.clone();
      out[random.nextInt(out.length)] = random.nextInt(TestBundles.VOCAB_SIZE);
      return out;
    }
    return ids; // no change
  }
}
