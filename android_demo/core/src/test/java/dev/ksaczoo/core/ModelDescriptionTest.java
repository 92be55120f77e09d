package dev.ksaczoo.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import org.junit.Test;

public class ModelDescriptionTest {
    static final String EXPORTED = "{\"name\": \"mobilenetv2_ksac\", \"head\": \"ksac\", \"input_size\": [65, 97],"
            + " \"normalization\": {\"mean\": [127.5, 127.5, 127.5], \"std\": [127.5, 127.5, 127.5]},"
            + " \"num_classes\": 3, \"label_names\": [\"background\", \"cat\", \"dog\"],"
            + " \"output\": \"logits\", \"precision\": \"int8\", \"rates\": [6, 12, 18]}";

    @Test
    public void readsTheExportedDescription() {
        ModelDescription m = ModelDescription.fromJson(EXPORTED);
        assertEquals("mobilenetv2_ksac", m.name());
        assertEquals("int8", m.precision());
        assertEquals(65, m.inputHeight());
        assertEquals(97, m.inputWidth());
        assertArrayEquals(new float[] {127.5f, 127.5f, 127.5f}, m.mean(), 0f);
        assertArrayEquals(new float[] {127.5f, 127.5f, 127.5f}, m.std(), 0f);
        assertEquals(3, m.numClasses());
        assertEquals("dog", m.labelNames().get(2));
        assertEquals(ModelDescription.OutputKind.LOGITS, m.output());
        assertEquals(4 * 65 * 97 * 3, m.outputBytes());
    }

    @Test
    public void fillsDefaults() {
        ModelDescription m = ModelDescription.fromJson(
                "{\"input_size\": 33, \"normalization\": {\"mean\": 0, \"std\": 255}, \"num_classes\": 2, \"output\": \"labels\"}");
        assertEquals(33, m.inputHeight());
        assertEquals(33, m.inputWidth());
        assertArrayEquals(new float[] {255f, 255f, 255f}, m.std(), 0f);
        assertEquals("class_1", m.labelNames().get(1));
        assertEquals(ModelDescription.OutputKind.LABELS, m.output());
        assertEquals(33 * 33, m.outputBytes());
        assertEquals("unknown", m.precision());
    }

    @Test
    public void errorsNameTheField() {
        expectError("{\"normalization\": {\"mean\": 0, \"std\": 1}, \"num_classes\": 2}", "missing key \"input_size\"");
        expectError("{\"input_size\": [8, 8], \"num_classes\": 2}", "missing key \"normalization\"");
        expectError("{\"input_size\": [8, 8], \"normalization\": {\"mean\": [1, 2], \"std\": 1}, \"num_classes\": 2}",
                "normalization.mean");
        expectError("{\"input_size\": [8, 8], \"normalization\": {\"mean\": 0, \"std\": 0}, \"num_classes\": 2}",
                "std values must be positive");
        expectError("{\"input_size\": [8, 8], \"normalization\": {\"mean\": 0, \"std\": 1}, \"num_classes\": 3,"
                + " \"label_names\": [\"a\", \"b\"]}", "has 2 names for num_classes=3");
        expectError("{\"input_size\": [8, 8], \"normalization\": {\"mean\": 0, \"std\": 1}, \"num_classes\": 2,"
                + " \"output\": \"probabilities\"}", "\"output\" must be");
        expectError("{\"input_size\": [8, 8], \"normalization\": {\"mean\": 0, \"std\": 1}}", "num_classes");
    }

    private static void expectError(String json, String fragment) {
        try {
            ModelDescription.fromJson(json);
            fail("accepted " + json);
        } catch (Json.JsonException e) {
            assertTrue(e.getMessage() + " should mention " + fragment, e.getMessage().contains(fragment));
            assertTrue(e.getMessage(), e.getMessage().startsWith("bad model description"));
        }
    }

    @Test
    public void readsVersions1And2AndRefusesNewerOnes() {
        // files written before versions existed carry no "version": version 1
        assertEquals(1, ModelDescription.fromJson(EXPORTED).version());
        String body = EXPORTED.substring(1);
        assertEquals(1, ModelDescription.fromJson("{\"version\": 1, " + body).version());
        assertEquals(2, ModelDescription.fromJson("{\"version\": 2, " + body).version());
        assertEquals(ModelDescription.VERSION, new ModelDescription("t", "fp32", 2, 2, new float[] {0, 0, 0},
                new float[] {1, 1, 1}, java.util.Arrays.asList("a", "b"), ModelDescription.OutputKind.LOGITS).version());
        expectExactError("{\"version\": 3, " + body,
                "model description version 3 is newer than this app reads (up to 2)");
        // checked before the other fields, which a newer format may have changed
        expectExactError("{\"version\": 7, \"input_size\": \"any\"}",
                "model description version 7 is newer than this app reads (up to 2)");
        expectExactError("{\"version\": \"2\", " + body, "model description \"version\" must be a whole number, got string");
        expectExactError("{\"version\": 2.5, " + body, "model description \"version\" must be a whole number from 1, got 2.5");
        expectExactError("{\"version\": 0, " + body, "model description \"version\" must be a whole number from 1, got 0.0");
        expectExactError("{\"version\": null, " + body, "model description \"version\" must be a whole number, got null");
    }

    private static void expectExactError(String json, String message) {
        try {
            ModelDescription.fromJson(json);
            fail("accepted " + json);
        } catch (Json.JsonException e) {
            assertEquals(message, e.getMessage());
        }
    }

    @Test
    public void checksTensorShapes() {
        ModelDescription m = ModelDescription.fromJson(EXPORTED);
        m.checkInputShape(new int[] {1, 65, 97, 3});
        m.checkOutputShape(new int[] {1, 65, 97, 3});
        try {
            m.checkInputShape(new int[] {1, 97, 65, 3});
            fail();
        } catch (IllegalStateException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("does not match its description"));
        }
        try {
            m.checkOutputShape(new int[] {1, 65, 97});
            fail();
        } catch (IllegalStateException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("logits"));
        }
    }
}
