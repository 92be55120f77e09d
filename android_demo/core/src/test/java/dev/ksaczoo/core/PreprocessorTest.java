package dev.ksaczoo.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;

import java.util.Arrays;
import org.junit.Test;

public class PreprocessorTest {

    private static ModelDescription meta(int h, int w, float mean, float std) {
        return new ModelDescription("t", "fp32", h, w, new float[] {mean, mean, mean}, new float[] {std, std, std},
                Arrays.asList("a", "b"), ModelDescription.OutputKind.LOGITS);
    }

    @Test
    public void letterboxKeepsAspectAndRounds() {
        Letterbox wide = Letterbox.fit(200, 100, 64, 64);
        assertEquals(64, wide.contentWidth);
        assertEquals(32, wide.contentHeight);
        Letterbox tall = Letterbox.fit(30, 90, 65, 65);
        assertEquals(22, tall.contentWidth); // 30 * 65/90 = 21.67
        assertEquals(65, tall.contentHeight);
        Letterbox tiny = Letterbox.fit(1000, 1, 10, 10);
        assertEquals(1, tiny.contentHeight); // never 0
        Letterbox up = Letterbox.fit(4, 2, 8, 8);
        assertEquals(8, up.contentWidth);
        assertEquals(4, up.contentHeight);
    }

    @Test
    public void sameSizeCopiesAndNormalises() {
        // 2x2 image, model input 2x2: no resampling, x = (p - 127.5) / 127.5
        int[] argb = {0xFF000000, 0xFFFFFFFF, 0xFF7F0080, 0x00102030};
        float[] out = new float[12];
        Letterbox box = new Preprocessor(meta(2, 2, 127.5f, 127.5f)).preprocessArgb(argb, 2, 2, out);
        assertEquals(2, box.contentWidth);
        float[] want = {-1, -1, -1, 1, 1, 1, (127 - 127.5f) / 127.5f, -1, (128 - 127.5f) / 127.5f,
                (16 - 127.5f) / 127.5f, (32 - 127.5f) / 127.5f, (48 - 127.5f) / 127.5f};
        assertArrayEquals(want, out, 1e-7f);
    }

    @Test
    public void padsBottomAndRightWithZero() {
        // 4x2 (w x h) white image into 4x4: rows 2..3 are padding
        int[] argb = new int[8];
        Arrays.fill(argb, 0xFFFFFFFF);
        float[] out = new float[4 * 4 * 3];
        Letterbox box = new Preprocessor(meta(4, 4, 0f, 255f)).preprocessArgb(argb, 4, 2, out);
        assertEquals(4, box.contentWidth);
        assertEquals(2, box.contentHeight);
        for (int i = 0; i < out.length; i++) {
            assertEquals("index " + i, i < 2 * 4 * 3 ? 1f : 0f, out[i], 0f);
        }
    }

    @Test
    public void bilinearUsesHalfPixelCentres() {
        // one row 0, 100, 200, 300/ -> downscale 4 -> 2 in x: samples at 0.5 and 2.5 -> 50 and 250 (clamped to 255 scale)
        byte[] rgb = new byte[4 * 3];
        int[] values = {0, 100, 200, 250};
        for (int x = 0; x < 4; x++) {
            for (int c = 0; c < 3; c++) rgb[x * 3 + c] = (byte) values[x];
        }
        float[] out = new float[1 * 2 * 3];
        new Preprocessor(meta(1, 2, 0f, 1f)).preprocessRgb(rgb, 4, 1, out);
        assertArrayEquals(new float[] {50, 50, 50, 225, 225, 225}, out, 1e-5f);

        // upscale 2 -> 4: positions -0.25 (clamped 0), 0.25, 0.75, 1.25 (clamped 1)
        byte[] two = {0, 0, 0, (byte) 200, (byte) 200, (byte) 200};
        float[] up = new float[1 * 4 * 3];
        Letterbox box = new Preprocessor(meta(1, 4, 0f, 1f)).preprocessRgb(two, 2, 1, up);
        assertEquals(2, box.contentWidth); // aspect kept: 2x1 into 4x1 stays 2 wide (height limits)
        assertArrayEquals(new float[] {0, 0, 0, 200, 200, 200, 0, 0, 0, 0, 0, 0}, up, 1e-5f);
        float[] up2 = new float[2 * 4 * 3];
        new Preprocessor(meta(2, 4, 0f, 1f)).preprocessRgb(two, 2, 1, up2);
        float[] row = Arrays.copyOf(up2, 12);
        assertArrayEquals(new float[] {0, 0, 0, 50, 50, 50, 150, 150, 150, 200, 200, 200}, row, 1e-5f);
    }

    @Test
    public void argbAndRgbAgree() {
        int w = 7, h = 5;
        int[] argb = new int[w * h];
        byte[] rgb = new byte[w * h * 3];
        java.util.Random random = new java.util.Random(3);
        for (int i = 0; i < argb.length; i++) {
            int r = random.nextInt(256), g = random.nextInt(256), b = random.nextInt(256);
            argb[i] = (random.nextInt(256) << 24) | (r << 16) | (g << 8) | b;
            rgb[3 * i] = (byte) r;
            rgb[3 * i + 1] = (byte) g;
            rgb[3 * i + 2] = (byte) b;
        }
        Preprocessor p = new Preprocessor(meta(9, 9, 127.5f, 127.5f));
        float[] a = new float[p.inputLength()];
        float[] b = new float[p.inputLength()];
        p.preprocessArgb(argb, w, h, a);
        p.preprocessRgb(rgb, w, h, b);
        assertArrayEquals(a, b, 0f);
    }

    @Test(expected = IllegalArgumentException.class)
    public void rejectsWrongPixelCount() {
        new Preprocessor(meta(4, 4, 0f, 1f)).preprocessArgb(new int[5], 2, 3, new float[48]);
    }
}
