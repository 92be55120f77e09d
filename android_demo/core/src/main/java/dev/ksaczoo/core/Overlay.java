package dev.ksaczoo.core;

/**
 * Alpha-blends class colours over an image: out = round(alpha * colour + (1 - alpha) * pixel) per
 * RGB channel (round half up), output opaque. Pixels whose label is {@code transparentLabel} keep
 * the image (use -1 to colour every class; 0 leaves the VOC background uncoloured).
 */
public final class Overlay {
    private Overlay() {}

    public static int[] blend(int[] argb, int[] labels, int[] palette, float alpha, int transparentLabel) {
        if (argb.length != labels.length) {
            throw new IllegalArgumentException("image has " + argb.length + " pixels but the label map " + labels.length);
        }
        if (!(alpha >= 0f && alpha <= 1f)) {
            throw new IllegalArgumentException("alpha must be in [0, 1], got " + alpha);
        }
        int[] out = new int[argb.length];
        for (int i = 0; i < argb.length; i++) {
            int label = labels[i];
            if (label == transparentLabel) {
                out[i] = argb[i] | 0xFF000000;
                continue;
            }
            if (label < 0 || label >= palette.length) {
                throw new IllegalArgumentException("label " + label + " at pixel " + i + " has no colour");
            }
            int colour = palette[label];
            int px = argb[i];
            int r = mix((colour >> 16) & 0xFF, (px >> 16) & 0xFF, alpha);
            int g = mix((colour >> 8) & 0xFF, (px >> 8) & 0xFF, alpha);
            int b = mix(colour & 0xFF, px & 0xFF, alpha);
            out[i] = 0xFF000000 | (r << 16) | (g << 8) | b;
        }
        return out;
    }

    static int mix(int colour, int pixel, float alpha) {
        double v = alpha * (double) colour + (1.0 - alpha) * (double) pixel;
        int rounded = (int) Math.floor(v + 0.5);
        return rounded < 0 ? 0 : (rounded > 255 ? 255 : rounded);
    }
}
