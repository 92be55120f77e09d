package dev.ksaczoo.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.Charset;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.BeforeClass;
import org.junit.Test;

/**
 * The shared schema {@code ksac_runtime/model_description.schema.json} against descriptions, through
 * {@link DescriptionSchema}.
 *
 * <p>The schema file is the system property {@code schema.path} (run_tests.sh and Gradle pass it), else
 * it is looked for from the working directory (repository root or {@code android_demo/core}).
 */
public class DescriptionSchemaTest {
    static final Charset UTF8 = Charset.forName("UTF-8");

    /** A version-2 description as the exporter writes it into a .tflite file. */
    static final String V2 = "{\"version\": 2, \"name\": \"mobilenetv2_ksac\", \"backbone\": \"mobilenetv2\","
            + " \"head\": \"ksac\", \"decoder\": false, \"rates\": [6, 12, 18], \"output_stride\": 16,"
            + " \"input_size\": [65, 97], \"num_classes\": 3, \"label_names\": [\"background\", \"cat\", \"dog\"],"
            + " \"width\": 0.35, \"head_filters\": 16,"
            + " \"normalization\": {\"mean\": [127.5, 127.5, 127.5], \"std\": [127.5, 127.5, 127.5]},"
            + " \"preprocessing\": {\"resize\": \"letterbox\", \"interpolation\": \"bilinear_half_pixel\","
            + " \"anchor\": \"top_left\", \"pad\": \"mean\"},"
            + " \"data\": \"synthetic\", \"precision\": \"int8\", \"output\": \"logits\", \"exporter\": \"ksac-aware\"}";

    private static String schemaText;
    private static DescriptionSchema schema;

    @BeforeClass
    public static void loadSchema() throws IOException {
        File file = locateSchema();
        schemaText = new String(Files.readAllBytes(file.toPath()), UTF8);
        schema = DescriptionSchema.fromJson(schemaText);
    }

    private static File locateSchema() {
        String prop = System.getProperty("schema.path");
        if (prop != null && !prop.isEmpty()) {
            File file = new File(prop);
            if (!file.isFile()) {
                throw new IllegalStateException("-Dschema.path=" + prop + " is not a file");
            }
            return file;
        }
        for (String candidate : new String[] {"ksac_runtime/model_description.schema.json",
                "../../ksac_runtime/model_description.schema.json"}) {
            File file = new File(candidate);
            if (file.isFile()) {
                return file;
            }
        }
        throw new IllegalStateException("model_description.schema.json not found: pass"
                + " -Dschema.path=<repo>/ksac_runtime/model_description.schema.json (run_tests.sh does)");
    }

