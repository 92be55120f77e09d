package dev.ksaczoo.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Locale;

/** Latencies of the last runs (milliseconds), for the app's status line. */
public final class LatencyStats {
    private final int window;
    private final List<Double> samples = new ArrayList<Double>();

    /** Keeps the last {@code window} samples. */
    public LatencyStats(int window) {
        if (window < 1) {
            throw new IllegalArgumentException("window must be at least 1, got " + window);
        }
        this.window = window;
    }

    public void add(double ms) {
        samples.add(ms);
        if (samples.size() > window) {
            samples.remove(0);
        }
    }

    public void clear() {
        samples.clear();
    }

    public int count() {
        return samples.size();
    }

    public double last() {
        return samples.isEmpty() ? Double.NaN : samples.get(samples.size() - 1);
    }

    public double mean() {
        if (samples.isEmpty()) return Double.NaN;
        double sum = 0;
        for (double s : samples) sum += s;
        return sum / samples.size();
    }

    /** Median (mean of the two middle samples for an even count). */
    public double median() {
        if (samples.isEmpty()) return Double.NaN;
        List<Double> sorted = new ArrayList<Double>(samples);
        Collections.sort(sorted);
        int n = sorted.size();
        return n % 2 == 1 ? sorted.get(n / 2) : (sorted.get(n / 2 - 1) + sorted.get(n / 2)) / 2.0;
    }

    /** "12.3 ms (median 11.9 ms over 5 runs)", or "no runs yet". */
    public String summary() {
        if (samples.isEmpty()) return "no runs yet";
        return String.format(Locale.US, "%.1f ms (median %.1f ms over %d runs)", last(), median(), count());
    }
}
