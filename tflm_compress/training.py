"""Training and perplexity evaluation under a ``tf.distribute`` strategy.

The loop follows Zaremba et al. (2014): contiguous rows whose LSTM state is
carried from batch to batch, loss = sum over time steps of the batch-mean
cross-entropy, SGD with a per-epoch learning-rate decay and global-norm
gradient clipping. It is a custom loop over ``strategy.run``: each replica
keeps its own rows (see :mod:`tflm_compress.data.batching`) and its own carried
state (per-replica values passed from step to step); gradients are all-reduced
before clipping, so the update equals a single-device step on the global batch.

A run dir holds ``config.json``, ``checkpoints/`` (one per finished epoch),
``history.json``, ``logs/`` (TensorBoard), and at the end ``model.keras``,
``vocab.txt`` and ``metrics.json``. Rerunning into the same dir resumes after
the last finished epoch.
"""

import dataclasses
import json
import math
import os
import shutil
import time
from typing import Callable

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tflm_compress import distribute, io_utils
from tflm_compress import progress as progress_bar
from tflm_compress.data.batching import batchify, distributed_lm_dataset, replica_rows
from tflm_compress.data.corpus import Corpus
from tflm_compress.errors import UserError
from tflm_compress.evaluation import evaluate_perplexity, perplexity, sequence_nll, state_sizes
from tflm_compress.models.config import ModelConfig, TrainConfig
from tflm_compress.models.lstm_lm import build_language_model, count_params

CONFIG_FILE = "config.json"
HISTORY_FILE = "history.json"
METRICS_FILE = "metrics.json"
MODEL_FILE = "model.keras"
VOCAB_FILE = "vocab.txt"
CHECKPOINT_DIR = "checkpoints"


@dataclasses.dataclass(frozen=True)
class Distillation:
  """Knowledge distillation from a teacher's soft targets (Hinton et al. 2015).

  The per-token objective is ``(1 - alpha) * CE(targets) + alpha * T^2 *
  KL(softmax(teacher / T) || softmax(student / T))``; the teacher streams the
  same rows with its own carried state.

  Attributes:
    alpha: weight of the soft-target term, in [0, 1].
    temperature: softening temperature ``T`` (> 0).
  """

  alpha: float = 0.5
  temperature: float = 2.0

  def __post_init__(self):
    if not 0.0 <= self.alpha <= 1.0:
      raise UserError(f"--distill_alpha={self.alpha}; must be in [0, 1]")
    if self.temperature <= 0:
      raise UserError(f"--distill_temperature={self.temperature}; must be > 0")


class TrainingDivergedError(UserError):
  """The loss became NaN or infinite; the last good checkpoint is kept."""


def _zero_state_fn(model: keras.Model, batch_size: int):
  sizes = state_sizes(model)
  return lambda: [tf.zeros([batch_size, s]) for s in sizes]


def _make_optimizer(train: TrainConfig):
  if train.optimizer == "sgd":
    return keras.optimizers.SGD(learning_rate=train.learning_rate)
  return keras.optimizers.Adam(learning_rate=train.learning_rate)


