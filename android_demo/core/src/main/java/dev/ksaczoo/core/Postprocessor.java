package dev.ksaczoo.core;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;

/** From the model's output to a label map over the original image. */
public final class Postprocessor {
    private Postprocessor() {}

    /**
     * Arg-max over the class axis of NHWC logits; ties go to the lowest class index (as numpy's
     * {@code argmax}), NaN scores never win.
     *
     * @param logits {@code pixels * numClasses} floats, class axis last
     */
    public static int[] argmax(float[] logits, int pixels, int numClasses) {
        checkLength(logits.length, pixels, numClasses);
        int[] labels = new int[pixels];
        for (int p = 0, base = 0; p < pixels; p++, base += numClasses) {
            int best = 0;
            float bestScore = logits[base];
            for (int c = 1; c < numClasses; c++) {
                float v = logits[base + c];
                if (v > bestScore || (Float.isNaN(bestScore) && !Float.isNaN(v))) {
                    bestScore = v;
                    best = c;
                }
            }
            labels[p] = best;
        }
        return labels;
    }

    /** Arg-max over float32 logits in a buffer, read by absolute index from 0. */
    public static int[] argmax(FloatBuffer logits, int pixels, int numClasses) {
        checkLength(logits.limit(), pixels, numClasses);
        float[] copy = new float[pixels * numClasses];
        for (int i = 0; i < copy.length; i++) {
            copy[i] = logits.get(i);
        }
        return argmax(copy, pixels, numClasses);
    }

    private static void checkLength(int length, int pixels, int numClasses) {
        if (numClasses < 1 || (long) pixels * numClasses != length) {
            throw new IllegalArgumentException("logits: expected " + pixels + " pixels x " + numClasses
                    + " classes = " + ((long) pixels * numClasses) + " values, got " + length);
        }
    }

    /** Labels from a uint8 [1, H, W] output; values at or above {@code numClasses} are an error. */
    public static int[] labelsFromBytes(byte[] bytes, int numClasses) {
        int[] labels = new int[bytes.length];
        for (int i = 0; i < bytes.length; i++) {
            labels[i] = bytes[i] & 0xFF;
            if (labels[i] >= numClasses) {
                throw new IllegalArgumentException("label " + labels[i] + " at pixel " + i + " is not below num_classes="
                        + numClasses);
            }
        }
        return labels;
    }

    /** Labels from the raw output buffer of a model, whichever kind of output it has. */
    public static int[] labelsFromOutput(ByteBuffer output, ModelDescription metadata) {
        int pixels = metadata.inputHeight() * metadata.inputWidth();
        if (output.capacity() != metadata.outputBytes()) {
            throw new IllegalArgumentException("output buffer has " + output.capacity() + " bytes, the model's "
                    + metadata.output().name().toLowerCase() + " output needs " + metadata.outputBytes());
        }
        if (metadata.output() == ModelDescription.OutputKind.LOGITS) {
            ByteBuffer dup = output.duplicate().order(ByteOrder.nativeOrder()); // duplicate() resets the order
            dup.position(0);
            return argmax(dup.asFloatBuffer(), pixels, metadata.numClasses());
        }
        byte[] bytes = new byte[pixels];
        ByteBuffer dup = output.duplicate();
        dup.position(0);
        dup.get(bytes);
        return labelsFromBytes(bytes, metadata.numClasses());
    }

    /**
     * The label of each pixel of the original image: nearest-neighbour from the letterboxed content
     * region of the model's label map (the padding is dropped).
     *
     * @param labels model-resolution labels, {@code box.inputHeight * box.inputWidth}
     * @return {@code box.sourceHeight * box.sourceWidth} labels
     */
    public static int[] labelsForImage(int[] labels, Letterbox box) {
        if (labels.length != box.inputWidth * box.inputHeight) {
            throw new IllegalArgumentException("labels: expected " + box.inputWidth * box.inputHeight + ", got "
                    + labels.length);
        }
        int[] xs = nearest(box.sourceWidth, box.contentWidth);
        int[] ys = nearest(box.sourceHeight, box.contentHeight);
        int[] out = new int[box.sourceWidth * box.sourceHeight];
        for (int y = 0; y < box.sourceHeight; y++) {
            int row = ys[y] * box.inputWidth;
            for (int x = 0; x < box.sourceWidth; x++) {
                out[y * box.sourceWidth + x] = labels[row + xs[x]];
            }
        }
        return out;
    }

    /** For each of {@code dstSize} pixels, the nearest of {@code srcSize} (centre alignment). */
    static int[] nearest(int dstSize, int srcSize) {
        int[] idx = new int[dstSize];
        for (int d = 0; d < dstSize; d++) {
            int s = (int) Math.floor((d + 0.5) * srcSize / dstSize);
            idx[d] = Math.min(s, srcSize - 1);
        }
        return idx;
    }

    /** Pixel count per class, {@code numClasses} long; labels outside the range are an error. */
    public static int[] histogram(int[] labels, int numClasses) {
        int[] counts = new int[numClasses];
        for (int label : labels) {
            if (label < 0 || label >= numClasses) {
                throw new IllegalArgumentException("label " + label + " outside 0.." + (numClasses - 1));
            }
            counts[label]++;
        }
        return counts;
    }
}
