package org.tflmcompress.lmcore;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.fail;

import java.util.HashMap;
import java.util.Map;
import org.junit.Test;

public class SignatureCheckTest {
  private static final class Shapes implements SignatureCheck.TensorShapes {
    final Map<String, int[]> inputs = new HashMap<String, int[]>();
    final Map<String, int[]> outputs = new HashMap<String, int[]>();

    @Override
    public int[] inputShape(String name) {
      return inputs.get(name);
    }

    @Override
    public int[] outputShape(String name) {
      return outputs.get(name);
    }
  }

  /** The signature of the step model of TestBundles.meta(). */
  private static Shapes matching() {
    Shapes s = new Shapes();
    s.inputs.put("token", new int[] {1});
    s.outputs.put("logits", new int[] {1, 8});
    String[] names = {"h0", "c0", "h1", "c1"};
    int[] sizes = {4, 4, 3, 3};
    for (int i = 0; i < names.length; i++) {
      s.inputs.put(names[i], new int[] {1, sizes[i]});
      s.outputs.put(names[i] + "_out", new int[] {1, sizes[i]});
    }
    return s;
  }

  @Test
  public void aMatchingSignaturePasses() throws Exception {
    SignatureCheck.check(TestBundles.meta(), matching(), "model.tflite");
    Shapes unknown = matching();
    unknown.outputs.put("logits", SignatureCheck.ANY_SHAPE);
    SignatureCheck.check(TestBundles.meta(), unknown, "model.tflite");
  }

  @Test
  public void everyProblemIsListed() throws Exception {
    Shapes s = matching();
    s.inputs.remove("c1");
    s.inputs.put("h0", new int[] {1, 5});
    s.outputs.put("logits", new int[] {1, 9});
    try {
      SignatureCheck.check(TestBundles.meta(), s, "model.tflite");
      fail();
    } catch (BundleException e) {
      assertEquals("model.tflite does not match model_meta.json (signature 'serving_default'): "
          + "output 'logits' has shape [1, 9], expected [1, 8]; "
          + "input 'h0' has shape [1, 5], expected [1, 4]; no input 'c1'; "
          + "copy the files of one bundle together", e.getMessage());
    }
  }
}
