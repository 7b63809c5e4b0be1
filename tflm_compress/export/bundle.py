"""Writing an exported step model as an app bundle: .tflite + model_meta.json + vocab.txt."""

import os

import numpy as np
import tf_keras as keras

from tflm_compress import io_utils
from tflm_compress.data.vocab import Vocabulary
from tflm_compress.errors import UserError
from tflm_compress.export import inspect_tflite
from tflm_compress.export.converter import (EXPORT_MODES, convert_step_model,
                                            representative_steps)
from tflm_compress.export.meta import META_FILE, ModelMeta
from tflm_compress.export.step_model import (LOGITS_OUTPUT, SIGNATURE_KEY, TOKEN_INPUT,
                                             check_exportable, state_layout, vocab_size_of)
from tflm_compress.export import sub8bit
from tflm_compress.export.sub8bit import SUB8BIT_MODES, check_runs, export_sub8bit


def export_step_model(model: keras.Model, vocab: Vocabulary, output_path: str,
                      quantize: str = "none", calibration_ids: np.ndarray | None = None,
                      calibration_steps: int = 500, method: str = "baseline", bits: str = "",
                      block_size: int = 0, compute: str = "dynamic", algorithm: str = sub8bit.DEFAULT_ALGORITHM,
                      embedding_op: str = "lookup", validation_ids: np.ndarray | None = None,
                      max_ppl_increase: str | float = "1%", require_blocks: bool = True,
                      log=print) -> dict:
  """Converts ``model`` and writes a bundle next to ``output_path``.

  Writes ``output_path`` (the ``.tflite``), ``model_meta.json`` and
  ``vocab.txt`` in its folder, each atomically, and only once the model has
  loaded and run in LiteRT.

  Args:
    quantize: one of ``EXPORT_MODES``.
    calibration_ids, calibration_steps: ``int8``'s calibration text and length
      (``calibration_ids`` is also ``algorithm="gptq"``'s).
    bits, block_size, compute, algorithm, embedding_op, validation_ids, max_ppl_increase:
      the sub-8-bit modes' settings (``sub8bit.export_sub8bit``): ``bits`` is
      ``mixed``'s spec, ``validation_ids`` and ``max_ppl_increase`` are ``auto``'s.
    require_blocks: a ``block_size`` that fits no weight is an error (``False``:
      per channel then, as a pipeline wants for its dense rows).
    log: where ``auto`` reports its measurements.

  Returns:
    The size/op summary of the ``.tflite`` (see ``inspect_tflite.summarize``),
    with ``sub8bit`` (groups, bits, recipe, ``auto``'s sensitivity table) for
    the sub-8-bit modes.
  """
  if not output_path.endswith(".tflite"):
    raise UserError(f"--output={output_path!r} must end with .tflite")
  if quantize not in EXPORT_MODES:
    raise UserError(f"--quantize={quantize!r}; use one of {EXPORT_MODES}")
  if vocab_size_of(model) != len(vocab):
    raise UserError(f"the model has {vocab_size_of(model)} logits but the vocabulary has "
                    f"{len(vocab)} words; pass the vocab.txt the model was trained with")
  check_exportable(model)
  report, quantization = None, quantize
  if quantize in SUB8BIT_MODES:
    model_bytes, report = export_sub8bit(
        model, quantize, bits=bits, block_size=block_size, compute=compute, algorithm=algorithm,
        embedding_op=embedding_op, validation_ids=validation_ids,
        max_ppl_increase=max_ppl_increase, require_blocks=require_blocks,
        calibration_ids=calibration_ids, log=log)
    quantization = report["quantization"]
  else:
    calibration = None
    if quantize == "int8":
      if calibration_ids is None:
        raise UserError("--quantize=int8 needs calibration text (the training corpus)")
      calibration = representative_steps(model, calibration_ids, calibration_steps)
    model_bytes = convert_step_model(model, quantize, calibration)
    check_runs(model_bytes, f"--quantize={quantize}")
  folder = os.path.dirname(output_path) or "."
  io_utils.makedirs(folder)
  io_utils.atomic_write_bytes(output_path, model_bytes)
  names, sizes = state_layout(model)
  vocab.save(os.path.join(folder, "vocab.txt"))
  meta = ModelMeta(model_file=os.path.basename(output_path), vocab_file="vocab.txt",
                   vocab_size=len(vocab), eos_id=vocab.eos_id, unk_id=vocab.unk_id,
                   signature=SIGNATURE_KEY, token_input=TOKEN_INPUT, logits_output=LOGITS_OUTPUT,
                   state_inputs=tuple(names), state_outputs=tuple(f"{n}_out" for n in names),
                   state_sizes=tuple(sizes), quantization=quantization, method=method)
  meta.save(os.path.join(folder, META_FILE))
  summary = inspect_tflite.summarize(model_bytes, output_path)
  summary["quantize"] = quantize
  if report is not None:
    summary["sub8bit"] = report
  return summary
