package dev.ksaczoo.demo

import android.content.Context
import android.graphics.Bitmap
import android.os.SystemClock
import dev.ksaczoo.core.ModelDescription
import dev.ksaczoo.core.SegmentationPipeline
import java.io.Closeable
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.MappedByteBuffer
import java.nio.channels.FileChannel
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.gpu.CompatibilityList
import org.tensorflow.lite.gpu.GpuDelegate

/**
 * The LiteRT side of the app: loads `model.tflite` and `model.json` from the assets, owns the
 * Interpreter (CPU threads, optional GPU delegate) and runs it. Everything else (preprocessing,
 * arg-max, colours, overlay, legend) is the core module's [SegmentationPipeline].
 */
class LiteRtSegmenter private constructor(
    private val model: MappedByteBuffer,
    val pipeline: SegmentationPipeline,
) : Closeable {

    /** One image's outcome: the core's result, the image size and the model call's latency. */
    class Segmentation(val result: SegmentationPipeline.Result, val width: Int, val height: Int, val latencyMs: Double)

    private var interpreter: Interpreter? = null
    private var gpuDelegate: GpuDelegate? = null
    private val input: ByteBuffer = pipeline.newInputBuffer()
    private val output: ByteBuffer = pipeline.newOutputBuffer()

    /** Threads and accelerator now in use (GPU may have fallen back to CPU). */
    var threads = 0
        private set
    var gpuActive = false
        private set

    /**
     * (Re)creates the Interpreter with [threads] CPU threads and, if [useGpu], the GPU delegate.
     * Returns a note for the user when the GPU was asked for but could not be used, else null.
     */
    @Synchronized
    fun configure(threads: Int, useGpu: Boolean): String? {
        release()
        var note: String? = null
        if (useGpu) {
            try {
                interpreter = createInterpreter(threads, gpu = true)
                gpuActive = true
            } catch (e: Exception) {
                release()
                note = "GPU delegate unavailable (${e.message}); running on CPU"
            }
        }
        if (interpreter == null) {
            interpreter = createInterpreter(threads, gpu = false)
            gpuActive = false
        }
        this.threads = threads
        val metadata = pipeline.metadata()
        val interp = interpreter!!
        metadata.checkInputShape(interp.getInputTensor(0).shape())
        metadata.checkOutputShape(interp.getOutputTensor(0).shape())
        return note
    }

    private fun createInterpreter(threads: Int, gpu: Boolean): Interpreter {
        val options = Interpreter.Options().setNumThreads(threads)
        if (gpu) {
            CompatibilityList().use { compatibility ->
                if (!compatibility.isDelegateSupportedOnThisDevice) {
                    throw IllegalStateException("not supported on this device")
                }
                val delegate = GpuDelegate(compatibility.bestOptionsForThisDevice)
                gpuDelegate = delegate
                options.addDelegate(delegate)
            }
        }
        return Interpreter(model, options)
    }

    /** Segments [bitmap]; [alpha] is the overlay opacity. Call [configure] first. */
    @Synchronized
    fun segment(bitmap: Bitmap, alpha: Float): Segmentation {
        val interp = checkNotNull(interpreter) { "call configure() before segment()" }
        val argb8888 = if (bitmap.config == Bitmap.Config.ARGB_8888) bitmap else bitmap.copy(Bitmap.Config.ARGB_8888, false)
        val width = argb8888.width
        val height = argb8888.height
        val pixels = IntArray(width * height)
        argb8888.getPixels(pixels, 0, width, 0, 0, width, height)

        val box = pipeline.prepare(pixels, width, height, input)
        output.rewind()
        val start = SystemClock.elapsedRealtimeNanos()
        interp.run(input, output)
        val latencyMs = (SystemClock.elapsedRealtimeNanos() - start) / 1e6
        return Segmentation(pipeline.finish(output, box, pixels, alpha), width, height, latencyMs)
    }

    /** Runs the model on an already preprocessed input (the golden test); returns the raw output. */
    @Synchronized
    fun runRaw(preprocessed: ByteBuffer): ByteBuffer {
        val interp = checkNotNull(interpreter) { "call configure() before runRaw()" }
        preprocessed.rewind()
        output.rewind()
        interp.run(preprocessed, output)
        return output
    }

    private fun release() {
        interpreter?.close()
        interpreter = null
        gpuDelegate?.close()
        gpuDelegate = null
    }

    @Synchronized
    override fun close() = release()

    companion object {
        const val MODEL_ASSET = "model.tflite"
        const val METADATA_ASSET = "model.json"

        /** Loads the model and its metadata written by `android_demo/prepare_assets.py`. */
        fun fromAssets(context: Context): LiteRtSegmenter {
            val json = context.assets.open(METADATA_ASSET).bufferedReader(Charsets.UTF_8).use { it.readText() }
            val metadata = ModelDescription.fromJson(json)
            val model = context.assets.openFd(MODEL_ASSET).use { fd ->
                FileInputStream(fd.fileDescriptor).use { stream ->
                    stream.channel.map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
                }
            }
            return LiteRtSegmenter(model, SegmentationPipeline(metadata))
        }
    }
}
