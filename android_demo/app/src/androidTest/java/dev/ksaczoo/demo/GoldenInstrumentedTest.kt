package dev.ksaczoo.demo

import androidx.test.ext.junit.runners.AndroidJUnit4
import androidx.test.platform.app.InstrumentationRegistry
import dev.ksaczoo.core.Golden
import dev.ksaczoo.core.Json
import dev.ksaczoo.core.Postprocessor
import dev.ksaczoo.core.Preprocessor
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.security.MessageDigest
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test
import org.junit.runner.RunWith

/**
 * On the phone: the model in the app's assets, run by LiteRT on the CPU, gives the label map that
 * LiteRT in Python gave for the same input (golden vectors from `android_demo/make_golden.py`,
 * packaged as test assets under golden/). Run with `./gradlew connectedAndroidTest`.
 */
@RunWith(AndroidJUnit4::class)
class GoldenInstrumentedTest {
    private val testAssets = InstrumentationRegistry.getInstrumentation().context.assets
    private val appContext = InstrumentationRegistry.getInstrumentation().targetContext

    private fun golden(name: String): ByteArray = testAssets.open("golden/$name").use { it.readBytes() }

    @Test
    fun onDeviceLabelsMatchPython() {
        val manifest = Json.parseObject(String(golden("golden.json"), Charsets.UTF_8))
        val modelBytes = appContext.assets.open(LiteRtSegmenter.MODEL_ASSET).use { it.readBytes() }
        val sha = MessageDigest.getInstance("SHA-256").digest(modelBytes).joinToString("") { "%02x".format(it) }
        assertEquals(
            "the golden vectors were made from another model: run make_golden.py with the model prepare_assets.py copied",
            Json.getString(Json.getObject(manifest, "model"), "sha256"), sha,
        )

        LiteRtSegmenter.fromAssets(appContext).use { segmenter ->
            segmenter.configure(threads = 1, useGpu = false)
            val metadata = segmenter.pipeline.metadata()

            // the core's preprocessing of the golden image equals the Python input
            val image = Json.getObject(manifest, "image")
            val want = Golden.float32LE(golden(Json.getString(Json.getObject(manifest, "input"), "f32")))
            val got = FloatArray(want.size)
            Preprocessor(metadata).preprocessRgb(
                golden(Json.getString(image, "rgb_u8")), Json.getInt(image, "width"), Json.getInt(image, "height"), got,
            )
            assertTrue("preprocessing differs from Python", Golden.maxAbsDiff(got, want) <= 1e-6)

            val input = ByteBuffer.allocateDirect(4 * want.size).order(ByteOrder.nativeOrder())
            input.asFloatBuffer().put(want)
            val labels = Postprocessor.labelsFromOutput(segmenter.runRaw(input), metadata)
            val expected = Golden.uint8(golden(Json.getString(Json.getObject(manifest, "labels"), "u8")))
            val equal = Golden.fractionEqual(labels, expected)
            android.util.Log.i("GoldenTest", "on-device vs Python labels: fraction equal = $equal")
            // int8 kernels on ARM and x86 may round a few near-tied pixels differently
            assertTrue("only ${equal * 100}% of labels equal the Python (LiteRT) labels", equal >= 0.99)
        }
    }
}
