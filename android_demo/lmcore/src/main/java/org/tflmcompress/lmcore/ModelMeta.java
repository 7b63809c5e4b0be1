package org.tflmcompress.lmcore;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Map;

/**
 * {@code model_meta.json}: what an app needs to drive an exported step model.
 *
 * <p>The JVM twin of {@code tflm_compress/export/meta.py}: the same keys, the same required set,
 * the same {@code format_version} rule, plus the checks an app needs before it opens the model
 * (lists of one length, positive sizes, ids inside the vocabulary, plain file names).
 */
public final class ModelMeta {
  public static final String FILE_NAME = "model_meta.json";
  /** The newest {@code format_version} this reader understands. */
  public static final int FORMAT_VERSION = 1;

  // The fields of meta.py's ModelMeta without a default, in its order.
  private static final String[] REQUIRED = {
    "model_file", "vocab_file", "vocab_size", "eos_id", "unk_id", "signature", "token_input",
    "logits_output", "state_inputs", "state_outputs", "state_sizes", "quantization",
  };

  private final String modelFile;
  private final String vocabFile;
  private final int vocabSize;
  private final int eosId;
  private final int unkId;
  private final String signature;
  private final String tokenInput;
  private final String logitsOutput;
  private final List<String> stateInputs;
  private final List<String> stateOutputs;
  private final int[] stateSizes;
  private final String quantization;
  private final String method;
  private final int formatVersion;

  private ModelMeta(Map<String, Object> d, String source) throws BundleException {
    modelFile = fileName(d, "model_file", source);
    vocabFile = fileName(d, "vocab_file", source);
    vocabSize = integer(d, "vocab_size", source);
    eosId = integer(d, "eos_id", source);
    unkId = integer(d, "unk_id", source);
    signature = string(d, "signature", source);
    tokenInput = string(d, "token_input", source);
    logitsOutput = string(d, "logits_output", source);
    stateInputs = strings(d, "state_inputs", source);
    stateOutputs = strings(d, "state_outputs", source);
    stateSizes = integers(d, "state_sizes", source);
    quantization = string(d, "quantization", source);
    method = d.containsKey("method") ? string(d, "method", source) : "baseline";
    formatVersion =
        d.containsKey("format_version") ? integer(d, "format_version", source) : FORMAT_VERSION;
    validate(source);
  }

  /**
   * Reads the text of a {@code model_meta.json}.
   *
   * @param source the file's name or path, for messages
   */
  public static ModelMeta parse(String json, String source) throws BundleException {
    Object root;
    try {
      root = Json.parse(json);
    } catch (IllegalArgumentException e) {
      throw new BundleException(source + ": " + e.getMessage());
    }
    if (!(root instanceof Map)) {
      throw new BundleException(source + ": expected a JSON object");
    }
    @SuppressWarnings("unchecked")
    Map<String, Object> d = (Map<String, Object>) root;
    List<String> missing = new ArrayList<String>();
    for (String key : REQUIRED) {
      if (!d.containsKey(key)) {
        missing.add(key);
      }
    }
    if (!missing.isEmpty()) {
      Collections.sort(missing);
      throw new BundleException(source + ": model_meta.json lacks " + missing
          + "; export the bundle again with scripts/convert.py");
    }
    // Checked before anything else, like meta.py: a newer file may mean other things by the keys.
    if (d.containsKey("format_version")) {
      int version = integer(d, "format_version", source);
      if (version > FORMAT_VERSION) {
        throw new BundleException(source + ": model_meta.json format_version " + version
            + " is newer than this app reads (" + FORMAT_VERSION + "); update the app");
      }
    }
    return new ModelMeta(d, source);
  }

  private void validate(String source) throws BundleException {
    if (vocabSize < 2) {
      throw new BundleException(source + ": vocab_size=" + vocabSize
          + " must be >= 2 (<eos> and <unk>)");
    }
    checkId("eos_id", eosId, source);
    checkId("unk_id", unkId, source);
    if (eosId == unkId) {
      throw new BundleException(source + ": eos_id and unk_id are both " + eosId);
    }
    if (stateInputs.isEmpty()) {
      throw new BundleException(source + ": state_inputs is empty; a step model has LSTM states");
    }
    if (stateOutputs.size() != stateInputs.size() || stateSizes.length != stateInputs.size()) {
      throw new BundleException(source + ": state_inputs (" + stateInputs.size()
          + "), state_outputs (" + stateOutputs.size() + ") and state_sizes ("
          + stateSizes.length + ") must have one entry per state");
    }
    for (int i = 0; i < stateSizes.length; i++) {
      if (stateSizes[i] < 1) {
        throw new BundleException(source + ": state_sizes[" + i + "]=" + stateSizes[i]
            + " must be >= 1");
      }
    }
    List<String> names = new ArrayList<String>();
    names.add(tokenInput);
    names.addAll(stateInputs);
    checkDistinct(names, "input", source);
    names.clear();
    names.add(logitsOutput);
    names.addAll(stateOutputs);
    checkDistinct(names, "output", source);
  }

