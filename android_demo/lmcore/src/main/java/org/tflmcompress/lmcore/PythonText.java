package org.tflmcompress.lmcore;

import java.util.ArrayList;
import java.util.List;

/**
 * Python's text rules, so the app splits words and lines exactly as the training side did.
 *
 * <p>Java's {@code Character.isWhitespace} differs from Python's {@code str.isspace} (it leaves out
 * U+00A0, U+2007, U+202F and U+0085), and Android's tables may differ from the desktop JDK's, so
 * the set is spelled out here.
 */
public final class PythonText {
  private PythonText() {}

  /**
   * {@code chr(cp).isspace()} in Python 3.11: tab, LF, VT, FF, CR, U+001C..U+001F, space, U+0085,
   * U+00A0, U+1680, U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000.
   */
  public static boolean isSpace(int cp) {
    if (cp <= 0x20) {
      return cp == 0x20 || (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x1f);
    }
    if (cp < 0x85) {
      return false;
    }
    if (cp == 0x85 || cp == 0xa0 || cp == 0x1680 || cp == 0x2028 || cp == 0x2029) {
      return true;
    }
    return (cp >= 0x2000 && cp <= 0x200a) || cp == 0x202f || cp == 0x205f || cp == 0x3000;
  }

  /** True if {@code text} has a Python whitespace character. */
  public static boolean hasSpace(String text) {
    for (int i = 0; i < text.length(); ) {
      int cp = text.codePointAt(i);
      if (isSpace(cp)) {
        return true;
      }
      i += Character.charCount(cp);
    }
    return false;
  }

  /** {@code text.split()}: the words between runs of whitespace, none empty. */
  public static List<String> split(String text) {
    List<String> words = new ArrayList<String>();
    int start = -1;
    for (int i = 0; i < text.length(); ) {
      int cp = text.codePointAt(i);
      if (isSpace(cp)) {
        if (start >= 0) {
          words.add(text.substring(start, i));
          start = -1;
        }
      } else if (start < 0) {
        start = i;
      }
      i += Character.charCount(cp);
    }
    if (start >= 0) {
      words.add(text.substring(start));
    }
    return words;
  }

  /** {@code text.strip()}: without leading and trailing whitespace. */
  public static String strip(String text) {
    int begin = 0;
    int end = text.length();
    while (begin < end) {
      int cp = text.codePointAt(begin);
      if (!isSpace(cp)) {
        break;
      }
      begin += Character.charCount(cp);
    }
    while (end > begin) {
      int cp = text.codePointBefore(end);
      if (!isSpace(cp)) {
        break;
      }
      end -= Character.charCount(cp);
    }
    return text.substring(begin, end);
  }

  /**
   * {@code text.splitlines()} on a str: breaks at LF, CR, CRLF, VT, FF, U+001C..U+001E, U+0085,
   * U+2028 and U+2029; the terminators are dropped and a final terminator adds no empty line.
   */
  public static List<String> splitLines(String text) {
    return lines(text, true);
  }

  /**
   * {@code bytes.splitlines()} (what the corpus reader uses before decoding): breaks at LF, CR
   * and CRLF only, so the other line separators stay inside a line, where {@link #split} treats
   * them as whitespace.
   */
  public static List<String> splitFileLines(String text) {
    return lines(text, false);
  }

  private static List<String> lines(String text, boolean unicodeBreaks) {
    List<String> lines = new ArrayList<String>();
    int start = 0;
    int i = 0;
    while (i < text.length()) {
      char c = text.charAt(i);
      int terminator = 0;
      if (c == '\r') {
        terminator = i + 1 < text.length() && text.charAt(i + 1) == '\n' ? 2 : 1;
      } else if (c == '\n') {
        terminator = 1;
      } else if (unicodeBreaks && isUnicodeLineBreak(c)) {
        terminator = 1;
      }
      if (terminator > 0) {
        lines.add(text.substring(start, i));
        i += terminator;
        start = i;
      } else {
        i++;
      }
    }
    if (start < text.length()) {
      lines.add(text.substring(start));
    }
    return lines;
  }

  private static boolean isUnicodeLineBreak(char c) {
    return c == 0x0b || c == 0x0c || (c >= 0x1c && c <= 0x1e) || c == 0x85 || c == 0x2028
        || c == 0x2029;
  }
}