class Trainer:
  """Owns a model, its optimizer and the distributed train/eval steps.

  Build it inside nothing: it enters ``strategy.scope()`` itself to create the
  model, optimizer and checkpoint.

  Args:
    model_fn: builds the (uncompiled) Keras model; called in the strategy scope.
    train: the training configuration.
    strategy: a ``tf.distribute`` strategy (default: the default strategy).
    extra_loss_fn: optional ``model -> scalar`` added to the loss once per
      global batch (e.g. a group-lasso regularizer).
    callbacks_fn: optional ``model -> [keras.callbacks.Callback]``; the loop
      calls their ``on_train_begin``, ``on_train_batch_begin`` and
      ``on_epoch_end`` (e.g. TFMOT's ``UpdatePruningStep``).
    teacher_fn: optional; builds the (frozen) teacher for ``distillation``.
    distillation: how to mix the teacher's soft targets into the loss.
    projections_fn: optional ``model -> [projection]``, called in the strategy
      scope; each projection's ``project()`` runs before every training step
      and evaluation and ``restore()`` after it, in cross-replica context
      (straight-through training on rounded weights, e.g. ``int4_qat``).
  """

  def __init__(self, model_fn: Callable[[], keras.Model], train: TrainConfig,
               strategy: tf.distribute.Strategy | None = None,
               extra_loss_fn: Callable[[keras.Model], tf.Tensor] | None = None,
               callbacks_fn: Callable[[keras.Model], list] | None = None,
               teacher_fn: Callable[[], keras.Model] | None = None,
               distillation: Distillation | None = None,
               projections_fn: Callable[[keras.Model], list] | None = None):
    self.train_config = train
    self.strategy = strategy or tf.distribute.get_strategy()
    self.num_replicas = self.strategy.num_replicas_in_sync
    replica_rows(train.batch_size, self.num_replicas, 0)  # Divisibility check.
    self.per_replica_batch = train.batch_size // self.num_replicas
    self.extra_loss_fn = extra_loss_fn
    self.distillation = distillation or Distillation()
    with self.strategy.scope():
      self.model = model_fn()
      self.teacher = teacher_fn() if teacher_fn else None
      if self.teacher is not None:
        self.teacher.trainable = False
      self.optimizer = _make_optimizer(train)
      self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
      self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer,
                                            epoch=self.epoch)
      # Not in the checkpoint: a projection's state lives within one step.
      self.projections = list(projections_fn(self.model)) if projections_fn else []
    self.callbacks = list(callbacks_fn(self.model)) if callbacks_fn else []
    for callback in self.callbacks:
      callback.set_model(self.model)
    self._train_step = None

  # ----- one replica -----
  def _replica_train_step(self, tokens, targets, states):
    model, train = self.model, self.train_config
    states = list(states)
    own = len(model.inputs) - 1
    with tf.GradientTape() as tape:
      outputs = model([tokens] + states[:own], training=True)
      logits, new_states = outputs[0], list(outputs[1:])
      token_nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
      nll = tf.reduce_sum(token_nll)
      objective = nll
      if self.teacher is not None:
        teacher_outputs = self.teacher([tokens] + states[own:], training=False)
        new_states += list(teacher_outputs[1:])
        temperature, alpha = self.distillation.temperature, self.distillation.alpha
        soft = tf.nn.softmax(tf.stop_gradient(teacher_outputs[0]) / temperature)
        kl = tf.reduce_sum(soft * (tf.math.log(soft + 1e-20) -
                                   tf.nn.log_softmax(logits / temperature)))
        objective = (1 - alpha) * nll + alpha * temperature**2 * kl
      # Zaremba's cost: sum over time of the mean over the *global* batch.
      loss = objective / train.batch_size
      if self.extra_loss_fn is not None:
        loss += self.extra_loss_fn(model) / self.num_replicas
    variables = model.trainable_variables
    grads = tape.gradient(loss, variables)
    context = tf.distribute.get_replica_context()
    grads = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
    grads, _ = tf.clip_by_global_norm(grads, train.max_grad_norm)
    self.optimizer.apply_gradients(zip(grads, variables), skip_gradients_aggregation=True)
    return nll, new_states

  def _build_train_step(self):
    strategy = self.strategy

    @tf.function
    def step(tokens, targets, states):
      for projection in self.projections:
        projection.project()
      nll, states = strategy.run(self._replica_train_step, args=(tokens, targets, states))
      for projection in self.projections:
        projection.restore()
      return strategy.reduce(tf.distribute.ReduceOp.SUM, nll, axis=None), states

    return step

  def zero_states(self, per_replica_batch: int):
    """Carried state of every replica: the model's, then the teacher's if any."""
    fns = [_zero_state_fn(m, per_replica_batch) for m in (self.model, self.teacher) if m]
    return self.strategy.experimental_distribute_values_from_function(
        lambda _: [s for fn in fns for s in fn()])

  def train_epoch(self, ids: np.ndarray, progress: bool = True) -> dict:
    """One pass over ``ids``; returns ``{'ppl', 'words_per_sec', 'tokens'}``."""
    train = self.train_config
    if self._train_step is None:
      self._train_step = self._build_train_step()
      for callback in self.callbacks:
        callback.on_train_begin()
    dataset, num_batches = distributed_lm_dataset(self.strategy, ids, train.batch_size,
                                                  train.num_steps)
    states = self.zero_states(self.per_replica_batch)
    epoch = int(self.epoch.numpy()) + 1
    # Drawn in place on a terminal only: a log or pipe gets the epoch's summary line.
    bar = progress_bar.Bar(num_batches, f"epoch {epoch}", enabled=None if progress else False)
    total_nll, tokens_seen, start = 0.0, 0, time.time()
    for i, (tokens, targets) in enumerate(dataset):
      for callback in self.callbacks:
        callback.on_train_batch_begin(i)
      nll, states = self._train_step(tokens, targets, states)
      nll = float(nll)
      if not math.isfinite(nll):
        raise TrainingDivergedError(
            f"loss is {nll} at epoch {int(self.epoch.numpy()) + 1}, batch {i + 1}; "
            "stopped without saving this epoch (the last good checkpoint is kept); "
            "lower --learning_rate or --max_grad_norm")
      total_nll += nll
      tokens_seen += train.batch_size * train.num_steps
      elapsed = time.time() - start
      bar.update(i + 1, ppl=perplexity(total_nll / tokens_seen),
                 wps=tokens_seen / max(elapsed, 1e-9))
    bar.close()
    elapsed = time.time() - start
    for callback in self.callbacks:
      callback.on_epoch_end(int(self.epoch.numpy()))
    return {"ppl": perplexity(total_nll / tokens_seen), "tokens": tokens_seen,
            "words_per_sec": tokens_seen / elapsed, "seconds": elapsed}

  def evaluate(self, ids: np.ndarray, batch_size: int | None = None,
               num_steps: int | None = None) -> dict:
    """Perplexity on ``ids``, of the projected weights when there are projections."""
    for projection in self.projections:
      projection.project()
    try:
      return evaluate_perplexity(self.model, ids,
                                 batch_size or self.train_config.eval_batch_size,
                                 num_steps or self.train_config.eval_num_steps,
                                 strategy=self.strategy)
    finally:
      for projection in self.projections:
        projection.restore()


