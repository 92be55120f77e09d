package dev.ksaczoo.core;

/**
 * Where an image lands inside the model input: scaled to fit keeping its aspect ratio, placed at the
 * top-left, padded at the bottom and right. The Python side ({@code android_demo/reference.py})
 * computes the same numbers.
 */
public final class Letterbox {
    public final int sourceWidth;
    public final int sourceHeight;
    public final int inputWidth;
    public final int inputHeight;
    /** Width of the resized image inside the input (the rest, to the right, is padding). */
    public final int contentWidth;
    /** Height of the resized image inside the input (the rest, below, is padding). */
    public final int contentHeight;
    /** The scale factor min(inputW / sourceW, inputH / sourceH). */
    public final double scale;

    private Letterbox(int sw, int sh, int iw, int ih, int cw, int ch, double scale) {
        this.sourceWidth = sw;
        this.sourceHeight = sh;
        this.inputWidth = iw;
        this.inputHeight = ih;
        this.contentWidth = cw;
        this.contentHeight = ch;
        this.scale = scale;
    }

    /** Fits a {@code sourceWidth x sourceHeight} image into a {@code inputWidth x inputHeight} input. */
    public static Letterbox fit(int sourceWidth, int sourceHeight, int inputWidth, int inputHeight) {
        if (sourceWidth < 1 || sourceHeight < 1) {
            throw new IllegalArgumentException("image size must be positive, got " + sourceWidth + "x" + sourceHeight);
        }
        if (inputWidth < 1 || inputHeight < 1) {
            throw new IllegalArgumentException("input size must be positive, got " + inputWidth + "x" + inputHeight);
        }
        double scale = Math.min((double) inputWidth / sourceWidth, (double) inputHeight / sourceHeight);
        int cw = clamp((int) Math.floor(sourceWidth * scale + 0.5), 1, inputWidth);
        int ch = clamp((int) Math.floor(sourceHeight * scale + 0.5), 1, inputHeight);
        return new Letterbox(sourceWidth, sourceHeight, inputWidth, inputHeight, cw, ch, scale);
    }

    static int clamp(int v, int lo, int hi) {
        return v < lo ? lo : (v > hi ? hi : v);
    }

    @Override
    public String toString() {
        return sourceWidth + "x" + sourceHeight + " -> " + contentWidth + "x" + contentHeight + " in "
                + inputWidth + "x" + inputHeight;
    }
}
