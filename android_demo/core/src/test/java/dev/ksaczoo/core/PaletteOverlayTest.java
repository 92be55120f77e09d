package dev.ksaczoo.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;

import org.junit.Test;

public class PaletteOverlayTest {

    private static int rgb(int r, int g, int b) {
        return 0xFF000000 | (r << 16) | (g << 8) | b;
    }

    @Test
    public void vocColours() {
        int[] p = Palette.voc(256);
        assertEquals(rgb(0, 0, 0), p[0]);
        assertEquals(rgb(128, 0, 0), p[1]);     // aeroplane
        assertEquals(rgb(0, 128, 0), p[2]);     // bicycle
        assertEquals(rgb(128, 128, 0), p[3]);
        assertEquals(rgb(0, 0, 128), p[4]);
        assertEquals(rgb(64, 0, 0), p[8]);      // cat
        assertEquals(rgb(192, 128, 128), p[15]); // person
        assertEquals(rgb(0, 64, 128), p[20]);   // tvmonitor
        assertEquals(rgb(224, 224, 192), p[255]); // VOC "void" boundary colour
    }

    @Test
    public void colorizeMapsLabels() {
        assertArrayEquals(new int[] {rgb(0, 0, 0), rgb(0, 128, 0)}, Palette.colorize(new int[] {0, 2}, Palette.voc(3)));
    }

    @Test
    public void overlayBlendsRoundingHalfUp() {
        int[] palette = Palette.voc(21);
        int[] image = {rgb(0, 0, 0), rgb(255, 255, 255), rgb(10, 20, 31), 0x00112233};
        int[] labels = {1, 15, 2, 0};
        int[] out = Overlay.blend(image, labels, palette, 0.5f, 0);
        assertEquals(rgb(64, 0, 0), out[0]);        // 0.5*128 + 0.5*0
        assertEquals(rgb(224, 192, 192), out[1]);   // (192+255)/2 = 223.5 -> 224
        assertEquals(rgb(5, 74, 16), out[2]);       // 15.5 -> 16
        assertEquals(0xFF112233, out[3]);           // background kept, made opaque
        int[] full = Overlay.blend(image, labels, palette, 1f, -1);
        assertEquals(palette[0], full[3]);
    }

    @Test(expected = IllegalArgumentException.class)
    public void overlayRejectsBadAlpha() {
        Overlay.blend(new int[1], new int[1], Palette.voc(2), 1.5f, -1);
    }

    @Test
    public void latencyStats() {
        LatencyStats s = new LatencyStats(3);
        assertEquals("no runs yet", s.summary());
        s.add(10);
        s.add(30);
        s.add(20);
        s.add(40); // drops 10
        assertEquals(3, s.count());
        assertEquals(40.0, s.last(), 0);
        assertEquals(30.0, s.median(), 0);
        assertEquals(30.0, s.mean(), 1e-12);
        assertEquals("40.0 ms (median 30.0 ms over 3 runs)", s.summary());
    }
}
