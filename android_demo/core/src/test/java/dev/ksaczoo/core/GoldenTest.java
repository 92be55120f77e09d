package dev.ksaczoo.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.io.File;
import java.io.IOException;
import java.net.URISyntaxException;
import java.net.URL;
import java.nio.charset.Charset;
import java.nio.file.Files;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import org.junit.Assume;
import org.junit.Before;
import org.junit.Test;

/**
 * Compares the core's pre- and post-processing with the golden vectors that
 * {@code android_demo/make_golden.py} wrote from LiteRT in Python.
 *
 * <p>The folder is the system property {@code golden.dir} if set, else {@code golden/} on the test
 * classpath ({@code src/test/resources/golden}). Without it the tests are skipped, saying so.
 */
public class GoldenTest {
    private File dir;
    private Map<String, Object> manifest;
    private ModelDescription metadata;

    @Before
    public void load() throws IOException {
        dir = locate();
        boolean present = dir != null && new File(dir, "golden.json").isFile();
        if (!present) {
            System.out.println("SKIPPED GoldenTest: no golden folder (looked at -Dgolden.dir and classpath golden/);"
                    + " create one with: python android_demo/make_golden.py --model FILE.tflite");
        }
        Assume.assumeTrue("no golden folder; run android_demo/make_golden.py", present);
        manifest = Json.parseObject(new String(read("golden.json"), Charset.forName("UTF-8")));
        metadata = ModelDescription.fromMap(Json.getObject(manifest, "metadata"));
    }

    private static File locate() {
        String prop = System.getProperty("golden.dir");
        if (prop != null && !prop.isEmpty()) {
            return new File(prop);
        }
        URL url = GoldenTest.class.getClassLoader().getResource("golden/golden.json");
        if (url == null || !"file".equals(url.getProtocol())) {
            return null;
        }
        try {
            return new File(url.toURI()).getParentFile();
        } catch (URISyntaxException e) {
            return null;
        }
    }

    private byte[] read(String name) throws IOException {
        return Files.readAllBytes(new File(dir, name).toPath());
    }

    private static int[] shape(Map<String, Object> section) {
        List<Object> list = Json.getArray(section, "shape");
        int[] out = new int[list.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = Json.asInt(list.get(i), "shape[" + i + "]");
        }
        return out;
    }

    @Test
    public void preprocessingMatchesPython() throws IOException {
        Map<String, Object> image = Json.getObject(manifest, "image");
        int w = Json.getInt(image, "width");
        int h = Json.getInt(image, "height");
        byte[] rgb = read(Json.getString(image, "rgb_u8"));
        Map<String, Object> input = Json.getObject(manifest, "input");
        float[] want = Golden.float32LE(read(Json.getString(input, "f32")));

        Preprocessor pre = new Preprocessor(metadata);
        float[] got = new float[pre.inputLength()];
        Letterbox box = pre.preprocessRgb(rgb, w, h, got);
        List<Object> content = Json.getArray(input, "content_size");
        assertEquals(Json.asInt(content.get(0), "content_size[0]"), box.contentHeight);
        assertEquals(Json.asInt(content.get(1), "content_size[1]"), box.contentWidth);
        double diff = Golden.maxAbsDiff(got, want);
        System.out.println(String.format(Locale.US, "GOLDEN preprocessing: %dx%d image -> %s, max |java - python| = %.3g",
                w, h, box, diff));
        assertTrue("preprocessing differs from Python by " + diff, diff <= 1e-6);
    }

    @Test
    public void argmaxMatchesLiteRtLabels() throws IOException {
        Map<String, Object> labelsSection = Json.getObject(manifest, "labels");
        int[] want = Golden.uint8(read(Json.getString(labelsSection, "u8")));
        int[] s = shape(labelsSection);
        assertEquals(metadata.inputHeight(), s[1]);
        assertEquals(metadata.inputWidth(), s[2]);
        Object logitsSection = manifest.get("logits");
        if (logitsSection == null) {
            System.out.println("GOLDEN labels: model outputs labels; checking the uint8 reader only");
            byte[] raw = read(Json.getString(labelsSection, "u8"));
            assertArrayEquals(want, Postprocessor.labelsFromBytes(raw, metadata.numClasses()));
            return;
        }
        @SuppressWarnings("unchecked")
        Map<String, Object> logitsMap = (Map<String, Object>) logitsSection;
        float[] logits = Golden.float32LE(read(Json.getString(logitsMap, "f32")));
        int pixels = metadata.inputHeight() * metadata.inputWidth();
        int[] got = Postprocessor.argmax(logits, pixels, metadata.numClasses());
        double equal = Golden.fractionEqual(got, want);
        int[] counts = Postprocessor.histogram(want, metadata.numClasses());
        int present = 0;
        for (int c : counts) if (c > 0) present++;
        System.out.println(String.format(Locale.US,
                "GOLDEN labels: java arg-max vs LiteRT (Python) labels, %d pixels, %d classes present, fraction equal = %.6f",
                pixels, present, equal));
        assertEquals("fraction of equal labels", 1.0, equal, 0.0);
    }

    @Test
    public void paletteMatchesPython() {
        List<Object> palette = Json.getArray(manifest, "palette");
        int[] mine = Palette.voc(palette.size());
        for (int i = 0; i < palette.size(); i++) {
            @SuppressWarnings("unchecked")
            List<Object> c = (List<Object>) palette.get(i);
            int want = 0xFF000000 | (Json.asInt(c.get(0), "r") << 16) | (Json.asInt(c.get(1), "g") << 8) | Json.asInt(c.get(2), "b");
            assertEquals("colour of class " + i, want, mine[i]);
        }
        System.out.println("GOLDEN palette: " + palette.size() + " colours equal");
    }
}
