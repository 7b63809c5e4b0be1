package org.tflmcompress.lmcore;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.Test;

public class NextWordPredictorTest {
  // ids: <eos>=0 the=1 cat=2 <unk>=3 sat=4 on=5 mat=6 there=7

  /** A bigram stand-in: after token t the best word is t+1, and <eos>/<unk> always score highest. */
  static final class NextIdModel implements StepModel {
    int steps;

    @Override
    public void step(int tokenId, float[][] states, float[][] nextStates, float[] logits) {
      steps++;
      for (int i = 0; i < states.length; i++) {
        System.arraycopy(states[i], 0, nextStates[i], 0, states[i].length);
      }
      for (int v = 0; v < logits.length; v++) {
        logits[v] = -(float) ((v - tokenId - 1) * (v - tokenId - 1));
      }
      logits[TestBundles.EOS] = 100f;
      logits[TestBundles.UNK] = 99f;
    }
  }

  private final NextIdModel model = new NextIdModel();
  private final NextWordPredictor predictor;

  public NextWordPredictorTest() throws Exception {
    predictor = new NextWordPredictor(TestBundles.bundle(), model, false);
  }

  private List<String> words(NextWordPredictor.Prediction prediction) {
    List<String> out = new ArrayList<String>();
    for (Suggestion s : prediction.suggestions) {
      out.add(s.word);
    }
    return out;
  }

  @Test
  public void suggestsWhileTypingAndRunsTheModelOnlyAtWordBoundaries() {
    NextWordPredictor.Prediction p = predictor.predict("", 3);
    assertEquals(Arrays.asList("the", "cat", "sat"), words(p)); // <eos>, <unk> skipped
    assertEquals(1, p.stepsRun);
    assertEquals(1, p.contextLength);

    p = predictor.predict("t", 3);
    assertEquals(Arrays.asList("the", "there"), words(p)); // words starting with "t"
    assertEquals(0, p.stepsRun);
    assertEquals("t", p.partialWord);

    p = predictor.predict("the ", 3);
    assertEquals(Arrays.asList("cat", "the", "sat"), words(p));
    assertEquals(1, p.stepsRun);

    p = predictor.predict("the ca", 3);
    assertEquals(Arrays.asList("cat"), words(p));
    assertEquals(0, p.stepsRun);

    p = predictor.predict("the cat ", 3);
    assertEquals(Arrays.asList("cat", "sat", "the"), words(p)); // cat and sat tie: lower id first
    assertEquals(1, p.stepsRun);

    p = predictor.predict("the cat dog ", 3); // dog is <unk>
    assertEquals(Arrays.asList("sat", "on", "cat"), words(p));

    p = predictor.predict("the ", 3); // deleted two words: re-run "the"
    assertEquals(Arrays.asList("cat", "the", "sat"), words(p));
    assertEquals(1, p.stepsRun);
    assertEquals(1 + 1 + 1 + 1 + 1, model.steps);

    assertEquals(Arrays.asList(), words(predictor.predict("the xyz", 3)));
  }

  @Test
  public void probabilitiesAreDescendingSoftmaxValues() {
    NextWordPredictor.Prediction p = predictor.predict("the cat ", 3);
    double previous = 1;
    for (Suggestion s : p.suggestions) {
      assertTrue(s.probability > 0 && s.probability <= previous);
      previous = s.probability;
    }
    // The specials hold nearly all the mass in this stand-in.
    assertTrue(p.suggestions.get(0).probability < 1e-40);
  }

  @Test
  public void resetReFeedsTheWholeContext() {
    predictor.predict("the cat ", 3);
    int before = model.steps;
    predictor.reset();
    assertEquals(3, predictor.predict("the cat ", 3).stepsRun);
    assertEquals(before + 3, model.steps);
  }

  @Test
  public void lowercaseOption() throws Exception {
    NextWordPredictor lower = new NextWordPredictor(TestBundles.bundle(), new NextIdModel(), true);
    assertEquals(Arrays.asList("cat"), words(lower.predict("THE CA", 3)));
    assertTrue(lower.getTokenizer().isLowercase());
  }
}
