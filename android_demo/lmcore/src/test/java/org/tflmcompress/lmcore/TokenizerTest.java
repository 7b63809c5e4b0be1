package org.tflmcompress.lmcore;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;

import java.util.Arrays;
import org.junit.Test;

public class TokenizerTest {
  // ids: <eos>=0 the=1 cat=2 <unk>=3 sat=4 on=5 mat=6 there=7
  private final Tokenizer tokenizer;

  public TokenizerTest() throws Exception {
    tokenizer = new Tokenizer(TestBundles.vocab());
  }

  @Test
  public void encodeWordsIsEncodeOfStrSplit() {
    assertArrayEquals(new int[] {1, 2, 3, 4, 5, 1, 6},
        tokenizer.encodeWords(" the\tcat dog\u00a0sat\u2028on\u3000the  mat\n"));
    assertArrayEquals(new int[] {}, tokenizer.encodeWords(" \n "));
    assertEquals(Arrays.asList("The", "CAT"), tokenizer.words("The CAT"));
  }

  @Test
  public void encodeLinesIsEncodeOfReadTokens() {
    // read_tokens: <eos> after every non-blank line, last line included; \u2028 is not a break.
    assertArrayEquals(new int[] {1, 2, 0, 4, 0, 5, 6, 0},
        tokenizer.encodeLines("the cat\n\n  \r\nsat\r\non\u2028mat"));
    assertArrayEquals(new int[] {}, tokenizer.encodeLines("\n\n"));
  }

  @Test
  public void contextStartsWithEosAndHoldsFinishedWordsOnly() {
    check("", new int[] {0}, "");
    check("the", new int[] {0}, "the");
    check("the ca", new int[] {0, 1}, "ca");
    check("the cat ", new int[] {0, 1, 2}, "");
    check("the cat\u00a0", new int[] {0, 1, 2}, "");
    check("the cat\nsa", new int[] {0, 1, 2, 0}, "sa");
    check("the cat\n", new int[] {0, 1, 2, 0}, "");
    check("the cat\n\n  \n", new int[] {0, 1, 2, 0}, "");
    check("the dog sat ", new int[] {0, 1, 3, 4}, "");
    check("   ", new int[] {0}, "");
  }

  @Test
  public void lowercaseIsOptIn() throws Exception {
    assertArrayEquals(new int[] {3, 3}, tokenizer.encodeWords("The CAT"));
    Tokenizer lower = new Tokenizer(TestBundles.vocab(), true);
    assertArrayEquals(new int[] {1, 2}, lower.encodeWords("The CAT"));
    assertEquals("sa", lower.context("The cat SA").partialWord);
  }

  private void check(String text, int[] ids, String partial) {
    Tokenizer.Context context = tokenizer.context(text);
    assertArrayEquals(text, ids, context.ids);
    assertEquals(text, partial, context.partialWord);
  }
}