  private void checkId(String key, int id, String source) throws BundleException {
    if (id < 0 || id >= vocabSize) {
      throw new BundleException(source + ": " + key + "=" + id + " is outside the vocabulary [0, "
          + vocabSize + ")");
    }
  }

  private static void checkDistinct(List<String> names, String what, String source)
      throws BundleException {
    for (int i = 0; i < names.size(); i++) {
      if (names.indexOf(names.get(i)) != i) {
        throw new BundleException(source + ": the " + what + " name '" + names.get(i)
            + "' appears twice");
      }
    }
  }

  private static String string(Map<String, Object> d, String key, String source)
      throws BundleException {
    Object value = d.get(key);
    if (!(value instanceof String) || ((String) value).isEmpty()) {
      throw new BundleException(source + ": '" + key + "' must be a non-empty string, got "
          + describe(value));
    }
    return (String) value;
  }

  // model_file and vocab_file are opened inside the bundle folder (or the APK's assets).
  private static String fileName(Map<String, Object> d, String key, String source)
      throws BundleException {
    String name = string(d, key, source);
    if (name.indexOf('/') >= 0 || name.indexOf('\\') >= 0 || name.equals(".")
        || name.equals("..")) {
      throw new BundleException(source + ": '" + key + "' must be a file name in the bundle "
          + "folder, got \"" + name + "\"");
    }
    return name;
  }

  private static int integer(Map<String, Object> d, String key, String source)
      throws BundleException {
    Object value = d.get(key);
    if (value instanceof Long) {
      long v = (Long) value;
      if (v >= Integer.MIN_VALUE && v <= Integer.MAX_VALUE) {
        return (int) v;
      }
    }
    throw new BundleException(source + ": '" + key + "' must be a 32-bit integer, got "
        + describe(value));
  }

  private static List<String> strings(Map<String, Object> d, String key, String source)
      throws BundleException {
    Object value = d.get(key);
    if (!(value instanceof List)) {
      throw new BundleException(source + ": '" + key + "' must be a list of names, got "
          + describe(value));
    }
    List<String> out = new ArrayList<String>();
    for (Object item : (List<?>) value) {
      if (!(item instanceof String) || ((String) item).isEmpty()) {
        throw new BundleException(source + ": '" + key + "' must hold non-empty strings, got "
            + describe(item));
      }
      out.add((String) item);
    }
    return Collections.unmodifiableList(out);
  }

  private static int[] integers(Map<String, Object> d, String key, String source)
      throws BundleException {
    Object value = d.get(key);
    if (!(value instanceof List)) {
      throw new BundleException(source + ": '" + key + "' must be a list of integers, got "
          + describe(value));
    }
    List<?> items = (List<?>) value;
    int[] out = new int[items.size()];
    for (int i = 0; i < out.length; i++) {
      Object item = items.get(i);
      if (!(item instanceof Long) || (Long) item > Integer.MAX_VALUE
          || (Long) item < Integer.MIN_VALUE) {
        throw new BundleException(source + ": '" + key + "' must hold 32-bit integers, got "
            + describe(item));
      }
      out[i] = (int) (long) (Long) item;
    }
    return out;
  }

  private static String describe(Object value) {
    if (value == null) {
      return "null";
    }
    if (value instanceof String) {
      return "\"" + value + "\"";
    }
    return value.toString();
  }

  /** The {@code .tflite} file name, relative to the meta file's folder. */
  public String getModelFile() {
    return modelFile;
  }

  /** The vocabulary file name, relative to the meta file's folder. */
  public String getVocabFile() {
    return vocabFile;
  }

  /** Number of logits, and of words in the vocabulary. */
  public int getVocabSize() {
    return vocabSize;
  }

  public int getEosId() {
    return eosId;
  }

  public int getUnkId() {
    return unkId;
  }

  /** The signature key to run ({@code serving_default}). */
  public String getSignature() {
    return signature;
  }

  /** Name of the int32 {@code [1]} token input. */
  public String getTokenInput() {
    return tokenInput;
  }

  /** Name of the float32 {@code [1, vocab_size]} logits output. */
  public String getLogitsOutput() {
    return logitsOutput;
  }

  /** State input names in order ({@code h0, c0, h1, c1, ...}). */
  public List<String> getStateInputs() {
    return stateInputs;
  }

  /** The matching state output names, same order. */
  public List<String> getStateOutputs() {
    return stateOutputs;
  }

  /** The width of each state, same order (each state is float32 {@code [1, width]}). */
  public int[] getStateSizes() {
    return stateSizes.clone();
  }

  public int getNumStates() {
    return stateSizes.length;
  }

  /** {@code none}, {@code dynamic}, {@code float16} or {@code int8}. */
  public String getQuantization() {
    return quantization;
  }

  /** How the model was compressed ({@code baseline} if not). */
  public String getMethod() {
    return method;
  }

  public int getFormatVersion() {
    return formatVersion;
  }

  @Override
  public String toString() {
    return "ModelMeta{" + modelFile + ", vocab_size=" + vocabSize + ", states=" + stateInputs
        + " " + Arrays.toString(stateSizes) + ", quantization=" + quantization + ", method="
        + method + "}";
  }
}
