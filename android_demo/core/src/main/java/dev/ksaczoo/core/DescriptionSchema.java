package dev.ksaczoo.core;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Pattern;

/**
 * Checks a parsed model description against {@code ksac_runtime/model_description.schema.json}, the one
 * schema that the Python, Java and JavaScript readers share.
 *
 * <p>Hand-written on purpose: the core is plain Java 8 for Android, built without Gradle or Maven here, so
 * no JSON-schema library (e.g. networknt or everit) can be added. It implements exactly the keywords the
 * schema uses: {@code type}, {@code required}, {@code additionalProperties} ({@code false} only),
 * {@code properties}, {@code items}, {@code enum}, {@code const}, {@code minimum}, {@code exclusiveMinimum},
 * {@code minItems}, {@code maxItems}, {@code minLength}, and skips the annotations {@code $schema},
 * {@code $id}, {@code title}, {@code description}. Any other keyword anywhere in the schema throws
 * {@link IllegalArgumentException} when the schema is loaded, so that a keyword added to the schema later is
 * never silently ignored here (extend this class with it instead).
 *
 * <p>Validation errors name the JSON path of the value, e.g. {@code $.normalization.std[1]}.
 *
 * <pre>
 * DescriptionSchema schema = DescriptionSchema.fromJson(schemaText);
 * schema.validate(Json.parseObject(descriptionText));   // throws Json.JsonException listing every error
 * </pre>
 */
public final class DescriptionSchema {

    /** Keywords checked against the value. */
    private static final Set<String> ASSERTIONS = new HashSet<String>(Arrays.asList(
            "type", "required", "additionalProperties", "properties", "items", "enum", "const",
            "minimum", "exclusiveMinimum", "minItems", "maxItems", "minLength"));
    /** Keywords that only document the schema. */
    private static final Set<String> ANNOTATIONS = new HashSet<String>(Arrays.asList(
            "$schema", "$id", "title", "description"));
    private static final Set<String> TYPES = new HashSet<String>(Arrays.asList(
            "object", "array", "string", "number", "integer", "boolean", "null"));
    private static final Pattern PLAIN_KEY = Pattern.compile("[A-Za-z_][A-Za-z0-9_]*");

    private final Map<String, Object> schema;

    private DescriptionSchema(Map<String, Object> schema) {
        checkSchema(schema, "#");
        this.schema = schema;
    }

    /**
     * Loads a schema from its JSON text.
     *
     * @throws Json.JsonException the text is not a JSON object
     * @throws IllegalArgumentException the schema uses a keyword this class does not implement, or a
     *     keyword's value has the wrong shape; the message names its place (e.g. {@code #/properties/name})
     */
    public static DescriptionSchema fromJson(String schemaJson) {
        return new DescriptionSchema(Json.parseObject(schemaJson));
    }

    /** Every error of {@code value} against the schema, each starting with its JSON path; empty if valid. */
    public List<String> errors(Object value) {
        List<String> out = new ArrayList<String>();
        check(schema, value, "$", out);
        return Collections.unmodifiableList(out);
    }

    /**
     * Throws unless {@code value} (a parsed description) matches the schema.
     *
     * @throws Json.JsonException listing every error, e.g.
     *     {@code model description does not match the schema: $.normalization.std[1]: 0 must be > 0}
     */
    public void validate(Object value) {
        List<String> errors = errors(value);
        if (!errors.isEmpty()) {
            StringBuilder message = new StringBuilder("model description does not match the schema: ");
            for (int i = 0; i < errors.size(); i++) {
                message.append(i == 0 ? "" : "; ").append(errors.get(i));
            }
            throw new Json.JsonException(message.toString());
        }
    }

    // ---- the schema itself: every keyword known, every value of the right shape ----

