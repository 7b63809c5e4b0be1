"""The export modes (``--quantize``): a leaf both export paths import.

``QUANTIZE_MODES`` are written by the TFLite converter
(:mod:`tflm_compress.export.converter`); ``SUB8BIT_MODES`` by ai-edge-quantizer
after a float32 conversion (:mod:`tflm_compress.export.sub8bit`).
"""

QUANTIZE_MODES = ("none", "dynamic", "float16", "int8")
SUB8BIT_MODES = ("int4", "mixed", "auto")
EXPORT_MODES = QUANTIZE_MODES + SUB8BIT_MODES
