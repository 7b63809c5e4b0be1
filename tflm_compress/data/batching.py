"""Zaremba-style contiguous batching, sharded by row for ``tf.distribute``.

The id stream is cut into ``batch_size`` contiguous rows; batch ``i`` is the
``[batch_size, num_steps]`` window ``i`` of every row, and targets are the
inputs shifted by one token. Row ``b`` of batch ``i+1`` continues row ``b`` of
batch ``i``, so the LSTM state of row ``b`` is carried from batch to batch.

Under a distribution strategy each replica must always get the same rows, so
its carried state stays its own: replica ``r`` of ``R`` owns rows
``[r*B/R, (r+1)*B/R)``. :func:`distributed_lm_dataset` builds, per input
pipeline, a dataset whose consecutive elements go to that pipeline's local
replicas in turn (the order ``tf.distribute`` hands them out).
"""

import numpy as np
import tensorflow as tf

from tflm_compress.errors import UserError


def batchify(ids: np.ndarray, batch_size: int, num_steps: int):
  """Cuts a stream into Zaremba windows.

  Returns:
    ``(inputs, targets)``, each int32 ``[num_batches, batch_size, num_steps]``.
  """
  ids = np.asarray(ids, dtype=np.int32)
  if batch_size <= 0 or num_steps <= 0:
    raise UserError(f"batch_size={batch_size} and num_steps={num_steps} must be > 0")
  row_len = len(ids) // batch_size
  num_batches = (row_len - 1) // num_steps
  if num_batches < 1:
    raise UserError(
        f"{len(ids)} tokens are too few for batch_size={batch_size} x num_steps={num_steps}: "
        f"need at least {batch_size * (num_steps + 1)}")
  rows = ids[: batch_size * row_len].reshape(batch_size, row_len)
  span = num_batches * num_steps
  inputs = rows[:, :span].reshape(batch_size, num_batches, num_steps).transpose(1, 0, 2)
  targets = rows[:, 1:span + 1].reshape(batch_size, num_batches, num_steps).transpose(1, 0, 2)
  return np.ascontiguousarray(inputs), np.ascontiguousarray(targets)


def lm_dataset(ids: np.ndarray, batch_size: int, num_steps: int) -> tf.data.Dataset:
  """The Zaremba batches of one stream as a ``tf.data.Dataset`` of (x, y)."""
  inputs, targets = batchify(ids, batch_size, num_steps)
  return tf.data.Dataset.from_tensor_slices((inputs, targets))


def replica_rows(global_batch_size: int, num_replicas: int, replica_id: int) -> slice:
  """The rows of the global batch that replica ``replica_id`` always gets."""
  if global_batch_size % num_replicas:
    raise UserError(
        f"--batch_size={global_batch_size} is not divisible by the {num_replicas} replicas; "
        f"use a multiple of {num_replicas}")
  per_replica = global_batch_size // num_replicas
  return slice(replica_id * per_replica, (replica_id + 1) * per_replica)


def distributed_lm_dataset(strategy: tf.distribute.Strategy, ids: np.ndarray,
                           global_batch_size: int, num_steps: int):
  """Row-sharded Zaremba batches for ``strategy`` (a distributed dataset).

  Each element a replica receives is its own ``[B/R, num_steps]`` rows.
  """
  inputs, targets = batchify(ids, global_batch_size, num_steps)
  num_replicas = strategy.num_replicas_in_sync
  replica_rows(global_batch_size, num_replicas, 0)  # Validates divisibility.

  def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
    local = num_replicas // context.num_input_pipelines
    first = context.input_pipeline_id * local
    # [num_batches, local, B/R, T]: element (i, l) goes to local replica l.
    per_replica = [
        (inputs[:, replica_rows(global_batch_size, num_replicas, first + l)],
         targets[:, replica_rows(global_batch_size, num_replicas, first + l)])
        for l in range(local)]
    x = np.stack([p[0] for p in per_replica], axis=1)
    y = np.stack([p[1] for p in per_replica], axis=1)
    x = x.reshape((-1,) + x.shape[2:])
    y = y.reshape((-1,) + y.shape[2:])
    return tf.data.Dataset.from_tensor_slices((x, y))

  options = tf.distribute.InputOptions(experimental_fetch_to_device=True)
  return strategy.distribute_datasets_from_function(dataset_fn, options), len(inputs)
