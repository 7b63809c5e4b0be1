package org.tflmcompress.lmcore;

import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;

/** Bundle files as scripts/convert.py writes them, and a deterministic fake step model. */
final class TestBundles {
  private TestBundles() {}

  /** Words "<eos>", "the", "cat", "<unk>", "sat", "on", "mat", "there": ids 0..7. */
  static final String VOCAB_TXT =
      "<eos>\t50\nthe\t40\ncat\t30\n<unk>\t20\nsat\t10\non\t9\nmat\t8\nthere\t7\n";

  static final int EOS = 0;
  static final int UNK = 3;
  static final int VOCAB_SIZE = 8;

  /** model_meta.json as meta.py's save() writes it (json.dumps(indent=2, sort_keys=True)). */
  static String metaJson(int vocabSize, int eosId, int unkId) {
    return "{\n"
        + "  \"eos_id\": " + eosId + ",\n"
        + "  \"format_version\": 1,\n"
        + "  \"logits_output\": \"logits\",\n"
        + "  \"method\": \"baseline\",\n"
        + "  \"model_file\": \"model.tflite\",\n"
        + "  \"quantization\": \"int8\",\n"
        + "  \"signature\": \"serving_default\",\n"
        + "  \"state_inputs\": [\n    \"h0\",\n    \"c0\",\n    \"h1\",\n    \"c1\"\n  ],\n"
        + "  \"state_outputs\": [\n    \"h0_out\",\n    \"c0_out\",\n    \"h1_out\",\n"
        + "    \"c1_out\"\n  ],\n"
        + "  \"state_sizes\": [\n    4,\n    4,\n    3,\n    3\n  ],\n"
        + "  \"token_input\": \"token\",\n"
        + "  \"unk_id\": " + unkId + ",\n"
        + "  \"vocab_file\": \"vocab.txt\",\n"
        + "  \"vocab_size\": " + vocabSize + "\n"
        + "}\n";
  }

  static String metaJson() {
    return metaJson(VOCAB_SIZE, EOS, UNK);
  }

  static ModelMeta meta() throws BundleException {
    return ModelMeta.parse(metaJson(), "model_meta.json");
  }

  static Vocabulary vocab() throws BundleException {
    return Vocabulary.parse(VOCAB_TXT.getBytes(StandardCharsets.UTF_8), "vocab.txt");
  }

  static Bundle bundle() throws BundleException {
    return new Bundle(meta(), vocab());
  }

  /** Writes model_meta.json, vocab.txt and a stand-in model.tflite into {@code dir}. */
  static File writeBundle(File dir, String metaJson, String vocabTxt) throws IOException {
    dir.mkdirs();
    write(new File(dir, "model_meta.json"), metaJson.getBytes(StandardCharsets.UTF_8));
    if (vocabTxt != null) {
      write(new File(dir, "vocab.txt"), vocabTxt.getBytes(StandardCharsets.UTF_8));
    }
    write(new File(dir, "model.tflite"), new byte[] {0, 0, 0, 0, 'T', 'F', 'L', '3'});
    return dir;
  }

  static void write(File file, byte[] bytes) throws IOException {
    FileOutputStream out = new FileOutputStream(file);
    try {
      out.write(bytes);
    } finally {
      out.close();
    }
  }

  /**
   * A deterministic recurrent function shaped like the step model: every state depends on the
   * whole history, and the logits on the new states and the token.
   */
  static final class FakeStepModel implements StepModel {
    int steps;
    int failAtStep = -1;

    @Override
    public void step(int tokenId, float[][] states, float[][] nextStates, float[] logits) {
      if (steps == failAtStep) {
        steps++;
        throw new IllegalStateException("simulated runtime failure");
      }
      steps++;
      for (int i = 0; i < states.length; i++) {
        for (int j = 0; j < states[i].length; j++) {
          double drive = Math.sin(1.7 * tokenId + 0.3 * i + 0.11 * j);
          nextStates[i][j] = (float) Math.tanh(0.9 * states[i][j] + 0.5 * drive);
        }
      }
      for (int v = 0; v < logits.length; v++) {
        double sum = 0.05 * tokenId;
        for (int i = 0; i < nextStates.length; i++) {
          for (int j = 0; j < nextStates[i].length; j++) {
            sum += nextStates[i][j] * Math.cos(0.37 * v + j + i);
          }
        }
        logits[v] = (float) sum;
      }
    }
  }
}
