package dev.ksaczoo.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import org.junit.Test;

public class ModelMetadataTest {
    static final String EXPORTED = "{\"name\": \"mobilenetv2_ksac\", \"head\": \"ksac\", \"input_size\": [65, 97],"
            + " \"normalization\": {\"mean\": [127.5, 127.5, 127.5], \"std\": [127.5, 127.5, 127.5]},"
            + " \"num_classes\": 3, \"label_names\": [\"background\", \"cat\", \"dog\"],"
            + " \"output\": \"logits\", \"precision\": \"int8\", \"rates\": [6, 12, 18]}";

    @Test
    public void readsTheExportedDescription() {
        ModelMetadata m = ModelMetadata.fromJson(EXPORTED);
        assertEquals("mobilenetv2_ksac", m.name());
        assertEquals("int8", m.precision());
        assertEquals(65, m.inputHeight());
        assertEquals(97, m.inputWidth());
        assertArrayEquals(new float[] {127.5f, 127.5f, 127.5f}, m.mean(), 0f);
        assertArrayEquals(new float[] {127.5f, 127.5f, 127.5f}, m.std(), 0f);
        assertEquals(3, m.numClasses());
        assertEquals("dog", m.labelNames().get(2));
        assertEquals(ModelMetadata.OutputKind.LOGITS, m.output());
        assertEquals(4 * 65 * 97 * 3, m.outputBytes());
    }

    @Test
    public void fillsDefaults() {
        ModelMetadata m = ModelMetadata.fromJson(
                "{\"input_size\": 33, \"normalization\": {\"mean\": 0, \"std\": 255}, \"num_classes\": 2, \"output\": \"labels\"}");
        assertEquals(33, m.inputHeight());
        assertEquals(33, m.inputWidth());
        assertArrayEquals(new float[] {255f, 255f, 255f}, m.std(), 0f);
        assertEquals("class_1", m.labelNames().get(1));
        assertEquals(ModelMetadata.OutputKind.LABELS, m.output());
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
            ModelMetadata.fromJson(json);
            fail("accepted " + json);
        } catch (Json.JsonException e) {
            assertTrue(e.getMessage() + " should mention " + fragment, e.getMessage().contains(fragment));
            assertTrue(e.getMessage(), e.getMessage().startsWith("bad model metadata"));
        }
    }

    @Test
    public void checksTensorShapes() {
        ModelMetadata m = ModelMetadata.fromJson(EXPORTED);
        m.checkInputShape(new int[] {1, 65, 97, 3});
        m.checkOutputShape(new int[] {1, 65, 97, 3});
        try {
            m.checkInputShape(new int[] {1, 97, 65, 3});
            fail();
        } catch (IllegalStateException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("does not match its metadata"));
        }
        try {
            m.checkOutputShape(new int[] {1, 65, 97});
            fail();
        } catch (IllegalStateException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("logits"));
        }
    }
}
