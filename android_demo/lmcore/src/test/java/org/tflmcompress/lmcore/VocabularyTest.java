package org.tflmcompress.lmcore;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import org.junit.Test;

public class VocabularyTest {
  private static Vocabulary parse(String text) throws BundleException {
    return Vocabulary.parse(text.getBytes(StandardCharsets.UTF_8), "v.txt");
  }

  @Test
  public void readsWordsCountsAndSpecialIds() throws Exception {
    Vocabulary vocab = TestBundles.vocab();
    assertEquals(8, vocab.size());
    assertEquals(0, vocab.getEosId());
    assertEquals(3, vocab.getUnkId());
    assertEquals("cat", vocab.word(2));
    assertEquals(2, vocab.id("cat"));
    assertEquals(30, vocab.count(2));
    assertTrue(vocab.contains("mat"));
    assertFalse(vocab.contains("dog"));
  }

  @Test
  public void encodeMapsUnknownWordsToUnk() throws Exception {
    Vocabulary vocab = TestBundles.vocab();
    assertArrayEquals(new int[] {1, 2, 3, 4, 3, 0},
        vocab.encode(Arrays.asList("the", "cat", "dog", "sat", "The", "<eos>")));
  }

  @Test
  public void lineRulesFollowVocabularyLoad() throws Exception {
    // Blank lines skipped, CRLF and U+2028 are line breaks, words stripped, counts optional.
    Vocabulary vocab = parse("\n  the \t 5 \r\n<eos>\t+3\u2028\n \t \n<unk>\t0\n");
    assertEquals(Arrays.asList("the", "<eos>", "<unk>"),
        Arrays.asList(vocab.word(0), vocab.word(1), vocab.word(2)));
    assertEquals(5, vocab.count(0));
    assertEquals(3, vocab.count(1));
    Vocabulary noCounts = parse("a\n<eos>\t2\n<unk>\n");
    assertEquals(-1, noCounts.count(1)); // counts only when every line has one
  }

  @Test
  public void errorsMatchThePythonChecks() {
    assertError("a\n<eos>\na\n<unk>\n", "vocabulary has the word 'a' twice (ids 0 and 2)");
    assertError("a b\n<eos>\n<unk>\n", "vocabulary entry 0 ('a b') is empty or contains whitespace");
    assertError("\t5\n<eos>\n<unk>\n", "vocabulary entry 0 ('') is empty");
    assertError("a\n<eos>\n", "vocabulary lacks the special word '<unk>'");
    assertError("a\n<eos>\tx\n<unk>\n", "v.txt:2: bad count 'x'");
    assertError("\n \n", "vocabulary file v.txt is empty");
  }

  @Test
  public void invalidUtf8NamesTheByte() {
    byte[] bytes = {'a', 'b', '\n', (byte) 0xff, '\n'};
    try {
      Vocabulary.parse(bytes, "v.txt");
      fail();
    } catch (BundleException e) {
      assertEquals("vocabulary file v.txt is not UTF-8 (byte 3)", e.getMessage());
    }
  }

  @Test
  public void checkMatchesTheMeta() throws Exception {
    TestBundles.vocab().checkMatches(TestBundles.meta(), "v.txt");
    try {
      TestBundles.vocab().checkMatches(
          ModelMeta.parse(TestBundles.metaJson(9, 0, 3), "m"), "v.txt");
      fail();
    } catch (BundleException e) {
      assertTrue(e.getMessage(), e.getMessage().contains("has 8 words but model_meta.json says "
          + "vocab_size=9"));
    }
    try {
      TestBundles.vocab().checkMatches(
          ModelMeta.parse(TestBundles.metaJson(8, 0, 2), "m"), "v.txt");
      fail();
    } catch (BundleException e) {
      assertTrue(e.getMessage(), e.getMessage().contains("<unk>=3"));
    }
  }

  private static void assertError(String text, String expected) {
    try {
      parse(text);
      fail("no error for " + text);
    } catch (BundleException e) {
      assertTrue(e.getMessage(), e.getMessage().contains(expected));
    }
  }
}
