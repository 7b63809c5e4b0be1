package org.tflmcompress.demo

import android.content.Context
import android.content.res.AssetManager
import android.os.Handler
import android.os.Looper
import android.os.SystemClock
import android.util.Log
import com.google.ai.edge.litert.Accelerator
import com.google.ai.edge.litert.CompiledModel
import com.google.ai.edge.litert.TensorBuffer
import com.google.ai.edge.litert.TensorType
import java.io.IOException
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors
import java.util.concurrent.atomic.AtomicReference
import org.tflmcompress.lmcore.Bundle
import org.tflmcompress.lmcore.BundleException
import org.tflmcompress.lmcore.ModelMeta
import org.tflmcompress.lmcore.NextWordPredictor
import org.tflmcompress.lmcore.SignatureCheck
import org.tflmcompress.lmcore.StepModel
import org.tflmcompress.lmcore.Suggestion

/**
 * Owns the LiteRT model of the bundle in the APK's assets and the prediction state.
 *
 * Everything runs on one background thread; results (suggestions with the time spent in the model)
 * go to [listener] on the main thread, so the activity only draws. Tokenizing, LSTM state
 * bookkeeping and top-k are lmcore's ([NextWordPredictor]); this class adds the runtime: the
 * CompiledModel run by signature with the tensor names from model_meta.json, and the accelerator
 * and thread choice.
 */
class LanguageModelHelper(context: Context, private val listener: Listener) {

    enum class AcceleratorChoice(val label: String) {
        CPU("CPU (XNNPACK)"),
        /** Ops the GPU cannot run fall back to the CPU. */
        GPU("GPU + CPU fallback"),
    }

    data class Options(
        val accelerator: AcceleratorChoice = AcceleratorChoice.CPU,
        val numThreads: Int = 2,
        /** Lowercase typed text before lookup (off: as the Python reader, case kept). */
        val lowercase: Boolean = false,
        val numSuggestions: Int = 3,
    )

    /** What is loaded, for the status line. */
    data class ModelInfo(
        val modelFile: String,
        val sizeBytes: Long,
        val quantization: String,
        val method: String,
        val vocabSize: Int,
        val stateSizes: List<Int>,
        val options: Options,
        val loadMs: Double,
    )

    data class Result(
        val text: String,
        /** Best first; never <eos> or <unk>. */
        val suggestions: List<Suggestion>,
        /** The word being typed (suggestions start with it), or "". */
        val partialWord: String,
        /** Step-model runs for this result: 1 per finished word, more after an edit, 0 mid-word. */
        val stepsRun: Int,
        /** Time spent running the step model for this result, ms. */
        val inferenceTimeMs: Double,
        /** Mean time of one step since the model was loaded, ms. */
        val meanStepMs: Double,
        val totalSteps: Long,
    )

    interface Listener {
        fun onModelReady(info: ModelInfo)

        fun onResult(result: Result)

        fun onError(message: String)
    }

    private val assets: AssetManager = context.applicationContext.assets
    private val executor: ExecutorService = Executors.newSingleThreadExecutor()
    private val mainHandler = Handler(Looper.getMainLooper())
    private val pendingText = AtomicReference<String?>(null)
    @Volatile private var closed = false

    // Used on the executor thread only.
    private var session: Session? = null
    private var lastText: String? = null

    /** (Re)loads the bundle with [options]; the last text is predicted again once it is ready. */
    fun load(options: Options) {
        executor.execute {
            closeSession()
            try {
                val opened = openSession(options)
                session = opened
                post { listener.onModelReady(opened.info) }
                lastText?.let { predict(it) }
            } catch (e: BundleException) {
                postError(e.message ?: e.toString())
            } catch (e: Exception) {
                Log.e(TAG, "loading the model failed", e)
                postError("cannot load the model with ${options.accelerator.label}: ${e.message}")
            }
        }
    }

    /**
     * Suggests next words for [text] (the text before the cursor). Calls made while the model is
     * busy collapse into the latest one.
     */
    fun suggest(text: String) {
        pendingText.set(text)
        executor.execute {
            val latest = pendingText.getAndSet(null) ?: return@execute
            predict(latest)
        }
    }

    fun close() {
        closed = true
        executor.execute { closeSession() }
        executor.shutdown()
    }

    private fun predict(text: String) {
        lastText = text
        val current = session ?: return
        val before = current.stepModel.stepNanos
        val prediction =
            try {
                current.predictor.predict(text, current.info.options.numSuggestions)
            } catch (e: Exception) {
                Log.e(TAG, "inference failed", e)
                postError("inference failed: ${e.message}")
                return
            }
        val stepModel = current.stepModel
        val result =
            Result(
                text = text,
                suggestions = prediction.suggestions,
                partialWord = prediction.partialWord,
                stepsRun = prediction.stepsRun,
                inferenceTimeMs = (stepModel.stepNanos - before) / 1e6,
                meanStepMs =
                    if (stepModel.steps == 0L) 0.0 else stepModel.stepNanos / 1e6 / stepModel.steps,
                totalSteps = stepModel.steps,
            )
        post { listener.onResult(result) }
    }

