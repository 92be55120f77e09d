package dev.ksaczoo.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A small, strict JSON parser (RFC 8259), enough for model metadata and golden manifests.
 *
 * <p>Values map to Java as: object to {@code Map<String, Object>} (insertion order kept), array to
 * {@code List<Object>}, string to {@code String}, number to {@code Double}, true/false to
 * {@code Boolean}, null to {@code null}. Errors throw {@link JsonException} with the character offset.
 *
 * <p>Example: {@code Map<String, Object> m = Json.parseObject("{\"a\": [1, 2]}");}
 */
public final class Json {

    /** Raised for malformed JSON or for a value of the wrong type; the message names the place. */
    public static final class JsonException extends RuntimeException {
        private static final long serialVersionUID = 1L;

        public JsonException(String message) {
            super(message);
        }
    }

    private final String text;
    private int pos;

    private Json(String text) {
        this.text = text;
    }

    /** Parses one JSON value; trailing non-whitespace is an error. */
    public static Object parse(String text) {
        if (text == null) {
            throw new JsonException("JSON text is null");
        }
        Json parser = new Json(text);
        parser.skipWhitespace();
        Object value = parser.readValue(0);
        parser.skipWhitespace();
        if (parser.pos != text.length()) {
            throw parser.error("unexpected trailing characters");
        }
        return value;
    }

    /** Parses a JSON text whose top level must be an object. */
    @SuppressWarnings("unchecked")
    public static Map<String, Object> parseObject(String text) {
        Object value = parse(text);
        if (!(value instanceof Map)) {
            throw new JsonException("expected a JSON object at the top level, got " + typeName(value));
        }
        return (Map<String, Object>) value;
    }

    /** The JSON type name of a parsed value, for error messages. */
    public static String typeName(Object value) {
        if (value == null) return "null";
        if (value instanceof Map) return "object";
        if (value instanceof List) return "array";
        if (value instanceof String) return "string";
        if (value instanceof Double) return "number";
        if (value instanceof Boolean) return "boolean";
        return value.getClass().getSimpleName();
    }

    private static final int MAX_DEPTH = 256;

    private JsonException error(String what) {
        return new JsonException("invalid JSON at offset " + pos + ": " + what);
    }

