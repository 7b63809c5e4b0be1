package org.tflmcompress.demo

import android.os.Bundle
import android.text.format.Formatter
import android.view.View
import android.widget.AdapterView
import android.widget.EditText
import android.widget.Spinner
import android.widget.TextView
import androidx.appcompat.app.AppCompatActivity
import androidx.core.widget.doAfterTextChanged
import com.google.android.material.chip.Chip
import com.google.android.material.materialswitch.MaterialSwitch
import java.util.Locale

/**
 * One screen: type, and three chips suggest the next word. Tapping a chip completes the word being
 * typed (or appends the next one). The status lines show the model, its size and how it runs, and
 * the time per word. All the work is in [LanguageModelHelper]; this class only draws.
 */
class MainActivity : AppCompatActivity(), LanguageModelHelper.Listener {
    private lateinit var helper: LanguageModelHelper
    private lateinit var input: EditText
    private lateinit var chips: List<Chip>
    private lateinit var acceleratorSpinner: Spinner
    private lateinit var threadsSpinner: Spinner
    private lateinit var lowercaseSwitch: MaterialSwitch
    private lateinit var modelStatus: TextView
    private lateinit var latencyStatus: TextView

    private var requestedOptions: LanguageModelHelper.Options? = null
    private var partialWord = ""

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        input = findViewById(R.id.input)
        chips =
            listOf(R.id.suggestion0, R.id.suggestion1, R.id.suggestion2)
                .map { findViewById<Chip>(it) }
        acceleratorSpinner = findViewById(R.id.accelerator)
        threadsSpinner = findViewById(R.id.threads)
        lowercaseSwitch = findViewById(R.id.lowercase)
        modelStatus = findViewById(R.id.model_status)
        latencyStatus = findViewById(R.id.latency_status)

        helper = LanguageModelHelper(this, this)
        for (chip in chips) {
            chip.isEnabled = false
            chip.setOnClickListener { (chip.tag as? String)?.let { accept(it) } }
        }
        input.doAfterTextChanged { helper.suggest(textBeforeCursor()) }

        threadsSpinner.setSelection(1) // 2 threads
        val reloadOnSelect =
            object : AdapterView.OnItemSelectedListener {
                override fun onItemSelected(
                    parent: AdapterView<*>?,
                    view: View?,
                    position: Int,
                    id: Long,
                ) = reload()

                override fun onNothingSelected(parent: AdapterView<*>?) = Unit
            }
        acceleratorSpinner.onItemSelectedListener = reloadOnSelect
        threadsSpinner.onItemSelectedListener = reloadOnSelect
        lowercaseSwitch.setOnCheckedChangeListener { _, _ -> reload() }
        reload()
    }

    override fun onDestroy() {
        helper.close()
        super.onDestroy()
    }

    private fun currentOptions() =
        LanguageModelHelper.Options(
            accelerator =
                LanguageModelHelper.AcceleratorChoice.entries[
                    acceleratorSpinner.selectedItemPosition
                ],
            numThreads = threadsSpinner.selectedItem.toString().toInt(),
            lowercase = lowercaseSwitch.isChecked,
        )

    /** Loads the model again when an option changed (spinners also fire once at start). */
    private fun reload() {
        val options = currentOptions()
        if (options == requestedOptions) return
        requestedOptions = options
        modelStatus.setText(R.string.loading)
        helper.load(options)
        helper.suggest(textBeforeCursor())
    }

    private fun textBeforeCursor(): String {
        val text = input.text?.toString().orEmpty()
        val cursor = input.selectionEnd
        return if (cursor in 0..text.length) text.substring(0, cursor) else text
    }

    /** Replaces the word being typed by [word] (or appends it) and a space. */
    private fun accept(word: String) {
        val editable = input.text ?: return
        val cursor = input.selectionEnd.takeIf { it >= 0 } ?: editable.length
        val before = editable.substring(0, cursor)
        val start =
            if (partialWord.isNotEmpty() && before.endsWith(partialWord, ignoreCase = true)) {
                cursor - partialWord.length
            } else {
                cursor
            }
        editable.replace(start, cursor, "$word ")
    }

    override fun onModelReady(info: LanguageModelHelper.ModelInfo) {
        modelStatus.text =
            getString(
                R.string.model_status,
                info.modelFile,
                Formatter.formatShortFileSize(this, info.sizeBytes),
                info.quantization,
                info.method,
                info.options.accelerator.label,
                info.options.numThreads,
            )
    }

    override fun onResult(result: LanguageModelHelper.Result) {
        partialWord = result.partialWord
        chips.forEachIndexed { i, chip ->
            val suggestion = result.suggestions.getOrNull(i)
            chip.text = suggestion?.word ?: getString(R.string.suggestion_placeholder)
            chip.tag = suggestion?.word
            chip.isEnabled = suggestion != null
            chip.contentDescription =
                suggestion?.let {
                    String.format(Locale.ROOT, "%s, %.1f%%", it.word, 100 * it.probability)
                }
        }
        if (result.stepsRun > 0) {
            latencyStatus.text =
                getString(
                    R.string.latency_status,
                    String.format(Locale.ROOT, "%.2f", result.inferenceTimeMs / result.stepsRun),
                    String.format(Locale.ROOT, "%.2f", result.meanStepMs),
                    result.totalSteps.toInt(),
                )
        }
    }

    override fun onError(message: String) {
        modelStatus.text = message
        for (chip in chips) {
            chip.isEnabled = false
        }
    }
}
