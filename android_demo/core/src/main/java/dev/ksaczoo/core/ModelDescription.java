package dev.ksaczoo.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;

/**
 * The model description ({@code ModelDescription}) that the exporter embeds in a {@code .tflite} file
 * (metadata entry {@code ksac_zoo_description}) and that {@code android_demo/prepare_assets.py} writes
 * beside it as {@code model.json}. Its format is {@code ksac_runtime/model_description.schema.json};
 * {@link DescriptionSchema} checks a description against that file.
 *
 * <p>Versions: files written before versions existed carry no {@code version} field and read as
 * version 1 (the same fields); version 2 ({@link #VERSION}) carries {@code "version": 2}. A newer
 * version is refused with an error naming it, so that an old app never misreads a newer format.
 *
 * <p>Fields read: {@code input_size} ([height, width] or one side), {@code normalization}
 * ({@code mean}, {@code std}: three numbers or one each, x = (pixel - mean) / std on RGB),
 * {@code num_classes} and/or {@code label_names}, {@code output} ("logits" = float32 [1,H,W,C],
 * "labels" = uint8 [1,H,W]; "logits" when absent), and optional {@code name}, {@code precision}.
 *
 * <p>Example: {@code ModelDescription m = ModelDescription.fromJson(text); int h = m.inputHeight();}
 */
public final class ModelDescription {

    /** The newest description version this code reads (and the one the exporter writes). */
    public static final int VERSION = 2;

    /** What the model's single output holds. */
    public enum OutputKind {
        /** float32 [1, H, W, C] class scores; the app takes the arg-max. */
        LOGITS,
        /** uint8 [1, H, W] class indices, arg-max done inside the model. */
        LABELS
    }

    private final int version;
    private final String name;
    private final String precision;
    private final int inputHeight;
    private final int inputWidth;
    private final float[] mean;
    private final float[] std;
    private final List<String> labelNames;
    private final OutputKind output;

    /** Builds a description directly (tests, or apps with a model without metadata), at {@link #VERSION}. */
    public ModelDescription(String name, String precision, int inputHeight, int inputWidth, float[] mean, float[] std,
                         List<String> labelNames, OutputKind output) {
        this(VERSION, name, precision, inputHeight, inputWidth, mean, std, labelNames, output);
    }

    private ModelDescription(int version, String name, String precision, int inputHeight, int inputWidth,
                             float[] mean, float[] std, List<String> labelNames, OutputKind output) {
        if (inputHeight < 1 || inputWidth < 1) {
            throw new IllegalArgumentException("input size must be positive, got " + inputHeight + "x" + inputWidth);
        }
        if (mean.length != 3 || std.length != 3) {
            throw new IllegalArgumentException("normalization mean and std need 3 values (R, G, B)");
        }
        for (float s : std) {
            if (!(s > 0f) || Float.isInfinite(s)) {
                throw new IllegalArgumentException("normalization std values must be positive and finite, got " + s);
            }
        }
        if (labelNames.size() < 2) {
            throw new IllegalArgumentException("a segmentation model needs at least 2 classes, got " + labelNames.size());
        }
        this.version = version;
        this.name = name;
        this.precision = precision;
        this.inputHeight = inputHeight;
        this.inputWidth = inputWidth;
        this.mean = mean.clone();
        this.std = std.clone();
        this.labelNames = Collections.unmodifiableList(new ArrayList<String>(labelNames));
        this.output = output;
    }

    /** Parses the description's JSON text; errors name the offending field. */
    public static ModelDescription fromJson(String json) {
        return fromMap(Json.parseObject(json));
    }

    /**
     * Reads the description from an already parsed JSON object.
     *
     * @throws Json.JsonException a missing or malformed field (named), or a {@code version} that is not
     *     a whole number or is newer than {@link #VERSION} ("model description version 3 is newer than
     *     this app reads (up to 2)")
     */
    public static ModelDescription fromMap(Map<String, Object> obj) {
        // Checked first and reported as is: a newer format may have changed any other field.
        int version = readVersion(obj);
        try {
            int[] size = readInputSize(Json.require(obj, "input_size"));
            Map<String, Object> norm = Json.getObject(obj, "normalization");
            float[] mean = readTriple(Json.require(norm, "mean"), "normalization.mean");
            float[] std = readTriple(Json.require(norm, "std"), "normalization.std");
            List<String> labels = readLabels(obj);
            String outputText = Json.optString(obj, "output", "logits");
            OutputKind output;
            if ("logits".equals(outputText)) {
                output = OutputKind.LOGITS;
            } else if ("labels".equals(outputText)) {
                output = OutputKind.LABELS;
            } else {
                throw new Json.JsonException("\"output\" must be \"logits\" or \"labels\", got \"" + outputText + "\"");
            }
            return new ModelDescription(version, Json.optString(obj, "name", "model"),
                    Json.optString(obj, "precision", "unknown"), size[0], size[1], mean, std, labels, output);
        } catch (IllegalArgumentException e) {
            throw new Json.JsonException("bad model description: " + e.getMessage());
        } catch (Json.JsonException e) {
            throw new Json.JsonException("bad model description: " + e.getMessage());
        }
    }

