package org.tflmcompress.lmcore;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Checks a loaded model's signature against {@code model_meta.json} before the first step, so a
 * mismatched bundle is one clear message instead of a native crash or wrong suggestions.
 */
public final class SignatureCheck {
  private SignatureCheck() {}

  /** Returned by {@link TensorShapes} when the runtime cannot tell a tensor's shape. */
  public static final int[] ANY_SHAPE = new int[0];

  /** The tensor shapes of the signature, as the runtime reports them. */
  public interface TensorShapes {
    /** The shape of input {@code name}, {@link #ANY_SHAPE}, or null if there is no such input. */
    int[] inputShape(String name);

    /** The shape of output {@code name}, {@link #ANY_SHAPE}, or null if there is no such output. */
    int[] outputShape(String name);
  }

  /**
   * Throws a BundleException listing every tensor that is missing or has the wrong shape.
   *
   * @param modelName the model file, for the message
   */
  public static void check(ModelMeta meta, TensorShapes shapes, String modelName)
      throws BundleException {
    List<String> problems = new ArrayList<String>();
    int[] sizes = meta.getStateSizes();
    expect(problems, "input", meta.getTokenInput(), shapes.inputShape(meta.getTokenInput()),
        new int[] {1});
    expect(problems, "output", meta.getLogitsOutput(), shapes.outputShape(meta.getLogitsOutput()),
        new int[] {1, meta.getVocabSize()});
    for (int i = 0; i < sizes.length; i++) {
      String in = meta.getStateInputs().get(i);
      String out = meta.getStateOutputs().get(i);
      expect(problems, "input", in, shapes.inputShape(in), new int[] {1, sizes[i]});
      expect(problems, "output", out, shapes.outputShape(out), new int[] {1, sizes[i]});
    }
    if (!problems.isEmpty()) {
      throw new BundleException(modelName + " does not match model_meta.json (signature '"
          + meta.getSignature() + "'): " + join(problems)
          + "; copy the files of one bundle together");
    }
  }

  private static void expect(List<String> problems, String kind, String name, int[] actual,
      int[] expected) {
    if (actual == null) {
      problems.add("no " + kind + " '" + name + "'");
    } else if (actual != ANY_SHAPE && !Arrays.equals(actual, expected)) {
      problems.add(kind + " '" + name + "' has shape " + Arrays.toString(actual) + ", expected "
          + Arrays.toString(expected));
    }
  }

  private static String join(List<String> parts) {
    StringBuilder out = new StringBuilder();
    for (String part : parts) {
      if (out.length() > 0) {
        out.append("; ");
      }
      out.append(part);
    }
    return out.toString();
  }
}