    private static void checkSchema(Object node, String where) {
        if (!(node instanceof Map)) {
            throw new IllegalArgumentException("schema at " + where + " must be an object, got " + Json.typeName(node));
        }
        Map<String, Object> s = asMap(node);
        for (Map.Entry<String, Object> e : s.entrySet()) {
            String key = e.getKey();
            Object v = e.getValue();
            String at = where + "/" + key;
            if (ANNOTATIONS.contains(key)) {
                continue;
            }
            if (!ASSERTIONS.contains(key)) {
                throw new IllegalArgumentException("schema keyword \"" + key + "\" at " + where
                        + " is not supported by DescriptionSchema (it implements " + new TreeSet<String>(ASSERTIONS)
                        + "); implement it there rather than let it pass unchecked");
            }
            if (key.equals("const")) {
                continue; // any JSON value will do
            }
            if (key.equals("type")) {
                for (String t : typeList(v, at)) {
                    if (!TYPES.contains(t)) {
                        throw new IllegalArgumentException("schema at " + at + ": unknown type \"" + t + "\"");
                    }
                }
            } else if (key.equals("required")) {
                stringList(v, at);
            } else if (key.equals("additionalProperties")) {
                // Only false (closed objects) is implemented; true is the default and means nothing.
                if (!(v instanceof Boolean)) {
                    throw new IllegalArgumentException("schema at " + at + ": only true or false is supported, got "
                            + Json.typeName(v));
                }
            } else if (key.equals("properties")) {
                if (!(v instanceof Map)) {
                    throw new IllegalArgumentException("schema at " + at + " must be an object");
                }
                for (Map.Entry<String, Object> p : asMap(v).entrySet()) {
                    checkSchema(p.getValue(), at + "/" + p.getKey());
                }
            } else if (key.equals("items")) {
                checkSchema(v, at);
            } else if (key.equals("enum")) {
                if (!(v instanceof List)) {
                    throw new IllegalArgumentException("schema at " + at + " must be an array");
                }
            } else if (key.equals("minimum") || key.equals("exclusiveMinimum")) {
                if (!(v instanceof Double)) {
                    throw new IllegalArgumentException("schema at " + at + " must be a number");
                }
            } else { // minItems, maxItems, minLength
                if (!(v instanceof Double) || (Double) v < 0 || (Double) v != Math.rint((Double) v)) {
                    throw new IllegalArgumentException("schema at " + at + " must be a whole number >= 0");
                }
            }
        }
    }

    private static List<String> typeList(Object v, String at) {
        if (v instanceof String) {
            return Collections.singletonList((String) v);
        }
        return stringList(v, at);
    }

    private static List<String> stringList(Object v, String at) {
        if (!(v instanceof List)) {
            throw new IllegalArgumentException("schema at " + at + " must be an array of strings");
        }
        List<String> out = new ArrayList<String>();
        for (Object item : (List<?>) v) {
            if (!(item instanceof String)) {
                throw new IllegalArgumentException("schema at " + at + " must hold only strings");
            }
            out.add((String) item);
        }
        return out;
    }

    // ---- validation ----

    private static void check(Map<String, Object> s, Object value, String path, List<String> out) {
        if (s.containsKey("type")) {
            List<String> types = typeList(s.get("type"), "type");
            boolean matches = false;
            for (String t : types) {
                matches |= hasType(value, t);
            }
            if (!matches) {
                out.add(path + ": must be " + (types.size() == 1 ? types.get(0) : "one of " + types) + ", got "
                        + describe(value));
                return; // the other keywords would only repeat the type error
            }
        }
        if (s.containsKey("const") && !jsonEquals(s.get("const"), value)) {
            out.add(path + ": must be " + show(s.get("const")) + ", got " + show(value));
        }
        if (s.containsKey("enum")) {
            boolean found = false;
            for (Object option : (List<?>) s.get("enum")) {
                found |= jsonEquals(option, value);
            }
            if (!found) {
                out.add(path + ": " + show(value) + " is not one of " + show(s.get("enum")));
            }
        }
        if (value instanceof Double) {
            double d = (Double) value;
            if (s.containsKey("minimum") && !(d >= (Double) s.get("minimum"))) {
                out.add(path + ": " + show(value) + " must be >= " + show(s.get("minimum")));
            }
            if (s.containsKey("exclusiveMinimum") && !(d > (Double) s.get("exclusiveMinimum"))) {
                out.add(path + ": " + show(value) + " must be > " + show(s.get("exclusiveMinimum")));
            }
        }
        if (value instanceof String && s.containsKey("minLength")) {
            String text = (String) value;
            int length = text.codePointCount(0, text.length()); // JSON Schema counts code points
            if (length < (Double) s.get("minLength")) {
                out.add(path + ": " + show(value) + " is shorter than " + show(s.get("minLength")) + " character(s)");
            }
        }
        if (value instanceof List) {
            checkArray(s, (List<?>) value, path, out);
        }
        if (value instanceof Map) {
            checkObject(s, asMap(value), path, out);
        }
    }

