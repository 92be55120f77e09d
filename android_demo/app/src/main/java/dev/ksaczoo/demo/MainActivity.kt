package dev.ksaczoo.demo

import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.graphics.ImageDecoder
import android.net.Uri
import android.os.Build
import android.os.Bundle
import android.widget.Button
import android.widget.ImageView
import android.widget.SeekBar
import android.widget.TextView
import android.widget.Toast
import androidx.activity.result.contract.ActivityResultContracts
import androidx.appcompat.app.AppCompatActivity
import com.google.android.material.materialswitch.MaterialSwitch
import dev.ksaczoo.core.LatencyStats
import java.io.IOException
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors

/**
 * Pick a gallery image or take a photo; see the class overlay, the model call's latency and the
 * classes found. CPU threads and the GPU delegate can be switched at run time.
 *
 * Display and LiteRT only: everything else goes through the core module (via [LiteRtSegmenter]).
 */
class MainActivity : AppCompatActivity() {
    private val worker: ExecutorService = Executors.newSingleThreadExecutor()
    private var segmenter: LiteRtSegmenter? = null
    private var lastImage: Bitmap? = null
    private val latency = LatencyStats(20)

    private lateinit var imageView: ImageView
    private lateinit var latencyView: TextView
    private lateinit var legendView: TextView
    private lateinit var modelInfo: TextView
    private lateinit var threadsLabel: TextView
    private lateinit var threadsBar: SeekBar
    private lateinit var gpuSwitch: MaterialSwitch

    private val pickImage = registerForActivityResult(ActivityResultContracts.GetContent()) { uri: Uri? ->
        uri?.let { decode(it)?.let(::segment) }
    }
    private val takePhoto = registerForActivityResult(ActivityResultContracts.TakePicturePreview()) { bitmap: Bitmap? ->
        bitmap?.let(::segment)
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        imageView = findViewById(R.id.image)
        latencyView = findViewById(R.id.latency)
        legendView = findViewById(R.id.legend)
        modelInfo = findViewById(R.id.model_info)
        threadsLabel = findViewById(R.id.threads_label)
        threadsBar = findViewById(R.id.threads)
        gpuSwitch = findViewById(R.id.use_gpu)

        findViewById<Button>(R.id.pick).setOnClickListener { pickImage.launch("image/*") }
        findViewById<Button>(R.id.camera).setOnClickListener { takePhoto.launch(null) }
        threadsBar.progress = DEFAULT_THREADS - 1
        threadsLabel.text = getString(R.string.threads, DEFAULT_THREADS)
        threadsBar.setOnSeekBarChangeListener(object : SeekBar.OnSeekBarChangeListener {
            override fun onProgressChanged(bar: SeekBar, progress: Int, fromUser: Boolean) {
                threadsLabel.text = getString(R.string.threads, progress + 1)
            }

            override fun onStartTrackingTouch(bar: SeekBar) = Unit
            override fun onStopTrackingTouch(bar: SeekBar) = reconfigure()
        })
        gpuSwitch.setOnCheckedChangeListener { _, _ -> reconfigure() }

        worker.execute {
            try {
                val loaded = LiteRtSegmenter.fromAssets(this)
                val note = loaded.configure(DEFAULT_THREADS, useGpu = false)
                segmenter = loaded
                runOnUiThread {
                    modelInfo.text = loaded.pipeline.metadata().toString()
                    note?.let { Toast.makeText(this, it, Toast.LENGTH_LONG).show() }
                }
            } catch (e: IOException) {
                runOnUiThread { modelInfo.text = getString(R.string.no_model) }
            } catch (e: RuntimeException) {
                runOnUiThread { modelInfo.text = "Cannot load the model: ${e.message}" }
            }
        }
    }

    private fun reconfigure() {
        val threads = threadsBar.progress + 1
        val gpu = gpuSwitch.isChecked
        worker.execute {
            val current = segmenter ?: return@execute
            val note = current.configure(threads, gpu)
            latency.clear()
            runOnUiThread {
                note?.let {
                    Toast.makeText(this, it, Toast.LENGTH_LONG).show()
                    gpuSwitch.isChecked = current.gpuActive
                }
            }
            lastImage?.let { segment(it) }
        }
    }

    private fun decode(uri: Uri): Bitmap? = try {
        if (Build.VERSION.SDK_INT >= 28) {
            ImageDecoder.decodeBitmap(ImageDecoder.createSource(contentResolver, uri)) { decoder, _, _ ->
                decoder.allocator = ImageDecoder.ALLOCATOR_SOFTWARE // pixels must be readable
            }
        } else {
            contentResolver.openInputStream(uri)?.use { BitmapFactory.decodeStream(it) }
        }
    } catch (e: IOException) {
        Toast.makeText(this, "Cannot read the image: ${e.message}", Toast.LENGTH_LONG).show()
        null
    }

    private fun segment(bitmap: Bitmap) {
        lastImage = bitmap
        worker.execute {
            val current = segmenter ?: return@execute
            val display = limitSize(bitmap)
            val outcome = current.segment(display, OVERLAY_ALPHA)
            latency.add(outcome.latencyMs)
            val overlay = Bitmap.createBitmap(outcome.result.overlay, outcome.width, outcome.height, Bitmap.Config.ARGB_8888)
            val accelerator = if (current.gpuActive) "GPU" else "CPU x${current.threads}"
            val summary = "$accelerator: ${latency.summary()}"
            val legend = outcome.result.legend.joinToString("  ")
            runOnUiThread {
                imageView.setImageBitmap(overlay)
                latencyView.text = summary
                legendView.text = legend
            }
        }
    }

    /** Display only: large photos are shown (and overlaid) at most MAX_SIDE pixels on a side. */
    private fun limitSize(bitmap: Bitmap): Bitmap {
        val side = maxOf(bitmap.width, bitmap.height)
        if (side <= MAX_SIDE) return bitmap
        val f = MAX_SIDE.toFloat() / side
        return Bitmap.createScaledBitmap(bitmap, (bitmap.width * f).toInt().coerceAtLeast(1), (bitmap.height * f).toInt().coerceAtLeast(1), true)
    }

    override fun onDestroy() {
        worker.execute { segmenter?.close() }
        worker.shutdown()
        super.onDestroy()
    }

    companion object {
        private const val DEFAULT_THREADS = 4
        private const val OVERLAY_ALPHA = 0.5f
        private const val MAX_SIDE = 1024
    }
}
