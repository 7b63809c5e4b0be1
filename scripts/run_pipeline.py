"""The main job: baseline -> every method variant -> .tflite per PTQ mode -> verify -> benchmark -> report.

  python scripts/run_pipeline.py                    # tiny model, generated corpus, < 10 min
  python scripts/run_pipeline.py --data_dir=../shared/data/ptb --config=small --output_dir=runs/ptb_small
  python scripts/run_pipeline.py --output_dir=runs/x --only=low_rank     # one variant (fan-out)
  python scripts/run_pipeline.py --output_dir=runs/x --report_only        # merge finished variants
  python scripts/run_pipeline.py --output_dir=runs/x --max_bytes=2000000 --max_latency_ms=1

Besides the variants, every run fine-tunes the base model uncompressed with each
variant's recipe (the controls, rows `control*`). Writes OUTPUT_DIR/results.{json,md},
pareto.png and best/<budget>/: for 1/4, 1/10 and 1/20 of the baseline's fp32 bytes and
the --max_bytes/--max_latency_ms budget, the bundle (for the Android demo) of the model
of lowest validation perplexity that fits; the same answer is printed at the end.
Stages resume: rerun the same command after an interruption.
"""

import dataclasses
import os
import sys

from absl import flags

import quiet_start  # noqa: F401  (first: quiet unless --verbose; see scripts/quiet_start.py)
import tflm_compress  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)
from tflm_compress import artifacts, cli, compose, distribute, io_utils, pipeline, report
from tflm_compress.data import GeneratedCorpusConfig, load_corpus
from tflm_compress.data.generated import MarkovWordSource
from tflm_compress.export import sub8bit
from tflm_compress.export.modes import EXPORT_MODES
from tflm_compress.models.config import PRESETS, get_preset
from tflm_compress.training import Distillation

FLAGS = flags.FLAGS
SEARCH_KINDS = ("compose", "grid", "none")
flags.DEFINE_bool("overwrite", False, "Write into the output dir even if it holds files this "
                  "package did not write.")
flags.DEFINE_string("data_dir", "", "Corpus folder (ptb.{train,valid,test}.txt); empty = generated.")
flags.DEFINE_enum("config", "tiny", sorted(PRESETS), "Preset of the baseline.")
flags.DEFINE_string("output_dir", None, "Output dir (default: runs/pipeline_CONFIG).")
flags.DEFINE_string("variants", "", "JSON file listing variants (default: one per method family).")
flags.DEFINE_list("quantize", ["none", "dynamic", "int8"],
                  f"PTQ modes to export each variant in: {EXPORT_MODES} (int4/mixed/auto "
                  "through ai-edge-quantizer).")
flags.DEFINE_string("bits", "", "--quantize=mixed: bits per weight group, e.g. "
                    f"{sub8bit.BITS_EXAMPLE} (see convert.py --bits).")
flags.DEFINE_enum("block_size", "0", [str(b) for b in sub8bit.BLOCK_SIZES],
                  "int4/mixed/auto: 0 = a scale per output channel; else a float16 scale per "
                  "block of this many inputs where it divides the width (see convert.py).")
flags.DEFINE_enum("algorithm", "", [""] + list(sub8bit.ALGORITHMS),
                  "int4/mixed/auto: how the 4-bit values are chosen (see convert.py; empty: "
                  f"{sub8bit.DEFAULT_ALGORITHM}); gptq calibrates on the train split. A chain "
                  "with int4_qat keeps min_max, the grid it trained on.")
flags.DEFINE_string("max_ppl_increase", "1%", "--quantize=auto: allowed validation perplexity "
                    "increase over each variant's float32 .tflite.")
flags.DEFINE_integer("epochs", None, "Override the baseline's epochs.", lower_bound=0)
flags.DEFINE_float("dropout", None, "Override the baseline's dropout on non-recurrent "
                   "connections (the recipe of the baseline and of from-scratch variants; "
                   "fine-tuning has --finetune_dropout).", lower_bound=0.0, upper_bound=0.99)
flags.DEFINE_integer("finetune_epochs", 2, "Fine-tuning epochs per variant.", lower_bound=0)
flags.DEFINE_float("finetune_learning_rate", None, "Fine-tuning learning rate (default base/4).")
flags.DEFINE_float("finetune_dropout", None, "Dropout on non-recurrent connections while "
                   "fine-tuning variants that set none (default: the model's own).")
flags.DEFINE_string("model", "", "Use this Keras model as the baseline instead of training one: "
                    "a package run's model.keras or your own LSTM LM (.keras, .h5, SavedModel).")
flags.DEFINE_string("vocab", "", "vocab.txt of --model (default: beside it).")
flags.DEFINE_string("custom_objects", "", "A Python file defining the custom layers of --model "
                    "(e.g. a tied softmax layer), imported before loading it.")
flags.DEFINE_enum("distill", "none", pipeline.DISTILL_MODES,
                  "Knowledge distillation from the baseline: none, only, or both (each variant "
                  "with and without, the distilled one named NAME_kd).")
