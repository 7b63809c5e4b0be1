package org.tflmcompress.lmcore;

import java.io.File;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * Prints what this core makes of a bundle, a text and a logits vector, as JSON, so the Python
 * tests can check it against the Python side ({@code tests/test_android_contract.py}).
 *
 * <pre>
 * java -cp build/lmcore/classes org.tflmcompress.lmcore.ContractCli \
 *     --bundle_dir=DIR (--text=TEXT | --text_file=FILE) [--logits=FILE] [--k=3] [--lowercase]
 * </pre>
 *
 * <p>{@code --text_file} is read as UTF-8 (command-line text goes through the platform charset).
 * {@code --logits}: a {@code .txt} file holds one number per line (whitespace separated; {@code
 * nan}, {@code inf} as numpy writes them); any other file is raw little-endian float32 of exactly
 * {@code 4 * vocab_size} bytes. Output keys: the meta fields, {@code words} ({@code text.split()}),
 * {@code token_ids} ({@code vocab.encode(text.split())}), {@code line_ids} ({@code
 * vocab.encode(read_tokens(file))}), {@code context_ids} and {@code partial_word} (what the app
 * feeds), and with logits {@code top_k_ids}, {@code top_k_words}, {@code top_k_probabilities}
 * (never {@code <eos>}/{@code <unk>}). Bad input: one {@code error:} line on stderr, exit 1.
 */
public final class ContractCli {
  private ContractCli() {}

  public static void main(String[] args) {
    try {
      System.out.println(run(args));
    } catch (UsageException | BundleException e) {
      System.err.println("error: " + e.getMessage());
      System.exit(1);
    } catch (IOException e) {
      System.err.println("error: " + e);
      System.exit(1);
    }
  }

  /** Bad command-line arguments. */
  static final class UsageException extends Exception {
    private static final long serialVersionUID = 1L;

    UsageException(String message) {
      super(message);
    }
  }

  /** The JSON that {@link #main} prints. */
  static String run(String[] args) throws UsageException, BundleException, IOException {
    String bundleDir = null;
    String text = null;
    String textFile = null;
    String logitsFile = null;
    int k = 3;
    boolean lowercase = false;
    for (String arg : args) {
      if (arg.startsWith("--bundle_dir=")) {
        bundleDir = value(arg);
      } else if (arg.startsWith("--text=")) {
        text = value(arg);
      } else if (arg.startsWith("--text_file=")) {
        textFile = value(arg);
      } else if (arg.startsWith("--logits=")) {
        logitsFile = value(arg);
      } else if (arg.startsWith("--k=")) {
        try {
          k = Integer.parseInt(value(arg));
        } catch (NumberFormatException e) {
          throw new UsageException(arg + " is not an integer");
        }
        if (k < 1) {
          throw new UsageException(arg + " must be >= 1");
        }
      } else if (arg.equals("--lowercase")) {
        lowercase = true;
      } else {
        throw new UsageException("unknown argument '" + arg + "'; use --bundle_dir=DIR "
            + "(--text=TEXT | --text_file=FILE) [--logits=FILE] [--k=3] [--lowercase]");
      }
    }
    if (bundleDir == null) {
      throw new UsageException("--bundle_dir is required");
    }
    if ((text == null) == (textFile == null)) {
      throw new UsageException("pass exactly one of --text and --text_file");
    }
    if (textFile != null) {
      text = Utf8.decode(readFile(textFile, "--text_file"), textFile);
    }
    Bundle bundle = Bundle.loadDirectory(new File(bundleDir));
    ModelMeta meta = bundle.getMeta();
    Vocabulary vocab = bundle.getVocabulary();
    Tokenizer tokenizer = new Tokenizer(vocab, lowercase);
    Tokenizer.Context context = tokenizer.context(text);

    JsonOut out = new JsonOut();
    out.key("model_file").string(meta.getModelFile());
    out.key("vocab_file").string(meta.getVocabFile());
    out.key("vocab_size").number(meta.getVocabSize());
    out.key("eos_id").number(meta.getEosId());
    out.key("unk_id").number(meta.getUnkId());
    out.key("signature").string(meta.getSignature());
    out.key("token_input").string(meta.getTokenInput());
    out.key("logits_output").string(meta.getLogitsOutput());
    out.key("state_inputs").strings(meta.getStateInputs());
    out.key("state_outputs").strings(meta.getStateOutputs());
    out.key("state_sizes").numbers(meta.getStateSizes());
    out.key("quantization").string(meta.getQuantization());
    out.key("method").string(meta.getMethod());
    out.key("words").strings(tokenizer.words(text));
    out.key("token_ids").numbers(tokenizer.encodeWords(text));
    out.key("line_ids").numbers(tokenizer.encodeLines(text));
    out.key("context_ids").numbers(context.ids);
    out.key("partial_word").string(context.partialWord);
    if (logitsFile != null) {
      float[] logits = readLogits(logitsFile, meta.getVocabSize());
      int[] ids = TopK.select(logits, k, NextWordPredictor.wordFilter(vocab, ""));
      List<String> words = new ArrayList<String>();
      for (int id : ids) {
        words.add(vocab.word(id));
      }
      out.key("top_k_ids").numbers(ids);
      out.key("top_k_words").strings(words);
      out.key("top_k_probabilities").doubles(TopK.probabilities(logits, ids));
    }
    return out.close();
  }

