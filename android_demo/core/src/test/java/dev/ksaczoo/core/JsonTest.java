package dev.ksaczoo.core;

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
    public void parsesNestedValues() {
        Map<String, Object> obj = Json.parseObject(
                " {\"a\": [1, -2.5, 3e2, 0], \"b\": {\"c\": true, \"d\": null}, \"e\": \"x\\\"y\\n\\u00e9\", \"f\": false} ");
        assertEquals(Arrays.asList(1.0, -2.5, 300.0, 0.0), obj.get("a"));
        Map<String, Object> b = Json.getObject(obj, "b");
        assertEquals(Boolean.TRUE, b.get("c"));
        assertTrue(b.containsKey("d"));
        assertNull(b.get("d"));
        assertEquals("x\"y\n\u00e9", obj.get("e"));
        assertEquals(Boolean.FALSE, obj.get("f"));
    }

    @Test
    public void keepsKeyOrderAndEmptyContainers() {
        Map<String, Object> obj = Json.parseObject("{\"z\": {}, \"a\": [], \"m\": [[]]}");
        assertEquals(Arrays.asList("z", "a", "m"), new java.util.ArrayList<String>(obj.keySet()));
        assertTrue(((Map<?, ?>) obj.get("z")).isEmpty());
        assertTrue(((List<?>) obj.get("a")).isEmpty());
    }

    @Test
    public void joinsSurrogatePairs() {
        assertEquals("\uD83D\uDE00", Json.parse("\"\\ud83d\\ude00\""));
    }

    @Test
    public void rejectsMalformedJson() {
        String[] bad = {"", "{", "[1,]", "{\"a\" 1}", "{\"a\": 1,}", "[1 2]", "01", "1.", "-", "\"abc", "tru", "{} x",
                "{'a': 1}", "\"\\x\"", "\"a\tb\"", "[1e]", "nul"};
        for (String text : bad) {
            try {
                Json.parse(text);
                fail("accepted malformed JSON: " + text);
            } catch (Json.JsonException expected) {
                assertTrue(expected.getMessage(), expected.getMessage().startsWith("invalid JSON at offset"));
            }
        }
    }

    @Test
    public void typedAccessorsNameTheKey() {
        Map<String, Object> obj = Json.parseObject("{\"n\": 2.5, \"s\": \"t\", \"i\": 7}");
        assertEquals(7, Json.getInt(obj, "i"));
        assertEquals(2.5, Json.getDouble(obj, "n"), 0.0);
        assertEquals("fallback", Json.optString(obj, "missing", "fallback"));
        try {
            Json.getInt(obj, "n");
            fail();
        } catch (Json.JsonException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("\"n\" must be a whole number"));
        }
        try {
            Json.getString(obj, "i");
            fail();
        } catch (Json.JsonException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("\"i\" must be a string"));
        }
        try {
            Json.require(obj, "absent");
            fail();
        } catch (Json.JsonException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("missing key \"absent\""));
        }
        try {
            Json.parseObject("[1]");
            fail();
        } catch (Json.JsonException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("expected a JSON object"));
        }
    }
}