class ProjectionCallback(keras.callbacks.Callback):
  """A weight projection (see :class:`Trainer`) for ``model.fit``: ``project()``
  before each batch and before evaluation, ``restore()`` after it."""

  def __init__(self, projection):
    super().__init__()
    self.projection = projection

  def on_train_batch_begin(self, batch, logs=None):
    self.projection.project()

  def on_train_batch_end(self, batch, logs=None):
    self.projection.restore()

  def on_test_begin(self, logs=None):
    self.projection.project()

  def on_test_end(self, logs=None):
    self.projection.restore()


def _check_run_dir(output_dir: str, config_text: str) -> None:
  path = os.path.join(output_dir, CONFIG_FILE)
  if not tf.io.gfile.exists(path):
    return
  with tf.io.gfile.GFile(path) as f:
    existing = f.read()
  if json.loads(existing) != json.loads(config_text):
    raise UserError(
        f"--output_dir={output_dir!r} holds a run with a different configuration "
        f"({path}); use a new --output_dir or the same flags to resume it")


def train_language_model(corpus: Corpus, model_config: ModelConfig, train_config: TrainConfig,
                         output_dir: str, strategy: tf.distribute.Strategy | None = None,
                         progress: bool = True, log: Callable[[str], None] = print,
                         extra_config: dict | None = None) -> dict:
  """Trains (or resumes) a fresh model of ``model_config`` and writes a run dir.

  Returns:
    The metrics written to ``metrics.json``.
  """
  model_config = model_config.with_vocab_size(len(corpus.vocab))
  run_config = {"model": model_config.to_dict(), **(extra_config or {})}
  return run_training(lambda: build_language_model(model_config, seed=train_config.seed),
                      corpus, train_config, output_dir, run_config, strategy=strategy,
                      progress=progress, log=log)


