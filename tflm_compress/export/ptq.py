"""Post-training quantization of one model in every mode, measured side by side."""

import os
import time

import tf_keras as keras

from tflm_compress.data.corpus import Corpus
from tflm_compress.export.bundle import export_step_model
from tflm_compress.export.parity import check_parity
from tflm_compress.export.runtime import TFLiteStepModel
from tflm_compress.export.sub8bit import SUB8BIT_MODES
from tflm_compress.models.lstm_lm import count_params
from tflm_compress.evaluation import evaluate_perplexity


def compare_quantization_modes(model: keras.Model, corpus: Corpus, output_dir: str,
                               modes: tuple[str, ...], split: str = "test",
                               parity_steps: int = 50, method: str = "baseline",
                               log=print, sub8bit: dict | None = None) -> dict:
  """Exports ``model`` in each PTQ mode and scores every ``.tflite`` on ``split``.

  Writes one bundle per mode under ``output_dir/tflite_<mode>/``.

  Args:
    modes: entries of ``EXPORT_MODES``.
    sub8bit: settings of the int4/mixed/auto exports (``bits``, ``block_size``,
      ``compute``, ``algorithm``, ``embedding_op``, ``max_ppl_increase``); ``auto`` chooses on
      the corpus's valid split.

  Returns:
    ``{'keras': {...}, 'modes': [{quantize, tflite_bytes, ppl, ppl_vs_keras, parity, ...}]}``;
    the int4/mixed/auto rows also hold ``sub8bit`` (bits, recipe, auto's table)
    and every row ``ppl_vs_float_tflite`` when ``none`` is among the modes.
  """
  ids = corpus.split(split)
  start = time.time()
  keras_stats = evaluate_perplexity(model, ids, batch_size=1, num_steps=35)
  log(f"keras {split} ppl {keras_stats['ppl']:.3f} ({time.time() - start:.0f} s)")
  rows = []
  for mode in modes:
    path = os.path.join(output_dir, f"tflite_{mode}", "model.tflite")
    settings = {}
    if mode in SUB8BIT_MODES:
      settings = {k: v for k, v in (sub8bit or {}).items() if k != "bits" or mode == "mixed"}
      if mode == "auto":
        settings["validation_ids"] = corpus.split("valid")
    summary = export_step_model(model, corpus.vocab, path, mode,
                                calibration_ids=corpus.split("train"), method=method, log=log,
                                **settings)
    tflite_model = TFLiteStepModel(path)
    parity = check_parity(model, tflite_model, corpus.split("valid")[:parity_steps])
    start = time.time()
    stats = tflite_model.perplexity(ids)
    row = {"quantize": mode, "tflite_bytes": summary["tflite_bytes"],
           "weight_bytes_by_group": summary["weight_bytes_by_group"],
           "quantization": summary["quantization"], f"{split}_ppl": stats["ppl"],
           "ppl_vs_keras": stats["ppl"] / keras_stats["ppl"] - 1.0, "parity": parity,
           "eval_seconds": time.time() - start}
    if "sub8bit" in summary:
      row["sub8bit"] = summary["sub8bit"]
    log(f"{mode}: {row['tflite_bytes']:,} bytes, {split} ppl {stats['ppl']:.3f} "
        f"({100 * row['ppl_vs_keras']:+.3f}% vs Keras), max |dlogit| "
        f"{parity['max_abs_logit_diff']:.2e}")
    rows.append(row)
  float_row = next((r for r in rows if r["quantize"] == "none"), None)
  for row in rows if float_row else []:
    row["ppl_vs_float_tflite"] = row[f"{split}_ppl"] / float_row[f"{split}_ppl"] - 1.0
    row["size_ratio_vs_float_tflite"] = float_row["tflite_bytes"] / row["tflite_bytes"]
  return {"params": count_params(model), "split": split, "tokens": keras_stats["tokens"],
          "keras": {f"{split}_ppl": keras_stats["ppl"]}, "modes": rows}
