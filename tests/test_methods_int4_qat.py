"""Int4 QAT: fine-tuning on the int4 export's grid, straight-through."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import tflm_compress as tc
from tflm_compress import export, pipeline
from tflm_compress.errors import UserError
from tflm_compress.export import sub8bit
from tflm_compress.methods import int4_qat, low_rank, tensor_train
from tflm_compress.models import ModelConfig, build_language_model
from tflm_compress.models.config import TrainConfig
from tflm_compress.training import ProjectionCallback, Trainer

CONFIG = ModelConfig(vocab_size=60, embedding_size=16, hidden_sizes=(16, 16))


def _model(**overrides):
  return build_language_model(ModelConfig(**{**CONFIG.to_dict(), **overrides}), seed=3)


def _big_weights(**overrides):
  """Weights large enough for rounding to show in the logits (max |logit| ~0.15)."""
  return _model(init_scale=0.5, **overrides)


def _low_rank(model):
  return low_rank.compress(model, low_rank.Config(rank=4))


def _weight_only_int4(model, block_size: int = 0) -> bytes:
  model_bytes, _ = sub8bit.export_sub8bit(model, "int4", compute="weight_only",
                                          algorithm="min_max", block_size=block_size)
  return model_bytes


def _max_logit_gap(a: bytes, b: bytes, ids) -> float:
  return float(np.abs(export.TFLiteStepModel(a).run(ids) -
                      export.TFLiteStepModel(b).run(ids)).max())


def test_grid_values_golden():
  w = np.array([[0.7, -0.1], [0.33, 0.21], [-0.06, -0.4]], np.float32)
  s = 0.4 / 7  # Column 1's scale, and row 2's.
  cols = int4_qat.grid_values([w], axis=0, bits=4)[0].numpy()  # Scales 0.1 and 0.4/7.
  np.testing.assert_allclose(cols, [[0.7, -2 * s], [0.3, 4 * s], [-0.1, -0.4]], atol=1e-6)
  rows = int4_qat.grid_values([w], axis=1, bits=4)[0].numpy()  # 0.1, 0.33/7, 0.4/7.
  np.testing.assert_allclose(rows, [[0.7, -0.1], [0.33, 4 * 0.33 / 7], [-s, -0.4]], atol=1e-6)
  # Two weights stacked along the reduced axis share the column's scale.
  a, b = int4_qat.grid_values([w[:1], w[1:]], axis=0, bits=4)
  np.testing.assert_allclose(np.concatenate([a, b]), cols, atol=1e-7)
  two_bits = int4_qat.grid_values([w], axis=0, bits=2)[0].numpy()  # One level each side.
  np.testing.assert_allclose(two_bits, [[0.7, 0], [0, 0.4], [0, -0.4]], atol=1e-6)


@pytest.mark.parametrize("make", [_big_weights, lambda: _low_rank(_big_weights()),
                                  lambda: _big_weights(tie_embeddings=True)],
                         ids=["dense", "low_rank", "tied"])
def test_stripped_model_is_what_the_int4_export_stores(make):
  """After strip, a weight-only int4 (min_max) export computes the float export's logits:
  every weight is already on the file's grid (measured: 6e-8, 9e-9, 6e-8). Before,
  the same export moves them (3e-2, 4e-3, 3e-2)."""
  model = make()
  ids = np.arange(40) % 60
  before = _max_logit_gap(_weight_only_int4(model), sub8bit.float_step_model(model), ids)
  stripped = int4_qat.strip(model, int4_qat.Config())
  assert int4_qat.off_grid_fraction(stripped) == 0.0
  after = _max_logit_gap(_weight_only_int4(stripped), sub8bit.float_step_model(stripped), ids)
  assert after < 1e-6 < 1e-3 < before


def test_blocks_are_what_a_block_wise_export_stores():
  """--block_size=32 on 32-wide rows and a 64-wide LSTM input (two blocks per row: the
  kernel's and the recurrent kernel's). Block-wise int4 is dynamic-only here, so the
  activations' on-the-fly int8 adds its own error (~0.006): measured, the export of a
  model stripped on the block grid moves the logits by 0.006, one stripped per channel
  by 0.012, one not stripped by 0.10."""
  def model():
    return _big_weights(embedding_size=32, hidden_sizes=(32,))

  config = int4_qat.Config(int4_qat_block_size=32)
  ids = np.arange(40) % 60

  def gap(m):
    exported, _ = sub8bit.export_sub8bit(m, "int4", algorithm="min_max", block_size=32)
    return _max_logit_gap(exported, sub8bit.float_step_model(m), ids)

  blocks = int4_qat.strip(model(), config)
  channels = int4_qat.strip(model(), int4_qat.Config())
  assert int4_qat.off_grid_fraction(blocks, config) == 0.0
  assert int4_qat.off_grid_fraction(channels, config) > 0.1  # Another grid.
  assert gap(blocks) < 0.7 * gap(channels) and gap(blocks) < 0.15 * gap(model())
  assert int4_qat.BLOCK_SIZES == sub8bit.BLOCK_SIZES


def test_block_grid_golden():
  w = np.array([[1.0, 0.25, -0.5, 0.1]], np.float32)  # One row of a table, blocks of 2.
  q = int4_qat.grid_values([w], axis=1, bits=4, block_size=2)[0].numpy()
  # Block scales 1/7 and 0.5/7 (bfloat16: 0.142578125 and 0.0712890625).
  s1, s2 = 0.142578125, 0.0712890625
  np.testing.assert_allclose(q, [[7 * s1, 2 * s1, -7 * s2, 1 * s2]], rtol=1e-7)
  # A width the block does not divide: one scale per channel, as the export falls back.
  np.testing.assert_allclose(int4_qat.grid_values([w[:, :3]], axis=1, bits=4, block_size=2)[0],
                             int4_qat.grid_values([w[:, :3]], axis=1, bits=4)[0])


def test_channel_groups_follow_the_lowering():
  groups = int4_qat.channel_groups(_model(), int4_qat.Config())
  names = [([v.name.split("/")[-2] + "/" + v.name.split("/")[-1].split(":")[0]
             for v in vs], axis) for vs, axis in groups]
  assert names == [(["embedding/embeddings"], 1),
                   (["lstm_0/kernel", "lstm_0/recurrent_kernel"], 0),
                   (["lstm_1/kernel", "lstm_1/recurrent_kernel"], 0),
                   (["softmax/kernel"], 0)]
  only = int4_qat.channel_groups(_model(), int4_qat.Config(int4_qat_targets="softmax"))
  assert len(only) == 1 and only[0][0][0].name.startswith("softmax/")


def test_bad_configs_and_unsupported_layers():
  with pytest.raises(UserError, match=r"--int4_qat_bits=3; use one of \(2, 4, 8\)"):
    int4_qat.Config(int4_qat_bits=3)
  with pytest.raises(UserError, match=r"--int4_qat_block_size=16; use one of \(0, 32, 64"):
    int4_qat.Config(int4_qat_block_size=16)
  with pytest.raises(UserError, match=r"--int4_qat_targets='lstm,rnn'; use a comma-separated"):
    int4_qat.Config(int4_qat_targets="lstm,rnn")
  tt = tensor_train.compress(_model(), tensor_train.Config(tt_rank=0, tt_softmax_rank=2))
  with pytest.raises(UserError, match=r"int4_qat: layer 'softmax' is a TTDense, whose weights"):
    int4_qat.compress(tt, int4_qat.Config())


@pytest.mark.parametrize("mirrored", [False, True], ids=["default", "mirrored"])
def test_train_step_is_straight_through(mirrored):
  """One SGD step of the Trainer: gradients at the rounded weights, applied to the shadow
  weights (also under MirroredStrategy, where the swap runs in cross-replica context)."""
  config = int4_qat.Config()
  strategy = tf.distribute.MirroredStrategy(["/cpu:0"]) if mirrored else None
  recipe = TrainConfig(batch_size=2, num_steps=5, learning_rate=0.5, max_grad_norm=1e9,
                       optimizer="sgd", epochs=1)
  trainer = Trainer(lambda: build_language_model(CONFIG, seed=3), recipe, strategy,
                    projections_fn=lambda m: int4_qat.weight_projections(m, config))
  model = trainer.model
  shadow = [v.numpy() for v in model.trainable_variables]
  tokens = tf.constant(np.arange(10).reshape(2, 5) % 60, tf.int32)
  targets = tf.constant((np.arange(10).reshape(2, 5) + 1) % 60, tf.int32)
  # The reference: the gradient of the same loss at the rounded weights.
  reference = build_language_model(CONFIG, seed=3)
  for variables, axis in int4_qat.channel_groups(reference, config):
    for v, q in zip(variables, int4_qat.grid_values(variables, axis, 4)):
      v.assign(q)
  with tf.GradientTape() as tape:
    logits = reference([tokens] + [tf.zeros([2, 16])] * 4, training=True)[0]
    loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(targets, logits)) / 2
  grads = tape.gradient(loss, reference.trainable_variables)
  step = trainer._build_train_step()  # pylint: disable=protected-access
  step(tokens, targets, trainer.zero_states(2))
  for before, after, g in zip(shadow, model.trainable_variables, grads):
    np.testing.assert_allclose(after.numpy(), before - 0.5 * tf.convert_to_tensor(g).numpy(),
                               atol=1e-5)
  assert int4_qat.off_grid_fraction(model) > 0.5  # The shadow weights are off the grid.
  # Evaluation sees the rounded model and leaves the shadow weights as they were.
  after_step = [v.numpy() for v in model.trainable_variables]
  ids = np.arange(200) % 60
  rounded = trainer.evaluate(ids, batch_size=2, num_steps=5)["ppl"]
  for before, v in zip(after_step, model.trainable_variables):
    np.testing.assert_array_equal(v.numpy(), before)
  trainer.projections = []
  assert trainer.evaluate(ids, batch_size=2, num_steps=5)["ppl"] != pytest.approx(rounded,
                                                                                  rel=1e-6)


def test_export_algorithm_follows_the_chain():
  assert pipeline.sub8bit_algorithm("low_rank+int4_qat") == "min_max"
  assert pipeline.sub8bit_algorithm("low_rank") == sub8bit.DEFAULT_ALGORITHM == "hadamard"
  assert pipeline.sub8bit_algorithm("") == "hadamard"


def test_api_finetune_then_strip_lands_on_the_grid(small_corpus):
  model = tc.compress(_model(vocab_size=len(small_corpus.vocab)), tc.Int4QAT(),
                      corpus=small_corpus)
  tuned = tc.finetune(model, small_corpus, epochs=1,
                      base_recipe=TrainConfig(batch_size=8, num_steps=10, epochs=1))
  assert int4_qat.off_grid_fraction(tuned) > 0
  stripped = tc.strip(tuned)
  assert int4_qat.off_grid_fraction(stripped) == 0.0


def test_model_fit_callback_restores_the_shadow_weights():
  model = _model()
  projection = int4_qat.GridProjection(model, int4_qat.Config())
  callback = ProjectionCallback(projection)
  shadow = [v.numpy() for v in model.trainable_variables]
  callback.on_train_batch_begin(0)
  assert int4_qat.off_grid_fraction(model) == 0.0
  callback.on_train_batch_end(0)
  for before, v in zip(shadow, model.trainable_variables):
    np.testing.assert_allclose(v.numpy(), before, atol=1e-7)
