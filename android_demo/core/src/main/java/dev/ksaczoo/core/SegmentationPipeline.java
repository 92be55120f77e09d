package dev.ksaczoo.core;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * Everything the app does around one model call, driven by the model's metadata:
 * {@link #prepare} an image into the input buffer, let the runtime fill {@link #newOutputBuffer()},
 * then {@link #finish} into labels, an overlay and a legend.
 *
 * <pre>
 * SegmentationPipeline pipeline = new SegmentationPipeline(ModelDescription.fromJson(json));
 * ByteBuffer input = pipeline.newInputBuffer(), output = pipeline.newOutputBuffer();
 * Letterbox box = pipeline.prepare(argb, width, height, input);
 * interpreter.run(input, output);          // the only runtime call
 * SegmentationPipeline.Result r = pipeline.finish(output, box, argb, 0.5f);
 * </pre>
 */
public final class SegmentationPipeline {
    private final ModelDescription metadata;
    private final Preprocessor preprocessor;
    private final int[] palette;
    private final float[] scratch;

    public SegmentationPipeline(ModelDescription metadata) {
        this.metadata = metadata;
        this.preprocessor = new Preprocessor(metadata);
        this.palette = Palette.voc(Math.max(256, metadata.numClasses()));
        this.scratch = new float[preprocessor.inputLength()];
    }

    public ModelDescription metadata() {
        return metadata;
    }

    /** A direct, native-order buffer for the float32 [1, H, W, 3] input. */
    public ByteBuffer newInputBuffer() {
        return ByteBuffer.allocateDirect(4 * preprocessor.inputLength()).order(ByteOrder.nativeOrder());
    }

    /** A direct, native-order buffer for the output (float32 logits or uint8 labels). */
    public ByteBuffer newOutputBuffer() {
        return ByteBuffer.allocateDirect(metadata.outputBytes()).order(ByteOrder.nativeOrder());
    }

    /** Preprocesses ARGB pixels into {@code input} (rewound, ready for the runtime). */
    public synchronized Letterbox prepare(int[] argb, int width, int height, ByteBuffer input) {
        Letterbox box = preprocessor.preprocessArgb(argb, width, height, scratch);
        if (input.capacity() != 4 * scratch.length) {
            throw new IllegalArgumentException("input buffer has " + input.capacity() + " bytes, needs " + 4 * scratch.length);
        }
        input.order(ByteOrder.nativeOrder());
        input.clear();
        input.asFloatBuffer().put(scratch);
        input.rewind();
        return box;
    }

    /** What one image came to. */
    public static final class Result {
        /** Labels at the model's input resolution, padding included ({@code H * W}). */
        public final int[] modelLabels;
        /** Labels over the original image ({@code sourceWidth * sourceHeight}). */
        public final int[] imageLabels;
        /** The image with class colours blended in (opaque ARGB, original size). */
        public final int[] overlay;
        /** Lines like "person 23.4%", largest first, for classes present in the image. */
        public final List<String> legend;

        Result(int[] modelLabels, int[] imageLabels, int[] overlay, List<String> legend) {
            this.modelLabels = modelLabels;
            this.imageLabels = imageLabels;
            this.overlay = overlay;
            this.legend = legend;
        }
    }

    /**
     * Turns the runtime's output into labels, overlay and legend.
     *
     * @param alpha overlay opacity in [0, 1]; class 0 (background) is left uncoloured
     */
    public Result finish(ByteBuffer output, Letterbox box, int[] argb, float alpha) {
        int[] modelLabels = Postprocessor.labelsFromOutput(output, metadata);
        int[] imageLabels = Postprocessor.labelsForImage(modelLabels, box);
        int[] overlay = Overlay.blend(argb, imageLabels, palette, alpha, 0);
        return new Result(modelLabels, imageLabels, overlay, legend(imageLabels));
    }

    /** The colour of class {@code label} as opaque ARGB (for a legend swatch). */
    public int colourOf(int label) {
        return palette[label];
    }

    private List<String> legend(int[] imageLabels) {
        int[] counts = Postprocessor.histogram(imageLabels, metadata.numClasses());
        List<Integer> present = new ArrayList<Integer>();
        for (int c = 0; c < counts.length; c++) {
            if (counts[c] > 0) present.add(c);
        }
        final int[] k = counts;
        java.util.Collections.sort(present, new java.util.Comparator<Integer>() {
            @Override
            public int compare(Integer a, Integer b) {
                return k[b] != k[a] ? (k[b] > k[a] ? 1 : -1) : a.compareTo(b);
            }
        });
        List<String> lines = new ArrayList<String>();
        for (int c : present) {
            lines.add(String.format(Locale.US, "%s %.1f%%", metadata.labelNames().get(c), 100.0 * counts[c] / imageLabels.length));
        }
        return lines;
    }
}
