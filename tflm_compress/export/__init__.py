"""Export to ``.tflite``: the step model, PTQ, parity and on-device perplexity."""

from tflm_compress.export.bundle import export_step_model
from tflm_compress.export.converter import (EXPORT_MODES, QUANTIZE_MODES, convert_step_model,
                                            representative_steps)
from tflm_compress.export.meta import META_FILE, ModelMeta
from tflm_compress.export.parity import check_parity, keras_stream_logits
from tflm_compress.export.runtime import TFLiteStepModel
from tflm_compress.export.step_model import (check_exportable, make_step_function,
                                             state_layout, tflite_lowering, vocab_size_of)
from tflm_compress.export.sub8bit import SUB8BIT_MODES

__all__ = ["EXPORT_MODES", "META_FILE", "QUANTIZE_MODES", "SUB8BIT_MODES", "ModelMeta",
           "TFLiteStepModel", "check_exportable", "check_parity", "convert_step_model", "export_step_model",
           "keras_stream_logits", "make_step_function", "representative_steps",
           "state_layout", "tflite_lowering", "vocab_size_of"]
