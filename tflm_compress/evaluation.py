"""Perplexity of a Keras language model over a split, state carried (Zaremba et al.).

Shared by training (validation after each epoch), export (Keras beside the
``.tflite``) and the public :func:`tflm_compress.evaluate`.
"""

import math

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tflm_compress.data.batching import replica_rows
from tflm_compress.errors import UserError


def perplexity(mean_nll: float) -> float:
  """``exp(mean NLL)``, ``inf`` past float range (a diverging model, not a crash)."""
  return math.exp(mean_nll) if mean_nll < 709 else float("inf")


def state_sizes(model: keras.Model) -> list[int]:
  return [int(t.shape[-1]) for t in model.inputs[1:]]

def sequence_nll(model: keras.Model, tokens, targets, states, weights=None, training=False):
  """Summed NLL (nats) of ``targets`` and the new states.

  Args:
    tokens, targets: int32 ``[B, T]``.
    states: the model's state inputs.
    weights: optional float ``[B, T]``; 0 excludes a position (padding).
  """
  outputs = model([tokens] + list(states), training=training)
  logits, new_states = outputs[0], outputs[1:]
  nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
  if weights is not None:
    nll = nll * weights
  return tf.reduce_sum(nll), new_states

def eval_windows(ids: np.ndarray, batch_size: int, num_steps: int):
  """All next-token predictions of ``batch_size`` contiguous rows, padded.

  Returns ``(tokens, targets, weights)``, each ``[num_windows, B, T]``;
  ``weights`` is 0 on padding. Every token of each row after its first is a
  target exactly once.
  """
  ids = np.asarray(ids, dtype=np.int32)
  row_len = len(ids) // batch_size
  if row_len < 2:
    raise UserError(f"{len(ids)} tokens are too few to evaluate with batch_size={batch_size}")
  rows = ids[: batch_size * row_len].reshape(batch_size, row_len)
  num_targets = row_len - 1
  num_windows = -(-num_targets // num_steps)
  span = num_windows * num_steps
  tokens = np.zeros((batch_size, span), np.int32)
  targets = np.zeros((batch_size, span), np.int32)
  weights = np.zeros((batch_size, span), np.float32)
  tokens[:, :num_targets] = rows[:, :-1]
  targets[:, :num_targets] = rows[:, 1:]
  weights[:, :num_targets] = 1.0

  def windows(a):
    return a.reshape(batch_size, num_windows, num_steps).transpose(1, 0, 2)

  return windows(tokens), windows(targets), windows(weights)


def evaluate_perplexity(model: keras.Model, ids: np.ndarray, batch_size: int = 1,
                        num_steps: int = 35,
                        strategy: tf.distribute.Strategy | None = None) -> dict:
  """Perplexity of ``ids`` with state carried over each row (the standard way).

  With ``batch_size=1`` the whole split is one stream: exp of the mean NLL over
  every token after the first (``<eos>`` included). Rows are sharded over the
  strategy's replicas when ``batch_size`` divides evenly, and NLL and token
  counts are summed across replicas.

  Returns:
    ``{'ppl', 'nll', 'tokens'}`` (``nll`` in nats per token).
  """
  strategy = strategy or tf.distribute.get_strategy()
  replicas = strategy.num_replicas_in_sync
  if batch_size % replicas:
    strategy, replicas = tf.distribute.get_strategy(), 1
  tokens, targets, weights = eval_windows(ids, batch_size, num_steps)
  per_replica = batch_size // replicas
  sizes = state_sizes(model)

  def replica_step(x, y, w, states):
    return sequence_nll(model, x, y, states, weights=w)

  @tf.function
  def step(x, y, w, states):
    nll, states = strategy.run(replica_step, args=(x, y, w, states))
    return strategy.reduce(tf.distribute.ReduceOp.SUM, nll, axis=None), states

  def shard(a):
    return strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant(a[replica_rows(batch_size, replicas,
                                               ctx.replica_id_in_sync_group)]))

  states = strategy.experimental_distribute_values_from_function(
      lambda _: [tf.zeros([per_replica, s]) for s in sizes])
  total = 0.0
  for x, y, w in zip(tokens, targets, weights):
    nll, states = step(shard(x), shard(y), shard(w), states)
    total += float(nll)
  count = float(weights.sum())
  return {"ppl": perplexity(total / count), "nll": total / count, "tokens": int(count)}
