package dev.ksaczoo.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;

import java.nio.ByteBuffer;
import java.nio.FloatBuffer;
import java.util.Arrays;
import org.junit.Test;

/** The flow the app follows, with a fake "runtime" that labels by the input's red channel. */
public class SegmentationPipelineTest {

    @Test
    public void prepareRunFinish() {
        ModelDescription m = ModelDescription.fromJson("{\"name\": \"fake\", \"input_size\": [4, 4],"
                + " \"normalization\": {\"mean\": [127.5, 127.5, 127.5], \"std\": [127.5, 127.5, 127.5]},"
                + " \"label_names\": [\"background\", \"red\"], \"output\": \"logits\"}");
        SegmentationPipeline pipeline = new SegmentationPipeline(m);
        ByteBuffer input = pipeline.newInputBuffer();
        ByteBuffer output = pipeline.newOutputBuffer();
        // 8x4 image: left half red, right half black
        int w = 8, h = 4;
        int[] argb = new int[w * h];
        for (int y = 0; y < h; y++) {
            for (int x = 0; x < w; x++) {
                argb[y * w + x] = x < 4 ? 0xFFFF0000 : 0xFF000000;
            }
        }
        Letterbox box = pipeline.prepare(argb, w, h, input);
        assertEquals(0, input.position());
        assertEquals(2, box.contentHeight);

        // fake runtime: logit[red] = R channel, logit[background] = 0
        FloatBuffer in = input.asFloatBuffer();
        FloatBuffer out = output.asFloatBuffer();
        for (int p = 0; p < 16; p++) {
            out.put(2 * p, 0f);
            out.put(2 * p + 1, in.get(3 * p));
        }
        SegmentationPipeline.Result r = pipeline.finish(output, box, argb, 0.5f);
        int[] wantModel = {1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
        // padding rows are 0 after normalisation: tie -> background
        assertArrayEquals(wantModel, r.modelLabels);
        assertEquals(w * h, r.imageLabels.length);
        assertEquals(1, r.imageLabels[0]);
        assertEquals(0, r.imageLabels[w - 1]);
        assertEquals(0xFFFF0000 & 0xFFFFFFFF, argb[0]);
        assertEquals(0xFFC00000, r.overlay[0]); // (255 + 128) / 2 = 191.5 -> 192
        assertEquals(0xFF000000, r.overlay[w - 1]); // background uncoloured
        assertEquals(Arrays.asList("background 50.0%", "red 50.0%"), r.legend);
    }
}
