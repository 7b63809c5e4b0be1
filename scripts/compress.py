"""Compresses a trained model with one or more methods and fine-tunes it.

  python scripts/compress.py --model_dir=runs/train --method=low_rank --rank=16 --output_dir=runs/lr16
  python scripts/compress.py --model_dir=runs/train --method=low_rank --softmax_rank=32 --lstm_rank=0

The output dir is a normal run dir (model.keras, vocab.txt, metrics.json with
`method_report`, config.json, checkpoints/) that convert/evaluate/benchmark
accept; rerun with the same flags to resume fine-tuning. Method flags are
defined from each method's Config (see `--helpfull`).
"""

from absl import flags

import quiet_start  # noqa: F401  (first: quiet unless --verbose; see scripts/quiet_start.py)
import tflm_compress  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)
from tflm_compress import artifacts, cli, distribute, io_utils, methods
from tflm_compress.models.config import OPTIMIZERS
from tflm_compress.training import Distillation

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", "", "Run dir of the model to compress (model.keras, vocab.txt).")
flags.DEFINE_string("model", "", "A model.keras file (instead of --model_dir).")
flags.DEFINE_string("vocab", "", "vocab.txt (default: beside the model).")
flags.DEFINE_string("custom_objects", "", "A Python file defining the custom layers of --model "
                    "(e.g. a tied softmax layer), imported before loading it.")
flags.DEFINE_string("data_dir", "", "Fine-tuning corpus (default: the run's corpus).")
flags.DEFINE_string("method", None, f"Method(s), joined by '+': {sorted(methods.REGISTRY)}.")
flags.DEFINE_string("output_dir", None, "Run dir to write (or resume).")
flags.DEFINE_integer("finetune_epochs", 2, "Fine-tuning epochs (0 = none).", lower_bound=0)
flags.DEFINE_float("learning_rate", None, "Fine-tuning learning rate (default: base lr / 4).")
flags.DEFINE_enum("optimizer", None, OPTIMIZERS, "Override the base run's optimizer.")
flags.DEFINE_integer("batch_size", None, "Override the global batch size.", lower_bound=1)
flags.DEFINE_integer("seed", None, "Override the seed.")
flags.DEFINE_bool("distill", False, "Fine-tune on the base model's soft targets too.")
flags.DEFINE_float("distill_alpha", 0.5, "Weight of the soft-target loss.")
flags.DEFINE_float("distill_temperature", 2.0, "Distillation temperature.")
flags.DEFINE_string("distill_teacher", "", "With --distill: the teacher's model.keras (default: "
                    "the model being compressed).")
flags.DEFINE_float("finetune_dropout", None, "Dropout rate on non-recurrent connections while "
                   "fine-tuning (default: the model's own; small has none).")
flags.DEFINE_enum("strategy", "default", distribute.STRATEGIES, "tf.distribute strategy.")
flags.DEFINE_bool("progress", True, "Show a progress bar.")
flags.DEFINE_bool("overwrite", False, "Write into --output_dir even if it holds files this "
                  "package did not write.")
flags.mark_flags_as_required(["method", "output_dir"])

cli.define_method_flags()


def main(argv):
  cli.reject_extra_args(argv)
  io_utils.check_output_dir(FLAGS.output_dir, FLAGS.overwrite)
  strategy = distribute.make_strategy(FLAGS.strategy)
  methods.parse_spec(FLAGS.method)  # Unknown names fail before loading anything.
  source = artifacts.resolve(FLAGS.model_dir, FLAGS.model, FLAGS.vocab, FLAGS.custom_objects)
  if source.is_tflite:
    raise tflm_compress.UserError("--model must be a Keras model (model.keras), not a .tflite")
  overrides = {k: v for k, v in {"optimizer": FLAGS.optimizer, "batch_size": FLAGS.batch_size,
                                 "seed": FLAGS.seed}.items() if v is not None}
  distillation = (Distillation(FLAGS.distill_alpha, FLAGS.distill_temperature)
                  if FLAGS.distill else None)
  corpus = source.corpus(FLAGS.data_dir, source.vocab())
  configs = tflm_compress.configs_from_flags(FLAGS.method,
                                             {name: FLAGS[name].value for name in FLAGS})
  tflm_compress.compress_run(source.model_path, *configs, corpus=corpus,
                             output_dir=FLAGS.output_dir, epochs=FLAGS.finetune_epochs,
                             learning_rate=FLAGS.learning_rate, dropout=FLAGS.finetune_dropout,
                             distill_from=FLAGS.distill_teacher or None,
                             distillation=distillation, strategy=strategy,
                             progress=FLAGS.progress, **overrides)


if __name__ == "__main__":
  cli.run(main, stage="compress")