    private fun openSession(options: Options): Session {
        val start = SystemClock.elapsedRealtimeNanos()
        val bundle = Bundle.load({ name -> assets.open(name) }, "assets")
        val meta = bundle.meta
        val compileOptions =
            when (options.accelerator) {
                AcceleratorChoice.CPU -> CompiledModel.Options(Accelerator.CPU)
                AcceleratorChoice.GPU -> CompiledModel.Options(Accelerator.GPU, Accelerator.CPU)
            }
        compileOptions.cpuOptions = CompiledModel.CpuOptions(numThreads = options.numThreads)
        val model = CompiledModel.create(assets, meta.modelFile, compileOptions)
        try {
            SignatureCheck.check(meta, LiteRtShapes(model, meta.signature), meta.modelFile)
            val stepModel = LiteRtStepModel(model, meta)
            val predictor = NextWordPredictor(bundle, stepModel, options.lowercase)
            val info =
                ModelInfo(
                    modelFile = meta.modelFile,
                    sizeBytes = assetSize(meta.modelFile),
                    quantization = meta.quantization,
                    method = meta.method,
                    vocabSize = meta.vocabSize,
                    stateSizes = meta.stateSizes.toList(),
                    options = options,
                    loadMs = (SystemClock.elapsedRealtimeNanos() - start) / 1e6,
                )
            return Session(model, stepModel, predictor, info)
        } catch (e: Exception) {
            model.close()
            throw e
        }
    }

    private fun assetSize(name: String): Long =
        try {
            // Exact for an uncompressed asset (noCompress "tflite").
            assets.openFd(name).use { it.length }
        } catch (e: IOException) {
            assets.open(name).use { stream -> stream.skip(Long.MAX_VALUE) }
        }

    private fun closeSession() {
        session?.close()
        session = null
    }

    private fun post(action: () -> Unit) {
        mainHandler.post { if (!closed) action() }
    }

    private fun postError(message: String) = post { listener.onError(message) }

    private class Session(
        val model: CompiledModel,
        val stepModel: LiteRtStepModel,
        val predictor: NextWordPredictor,
        val info: ModelInfo,
    ) {
        fun close() {
            stepModel.close()
            model.close()
        }
    }

    /** Tensor shapes of the signature as LiteRT reports them, for [SignatureCheck]. */
    private class LiteRtShapes(private val model: CompiledModel, private val signature: String) :
        SignatureCheck.TensorShapes {
        override fun inputShape(name: String): IntArray? =
            shapeOf { model.getInputTensorType(name, signature) }

        override fun outputShape(name: String): IntArray? =
            shapeOf { model.getOutputTensorType(name, signature) }

        private inline fun shapeOf(type: () -> TensorType): IntArray? =
            try {
                type().layout?.dimensions?.toIntArray() ?: SignatureCheck.ANY_SHAPE
            } catch (e: Exception) {
                null // no tensor of that name in the signature
            }
    }

    /**
     * One step of the exported graph through LiteRT: token and states in, logits and states out,
     * every tensor addressed by its signature name from model_meta.json.
     */
    private class LiteRtStepModel(private val model: CompiledModel, meta: ModelMeta) :
        StepModel, AutoCloseable {
        private val signature = meta.signature
        private val tokenBuffer = model.createInputBuffer(meta.tokenInput, signature)
        private val stateInputs = meta.stateInputs.map { model.createInputBuffer(it, signature) }
        private val logitsBuffer = model.createOutputBuffer(meta.logitsOutput, signature)
        private val stateOutputs = meta.stateOutputs.map { model.createOutputBuffer(it, signature) }
        private val inputs: Map<String, TensorBuffer> =
            linkedMapOf(meta.tokenInput to tokenBuffer) + meta.stateInputs.zip(stateInputs)
        private val outputs: Map<String, TensorBuffer> =
            linkedMapOf(meta.logitsOutput to logitsBuffer) + meta.stateOutputs.zip(stateOutputs)
        private val token = IntArray(1)

        /** Time spent in [step] since loading (buffer copies included), ns. */
        var stepNanos = 0L
            private set

        var steps = 0L
            private set

        override fun step(
            tokenId: Int,
            states: Array<FloatArray>,
            nextStates: Array<FloatArray>,
            logits: FloatArray,
        ) {
            val start = SystemClock.elapsedRealtimeNanos()
            token[0] = tokenId
            tokenBuffer.writeInt(token)
            for (i in states.indices) {
                stateInputs[i].writeFloat(states[i])
            }
            model.run(inputs, outputs, signature)
            logitsBuffer.readFloat().copyInto(logits, 0, 0, logits.size)
            for (i in nextStates.indices) {
                stateOutputs[i].readFloat().copyInto(nextStates[i], 0, 0, nextStates[i].size)
            }
            stepNanos += SystemClock.elapsedRealtimeNanos() - start
            steps++
        }

        override fun close() {
            (listOf(tokenBuffer, logitsBuffer) + stateInputs + stateOutputs).forEach { it.close() }
        }
    }

    private companion object {
        const val TAG = "LanguageModelHelper"
    }
}
