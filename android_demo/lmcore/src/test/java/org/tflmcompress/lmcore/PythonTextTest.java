package org.tflmcompress.lmcore;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;

import java.util.Arrays;
import java.util.Collections;
import java.util.HashSet;
import java.util.Set;
import org.junit.Test;

public class PythonTextTest {
  // Python 3.11: [c for c in range(0x110000) if chr(c).isspace()]
  private static final int[] PYTHON_SPACES = {
    0x9, 0xa, 0xb, 0xc, 0xd, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680, 0x2000, 0x2001,
    0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029,
    0x202f, 0x205f, 0x3000,
  };

  @Test
  public void isSpaceIsPythonsIsspaceOverAllOfUnicode() {
    Set<Integer> expected = new HashSet<Integer>();
    for (int cp : PYTHON_SPACES) {
      expected.add(cp);
    }
    for (int cp = 0; cp < 0x110000; cp++) {
      assertEquals(Integer.toHexString(cp), expected.contains(cp), PythonText.isSpace(cp));
    }
  }

  @Test
  public void splitIsStrSplit() {
    // '  a\u00a0b\tc\u2028d\u0085e\u200bf\x1fg  '.split() == ['a', 'b', 'c', 'd', 'e\u200bf', 'g']
    assertEquals(Arrays.asList("a", "b", "c", "d", "e\u200bf", "g"),
        PythonText.split("  a\u00a0b\tc\u2028d\u0085e\u200bf\u001fg  "));
    assertEquals(Collections.emptyList(), PythonText.split(""));
    assertEquals(Collections.emptyList(), PythonText.split(" \t\n\u3000"));
    assertEquals(Arrays.asList("\ud83d\ude00x"), PythonText.split("\ud83d\ude00x"));
  }

  @Test
  public void stripIsStrStrip() {
    assertEquals("x y", PythonText.strip(" \u3000x y\u205f"));
    assertEquals("", PythonText.strip(" \t"));
    assertEquals("a", PythonText.strip("a"));
  }

  @Test
  public void splitLinesIsStrSplitlines() {
    // 'a\nb\r\nc\rd\x0be\x0cf\x1cg\x1dh\x1ei\x85j\u2028k\u2029l\n'.splitlines()
    assertEquals(Arrays.asList("a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"),
        PythonText.splitLines(
            "a\nb\r\nc\rd\u000be\u000cf\u001cg\u001dh\u001ei\u0085j\u2028k\u2029l\n"));
    assertEquals(Arrays.asList("a", "", "b"), PythonText.splitLines("a\n\nb\n"));
    assertEquals(Collections.emptyList(), PythonText.splitLines(""));
    assertEquals(Arrays.asList(""), PythonText.splitLines("\n"));
    assertEquals(Arrays.asList("\u001f"), PythonText.splitLines("\u001f"));
  }

  @Test
  public void splitFileLinesIsBytesSplitlines() {
    // b'a\x0bb\r\nc\rd\n\n'.splitlines() == [b'a\x0bb', b'c', b'd', b'']
    assertEquals(Arrays.asList("a\u000bb", "c", "d", ""),
        PythonText.splitFileLines("a\u000bb\r\nc\rd\n\n"));
    // b'a\r\r\nb'.splitlines() == [b'a', b'', b'b']
    assertEquals(Arrays.asList("a", "", "b"), PythonText.splitFileLines("a\r\r\nb"));
    assertEquals(Arrays.asList("x\u2028y"), PythonText.splitFileLines("x\u2028y"));
  }

  @Test
  public void hasSpace() {
    assertTrue(PythonText.hasSpace("a\u00a0b"));
    assertFalse(PythonText.hasSpace("a\u200bb"));
  }
}
