package org.tflmcompress.lmcore;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.util.Arrays;
import org.junit.Test;

public class ModelMetaTest {
  @Test
  public void readsTheFileMetaPyWrites() throws Exception {
    ModelMeta meta = TestBundles.meta();
    assertEquals("model.tflite", meta.getModelFile());
    assertEquals("vocab.txt", meta.getVocabFile());
    assertEquals(8, meta.getVocabSize());
    assertEquals(0, meta.getEosId());
    assertEquals(3, meta.getUnkId());
    assertEquals("serving_default", meta.getSignature());
    assertEquals("token", meta.getTokenInput());
    assertEquals("logits", meta.getLogitsOutput());
    assertEquals(Arrays.asList("h0", "c0", "h1", "c1"), meta.getStateInputs());
    assertEquals(Arrays.asList("h0_out", "c0_out", "h1_out", "c1_out"), meta.getStateOutputs());
    assertArrayEquals(new int[] {4, 4, 3, 3}, meta.getStateSizes());
    assertEquals(4, meta.getNumStates());
    assertEquals("int8", meta.getQuantization());
    assertEquals("baseline", meta.getMethod());
    assertEquals(1, meta.getFormatVersion());
  }

  @Test
  public void optionalKeysDefaultAsInMetaPyAndUnknownKeysAreIgnored() throws Exception {
    String json = TestBundles.metaJson()
        .replace("  \"format_version\": 1,\n", "  \"future_key\": {\"x\": [1]},\n")
        .replace("  \"method\": \"baseline\",\n", "");
    ModelMeta meta = ModelMeta.parse(json, "m.json");
    assertEquals("baseline", meta.getMethod());
    assertEquals(ModelMeta.FORMAT_VERSION, meta.getFormatVersion());
  }

  @Test
  public void gettersDoNotExposeInternals() throws Exception {
    ModelMeta meta = TestBundles.meta();
    meta.getStateSizes()[0] = 99;
    assertEquals(4, meta.getStateSizes()[0]);
    try {
      meta.getStateInputs().set(0, "x");
      fail();
    } catch (UnsupportedOperationException expected) {
      // immutable
    }
  }

  @Test
  public void missingKeysAreListedSortedLikeMetaPy() {
    String json = TestBundles.metaJson()
        .replace("  \"vocab_size\": 8\n", "  \"x\": 0\n")
        .replace("  \"eos_id\": 0,\n", "");
    assertError(json, "m.json: model_meta.json lacks [eos_id, vocab_size]");
  }

  @Test
  public void newerFormatVersionIsRefused() {
    assertError(TestBundles.metaJson().replace("\"format_version\": 1", "\"format_version\": 2"),
        "format_version 2 is newer than this app reads (1)");
  }

  @Test
  public void badValuesNameTheKey() {
    String base = TestBundles.metaJson();
    assertError(base.replace("\"vocab_size\": 8", "\"vocab_size\": \"8\""),
        "'vocab_size' must be a 32-bit integer, got \"8\"");
    assertError(base.replace("\"vocab_size\": 8", "\"vocab_size\": 8.0"),
        "'vocab_size' must be a 32-bit integer, got 8.0");
    assertError(base.replace("\"vocab_size\": 8", "\"vocab_size\": 1"), "vocab_size=1 must be >= 2");
    assertError(base.replace("\"eos_id\": 0", "\"eos_id\": 8"),
        "eos_id=8 is outside the vocabulary [0, 8)");
    assertError(base.replace("\"unk_id\": 3", "\"unk_id\": 0"), "eos_id and unk_id are both 0");
    assertError(base.replace("    3,\n    3\n", "    3\n"),
        "state_inputs (4), state_outputs (4) and state_sizes (3) must have one entry per state");
    assertError(base.replace("    3,\n    3\n", "    3,\n    0\n"), "state_sizes[3]=0 must be >= 1");
    assertError(base.replace("    3,\n    3\n", "    3,\n    \"3\"\n"),
        "'state_sizes' must hold 32-bit integers, got \"3\"");
    assertError(base.replace("\"c1\"\n", "\"h0\"\n"), "the input name 'h0' appears twice");
    assertError(base.replace("\"model.tflite\"", "\"../model.tflite\""),
        "'model_file' must be a file name in the bundle folder, got \"../model.tflite\"");
    assertError(base.replace("\"signature\": \"serving_default\"", "\"signature\": \"\""),
        "'signature' must be a non-empty string, got \"\"");
    assertError(base.replace("\"state_inputs\": [", "\"state_inputs\": 5, \"z\": ["),
        "'state_inputs' must be a list of names, got 5");
  }

  @Test
  public void invalidJsonNamesTheFile() {
    assertError("{\"a\": ", "m.json: invalid JSON at offset");
    assertError("[1, 2]", "m.json: expected a JSON object");
  }

  private static void assertError(String json, String expected) {
    try {
      ModelMeta.parse(json, "m.json");
      fail("no error for " + json);
    } catch (BundleException e) {
      assertTrue(e.getMessage(), e.getMessage().contains(expected));
    }
  }
}
