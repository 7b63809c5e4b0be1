import numpy as np
import pytest
import tensorflow as tf

from tflm_compress.data import batchify, distributed_lm_dataset, lm_dataset
from tflm_compress.data.batching import replica_rows
from tflm_compress.errors import UserError


def test_shapes_targets_and_row_continuity():
  ids = np.arange(103)
  x, y = batchify(ids, batch_size=4, num_steps=5)
  # 103 // 4 = 25 tokens per row -> (25 - 1) // 5 = 4 batches.
  assert x.shape == y.shape == (4, 4, 5)
  np.testing.assert_array_equal(y, x + 1)  # Targets are the next token.
  # Row b of batch i+1 continues row b of batch i.
  np.testing.assert_array_equal(x[1:, :, 0], x[:-1, :, -1] + 1)
  np.testing.assert_array_equal(x[0, :, 0], [0, 25, 50, 75])


def test_dataset_yields_the_same_batches():
  ids = np.arange(400)
  x, y = batchify(ids, 4, 10)
  got = list(lm_dataset(ids, 4, 10).as_numpy_iterator())
  assert len(got) == len(x)
  np.testing.assert_array_equal(got[2][0], x[2])


def test_too_few_tokens():
  with pytest.raises(UserError, match="too few"):
    batchify(np.arange(10), 4, 5)


def test_replica_rows_and_divisibility():
  assert replica_rows(8, 2, 1) == slice(4, 8)
  with pytest.raises(UserError, match="not divisible by the 3 replicas"):
    replica_rows(8, 3, 0)


def test_default_strategy_distributed_dataset_is_the_plain_one():
  ids = np.arange(400)
  dataset, n = distributed_lm_dataset(tf.distribute.get_strategy(), ids, 4, 10)
  x, _ = batchify(ids, 4, 10)
  got = [b[0].numpy() for b in dataset]
  assert n == len(x) == len(got)
  np.testing.assert_array_equal(np.stack(got), x)