    private static Map<String, Object> v2() {
        return Json.parseObject(V2);
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> object(Map<String, Object> obj, String key) {
        return (Map<String, Object>) obj.get(key);
    }

    @SuppressWarnings("unchecked")
    private static List<Object> array(Map<String, Object> obj, String key) {
        return (List<Object>) obj.get(key);
    }

    @Test
    public void acceptsAVersion2Description() {
        schema.validate(v2());
        assertEquals(2, ModelDescription.fromMap(v2()).version());
    }

    /**
     * The description of the committed golden model (written before versions existed: version 1), upgraded
     * to version 2: "version": 2 added, and "preprocessing" (which that export predates) set to what every
     * reader takes its absence for, the one contract of ksac_runtime/preprocess.py.
     */
    @Test
    public void acceptsTheGoldenDescriptionUpgradedFromVersion1() throws IOException {
        InputStream in = DescriptionSchemaTest.class.getClassLoader().getResourceAsStream("golden/golden.json");
        assertTrue("golden/golden.json is not on the test classpath", in != null);
        byte[] bytes;
        try {
            java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
            byte[] chunk = new byte[8192];
            for (int n; (n = in.read(chunk)) > 0; ) {
                out.write(chunk, 0, n);
            }
            bytes = out.toByteArray();
        } finally {
            in.close();
        }
        Map<String, Object> v1 = Json.getObject(Json.parseObject(new String(bytes, UTF8)), "metadata");
        assertTrue("the golden description is a version 1 one", !v1.containsKey("version"));
        assertEquals(1, ModelDescription.fromMap(v1).version());
        // As stored it is not version 2: the schema asks for the version.
        assertTrue(schema.errors(v1).toString(), schema.errors(v1).contains("$.version: required field is missing"));

        Map<String, Object> upgraded = new LinkedHashMap<String, Object>(v1);
        upgraded.put("version", 2.0);
        if (!upgraded.containsKey("preprocessing")) {
            Map<String, Object> contract = new LinkedHashMap<String, Object>();
            contract.put("resize", "letterbox");
            contract.put("interpolation", "bilinear_half_pixel");
            contract.put("anchor", "top_left");
            contract.put("pad", "mean");
            upgraded.put("preprocessing", contract);
        }
        schema.validate(upgraded);
        assertEquals(2, ModelDescription.fromMap(upgraded).version());
    }

    @Test
    public void rejectsBadDescriptionsNamingThePath() {
        Map<String, Object> d = v2();
        d.remove("name");
        expectInvalid(d, "$.name: required field is missing");

        d = v2();
        object(d, "normalization").remove("std");
        expectInvalid(d, "$.normalization.std: required field is missing");

        d = v2();
        d.put("width", "0.35");
        expectInvalid(d, "$.width: must be number, got string \"0.35\"");

        d = v2();
        d.put("num_classes", 2.5);
        expectInvalid(d, "$.num_classes: must be integer");

        d = v2();
        array(object(d, "normalization"), "std").set(1, 0.0);
        expectInvalid(d, "$.normalization.std[1]: 0 must be > 0");

        d = v2();
        array(object(d, "normalization"), "mean").remove(2);
        expectInvalid(d, "$.normalization.mean: has 2 item(s), at least 3 needed");

        d = v2();
        d.put("colour", "blue");
        expectInvalid(d, "$.colour: unknown field");

        d = v2();
        object(d, "preprocessing").put("crop", "centre");
        expectInvalid(d, "$.preprocessing.crop: unknown field");

        d = v2();
        object(d, "preprocessing").put("resize", "crop");
        expectInvalid(d, "$.preprocessing.resize: \"crop\" is not one of [\"letterbox\", \"stretch\"]");

        d = v2();
        d.put("output_stride", 12.0);
        expectInvalid(d, "$.output_stride: 12 is not one of [8, 16, 32]");

        d = v2();
        d.put("name", "");
        expectInvalid(d, "$.name: \"\" is shorter than 1 character(s)");

        d = v2();
        array(d, "rates").set(0, 0.0);
        expectInvalid(d, "$.rates[0]: 0 must be >= 1");

        d = v2();
        array(d, "input_size").add(3.0);
        expectInvalid(d, "$.input_size: has 3 item(s), at most 2 allowed");

        d = v2();
        d.put("version", 3.0);
        expectInvalid(d, "$.version: must be 2, got 3");

        // every error is reported, not only the first
        d = v2();
        d.remove("head");
        d.put("decoder", "no");
        List<String> errors = schema.errors(d);
        assertEquals(errors.toString(), 2, errors.size());
    }

    private static void expectInvalid(Map<String, Object> description, String fragment) {
        try {
            schema.validate(description);
            fail("the schema accepted a description that should fail with " + fragment);
        } catch (Json.JsonException e) {
            assertTrue(e.getMessage() + "\n  should contain: " + fragment, e.getMessage().contains(fragment));
            assertTrue(e.getMessage(), e.getMessage().startsWith("model description does not match the schema: "));
        }
    }

    @Test
    public void refusesASchemaKeywordItDoesNotImplement() {
        expectUnsupported("{\"type\": \"string\", \"pattern\": \"^[a-z]+$\"}", "\"pattern\" at #");
        // also deep inside, before any description is checked
        Map<String, Object> s = Json.parseObject(schemaText);
        Map<String, Object> mean = object(object(object(s, "properties"), "normalization"), "properties");
        object(mean, "mean").put("uniqueItems", Boolean.TRUE);
        expectUnsupported(toJson(s), "\"uniqueItems\" at #/properties/normalization/properties/mean");
        expectUnsupported("{\"additionalProperties\": {\"type\": \"string\"}}", "only true or false");
        expectUnsupported("{\"type\": \"float\"}", "unknown type \"float\"");
    }

    private static void expectUnsupported(String schemaJson, String fragment) {
        try {
            DescriptionSchema.fromJson(schemaJson);
            fail("accepted the schema " + schemaJson);
        } catch (IllegalArgumentException e) {
            assertTrue(e.getMessage() + "\n  should contain: " + fragment, e.getMessage().contains(fragment));
        }
    }

    /** Minimal JSON writer for the test's schema edits (strings here hold no characters needing escapes). */
    private static String toJson(Object value) {
        if (value instanceof Map) {
            List<String> parts = new ArrayList<String>();
            for (Map.Entry<?, ?> e : ((Map<?, ?>) value).entrySet()) {
                parts.add(toJson(e.getKey()) + ": " + toJson(e.getValue()));
            }
            return "{" + join(parts) + "}";
        }
        if (value instanceof List) {
            List<String> parts = new ArrayList<String>();
            for (Object item : (List<?>) value) {
                parts.add(toJson(item));
            }
            return "[" + join(parts) + "]";
        }
        if (value instanceof String) {
            return "\"" + ((String) value).replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
        }
        return String.valueOf(value);
    }

    private static String join(List<String> parts) {
        StringBuilder b = new StringBuilder();
        for (String p : parts) {
            b.append(b.length() == 0 ? "" : ", ").append(p);
        }
        return b.toString();
    }
}
