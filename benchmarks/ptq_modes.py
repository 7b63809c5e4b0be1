"""Benchmark: one trained model exported in every PTQ mode, scored on the .tflite itself.

  python benchmarks/ptq_modes.py --model_dir=runs/ptb_small --output_json=docs/results/ptb_small_ptq.json
  python benchmarks/ptq_modes.py --model_dir=runs/ptb_small --modes=none,dynamic,int4,mixed,auto \\
      --bits=embedding:4,lstm:8,softmax:4 --max_ppl_increase=1%

Prints, per mode: .tflite bytes, test perplexity measured by streaming the whole
split through the step model, its gap to the Keras perplexity and to the
float32 .tflite (with ``none`` among the modes), the size ratio to the float32
file, and Keras parity. The int4/mixed/auto rows of the JSON hold the bits per
weight group, the ai-edge-quantizer recipe and auto's sensitivity table.
"""

import os

from absl import flags

import quiet_start  # noqa: F401  (first: quiet unless --verbose; see scripts/quiet_start.py)
import tflm_compress  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)
from tflm_compress import artifacts, cli, export, io_utils
from tflm_compress.errors import UserError
from tflm_compress.export import sub8bit
from tflm_compress.export.ptq import compare_quantization_modes
from tflm_compress.models import load_model

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "Run dir (model.keras, vocab.txt, config.json).")
flags.DEFINE_list("modes", list(export.QUANTIZE_MODES),
                  f"Modes to compare, of {', '.join(export.EXPORT_MODES)}.")
flags.DEFINE_string("split", "test", "Split to score.")
flags.DEFINE_string("export_dir", "", "Where the bundles go (default: MODEL_DIR/ptq).")
flags.DEFINE_string("bits", "", f"mixed: bits per weight group (e.g. {sub8bit.BITS_EXAMPLE}).")
flags.DEFINE_string("max_ppl_increase", "1%", "auto: allowed validation perplexity increase.")
flags.DEFINE_enum("block_size", "0", [str(b) for b in sub8bit.BLOCK_SIZES],
                  "int4/mixed/auto: 0 = per channel, else block-wise scales.")
flags.DEFINE_enum("compute", "dynamic", sub8bit.COMPUTE_KINDS, "int4/mixed/auto: kernels.")
flags.DEFINE_enum("algorithm", sub8bit.DEFAULT_ALGORITHM, list(sub8bit.ALGORITHMS),
                  "int4/mixed/auto: how the scales are chosen.")
flags.DEFINE_enum("embedding_op", "lookup", sub8bit.EMBEDDING_OPS,
                  "int4/mixed/auto: EMBEDDING_LOOKUP (quantized table) or GATHER (float).")
flags.DEFINE_string("output_json", "", "Write the figures here too.")
flags.mark_flag_as_required("model_dir")


def main(argv):
  cli.reject_extra_args(argv)
  bad = [m for m in FLAGS.modes if m not in export.EXPORT_MODES]
  if bad or not FLAGS.modes:
    raise UserError(f"--modes={','.join(FLAGS.modes)}; use some of {export.EXPORT_MODES}")
  if "mixed" in FLAGS.modes:
    sub8bit.parse_bits(FLAGS.bits)
  source = artifacts.resolve(FLAGS.model_dir)
  vocab = source.vocab()
  corpus = source.corpus("", vocab)
  settings = {"bits": FLAGS.bits, "block_size": int(FLAGS.block_size), "compute": FLAGS.compute,
              "algorithm": FLAGS.algorithm,
              "embedding_op": FLAGS.embedding_op, "max_ppl_increase": FLAGS.max_ppl_increase}
  result = compare_quantization_modes(load_model(source.model_path), corpus,
                                      FLAGS.export_dir or os.path.join(FLAGS.model_dir, "ptq"),
                                      tuple(FLAGS.modes), split=FLAGS.split, sub8bit=settings,
                                      method=(source.run_config or {}).get("method", "baseline"))
  result["model_dir"] = FLAGS.model_dir
  result["sub8bit_settings"] = settings
  if FLAGS.output_json:
    io_utils.atomic_write_json(FLAGS.output_json, result)
  keras_ppl = result["keras"][f"{FLAGS.split}_ppl"]
  print(f"| mode | .tflite bytes | x smaller than fp32 | {FLAGS.split} ppl (.tflite) | "
        f"vs fp32 .tflite | vs Keras {keras_ppl:.2f} | max abs logit diff | argmax agreement |")
  print("|---|---|---|---|---|---|---|---|")
  for row in result["modes"]:
    name = row["quantize"]
    if "sub8bit" in row:
      name += f" ({sub8bit.format_bits(row['sub8bit']['bits'])})"
    ratio = row.get("size_ratio_vs_float_tflite")
    vs_float = row.get("ppl_vs_float_tflite")
    print(f"| {name} | {row['tflite_bytes']:,} | "
          f"{'' if ratio is None else f'{ratio:.2f}x'} | {row[f'{FLAGS.split}_ppl']:.2f} | "
          f"{'' if vs_float is None else f'{100 * vs_float:+.3f}%'} | "
          f"{100 * row['ppl_vs_keras']:+.3f}% | {row['parity']['max_abs_logit_diff']:.2e} | "
          f"{row['parity']['argmax_agreement']:.3f} |")


if __name__ == "__main__":
  cli.run(main)
