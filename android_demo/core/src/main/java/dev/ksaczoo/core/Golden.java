package dev.ksaczoo.core;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * Reading the golden vectors written by {@code android_demo/make_golden.py} (raw little-endian
 * float32 and uint8 files) and comparing label maps.
 */
public final class Golden {
    private Golden() {}

    /** Little-endian float32 values from raw bytes (length must be a multiple of 4). */
    public static float[] float32LE(byte[] raw) {
        if (raw.length % 4 != 0) {
            throw new IllegalArgumentException("float32 data must be a multiple of 4 bytes, got " + raw.length);
        }
        float[] out = new float[raw.length / 4];
        ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(out);
        return out;
    }

    /** Unsigned 8-bit values from raw bytes. */
    public static int[] uint8(byte[] raw) {
        int[] out = new int[raw.length];
        for (int i = 0; i < raw.length; i++) {
            out[i] = raw[i] & 0xFF;
        }
        return out;
    }

    /** Fraction of positions where the two label maps agree (1.0 = identical). */
    public static double fractionEqual(int[] a, int[] b) {
        if (a.length != b.length) {
            throw new IllegalArgumentException("label maps differ in size: " + a.length + " vs " + b.length);
        }
        if (a.length == 0) {
            return 1.0;
        }
        int same = 0;
        for (int i = 0; i < a.length; i++) {
            if (a[i] == b[i]) same++;
        }
        return (double) same / a.length;
    }

    /** Largest absolute difference between two float arrays of equal length. */
    public static double maxAbsDiff(float[] a, float[] b) {
        if (a.length != b.length) {
            throw new IllegalArgumentException("arrays differ in size: " + a.length + " vs " + b.length);
        }
        double worst = 0;
        for (int i = 0; i < a.length; i++) {
            double d = Math.abs((double) a[i] - (double) b[i]);
            if (d > worst || Double.isNaN(d)) worst = d;
        }
        return worst;
    }
}