flags.DEFINE_float("distill_alpha", 0.5, "Weight of the soft-target loss.")
flags.DEFINE_float("distill_temperature", 2.0, "Distillation temperature.")
flags.DEFINE_list("only", None, "Run only these variants or controls (e.g. one per machine); "
                  "the controls of their recipes run too.")
flags.DEFINE_bool("report_only", False, "Only merge finished variants into the report.")
flags.DEFINE_bool("rebenchmark", False,
                  "Re-time every finished export side by side in this process (e.g. on a quiet "
                  "machine after a fan-out), then report.")
flags.DEFINE_integer("rebenchmark_rounds", 3, "--rebenchmark: interleaved rounds over all "
                     "exports; each keeps its median round.", lower_bound=1)
flags.DEFINE_integer("max_bytes", None, "Budget: largest .tflite in bytes.", lower_bound=1)
flags.DEFINE_float("max_latency_ms", None, "Budget: slowest p50 ms per token on this host.")
flags.DEFINE_enum("search", None, list(SEARCH_KINDS),
                  "Default: compose, except with --only (a fan-out runs its variants; "
                  "search once, without --only) and when merging a run that has no "
                  "compose/screen.json (--report_only, --rebenchmark); none: no search. "
                  "grid (or plain --search): with --max_bytes/--max_latency_ms, also fine-tune "
                  "a small grid around the best variant within the budget (each size parameter "
                  "one step down and up: ranks x/sqrt2 and x*sqrt2, sparsities +-0.05, budgets "
                  "and kept fractions x/sqrt2 and x*sqrt2), then choose among all. compose: "
                  "screen chains of methods (ISS or low-rank on the LSTMs x low-rank, "
                  "GroupReduce, slim or TT on embedding and softmax) without fine-tuning, then "
                  "fine-tune the best --compose_finalists per budget (--budgets, else 1/4, 1/10, "
                  "1/20 of the baseline, plus --max_bytes).")
flags.DEFINE_list("budgets", [], "Size budgets for the answer and --search=compose, e.g. "
                  "250k,500k,1M,2M,5M (k = 1000, M = 10^6; default 1/4, 1/10, 1/20 of the "
                  "baseline's fp32 bytes).")
flags.DEFINE_enum("compose_grid", "small", compose.GRIDS, "--search=compose: small (3 LSTM x 3 "
                  "embedding/softmax choices) or full (5 x 7).")
flags.DEFINE_integer("compose_finalists", 1, "--search=compose: chains fine-tuned per budget.",
                     lower_bound=1)
flags.DEFINE_list("compose_dropouts", [], "--search=compose: fine-tune each finalist once per "
                  "dropout rate listed (e.g. 0,0.3; each with its own control), so the recipe "
                  "is chosen on validation per chain; empty: --finetune_dropout for all.")
flags.DEFINE_integer("compose_slice_tokens", 5000, "--search=compose: validation tokens each "
                     "screened export is scored on.", lower_bound=2)
flags.DEFINE_integer("threads", 1, "Benchmark threads.", lower_bound=1)
flags.DEFINE_integer("runs", 200, "Benchmark timed runs (at least).", lower_bound=1)
flags.DEFINE_float("benchmark_secs", 0.25, "Seconds of timed benchmark runs per export (after "
                   "a fifth of that warming up).", lower_bound=0.0)
flags.DEFINE_integer("generated_tokens", None, "Train tokens of the generated corpus.",
                     lower_bound=100)
flags.DEFINE_enum("strategy", "default", distribute.STRATEGIES, "tf.distribute strategy.")
flags.DEFINE_bool("progress", False, "Show training progress bars.")


def search_kind(output_dir: str, training: bool) -> str:
  """--search, or its default: compose when this run trains everything (no --only), or
  when merging a run whose search was screened."""
  if FLAGS.search:
    return FLAGS.search
  if not any(mode in compose.SCREEN_MODES for mode in FLAGS.quantize):
    return "none"  # Nothing to screen in (e.g. --quantize=mixed alone).
  if training:
    return "none" if FLAGS.only else "compose"
  return ("compose" if os.path.exists(os.path.join(output_dir, "compose", "screen.json"))
          else "none")