    private static void checkArray(Map<String, Object> s, List<?> list, String path, List<String> out) {
        if (s.containsKey("minItems") && list.size() < (Double) s.get("minItems")) {
            out.add(path + ": has " + list.size() + " item(s), at least " + show(s.get("minItems")) + " needed");
        }
        if (s.containsKey("maxItems") && list.size() > (Double) s.get("maxItems")) {
            out.add(path + ": has " + list.size() + " item(s), at most " + show(s.get("maxItems")) + " allowed");
        }
        if (s.containsKey("items")) {
            Map<String, Object> itemSchema = asMap(s.get("items"));
            for (int i = 0; i < list.size(); i++) {
                check(itemSchema, list.get(i), path + "[" + i + "]", out);
            }
        }
    }

    private static void checkObject(Map<String, Object> s, Map<String, Object> obj, String path, List<String> out) {
        if (s.containsKey("required")) {
            for (String key : stringList(s.get("required"), "required")) {
                if (!obj.containsKey(key)) {
                    out.add(child(path, key) + ": required field is missing");
                }
            }
        }
        Map<String, Object> properties = s.containsKey("properties")
                ? asMap(s.get("properties")) : Collections.<String, Object>emptyMap();
        boolean closed = Boolean.FALSE.equals(s.get("additionalProperties"));
        for (Map.Entry<String, Object> e : obj.entrySet()) {
            Object propertySchema = properties.get(e.getKey());
            if (propertySchema != null) {
                check(asMap(propertySchema), e.getValue(), child(path, e.getKey()), out);
            } else if (closed) {
                out.add(child(path, e.getKey()) + ": unknown field (the schema allows only " + properties.keySet() + ")");
            }
        }
    }

    private static boolean hasType(Object value, String type) {
        if (type.equals("object")) return value instanceof Map;
        if (type.equals("array")) return value instanceof List;
        if (type.equals("string")) return value instanceof String;
        if (type.equals("boolean")) return value instanceof Boolean;
        if (type.equals("null")) return value == null;
        if (type.equals("number")) return value instanceof Double;
        // integer: a number with no fractional part (JSON Schema counts 2.0 as an integer)
        return value instanceof Double && !((Double) value).isInfinite() && (Double) value == Math.rint((Double) value);
    }

    /** JSON equality: the parser gives Double/String/Boolean/null/List/Map, whose equals() is exactly that. */
    private static boolean jsonEquals(Object a, Object b) {
        return a == null ? b == null : a.equals(b);
    }

    private static String child(String path, String key) {
        return PLAIN_KEY.matcher(key).matches() ? path + "." + key : path + "[" + show(key) + "]";
    }

    private static String describe(Object value) {
        return Json.typeName(value) + (value instanceof Map || value instanceof List ? "" : " " + show(value));
    }

    /** A value as JSON-like text for messages: whole numbers without ".0", strings quoted. */
    private static String show(Object value) {
        if (value instanceof Double) {
            double d = (Double) value;
            return d == Math.rint(d) && Math.abs(d) < 1e15 ? String.valueOf((long) d) : String.valueOf(d);
        }
        if (value instanceof String) {
            return "\"" + ((String) value).replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
        }
        if (value instanceof List) {
            StringBuilder b = new StringBuilder("[");
            for (Object item : (List<?>) value) {
                b.append(b.length() > 1 ? ", " : "").append(show(item));
            }
            return b.append("]").toString();
        }
        if (value instanceof Map) {
            return "{...}";
        }
        return String.valueOf(value);
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> asMap(Object value) {
        return (Map<String, Object>) value;
    }
}
