"""Trains an LSTM language model (Zaremba et al. 2014 recipe) and writes a run dir.

  python scripts/train.py                                  # tiny model, generated corpus
  python scripts/train.py --data_dir=../shared/data/ptb --config=small --output_dir=runs/ptb_small
  python scripts/train.py --method=tt --tt_rank=0 --tt_softmax_rank=16 --output_dir=runs/tt_scratch

Writes OUTPUT_DIR/{model.keras, vocab.txt, metrics.json, config.json, history.json,
checkpoints/, logs/}. Rerun with the same flags to resume after an interruption.
"""

import dataclasses

from absl import flags

import quiet_start  # noqa: F401  (first: quiet unless --verbose; see scripts/quiet_start.py)
import tflm_compress  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)
from tflm_compress import cli, distribute, io_utils, methods
from tflm_compress.data import GeneratedCorpusConfig, load_corpus
from tflm_compress.data.reader import BAD_BYTES_POLICIES
from tflm_compress.models.config import OPTIMIZERS, PRESETS, get_preset

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", "", "Folder with ptb.{train,valid,test}.txt; empty = generated corpus.")
flags.DEFINE_enum("config", "tiny", sorted(PRESETS), "Named model + training preset.")
flags.DEFINE_string("output_dir", "runs/train", "Run dir to write (or resume).")
flags.DEFINE_integer("epochs", None, "Override the preset's epochs.", lower_bound=1)
flags.DEFINE_integer("batch_size", None, "Override the global batch size.", lower_bound=1)
flags.DEFINE_integer("num_steps", None, "Override the BPTT length.", lower_bound=1)
flags.DEFINE_float("learning_rate", None, "Override the initial learning rate.")
flags.DEFINE_enum("optimizer", None, OPTIMIZERS, "Override the optimizer.")
flags.DEFINE_list("hidden_sizes", None, "Override LSTM sizes, e.g. 200,200.")
flags.DEFINE_integer("embedding_size", None, "Override the embedding size.", lower_bound=1)
flags.DEFINE_float("dropout", None, "Override the dropout rate.", lower_bound=0.0, upper_bound=0.99)
flags.DEFINE_bool("tie_embeddings", None, "Share input embedding and softmax.")
flags.DEFINE_integer("seed", None, "Override the seed.")
flags.DEFINE_integer("max_vocab_size", None, "Keep the N most frequent words; others read as <unk>.",
                     lower_bound=2)
flags.DEFINE_integer("generated_tokens", None,
                     "Size of the generated corpus' train split (valid/test get a tenth each).",
                     lower_bound=100)
flags.DEFINE_integer("generated_vocab_size", None, "Vocabulary of the generated corpus.",
                     lower_bound=3)
flags.DEFINE_enum("on_bad_bytes", "error", BAD_BYTES_POLICIES, "Invalid UTF-8 in data files.")
flags.DEFINE_enum("strategy", "default", distribute.STRATEGIES, "tf.distribute strategy.")
flags.DEFINE_bool("progress", True, "Show a progress bar.")
flags.DEFINE_string("method", "", "Train this compressed architecture from a random init "
                    f"(method(s) joined by '+': {sorted(methods.REGISTRY)}; their flags as in "
                    "compress.py) instead of the dense model.")
flags.DEFINE_bool("overwrite", False, "Write into --output_dir even if it holds files this "
                  "package did not write.")

cli.define_method_flags()


def _overrides(source, mapping: dict):
  return {k: v for k, v in mapping.items() if v is not None and hasattr(source, k)}


def main(argv):
  cli.reject_extra_args(argv)
  if FLAGS.method:
    methods.parse_spec(FLAGS.method)  # Unknown names fail before anything is read.
  io_utils.check_output_dir(FLAGS.output_dir, FLAGS.overwrite)
  strategy = distribute.make_strategy(FLAGS.strategy)
  preset = get_preset(FLAGS.config)
  hidden = None if FLAGS.hidden_sizes is None else tuple(_parse_sizes(FLAGS.hidden_sizes))
  model_config = dataclasses.replace(preset.model, **_overrides(preset.model, {
      "hidden_sizes": hidden, "embedding_size": FLAGS.embedding_size,
      "dropout": FLAGS.dropout, "tie_embeddings": FLAGS.tie_embeddings}))
  train_config = dataclasses.replace(preset.train, **_overrides(preset.train, {
      "epochs": FLAGS.epochs, "batch_size": FLAGS.batch_size, "num_steps": FLAGS.num_steps,
      "learning_rate": FLAGS.learning_rate, "optimizer": FLAGS.optimizer, "seed": FLAGS.seed}))
  corpus = load_corpus(FLAGS.data_dir, max_vocab_size=FLAGS.max_vocab_size,
                       on_bad_bytes=FLAGS.on_bad_bytes, generated=_generated_config())
  configs = (tflm_compress.configs_from_flags(FLAGS.method,
                                              {name: FLAGS[name].value for name in FLAGS})
             if FLAGS.method else [])
  tflm_compress.train(corpus, FLAGS.output_dir, model_config, train_config, *configs,
                      strategy=strategy, progress=FLAGS.progress, preset=FLAGS.config)


def _generated_config() -> GeneratedCorpusConfig:
  config = GeneratedCorpusConfig()
  if FLAGS.generated_tokens:
    tenth = max(FLAGS.generated_tokens // 10, 2)
    config = dataclasses.replace(config, train_tokens=FLAGS.generated_tokens,
                                 valid_tokens=tenth, test_tokens=tenth)
  if FLAGS.generated_vocab_size:
    config = dataclasses.replace(config, vocab_size=FLAGS.generated_vocab_size,
                                 num_classes=min(config.num_classes, FLAGS.generated_vocab_size))
  return config


def _parse_sizes(values: list[str]) -> list[int]:
  try:
    return [int(v) for v in values]
  except ValueError:
    raise tflm_compress.UserError(f"--hidden_sizes={','.join(values)}; expected integers like 200,200") from None


if __name__ == "__main__":
  cli.run(main, stage="train")