def main(argv):
  cli.reject_extra_args(argv)
  output_dir = FLAGS.output_dir or f"runs/pipeline_{FLAGS.config}"
  io_utils.check_output_dir(output_dir, FLAGS.overwrite)
  training = not (FLAGS.rebenchmark or FLAGS.report_only)
  search = search_kind(output_dir, training)
  if search == "grid" and not (FLAGS.max_bytes or FLAGS.max_latency_ms):
    raise tflm_compress.UserError("--search needs a budget: --max_bytes and/or --max_latency_ms")
  sizes = tuple(compose.parse_sizes(",".join(FLAGS.budgets))) if FLAGS.budgets else ()
  dropouts = tuple(cli.parse_floats("compose_dropouts", FLAGS.compose_dropouts))
  compose.check_dropouts(dropouts)
  strategy = distribute.make_strategy(FLAGS.strategy)
  preset = get_preset(FLAGS.config)
  if FLAGS.epochs is not None:
    preset = dataclasses.replace(preset, train=dataclasses.replace(preset.train,
                                                                   epochs=FLAGS.epochs))
  if FLAGS.dropout is not None:
    preset = dataclasses.replace(preset, model=dataclasses.replace(preset.model,
                                                                   dropout=FLAGS.dropout))
  variants = (pipeline.load_variants(FLAGS.variants) if FLAGS.variants
              else pipeline.default_variants(FLAGS.config))
  variants = pipeline.with_distillation(variants, FLAGS.distill)
  config = pipeline.PipelineConfig(
      preset=preset, preset_name=FLAGS.config, variants=variants,
      baseline_model=FLAGS.model, quantize=tuple(FLAGS.quantize),
      finetune_epochs=FLAGS.finetune_epochs, finetune_learning_rate=FLAGS.finetune_learning_rate,
      finetune_dropout=FLAGS.finetune_dropout,
      benchmark_threads=FLAGS.threads, benchmark_runs=FLAGS.runs,
      benchmark_secs=FLAGS.benchmark_secs,
      distillation=Distillation(FLAGS.distill_alpha, FLAGS.distill_temperature),
      bits=FLAGS.bits, max_ppl_increase=FLAGS.max_ppl_increase,
      block_size=int(FLAGS.block_size), algorithm=FLAGS.algorithm)
  generated = GeneratedCorpusConfig()
  if FLAGS.generated_tokens:
    tenth = max(FLAGS.generated_tokens // 10, 2)
    generated = dataclasses.replace(generated, train_tokens=FLAGS.generated_tokens,
                                    valid_tokens=tenth, test_tokens=tenth)
  vocab = None
  if FLAGS.model:
    vocab = artifacts.resolve(model=FLAGS.model, vocab=FLAGS.vocab,
                               custom_objects=FLAGS.custom_objects).vocab()
  corpus = load_corpus(FLAGS.data_dir, vocab=vocab, generated=generated)
  def make_runner(config, only):
    return pipeline.Pipeline(config, corpus, output_dir, strategy=strategy, only=only,
                             progress=FLAGS.progress)

  runner = make_runner(config, FLAGS.only)
  io_utils.makedirs(output_dir)
  if training:
    runner.run()
  if search == "compose":
    limits = report.budgets(runner.collect_rows(), FLAGS.max_bytes, FLAGS.max_latency_ms,
                            sizes=sizes)
    config = compose.search(config, runner, make_runner, limits, training,
                            grid=FLAGS.compose_grid, slice_tokens=FLAGS.compose_slice_tokens,
                            per_budget=FLAGS.compose_finalists, dropouts=dropouts)
    runner = make_runner(config, None)
  if search == "grid":
    grid = pipeline.search_variants(runner.collect_rows(), config.variants, FLAGS.max_bytes,
                                    FLAGS.max_latency_ms)
    if training:
      grid = tuple(runner.check_variants(list(grid), skip_invalid=True))
    print(f"search: {len(grid)} variants around the best within budget: "
          f"{', '.join(v.name for v in grid) or '(none: the best is uncompressed)'}")
    config = dataclasses.replace(config, variants=config.variants + grid)
    if training and grid:
      make_runner(config, [v.name for v in grid]).run()
    runner = make_runner(config, None)
  if FLAGS.rebenchmark:
    runner.rebenchmark(FLAGS.rebenchmark_rounds)
  rows = runner.collect_rows()
  if not any(row["variant"] == pipeline.BASELINE for row in rows):
    print(f"report: not written: the baseline has not finished in {output_dir} "
          "(merge with --report_only once it has)")
    return
  published = report.published_rows(corpus.source, FLAGS.config)
  bound = (MarkovWordSource(corpus.generated_config).min_perplexity()
           if corpus.generated_config is not None else None)
  budgets = report.budgets(rows, FLAGS.max_bytes, FLAGS.max_latency_ms, sizes=sizes)
  title = (f"Compression results: preset {FLAGS.config} on "
           f"{'the generated corpus' if bound else corpus.source}")
  results = report.write(rows, output_dir, config.eval_split, published, budgets, bound, title)
  pipeline.export_bundles(results, output_dir)
  print(f"report: {output_dir}/results.md ({len(rows)} rows)")
  print("\n".join(report.summary_lines(results, output_dir) + report.composition_lines(results)))
  if FLAGS.max_bytes or FLAGS.max_latency_ms:
    report.select_best(rows, FLAGS.max_bytes, FLAGS.max_latency_ms)  # The error if none fits.


if __name__ == "__main__":
  # A plain --search (before --search=compose existed) means the grid search.
  sys.argv = ["--search=grid" if arg == "--search" else arg for arg in sys.argv]
  cli.run(main)
