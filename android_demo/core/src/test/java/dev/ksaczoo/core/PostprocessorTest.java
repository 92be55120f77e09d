package dev.ksaczoo.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import org.junit.Test;

public class PostprocessorTest {

    @Test
    public void argmaxPicksLargestFirstOnTies() {
        float[] logits = {
            0f, 1f, 0.5f,   // 1
            2f, 2f, 1f,     // tie -> 0
            -3f, -1f, -1f,  // tie -> 1
            Float.NaN, 0f, 5f, // NaN never wins -> 2
        };
        assertArrayEquals(new int[] {1, 0, 1, 2}, Postprocessor.argmax(logits, 4, 3));
    }

    @Test
    public void argmaxChecksLength() {
        try {
            Postprocessor.argmax(new float[10], 4, 3);
            fail();
        } catch (IllegalArgumentException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("expected 4 pixels x 3 classes"));
        }
    }

    private static ModelDescription meta(ModelDescription.OutputKind kind) {
        return new ModelDescription("t", "int8", 2, 2, new float[] {0, 0, 0}, new float[] {1, 1, 1},
                Arrays.asList("bg", "a", "b"), kind);
    }

    @Test
    public void readsLogitsFromANativeOrderBuffer() {
        ModelDescription m = meta(ModelDescription.OutputKind.LOGITS);
        ByteBuffer out = ByteBuffer.allocateDirect(m.outputBytes()).order(ByteOrder.nativeOrder());
        float[] logits = {0, 0, 1, 5, 0, 0, 0, 3, 2, 0, 0, 0};
        out.asFloatBuffer().put(logits);
        out.position(out.capacity()); // wherever the runtime left the position, reading is absolute
        assertArrayEquals(new int[] {2, 0, 1, 0}, Postprocessor.labelsFromOutput(out, m));
    }

    @Test
    public void readsUint8Labels() {
        ModelDescription m = meta(ModelDescription.OutputKind.LABELS);
        ByteBuffer out = ByteBuffer.allocateDirect(4);
        out.put(new byte[] {0, 2, 1, 2});
        assertArrayEquals(new int[] {0, 2, 1, 2}, Postprocessor.labelsFromOutput(out, m));
        try {
            Postprocessor.labelsFromBytes(new byte[] {(byte) 200}, 3);
            fail();
        } catch (IllegalArgumentException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("not below num_classes=3"));
        }
        try {
            Postprocessor.labelsFromOutput(ByteBuffer.allocate(3), m);
            fail();
        } catch (IllegalArgumentException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("needs 4"));
        }
    }

    @Test
    public void labelsForImageDropsPaddingAndScalesBack() {
        // a 4x2 (w x h) image in a 4x4 input: content is the top 4x2; the image is 8x4
        Letterbox box = Letterbox.fit(8, 4, 4, 4);
        assertEquals(2, box.contentHeight);
        int[] model = {
            1, 1, 2, 2,
            3, 3, 4, 4,
            9, 9, 9, 9,   // padding rows
            9, 9, 9, 9,
        };
        int[] image = Postprocessor.labelsForImage(model, box);
        int[] want = {
            1, 1, 1, 1, 2, 2, 2, 2,
            1, 1, 1, 1, 2, 2, 2, 2,
            3, 3, 3, 3, 4, 4, 4, 4,
            3, 3, 3, 3, 4, 4, 4, 4,
        };
        // each model pixel covers 2x2 image pixels
        int[] expected = new int[32];
        for (int y = 0; y < 4; y++) {
            for (int x = 0; x < 8; x++) {
                expected[y * 8 + x] = model[(y / 2) * 4 + x / 2];
            }
        }
        assertArrayEquals(expected, image);
        assertEquals(want.length, image.length);
    }

    @Test
    public void histogramCounts() {
        assertArrayEquals(new int[] {2, 0, 1}, Postprocessor.histogram(new int[] {0, 2, 0}, 3));
    }
}
