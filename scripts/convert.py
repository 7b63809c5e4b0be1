"""Converts a trained model to a streaming step ``.tflite`` bundle and checks parity.

  python scripts/convert.py --model_dir=runs/train --quantize=dynamic --output=runs/train/tflite_dynamic/model.tflite
  python scripts/convert.py --model_dir=runs/train --quantize=int4
  python scripts/convert.py --model_dir=runs/train --quantize=mixed --bits=embedding:8,lstm:8,softmax:4
  python scripts/convert.py --model_dir=runs/train --quantize=auto --max_ppl_increase=1%

Writes OUTPUT (the .tflite), model_meta.json and vocab.txt beside it, and
OUTPUT with .json (size, ops, quantization report, parity against Keras, and
for int4/mixed/auto the bits per weight group, the ai-edge-quantizer recipe
and auto's sensitivity table), once the model has loaded and run in LiteRT.
A file that is not from a bundle this script wrote (one whose
model_meta.json names OUTPUT) is replaced only with --overwrite.
"""

import json
import os
import sys

from absl import flags

import quiet_start  # noqa: F401  (first: quiet unless --verbose; see scripts/quiet_start.py)
import tflm_compress  # (sets TF_USE_LEGACY_KERAS before TensorFlow)
from tflm_compress import artifacts, cli, export
from tflm_compress.export import sub8bit

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", "", "Run dir holding model.keras and vocab.txt.")
flags.DEFINE_string("model", "", "A model.keras file (instead of --model_dir).")
flags.DEFINE_string("vocab", "", "vocab.txt (default: beside the model).")
flags.DEFINE_string("custom_objects", "", "A Python file defining the custom layers of --model "
                    "(e.g. a tied softmax layer), imported before loading it.")
flags.DEFINE_enum("quantize", "none", export.EXPORT_MODES,
                  "Post-training quantization: the converter's none/dynamic/float16/int8, or "
                  "int4/mixed/auto through ai-edge-quantizer.")
flags.DEFINE_string("bits", "", "mixed: bits per weight group, e.g. "
                    f"{sub8bit.BITS_EXAMPLE} (groups: embedding, lstm_N or lstm for all, "
                    "softmax, LAYER.WEIGHT for the factors of a compressed layer, * for the "
                    f"rest; bits {sub8bit.BIT_WIDTHS}, 32 = float32).")
flags.DEFINE_string("max_ppl_increase", "1%", "auto: allowed validation perplexity increase "
                    "over the float32 .tflite (1% or 0.01).")
flags.DEFINE_enum("block_size", "0", [str(b) for b in sub8bit.BLOCK_SIZES],
                  "int4/mixed/auto: 0 = a scale per output channel; else a float16 scale per "
                  "block of this many inputs, where ai-edge-quantizer and the width allow.")
flags.DEFINE_enum("compute", "dynamic", sub8bit.COMPUTE_KINDS,
                  "int4/mixed/auto: dynamic (integer kernels, activations quantized on the "
                  "fly) or weight_only (DEQUANTIZE + float kernels).")
flags.DEFINE_enum("algorithm", sub8bit.DEFAULT_ALGORITHM, list(sub8bit.ALGORITHMS),
                  "int4/mixed/auto: how ai-edge-quantizer picks the scales: min_max (largest "
                  "|w|), mse / octav (error-minimizing clipping), hadamard (min-max after a "
                  "Hadamard rotation; the default: on PTB small int4 it loses 1.9% where "
                  "min_max loses 6.1%), gptq (the weights GPTQ-rounded on training text onto "
                  "min_max's grid, then stored as they are; needs --data_dir or the run's "
                  "corpus).")
flags.DEFINE_enum("embedding_op", "lookup", sub8bit.EMBEDDING_OPS,
                  "int4/mixed/auto: lookup (EMBEDDING_LOOKUP, table quantized per row) or "
                  "gather (GATHER, table kept float32).")
flags.DEFINE_string("output", "", "Output .tflite (default: MODEL_DIR/tflite_QUANTIZE/model.tflite).")
flags.DEFINE_string("data_dir", "", "Corpus for int8 calibration, gptq, parity, auto and --eval_split "
                    "(default: the run's corpus).")
flags.DEFINE_integer("calibration_steps", 500, "Tokens of carried-state calibration for int8.",
                     lower_bound=2)