  private static String value(String arg) {
    return arg.substring(arg.indexOf('=') + 1);
  }

  private static byte[] readFile(String path, String flag) throws UsageException, IOException {
    File file = new File(path);
    if (!file.isFile()) {
      throw new UsageException(flag + "=" + path + " is not a file");
    }
    return Files.readAllBytes(file.toPath());
  }

  /** Reads a logits vector of {@code vocabSize} floats (format by file name, see the class doc). */
  static float[] readLogits(String path, int vocabSize) throws UsageException, IOException {
    byte[] bytes = readFile(path, "--logits");
    float[] logits = new float[vocabSize];
    if (path.endsWith(".txt")) {
      String text = new String(bytes, "UTF-8");
      List<String> fields = PythonText.split(text);
      if (fields.size() != vocabSize) {
        throw new UsageException("--logits=" + path + " holds " + fields.size()
            + " numbers; the vocabulary has " + vocabSize + " words");
      }
      for (int i = 0; i < vocabSize; i++) {
        logits[i] = parseFloat(fields.get(i), path, i);
      }
      return logits;
    }
    if (bytes.length != 4L * vocabSize) {
      throw new UsageException("--logits=" + path + " has " + bytes.length + " bytes; raw "
          + "float32 logits for " + vocabSize + " words are " + (4L * vocabSize)
          + " bytes (name a text file *.txt)");
    }
    ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(logits);
    return logits;
  }

  private static float parseFloat(String field, String path, int index) throws UsageException {
    String lower = field.toLowerCase(Locale.ROOT);
    if (lower.equals("nan") || lower.equals("+nan") || lower.equals("-nan")) {
      return Float.NaN;
    }
    if (lower.equals("inf") || lower.equals("+inf") || lower.equals("infinity")) {
      return Float.POSITIVE_INFINITY;
    }
    if (lower.equals("-inf") || lower.equals("-infinity")) {
      return Float.NEGATIVE_INFINITY;
    }
    try {
      return Float.parseFloat(field);
    } catch (NumberFormatException e) {
      throw new UsageException("--logits=" + path + ": number " + index + " ('" + field
          + "') is not a float");
    }
  }

  /** A flat JSON object writer; non-ASCII is escaped so any console charset carries it intact. */
  static final class JsonOut {
    private final StringBuilder out = new StringBuilder("{");

    JsonOut key(String key) {
      if (out.length() > 1) {
        out.append(", ");
      }
      quote(key);
      out.append(": ");
      return this;
    }

    JsonOut string(String value) {
      quote(value);
      return this;
    }

    JsonOut number(long value) {
      out.append(value);
      return this;
    }

    JsonOut numbers(int[] values) {
      out.append('[');
      for (int i = 0; i < values.length; i++) {
        out.append(i > 0 ? ", " : "").append(values[i]);
      }
      out.append(']');
      return this;
    }

    JsonOut doubles(double[] values) {
      out.append('[');
      for (int i = 0; i < values.length; i++) {
        // JSON has no NaN/Infinity; probabilities are finite unless the logits were not.
        double v = values[i];
        out.append(i > 0 ? ", " : "").append(Double.isNaN(v) || Double.isInfinite(v) ? "null"
            : Double.toString(v));
      }
      out.append(']');
      return this;
    }

    JsonOut strings(List<String> values) {
      out.append('[');
      for (int i = 0; i < values.size(); i++) {
        out.append(i > 0 ? ", " : "");
        quote(values.get(i));
      }
      out.append(']');
      return this;
    }

    String close() {
      return out.append('}').toString();
    }

    private void quote(String s) {
      out.append('"');
      for (int i = 0; i < s.length(); i++) {
        char c = s.charAt(i);
        if (c == '"' || c == '\\') {
          out.append('\\').append(c);
        } else if (c < 0x20 || c > 0x7e) {
          out.append(String.format(Locale.ROOT, "\\u%04x", (int) c));
        } else {
          out.append(c);
        }
      }
      out.append('"');
    }
  }
}
