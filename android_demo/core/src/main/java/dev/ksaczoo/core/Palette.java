package dev.ksaczoo.core;

/**
 * The PASCAL VOC colour map: class i gets the colour whose bits interleave the bits of i
 * (bit 0 of i to red, bit 1 to green, bit 2 to blue, most significant colour bits first).
 * Class 0 is black, 1 is (128, 0, 0), 2 is (0, 128, 0), 15 (person) is (192, 128, 128).
 */
public final class Palette {
    private Palette() {}

    /** {@code n} colours as opaque packed ARGB ints. */
    public static int[] voc(int n) {
        if (n < 0) {
            throw new IllegalArgumentException("palette size must not be negative, got " + n);
        }
        int[] colours = new int[n];
        for (int i = 0; i < n; i++) {
            int r = 0, g = 0, b = 0;
            int c = i;
            for (int j = 0; j < 8; j++) {
                r |= ((c >> 0) & 1) << (7 - j);
                g |= ((c >> 1) & 1) << (7 - j);
                b |= ((c >> 2) & 1) << (7 - j);
                c >>= 3;
            }
            colours[i] = 0xFF000000 | (r << 16) | (g << 8) | b;
        }
        return colours;
    }

    /** Each label's colour (opaque ARGB); a label outside the palette is an error. */
    public static int[] colorize(int[] labels, int[] palette) {
        int[] out = new int[labels.length];
        for (int i = 0; i < labels.length; i++) {
            int label = labels[i];
            if (label < 0 || label >= palette.length) {
                throw new IllegalArgumentException("label " + label + " at pixel " + i + " has no colour (palette of "
                        + palette.length + ")");
            }
            out[i] = palette[label];
        }
        return out;
    }
}