    /** The description's format version: 1 when {@code version} is absent (files from before versions). */
    private static int readVersion(Map<String, Object> obj) {
        if (!obj.containsKey("version")) {
            return 1;
        }
        Object value = obj.get("version");
        if (!(value instanceof Double)) {
            throw new Json.JsonException("model description \"version\" must be a whole number, got "
                    + Json.typeName(value));
        }
        double v = (Double) value;
        if (v != Math.rint(v) || v < 1) {
            throw new Json.JsonException("model description \"version\" must be a whole number from 1, got " + v);
        }
        if (v > VERSION) {
            String shown = v > Long.MAX_VALUE ? String.valueOf(v) : String.valueOf((long) v);
            throw new Json.JsonException("model description version " + shown
                    + " is newer than this app reads (up to " + VERSION + ")");
        }
        return (int) v;
    }

    private static int[] readInputSize(Object value) {
        if (value instanceof Double) {
            int side = Json.asInt(value, "input_size");
            return new int[] {side, side};
        }
        if (!(value instanceof List) || ((List<?>) value).size() != 2) {
            throw new Json.JsonException("\"input_size\" must be [height, width] or one number");
        }
        List<?> list = (List<?>) value;
        return new int[] {Json.asInt(list.get(0), "input_size[0]"), Json.asInt(list.get(1), "input_size[1]")};
    }

    private static float[] readTriple(Object value, String what) {
        if (value instanceof Double) {
            float v = (float) Json.asDouble(value, what);
            return new float[] {v, v, v};
        }
        if (!(value instanceof List) || ((List<?>) value).size() != 3) {
            throw new Json.JsonException("\"" + what + "\" must be 3 numbers (R, G, B) or one number");
        }
        List<?> list = (List<?>) value;
        float[] out = new float[3];
        for (int i = 0; i < 3; i++) {
            out[i] = (float) Json.asDouble(list.get(i), what + "[" + i + "]");
        }
        return out;
    }

    private static List<String> readLabels(Map<String, Object> obj) {
        List<String> names = obj.get("label_names") == null ? null : Json.asStringList(obj.get("label_names"), "label_names");
        if (obj.get("num_classes") == null) {
            if (names == null) {
                throw new Json.JsonException("needs \"num_classes\" or \"label_names\"");
            }
            return names;
        }
        int n = Json.getInt(obj, "num_classes");
        if (names == null) {
            List<String> generated = new ArrayList<String>();
            for (int i = 0; i < n; i++) {
                generated.add("class_" + i);
            }
            return generated;
        }
        if (names.size() != n) {
            throw new Json.JsonException("\"label_names\" has " + names.size() + " names for num_classes=" + n);
        }
        return names;
    }

    /** Throws IllegalStateException unless the model's input tensor shape is [1, H, W, 3]. */
    public void checkInputShape(int[] shape) {
        int[] want = {1, inputHeight, inputWidth, 3};
        if (!java.util.Arrays.equals(shape, want)) {
            throw new IllegalStateException("model input shape " + java.util.Arrays.toString(shape)
                    + " does not match its description " + java.util.Arrays.toString(want));
        }
    }

    /** Throws IllegalStateException unless the output tensor shape matches {@link #output()}. */
    public void checkOutputShape(int[] shape) {
        int[] want = output == OutputKind.LOGITS
                ? new int[] {1, inputHeight, inputWidth, numClasses()}
                : new int[] {1, inputHeight, inputWidth};
        if (!java.util.Arrays.equals(shape, want)) {
            throw new IllegalStateException("model output shape " + java.util.Arrays.toString(shape)
                    + " does not match its description (" + output.name().toLowerCase() + ") "
                    + java.util.Arrays.toString(want));
        }
    }

    /** The format version the description was read as: 1 (no {@code version} field) or 2. */
    public int version() { return version; }
    public String name() { return name; }
    public String precision() { return precision; }
    public int inputHeight() { return inputHeight; }
    public int inputWidth() { return inputWidth; }
    /** Per-channel (R, G, B) mean, a copy. */
    public float[] mean() { return mean.clone(); }
    /** Per-channel (R, G, B) std, a copy. */
    public float[] std() { return std.clone(); }
    public List<String> labelNames() { return labelNames; }
    public int numClasses() { return labelNames.size(); }
    public OutputKind output() { return output; }

    /** Bytes of the output tensor: float32 logits or uint8 labels. */
    public int outputBytes() {
        int pixels = inputHeight * inputWidth;
        return output == OutputKind.LOGITS ? 4 * pixels * numClasses() : pixels;
    }

    @Override
    public String toString() {
        return name + " (" + precision + ", " + inputHeight + "x" + inputWidth + ", " + numClasses() + " classes, "
                + output.name().toLowerCase() + ")";
    }
}
