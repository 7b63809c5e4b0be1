"""Perplexity of a saved model (Keras or .tflite) on a split, the standard way.

  python scripts/evaluate.py --model_dir=runs/train --split=test
  python scripts/evaluate.py --model=runs/train/tflite_int8/model.tflite --split=test

State is carried over the whole split; perplexity is exp of the mean NLL over
every token after the first, <eos> included. Prints (and optionally writes)
JSON: {model, format, split, ppl, nll, tokens}.
"""

import json

from absl import flags

import quiet_start  # noqa: F401  (first: quiet unless --verbose; see scripts/quiet_start.py)
import tflm_compress  # (sets TF_USE_LEGACY_KERAS before TensorFlow)
from tflm_compress import artifacts, cli, io_utils
from tflm_compress.data.reader import SPLITS

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", "", "Run dir holding model.keras and vocab.txt.")
flags.DEFINE_string("model", "", "A model.keras or .tflite file (instead of --model_dir).")
flags.DEFINE_string("vocab", "", "vocab.txt (default: beside the model).")
flags.DEFINE_string("custom_objects", "", "A Python file defining the custom layers of --model "
                    "(e.g. a tied softmax layer), imported before loading it.")
flags.DEFINE_string("data_dir", "", "Corpus folder (default: the run's corpus, else generated).")
flags.DEFINE_enum("split", "test", SPLITS, "Split to score.")
flags.DEFINE_integer("batch_size", 1, "Rows (Keras only; 1 = one stream).", lower_bound=1)
flags.DEFINE_integer("num_steps", 35, "Window length (Keras only; speed only).", lower_bound=1)
flags.DEFINE_integer("threads", 1, "Interpreter threads (.tflite only).", lower_bound=1)
flags.DEFINE_string("output_json", "", "Also write the result here.")


def main(argv):
  cli.reject_extra_args(argv)
  source = artifacts.resolve(FLAGS.model_dir, FLAGS.model, FLAGS.vocab, FLAGS.custom_objects)
  corpus = source.corpus(FLAGS.data_dir, source.vocab())
  result = tflm_compress.evaluate(source.model_path, corpus, split=FLAGS.split,
                                  batch_size=FLAGS.batch_size, num_steps=FLAGS.num_steps,
                                  threads=FLAGS.threads)
  if FLAGS.output_json:
    io_utils.atomic_write_json(FLAGS.output_json, result)
  print(json.dumps(result, indent=2, sort_keys=True))


if __name__ == "__main__":
  cli.run(main, stage="evaluate")
