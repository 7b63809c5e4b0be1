package org.tflmcompress.lmcore;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.junit.Test;

public class JsonTest {
  @Test
  public void parsesEveryKindOfValue() {
    Object parsed = Json.parse(" {\"a\": [1, -2, 3.5, -1e3, 0], \"s\": \"x\\\"\\\\\\/\\n\\u00e9\","
        + " \"t\": true, \"f\": false, \"n\": null, \"o\": {}} ");
    Map<?, ?> map = (Map<?, ?>) parsed;
    assertEquals(Arrays.<Object>asList(1L, -2L, 3.5, -1000.0, 0L), map.get("a"));
    assertEquals("x\"\\/\n\u00e9", map.get("s"));
    assertEquals(Boolean.TRUE, map.get("t"));
    assertEquals(Boolean.FALSE, map.get("f"));
    assertTrue(map.containsKey("n"));
    assertNull(map.get("n"));
    assertTrue(((Map<?, ?>) map.get("o")).isEmpty());
    assertEquals(Arrays.asList("a", "s", "t", "f", "n", "o"), Arrays.asList(map.keySet().toArray()));
  }

  @Test
  public void repeatedKeyKeepsTheLastValueLikePython() {
    assertEquals(2L, ((Map<?, ?>) Json.parse("{\"k\": 1, \"k\": 2}")).get("k"));
  }

  @Test
  public void emptyContainersAndNesting() {
    assertEquals(Arrays.asList(), Json.parse("[]"));
    List<?> nested = (List<?>) Json.parse("[[[]], {\"a\": [{}]}]");
    assertEquals(2, nested.size());
  }

  @Test
  public void rejectsWhatPythonWouldNotWrite() {
    String[] bad = {
      "", "{", "[1,]", "{\"a\" 1}", "{'a': 1}", "[01]", "NaN", "[1] x", "\"abc", "\"\\q\"",
      "\"\\u12\"", "[-]", "[1.]", "[1e]", "tru", "{\"a\":1,}", "\"tab\there\"",
    };
    for (String text : bad) {
      try {
        Json.parse(text);
        fail("accepted " + text);
      } catch (IllegalArgumentException e) {
        assertTrue(e.getMessage(), e.getMessage().startsWith("invalid JSON at offset "));
      }
    }
  }

  @Test
  public void deepNestingIsAnErrorNotAStackOverflow() {
    StringBuilder deep = new StringBuilder();
    for (int i = 0; i < 10000; i++) {
      deep.append('[');
    }
    try {
      Json.parse(deep.toString());
      fail();
    } catch (IllegalArgumentException e) {
      assertTrue(e.getMessage().contains("nested deeper"));
    }
  }

  @Test
  public void hugeIntegersBecomeDoubles() {
    assertEquals(1e20, ((List<?>) Json.parse("[100000000000000000000]")).get(0));
  }
}
