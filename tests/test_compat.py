import os

import numpy as np

from tflm_compress import compat


def test_legacy_keras_is_selected_before_tensorflow():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tf_keras  # pylint: disable=g-import-not-at-top

  assert os.environ["TF_USE_LEGACY_KERAS"] == "1"
  assert tf.keras.layers.Dense is tf_keras.layers.Dense  # TFMOT needs Keras 2.


def test_t3f_imports_and_its_tt_svd_reproduces_a_matrix():
  t3f = compat.import_t3f()
  rng = np.random.default_rng(0)
  matrix = rng.normal(size=(6, 20)).astype(np.float32)
  # Full TT-rank: TT-SVD is exact.
  tt = t3f.to_tt_matrix(matrix, shape=((2, 3), (4, 5)), max_tt_rank=100)
  np.testing.assert_allclose(t3f.full(tt).numpy(), matrix, atol=1e-5)
