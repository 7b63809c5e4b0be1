"""Converts a trained model to a streaming step ``.tflite`` bundle and checks parity.

  python scripts/convert.py --model_dir=runs/train --quantize=dynamic --output=runs/train/tflite_dynamic/model.tflite

Writes OUTPUT (the .tflite), model_meta.json and vocab.txt beside it, and
OUTPUT with .json (size, ops, quantization report, parity against Keras).
"""

import json
import os

from absl import flags

import quiet_start  # noqa: F401  (first: quiet unless --verbose; see scripts/quiet_start.py)
import tflm_compress  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)
from tflm_compress import artifacts, cli, export, io_utils
from tflm_compress.models import load_model

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", "", "Run dir holding model.keras and vocab.txt.")
flags.DEFINE_string("model", "", "A model.keras file (instead of --model_dir).")
flags.DEFINE_string("vocab", "", "vocab.txt (default: beside the model).")
flags.DEFINE_string("custom_objects", "", "A Python file defining the custom layers of --model "
                    "(e.g. a tied softmax layer), imported before loading it.")
flags.DEFINE_enum("quantize", "none", export.QUANTIZE_MODES, "Post-training quantization.")
flags.DEFINE_string("output", "", "Output .tflite (default: MODEL_DIR/tflite_QUANTIZE/model.tflite).")
flags.DEFINE_string("data_dir", "", "Calibration corpus for int8 (default: the run's corpus).")
flags.DEFINE_integer("calibration_steps", 500, "Tokens of carried-state calibration for int8.",
                     lower_bound=2)
flags.DEFINE_integer("parity_steps", 50, "Steps of the Keras vs .tflite parity check (0 = skip).",
                     lower_bound=0)


def main(argv):
  cli.reject_extra_args(argv)
  source = artifacts.resolve(FLAGS.model_dir, FLAGS.model, FLAGS.vocab, FLAGS.custom_objects)
  if source.is_tflite:
    raise tflm_compress.UserError(f"--model={source.model_path!r} is already a .tflite")
  output = FLAGS.output or os.path.join(os.path.dirname(source.model_path),
                                        f"tflite_{FLAGS.quantize}", "model.tflite")
  vocab = source.vocab()
  model = load_model(source.model_path)
  corpus = None
  if FLAGS.quantize == "int8" or FLAGS.parity_steps:
    corpus = source.corpus(FLAGS.data_dir, vocab)
  summary = export.export_step_model(
      model, vocab, output, FLAGS.quantize,
      calibration_ids=None if corpus is None else corpus.split("train"),
      calibration_steps=FLAGS.calibration_steps,
      method=(source.run_config or {}).get("method") or "baseline")
  if FLAGS.parity_steps:
    tflite_model = export.TFLiteStepModel(output)
    summary["parity"] = export.check_parity(model, tflite_model,
                                            corpus.split("valid")[:FLAGS.parity_steps])
  io_utils.atomic_write_json(os.path.splitext(output)[0] + ".json", summary)
  print(json.dumps(summary, indent=2, sort_keys=True))


if __name__ == "__main__":
  cli.run(main)