    private void skipWhitespace() {
        while (pos < text.length()) {
            char c = text.charAt(pos);
            if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
                pos++;
            } else {
                break;
            }
        }
    }

    private Object readValue(int depth) {
        if (depth > MAX_DEPTH) {
            throw error("nesting deeper than " + MAX_DEPTH);
        }
        if (pos >= text.length()) {
            throw error("unexpected end of input");
        }
        char c = text.charAt(pos);
        switch (c) {
            case '{':
                return readObject(depth);
            case '[':
                return readArray(depth);
            case '"':
                return readString();
            case 't':
                expectWord("true");
                return Boolean.TRUE;
            case 'f':
                expectWord("false");
                return Boolean.FALSE;
            case 'n':
                expectWord("null");
                return null;
            default:
                if (c == '-' || (c >= '0' && c <= '9')) {
                    return readNumber();
                }
                throw error("unexpected character '" + c + "'");
        }
    }

    private void expectWord(String word) {
        if (!text.startsWith(word, pos)) {
            throw error("expected '" + word + "'");
        }
        pos += word.length();
    }

    private Map<String, Object> readObject(int depth) {
        Map<String, Object> map = new LinkedHashMap<String, Object>();
        pos++; // '{'
        skipWhitespace();
        if (pos < text.length() && text.charAt(pos) == '}') {
            pos++;
            return map;
        }
        while (true) {
            skipWhitespace();
            if (pos >= text.length() || text.charAt(pos) != '"') {
                throw error("expected a string key");
            }
            String key = readString();
            skipWhitespace();
            if (pos >= text.length() || text.charAt(pos) != ':') {
                throw error("expected ':' after key \"" + key + "\"");
            }
            pos++;
            skipWhitespace();
            map.put(key, readValue(depth + 1));
            skipWhitespace();
            if (pos >= text.length()) {
                throw error("unterminated object");
            }
            char c = text.charAt(pos++);
            if (c == '}') {
                return map;
            }
            if (c != ',') {
                pos--;
                throw error("expected ',' or '}' in object");
            }
        }
    }

    private List<Object> readArray(int depth) {
        List<Object> list = new ArrayList<Object>();
        pos++; // '['
        skipWhitespace();
        if (pos < text.length() && text.charAt(pos) == ']') {
            pos++;
            return list;
        }
        while (true) {
            skipWhitespace();
            list.add(readValue(depth + 1));
            skipWhitespace();
            if (pos >= text.length()) {
                throw error("unterminated array");
            }
            char c = text.charAt(pos++);
            if (c == ']') {
                return list;
            }
            if (c != ',') {
                pos--;
                throw error("expected ',' or ']' in array");
            }
        }
    }

    private String readString() {
        pos++; // opening quote
        StringBuilder out = new StringBuilder();
        while (true) {
            if (pos >= text.length()) {
                throw error("unterminated string");
            }
            char c = text.charAt(pos++);
            if (c == '"') {
                return out.toString();
            }
            if (c < 0x20) {
                pos--;
                throw error("unescaped control character in string");
            }
            if (c != '\\') {
                out.append(c);
                continue;
            }
            if (pos >= text.length()) {
                throw error("unterminated escape");
            }
            char e = text.charAt(pos++);
            switch (e) {
                case '"': out.append('"'); break;
                case '\\': out.append('\\'); break;
                case '/': out.append('/'); break;
                case 'b': out.append('\b'); break;
                case 'f': out.append('\f'); break;
                case 'n': out.append('\n'); break;
                case 'r': out.append('\r'); break;
                case 't': out.append('\t'); break;
                case 'u':
                    if (pos + 4 > text.length()) {
                        throw error("truncated \\u escape");
                    }
                    int code = 0;
                    for (int i = 0; i < 4; i++) {
                        int digit = Character.digit(text.charAt(pos + i), 16);
                        if (digit < 0) {
                            throw error("bad hex digit in \\u escape");
                        }
                        code = code * 16 + digit;
                    }
                    pos += 4;
                    out.append((char) code); // surrogate pairs arrive as two escapes and join naturally
                    break;
                default:
                    pos--;
                    throw error("unknown escape '\\" + e + "'");
            }
        }
    }

    private Double readNumber() {
        int start = pos;
        if (text.charAt(pos) == '-') pos++;
        if (pos >= text.length()) throw error("truncated number");
        if (text.charAt(pos) == '0') {
            pos++;
        } else if (isDigit(pos)) {
            while (isDigit(pos)) pos++;
        } else {
            throw error("expected a digit");
        }
        if (pos < text.length() && text.charAt(pos) == '.') {
            pos++;
            if (!isDigit(pos)) throw error("expected a digit after '.'");
            while (isDigit(pos)) pos++;
        }
        if (pos < text.length() && (text.charAt(pos) == 'e' || text.charAt(pos) == 'E')) {
            pos++;
            if (pos < text.length() && (text.charAt(pos) == '+' || text.charAt(pos) == '-')) pos++;
            if (!isDigit(pos)) throw error("expected a digit in exponent");
            while (isDigit(pos)) pos++;
        }
        return Double.valueOf(text.substring(start, pos));
    }

    private boolean isDigit(int at) {
        return at < text.length() && text.charAt(at) >= '0' && text.charAt(at) <= '9';
    }

    // ---- typed accessors, each naming the key in its error ----

    /** The value at {@code key}, which must be present. */
    public static Object require(Map<String, Object> obj, String key) {
        if (!obj.containsKey(key)) {
            throw new JsonException("missing key \"" + key + "\"");
        }
        return obj.get(key);
    }

    /** The number at {@code key} as a double. */
    public static double getDouble(Map<String, Object> obj, String key) {
        return asDouble(require(obj, key), key);
    }

    /** The number at {@code key}, which must be a whole number. */
    public static int getInt(Map<String, Object> obj, String key) {
        return asInt(require(obj, key), key);
    }

    /** The string at {@code key}. */
    public static String getString(Map<String, Object> obj, String key) {
        Object v = require(obj, key);
        if (!(v instanceof String)) {
            throw new JsonException("\"" + key + "\" must be a string, got " + typeName(v));
        }
        return (String) v;
    }

    /** The string at {@code key}, or {@code fallback} when the key is absent or null. */
    public static String optString(Map<String, Object> obj, String key, String fallback) {
        return obj.get(key) == null ? fallback : getString(obj, key);
    }

    /** The array at {@code key}. */
    @SuppressWarnings("unchecked")
    public static List<Object> getArray(Map<String, Object> obj, String key) {
        Object v = require(obj, key);
        if (!(v instanceof List)) {
            throw new JsonException("\"" + key + "\" must be an array, got " + typeName(v));
        }
        return (List<Object>) v;
    }

    /** The object at {@code key}. */
    @SuppressWarnings("unchecked")
    public static Map<String, Object> getObject(Map<String, Object> obj, String key) {
        Object v = require(obj, key);
        if (!(v instanceof Map)) {
            throw new JsonException("\"" + key + "\" must be an object, got " + typeName(v));
        }
        return (Map<String, Object>) v;
    }

    /** {@code value} as a double; {@code what} names it in the error. */
    public static double asDouble(Object value, String what) {
        if (!(value instanceof Double)) {
            throw new JsonException("\"" + what + "\" must be a number, got " + typeName(value));
        }
        return (Double) value;
    }

    /** {@code value} as an int; it must be a whole number within int range. */
    public static int asInt(Object value, String what) {
        double d = asDouble(value, what);
        if (d != Math.rint(d) || d > Integer.MAX_VALUE || d < Integer.MIN_VALUE) {
            throw new JsonException("\"" + what + "\" must be a whole number, got " + d);
        }
        return (int) d;
    }

    /** An unmodifiable view of a list of strings; every element must be a string. */
    public static List<String> asStringList(Object value, String what) {
        if (!(value instanceof List)) {
            throw new JsonException("\"" + what + "\" must be an array of strings, got " + typeName(value));
        }
        List<String> out = new ArrayList<String>();
        for (Object item : (List<?>) value) {
            if (!(item instanceof String)) {
                throw new JsonException("\"" + what + "\" must hold only strings, found " + typeName(item));
            }
            out.add((String) item);
        }
        return Collections.unmodifiableList(out);
    }
}