flags.DEFINE_integer("parity_steps", 50, "Steps of the Keras vs .tflite parity check (0 = skip).",
                     lower_bound=0)
flags.DEFINE_string("eval_split", "", "Also measure the perplexity of the .tflite on this split "
                    "(valid or test; empty = skip).")
flags.DEFINE_boolean("overwrite", False, "Replace files at the output that are not from a "
                     "bundle convert.py wrote.")


def bundle_files(output: str) -> list[str]:
  """What an export to ``output`` writes: the .tflite, its .json, model_meta.json, vocab.txt."""
  folder = os.path.dirname(output) or "."
  return [output, os.path.splitext(output)[0] + ".json",
          os.path.join(folder, export.META_FILE), os.path.join(folder, "vocab.txt")]


def check_output(output: str, overwrite: bool) -> None:
  """Refuses to replace files at ``output`` that this script did not write.

  A bundle it wrote is one whose ``model_meta.json`` loads and names
  ``output``'s file: its files are replaced freely. Anything else already there
  is replaced only with ``--overwrite``.
  """
  if overwrite:
    return
  existing = [path for path in bundle_files(output) if os.path.lexists(path)]
  if not existing:
    return
  meta_path = bundle_files(output)[2]
  try:
    ours = (os.path.exists(meta_path)
            and export.ModelMeta.load(meta_path).model_file == os.path.basename(output))
  except tflm_compress.UserError:
    ours = False
  if not ours:
    raise tflm_compress.UserError(
        f"--output={output!r}: {existing[0]!r} exists and is not from a bundle convert.py "
        f"wrote (no {export.META_FILE} naming {os.path.basename(output)}); pass --overwrite "
        "to replace it, or choose another --output")


def _sub8bit_settings() -> dict:
  """The sub-8-bit flags, for the modes that read them."""
  if FLAGS.quantize not in export.SUB8BIT_MODES:
    return {}
  return {"bits": FLAGS.bits, "block_size": int(FLAGS.block_size), "compute": FLAGS.compute,
          "algorithm": FLAGS.algorithm, "embedding_op": FLAGS.embedding_op,
          "max_ppl_increase": FLAGS.max_ppl_increase}


def main(argv):
  cli.reject_extra_args(argv)
  source = artifacts.resolve(FLAGS.model_dir, FLAGS.model, FLAGS.vocab, FLAGS.custom_objects)
  if source.is_tflite:
    raise tflm_compress.UserError(f"--model={source.model_path!r} is already a .tflite")
  if FLAGS.bits and FLAGS.quantize != "mixed":
    raise tflm_compress.UserError(f"--bits={FLAGS.bits} is for --quantize=mixed, not "
                                  f"--quantize={FLAGS.quantize}")
  if FLAGS.quantize == "mixed":
    sub8bit.parse_bits(FLAGS.bits)  # Format errors before any work.
  if FLAGS.quantize == "auto":
    sub8bit.parse_ppl_increase(FLAGS.max_ppl_increase)
  if FLAGS.eval_split not in ("", "valid", "test"):
    raise tflm_compress.UserError(f"--eval_split={FLAGS.eval_split!r}; use valid, test or "
                                  "nothing")
  output = FLAGS.output or os.path.join(os.path.dirname(source.model_path),
                                        f"tflite_{FLAGS.quantize}", "model.tflite")
  if not output.endswith(".tflite"):
    raise tflm_compress.UserError(f"--output={output!r} must end with .tflite")
  check_output(output, FLAGS.overwrite)
  vocab = source.vocab()
  model = tflm_compress.load_model(source.model_path, vocab=vocab)
  corpus = None
  gptq = FLAGS.algorithm == "gptq" and FLAGS.quantize in sub8bit.SUB8BIT_MODES
  if FLAGS.quantize in ("int8", "auto") or gptq or FLAGS.parity_steps or FLAGS.eval_split:
    corpus = source.corpus(FLAGS.data_dir, vocab)
  summary = tflm_compress.export_tflite(
      model, output, FLAGS.quantize, corpus=corpus, vocab=vocab,
      parity_steps=FLAGS.parity_steps, calibration_steps=FLAGS.calibration_steps,
      method=(source.run_config or {}).get("method") or "baseline",
      eval_split=FLAGS.eval_split or None, log=lambda line: print(line, file=sys.stderr),
      **_sub8bit_settings())
  print(json.dumps(summary, indent=2, sort_keys=True))


if __name__ == "__main__":
  cli.run(main)
