package dev.ksaczoo.core;

/**
 * Turns an RGB image into the model's float32 input: aspect-preserving bilinear resize into the
 * model's input size (see {@link Letterbox}), bottom/right padding with the mean colour (0 after
 * normalisation), then x = (pixel - mean) / std per RGB channel, in NHWC order.
 *
 * <p>The resize samples at pixel centres (like OpenCV's INTER_LINEAR and TF's half_pixel_centers,
 * without anti-aliasing): source = (dst + 0.5) * (src / dst) - 0.5, clamped to the image. The same
 * arithmetic, in double precision, is in {@code android_demo/reference.py}, so the two agree to the
 * last float bit on ordinary inputs.
 */
public final class Preprocessor {
    private final int inputWidth;
    private final int inputHeight;
    private final double[] mean = new double[3];
    private final double[] std = new double[3];

    public Preprocessor(ModelDescription metadata) {
        this.inputWidth = metadata.inputWidth();
        this.inputHeight = metadata.inputHeight();
        float[] m = metadata.mean();
        float[] s = metadata.std();
        for (int c = 0; c < 3; c++) {
            mean[c] = m[c];
            std[c] = s[c];
        }
    }

    /**
     * Preprocesses packed ARGB pixels (Android's {@code Bitmap.getPixels} layout, alpha ignored).
     *
     * @param argb  row-major pixels, {@code width * height} of them
     * @param out   receives {@code inputHeight * inputWidth * 3} floats (NHWC, batch 1)
     * @return where the image landed inside the input
     */
    public Letterbox preprocessArgb(int[] argb, int width, int height, float[] out) {
        checkSize(argb.length, width, height, 1, "ARGB pixels");
        return run(new ArgbSource(argb, width), width, height, out);
    }

    /** Preprocesses interleaved 8-bit RGB bytes (row-major, {@code width * height * 3} of them). */
    public Letterbox preprocessRgb(byte[] rgb, int width, int height, float[] out) {
        checkSize(rgb.length, width, height, 3, "RGB bytes");
        return run(new RgbSource(rgb, width), width, height, out);
    }

    /** Number of floats in the input tensor. */
    public int inputLength() {
        return inputHeight * inputWidth * 3;
    }

    private static void checkSize(int length, int width, int height, int perPixel, String what) {
        if (width < 1 || height < 1 || (long) width * height * perPixel != length) {
            throw new IllegalArgumentException(what + ": expected " + width + "x" + height + "x" + perPixel
                    + " values, got " + length);
        }
    }

    private interface Source {
        /** Channel {@code c} (0 = R) of pixel (x, y), 0..255. */
        int get(int x, int y, int c);
    }

    private static final class ArgbSource implements Source {
        private final int[] px;
        private final int w;

        ArgbSource(int[] px, int w) {
            this.px = px;
            this.w = w;
        }

        @Override
        public int get(int x, int y, int c) {
            return (px[y * w + x] >> (16 - 8 * c)) & 0xFF;
        }
    }

    private static final class RgbSource implements Source {
        private final byte[] px;
        private final int w;

        RgbSource(byte[] px, int w) {
            this.px = px;
            this.w = w;
        }

        @Override
        public int get(int x, int y, int c) {
            return px[(y * w + x) * 3 + c] & 0xFF;
        }
    }

    private Letterbox run(Source src, int width, int height, float[] out) {
        if (out.length != inputLength()) {
            throw new IllegalArgumentException("output array needs " + inputLength() + " floats, got " + out.length);
        }
        Letterbox box = Letterbox.fit(width, height, inputWidth, inputHeight);
        java.util.Arrays.fill(out, 0f); // padding = mean colour = 0 after normalisation
        int[] x0 = new int[box.contentWidth];
        int[] x1 = new int[box.contentWidth];
        double[] fx = new double[box.contentWidth];
        sampling(width, box.contentWidth, x0, x1, fx);
        int[] y0 = new int[box.contentHeight];
        int[] y1 = new int[box.contentHeight];
        double[] fy = new double[box.contentHeight];
        sampling(height, box.contentHeight, y0, y1, fy);
        for (int y = 0; y < box.contentHeight; y++) {
            for (int x = 0; x < box.contentWidth; x++) {
                int base = (y * inputWidth + x) * 3;
                for (int c = 0; c < 3; c++) {
                    double top = (1.0 - fx[x]) * src.get(x0[x], y0[y], c) + fx[x] * src.get(x1[x], y0[y], c);
                    double bottom = (1.0 - fx[x]) * src.get(x0[x], y1[y], c) + fx[x] * src.get(x1[x], y1[y], c);
                    double value = (1.0 - fy[y]) * top + fy[y] * bottom;
                    out[base + c] = (float) ((value - mean[c]) / std[c]);
                }
            }
        }
        return box;
    }

    /** Bilinear sample positions along one axis, half-pixel centres, clamped to the source. */
    static void sampling(int srcSize, int dstSize, int[] i0, int[] i1, double[] frac) {
        double ratio = (double) srcSize / dstSize;
        for (int d = 0; d < dstSize; d++) {
            double s = (d + 0.5) * ratio - 0.5;
            if (s < 0) s = 0;
            if (s > srcSize - 1) s = srcSize - 1;
            int lo = (int) Math.floor(s);
            i0[d] = lo;
            i1[d] = Math.min(lo + 1, srcSize - 1);
            frac[d] = s - lo;
        }
    }
}
