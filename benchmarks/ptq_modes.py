"""Benchmark: one trained model exported in every PTQ mode, scored on the .tflite itself.

  python benchmarks/ptq_modes.py --model_dir=runs/ptb_small --output_json=docs/results/ptb_small_ptq.json

Prints, per mode: .tflite bytes, test perplexity measured by streaming the whole
split through the step model, its gap to the Keras perplexity, and Keras parity.
"""

import os

from absl import flags

import quiet_start  # noqa: F401  (first: quiet unless --verbose; see scripts/quiet_start.py)
import tflm_compress  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)
from tflm_compress import artifacts, cli, export, io_utils
from tflm_compress.export.ptq import compare_quantization_modes
from tflm_compress.models import load_model

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "Run dir (model.keras, vocab.txt, config.json).")
flags.DEFINE_list("modes", list(export.QUANTIZE_MODES), "PTQ modes to compare.")
flags.DEFINE_string("split", "test", "Split to score.")
flags.DEFINE_string("output_json", "", "Write the figures here too.")
flags.mark_flag_as_required("model_dir")


def main(argv):
  cli.reject_extra_args(argv)
  source = artifacts.resolve(FLAGS.model_dir)
  vocab = source.vocab()
  corpus = source.corpus("", vocab)
  result = compare_quantization_modes(load_model(source.model_path), corpus,
                                      os.path.join(FLAGS.model_dir, "ptq"), tuple(FLAGS.modes),
                                      split=FLAGS.split)
  result["model_dir"] = FLAGS.model_dir
  if FLAGS.output_json:
    io_utils.atomic_write_json(FLAGS.output_json, result)
  keras_ppl = result["keras"][f"{FLAGS.split}_ppl"]
  print(f"| mode | .tflite bytes | {FLAGS.split} ppl (.tflite) | vs Keras {keras_ppl:.2f} |"
        " max abs logit diff | argmax agreement |")
  print("|---|---|---|---|---|---|")
  for row in result["modes"]:
    print(f"| {row['quantize']} | {row['tflite_bytes']:,} | {row[f'{FLAGS.split}_ppl']:.2f} | "
          f"{100 * row['ppl_vs_keras']:+.3f}% | {row['parity']['max_abs_logit_diff']:.2e} | "
          f"{row['parity']['argmax_agreement']:.3f} |")


if __name__ == "__main__":
  cli.run(main)
