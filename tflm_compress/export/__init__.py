"""Export to ``.tflite``: the step model, PTQ, parity and on-device perplexity."""

from tflm_compress.export.bundle import export_step_model
from tflm_compress.export.converter import (QUANTIZE_MODES, convert_step_model,
                                            representative_steps)
from tflm_compress.export.meta import META_FILE, ModelMeta
from tflm_compress.export.parity import check_parity, keras_stream_logits
from tflm_compress.export.runtime import TFLiteStepModel
from tflm_compress.export.step_model import (check_exportable, make_step_function,
                                             register_exportable_layer, state_layout,
                                             vocab_size_of)

__all__ = ["META_FILE", "QUANTIZE_MODES", "ModelMeta", "TFLiteStepModel", "check_exportable",
           "check_parity", "convert_step_model", "export_step_model",
           "keras_stream_logits", "make_step_function", "register_exportable_layer",
           "representative_steps", "state_layout", "vocab_size_of"]
