package org.tflmcompress.lmcore;

import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

public class ContractCliTest {
  @Rule public TemporaryFolder tmp = new TemporaryFolder();

  private File bundle() throws Exception {
    return TestBundles.writeBundle(tmp.newFolder("bundle"), TestBundles.metaJson(),
        TestBundles.VOCAB_TXT);
  }

  private static final float[] LOGITS = {9f, 1f, 5f, 8f, 5f, 0f, -1f, 2f};

  @Test
  public void printsIdsAndTopKFromARawFloatFile() throws Exception {
    File dir = bundle();
    File text = tmp.newFile("text.txt");
    TestBundles.write(text, "the cat\u00a0dog\nsat \u00e9t\u00e9".getBytes(StandardCharsets.UTF_8));
    ByteBuffer raw = ByteBuffer.allocate(4 * LOGITS.length).order(ByteOrder.LITTLE_ENDIAN);
    raw.asFloatBuffer().put(LOGITS);
    File logits = tmp.newFile("logits.f32");
    TestBundles.write(logits, raw.array());
    String json = ContractCli.run(new String[] {"--bundle_dir=" + dir, "--text_file=" + text,
        "--logits=" + logits});
    assertContains(json, "\"words\": [\"the\", \"cat\", \"dog\", \"sat\", \"\\u00e9t\\u00e9\"]");
    assertContains(json, "\"token_ids\": [1, 2, 3, 4, 3]");
    assertContains(json, "\"line_ids\": [1, 2, 3, 0, 4, 3, 0]");
    assertContains(json, "\"context_ids\": [0, 1, 2, 3, 0, 4]");
    assertContains(json, "\"partial_word\": \"\\u00e9t\\u00e9\"");
    // 9 (<eos>) and 8 (<unk>) skipped; cat and sat tie at 5: the lower id first.
    assertContains(json, "\"top_k_ids\": [2, 4, 7]");
    assertContains(json, "\"top_k_words\": [\"cat\", \"sat\", \"there\"]");
    assertContains(json, "\"state_sizes\": [4, 4, 3, 3]");
    // The output is JSON this core reads back.
    Json.parse(json);
  }

  @Test
  public void readsATextLogitsFileAndK() throws Exception {
    File logits = tmp.newFile("logits.txt");
    TestBundles.write(logits, "9\n1\n5\n8\n5\nnan\n-inf\n2.5e0\n".getBytes(StandardCharsets.UTF_8));
    String json = ContractCli.run(new String[] {"--bundle_dir=" + bundle(), "--text=the",
        "--logits=" + logits, "--k=4"});
    assertContains(json, "\"top_k_ids\": [2, 4, 7, 1]");
    assertContains(json, "\"partial_word\": \"the\"");
  }

  @Test
  public void badArgumentsAreOneClearError() throws Exception {
    String dir = "--bundle_dir=" + bundle();
    File shortLogits = tmp.newFile("short.bin");
    TestBundles.write(shortLogits, new byte[12]);
    File badText = tmp.newFile("bad.txt");
    TestBundles.write(badText, "1\n2\nx\n4\n5\n6\n7\n8\n".getBytes(StandardCharsets.UTF_8));
    assertUsage(new String[] {"--text=a"}, "--bundle_dir is required");
    assertUsage(new String[] {dir}, "pass exactly one of --text and --text_file");
    assertUsage(new String[] {dir, "--text=a", "--k=0"}, "--k=0 must be >= 1");
    assertUsage(new String[] {dir, "--text=a", "--bogus"}, "unknown argument '--bogus'");
    assertUsage(new String[] {dir, "--text=a", "--logits=" + shortLogits},
        "has 12 bytes; raw float32 logits for 8 words are 32 bytes");
    assertUsage(new String[] {dir, "--text=a", "--logits=" + badText}, "number 2 ('x')");
    assertUsage(new String[] {dir, "--text_file=/nonexistent"}, "is not a file");
  }

  private static void assertUsage(String[] args, String expected) throws Exception {
    try {
      ContractCli.run(args);
      fail("no error for " + String.join(" ", args));
    } catch (ContractCli.UsageException e) {
      assertContains(e.getMessage(), expected);
    }
  }

  private static void assertContains(String text, String expected) {
    assertTrue(text + "\n  lacks  " + expected, text.contains(expected));
  }
}