def _save_checkpoint(manager: tf.train.CheckpointManager, number: int) -> None:
  """``manager.save``, with a full disk or lost permission as a clear error.

  TensorFlow writes the checkpoint files before it points the ``checkpoint``
  state file at them, so a failed save leaves the last good checkpoint in use.
  """
  try:
    manager.save(checkpoint_number=number)
  except (tf.errors.OpError, OSError) as e:
    last = manager.latest_checkpoint
    raise UserError(f"cannot write checkpoint {number} in {manager.directory!r}: "
                    f"{getattr(e, 'message', None) or e}; "
                    + (f"the last good checkpoint {last!r} is kept and a rerun resumes from it"
                       if last else "no checkpoint was written yet")) from None


def run_training(model_fn: Callable[[], keras.Model], corpus: Corpus, train_config: TrainConfig,
                 output_dir: str, run_config: dict,
                 strategy: tf.distribute.Strategy | None = None, progress: bool = True,
                 log: Callable[[str], None] = print,
                 extra_loss_fn: Callable[[keras.Model], tf.Tensor] | None = None,
                 callbacks_fn: Callable[[keras.Model], list] | None = None,
                 finalize_fn: Callable[[keras.Model], keras.Model] | None = None,
                 report_fn: Callable[[keras.Model], dict] | None = None,
                 teacher_fn: Callable[[], keras.Model] | None = None,
                 distillation: Distillation | None = None,
                 projections_fn: Callable[[keras.Model], list] | None = None) -> dict:
  """Trains (or resumes) the model ``model_fn`` builds and writes a run dir.

  The shared loop of training from scratch and of fine-tuning a compressed
  model. ``model_fn`` is called inside the strategy scope.

  Args:
    run_config: what made this run (written to ``config.json`` with the
      training config and the corpus description; a rerun with a different
      one into the same dir is refused).
    extra_loss_fn, callbacks_fn, teacher_fn, distillation, projections_fn: see
      :class:`Trainer`.
    finalize_fn: applied to the trained model before it is evaluated and
      saved (e.g. stripping pruning wrappers).
    report_fn: ``model -> dict`` of method-specific facts for ``metrics.json``
      (under ``method_report``).

  Returns:
    The metrics written to ``metrics.json``.
  """
  strategy = strategy or tf.distribute.get_strategy()
  config_text = json.dumps({**run_config, "train": train_config.to_dict(),
                            "corpus": corpus.describe()}, indent=2, sort_keys=True)
  chief = distribute.is_chief(strategy)
  write_dir = distribute.writer_dir(strategy, output_dir)
  if chief:
    _check_run_dir(output_dir, config_text)
  # Batch/replica checks happen in Trainer before anything is written.
  keras.utils.set_random_seed(train_config.seed)
  trainer = Trainer(model_fn, train_config, strategy, extra_loss_fn=extra_loss_fn,
                    callbacks_fn=callbacks_fn, teacher_fn=teacher_fn, distillation=distillation,
                    projections_fn=projections_fn)
  io_utils.makedirs(write_dir)
  if chief:
    io_utils.atomic_write_text(os.path.join(output_dir, CONFIG_FILE), config_text + "\n")
    corpus.vocab.save(os.path.join(output_dir, VOCAB_FILE))
  manager = tf.train.CheckpointManager(trainer.checkpoint,
                                       os.path.join(write_dir, CHECKPOINT_DIR), max_to_keep=2)
  history = []
  # Every worker restores from the chief's checkpoints (TensorFlow's
  # multi-worker pattern); non-chief workers only save to their temp dir.
  latest = tf.train.latest_checkpoint(os.path.join(output_dir, CHECKPOINT_DIR))
  if latest:
    trainer.checkpoint.restore(latest).expect_partial()
    history_path = os.path.join(output_dir, HISTORY_FILE)
    if tf.io.gfile.exists(history_path):
      history = io_utils.read_json(history_path)[: int(trainer.epoch.numpy())]
    log(f"resuming {output_dir} after epoch {int(trainer.epoch.numpy())}")
  summary_writer = tf.summary.create_file_writer(os.path.join(write_dir, "logs"))
  train_ids, valid_ids = corpus.split("train"), corpus.split("valid")
  params = count_params(trainer.model)
  log(f"model: {params:,} params")
  while int(trainer.epoch.numpy()) < train_config.epochs:
    epoch = int(trainer.epoch.numpy())
    lr = train_config.learning_rate_at(epoch)
    trainer.optimizer.learning_rate.assign(lr)
    log(f"epoch {epoch + 1}/{train_config.epochs}  lr {lr:.4g}")
    train_stats = trainer.train_epoch(train_ids, progress=progress)
    valid_stats = trainer.evaluate(valid_ids)
    row = {"epoch": epoch + 1, "learning_rate": lr, "train_ppl": train_stats["ppl"],
           "valid_ppl": valid_stats["ppl"], "words_per_sec": train_stats["words_per_sec"],
           "seconds": train_stats["seconds"]}
    history.append(row)
    log(f"epoch {epoch + 1}: train ppl {row['train_ppl']:.2f}  valid ppl {row['valid_ppl']:.2f}"
        f"  {row['words_per_sec']:.0f} words/s")
    with summary_writer.as_default(step=epoch + 1):
      for key in ("train_ppl", "valid_ppl", "learning_rate", "words_per_sec"):
        tf.summary.scalar(key, row[key])
    trainer.epoch.assign_add(1)
    _save_checkpoint(manager, epoch + 1)
    if chief:
      io_utils.atomic_write_json(os.path.join(output_dir, HISTORY_FILE), history)
  summary_writer.flush()
  if finalize_fn is not None:
    with strategy.scope():
      trainer.model = finalize_fn(trainer.model)
    trainer.projections = []  # The final model (stripped: rounded for good) is evaluated as is.
    params = count_params(trainer.model)
  test_stats = trainer.evaluate(corpus.split("test"))
  valid_stats = trainer.evaluate(valid_ids)
  metrics = {
      "params": params,
      "valid_ppl": valid_stats["ppl"],
      "test_ppl": test_stats["ppl"],
      "train_ppl": history[-1]["train_ppl"] if history else None,
      "words_per_sec": float(np.mean([h["words_per_sec"] for h in history])) if history else None,
      "epochs": len(history),
      "history": history,
      "eval": {"batch_size": train_config.eval_batch_size,
               "num_steps": train_config.eval_num_steps,
               "test_tokens": test_stats["tokens"], "valid_tokens": valid_stats["tokens"]},
      "num_replicas": trainer.num_replicas,
      "config": json.loads(config_text),
  }
  if report_fn is not None:
    metrics["method_report"] = report_fn(trainer.model)
  # Every worker saves (saving may need collectives); only the chief's copy stays.
  io_utils.atomic_save_keras(trainer.model, os.path.join(write_dir, MODEL_FILE))
  if chief:
    io_utils.atomic_write_json(os.path.join(output_dir, METRICS_FILE), metrics)
  else:
    shutil.rmtree(write_dir, ignore_errors=True)
  log(f"test ppl {metrics['test_ppl']:.2f}  valid ppl {metrics['valid_ppl']:.2f}")
  return metrics
