"""Next-word suggestions from an exported bundle, the way the Android demo makes them.

  python scripts/suggest.py --bundle=runs/pipeline_tiny/best/fp32 --text="the company said"
  python scripts/suggest.py --bundle=runs/ptb_small/tflite_dynamic     # a line at a time on stdin

The bundle is a folder with model_meta.json, its .tflite and vocab.txt (what
convert.py, the pipeline's best/ and tflm_compress.export_tflite write). The
context is <eos> then the text's words (unknown ones as <unk>); prints the top
--k words with their probabilities, never <eos> or <unk>.
"""

import sys

from absl import flags

import quiet_start  # noqa: F401  (first: quiet unless --verbose; see scripts/quiet_start.py)
import tflm_compress  # (sets TF_USE_LEGACY_KERAS before TensorFlow)
from tflm_compress import cli
from tflm_compress.errors import UserError

FLAGS = flags.FLAGS
flags.DEFINE_string("bundle", "", "Bundle folder (model_meta.json, model.tflite, vocab.txt).")
flags.DEFINE_string("text", None, "The text so far (default: read lines from stdin).")
flags.DEFINE_integer("k", 3, "How many words to suggest.", lower_bound=1)
flags.DEFINE_integer("threads", 1, "Interpreter threads.", lower_bound=1)


def _line(text: str, suggestions) -> str:
  words = "  ".join(f"{word} ({p:.3f})" for word, p in suggestions)
  return f"{text!r} -> {words}"


def main(argv):
  cli.reject_extra_args(argv)
  if not FLAGS.bundle:
    raise UserError("--bundle=DIR is required (a folder holding model_meta.json)")
  suggester = tflm_compress.Suggester(FLAGS.bundle, num_threads=FLAGS.threads)
  if FLAGS.text is not None:
    print(_line(FLAGS.text, suggester.suggest(FLAGS.text, FLAGS.k)))
    return
  for text in sys.stdin:
    print(_line(text.rstrip("\n"), suggester.suggest(text, FLAGS.k)), flush=True)


if __name__ == "__main__":
  cli.run(main)
