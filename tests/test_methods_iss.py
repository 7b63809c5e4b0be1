import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tflm_compress import testing
from tflm_compress.errors import UserError
from tflm_compress.methods import iss, low_rank
from tflm_compress.models import ModelConfig, build_language_model, count_params, load_model

from conftest import compress_tiny_run

CONFIG = ModelConfig(vocab_size=30, embedding_size=5, hidden_sizes=(6, 7), dropout=0.2)
TOKENS = (np.arange(24, dtype=np.int32).reshape(2, 12) * 7) % 30


def _model(config=CONFIG, seed=0):
  """A model with random biases too (zero biases would hide a bias left out of a group)."""
  model = build_language_model(config, seed=seed)
  rng = np.random.default_rng(seed)
  for layer in model.layers:
    if getattr(layer, "bias", None) is not None:
      layer.bias.assign(rng.normal(size=layer.bias.shape).astype(np.float32))
  return model


def _states(model, rng=None):
  sizes = [int(t.shape[-1]) for t in model.inputs[1:]]
  if rng is None:
    return [np.zeros((TOKENS.shape[0], s), np.float32) for s in sizes]
  return [rng.normal(size=(TOKENS.shape[0], s)).astype(np.float32) for s in sizes]


def _outputs(model, states=None):
  states = _states(model) if states is None else states
  return [np.asarray(o) for o in model([TOKENS] + states, training=False)]


def _site_arrays(site):
  arrays = {"kernel": site.lstm.kernel.numpy(),
            "recurrent_kernel": site.lstm.recurrent_kernel.numpy(), "bias": site.lstm.bias.numpy()}
  if site.consumer_kernel is not None:
    arrays["consumer_kernel"] = site.consumer_kernel.numpy()
  return arrays


def _masks(site, k):
  width = None if site.consumer_kernel is None else int(site.consumer_kernel.shape[1])
  return iss.component_masks(k, site.lstm.units, int(site.lstm.kernel.shape[0]), width)


def _zero_by_masks(site, components):
  """Zeroes components with the masks of the group definition (not zero_components)."""
  variables = {"kernel": site.lstm.kernel, "recurrent_kernel": site.lstm.recurrent_kernel,
               "bias": site.lstm.bias, "consumer_kernel": site.consumer_kernel}
  for k in components:
    for name, mask in _masks(site, k).items():
      variables[name].assign(np.where(mask, 0.0, variables[name].numpy()))


def _reference_norms(site):
  arrays = _site_arrays(site)
  return np.array([np.sqrt(sum(np.sum(arrays[n][m].astype(np.float64) ** 2)
                               for n, m in _masks(site, k).items()))
                   for k in range(site.lstm.units)])


# ----- The group definition -------------------------------------------------------------------

def test_masks_cover_exactly_the_weights_of_each_unit():
  units, input_dim, width = 4, 3, 10
  masks = [iss.component_masks(k, units, input_dim, width) for k in range(units)]
  for k, m in enumerate(masks):
    assert sum(int(v.sum()) for v in m.values()) == iss.group_size(units, input_dim, width)
    # Columns k, H+k, 2H+k, 3H+k of the gate matrices; row k of the recurrent and consumer.
    cols = [k, units + k, 2 * units + k, 3 * units + k]
    assert np.flatnonzero(m["bias"]).tolist() == cols
    assert np.all(m["kernel"][:, cols]) and m["kernel"].sum() == 4 * input_dim
    assert np.all(m["recurrent_kernel"][k]) and np.all(m["recurrent_kernel"][:, cols])
    assert np.flatnonzero(m["consumer_kernel"].any(axis=1)).tolist() == [k]
  count = {n: sum(m[n].astype(int) for m in masks) for n in masks[0]}
  # Every input-kernel, bias and consumer weight is in exactly one component;
  # recurrent_kernel[j, gH+k] is in component k (computes k) and j (reads h[j]).
  assert np.all(count["kernel"] == 1) and np.all(count["bias"] == 1)
  assert np.all(count["consumer_kernel"] == 1)
  expected = np.full((units, 4 * units), 2)
  for k in range(units):
    expected[k, iss.gate_columns(units, [k])] = 1
  np.testing.assert_array_equal(count["recurrent_kernel"], expected)


def test_group_norms_match_the_masks():
  model = _model()
  for site in iss.sites(model):
    np.testing.assert_allclose(site.norms().numpy(), _reference_norms(site), rtol=1e-5)


@pytest.mark.parametrize("layer_index, unit", [(0, 2), (1, 5)])
def test_a_zeroed_group_is_a_dead_unit(layer_index, unit):
  model = _model()
  site = iss.sites(model)[layer_index]
  before = _outputs(model)
  _zero_by_masks(site, [unit])
  hidden = keras.Model(model.inputs, [site.lstm.output[0], model.outputs[0]])
  states = _states(model)
  outputs, logits = [np.asarray(o) for o in hidden([TOKENS] + states, training=False)]
  # From a zero state its h stays exactly 0 at every step...
  assert np.all(outputs[:, :, unit] == 0)
  # ... and whatever its state, nothing reads it: the logits do not change.
  rng = np.random.default_rng(1)
  for index in (2 * layer_index, 2 * layer_index + 1):  # h{i}, c{i}
    changed = [s.copy() for s in states]
    changed[index][:, unit] = rng.normal(size=TOKENS.shape[0]) * 3
    np.testing.assert_array_equal(np.asarray(hidden([TOKENS] + changed, training=False)[1]),
                                  logits)
  # The group mattered: the model did change.
  assert np.abs(logits - before[0]).max() > 1e-3


def test_part_of_a_group_is_not_enough():
  """Zero the unit's inputs but not its outgoing rows: a nonzero c still reaches the logits."""
  model = _model()
  site = iss.sites(model)[0]
  masks = _masks(site, 1)
  for name, variable in (("kernel", site.lstm.kernel), ("bias", site.lstm.bias)):
    variable.assign(np.where(masks[name], 0.0, variable.numpy()))
  states = _states(model)
  changed = [s.copy() for s in states]
  changed[1][:, 1] = 2.0  # c0 of unit 1
  assert np.abs(_outputs(model, changed)[0] - _outputs(model, states)[0]).max() > 1e-4


# ----- Regularizer ----------------------------------------------------------------------------

def test_group_lasso_gradient_matches_finite_differences():
  rng = np.random.default_rng(0)
  units, input_dim, width = 3, 4, 5
  values = [rng.normal(size=s) for s in ((input_dim, 4 * units), (units, 4 * units),
                                         (4 * units,), (units, width))]
  values[0][:, iss.gate_columns(units, [1])] = 0  # A partly zero group still has a gradient.
  variables = [tf.Variable(v, dtype=tf.float64) for v in values]

  def loss_of(arrays):
    return float(tf.reduce_sum(iss.group_norms(*arrays)))

  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(iss.group_norms(*variables))
  grads = [g.numpy() for g in tape.gradient(loss, variables)]
  eps = 1e-6
  for i, value in enumerate(values):
    for index in list(np.ndindex(value.shape))[::3]:
      plus, minus = [v.copy() for v in values], [v.copy() for v in values]
      plus[i][index] += eps
      minus[i][index] -= eps
      numeric = (loss_of(plus) - loss_of(minus)) / (2 * eps)
      assert grads[i][index] == pytest.approx(numeric, abs=1e-6), (i, index)


def test_gradient_of_a_zero_group_is_zero_not_nan():
  units = 3
  kernel = np.ones((2, 4 * units))
  recurrent = np.ones((units, 4 * units))
  bias, consumer = np.ones(4 * units), np.ones((units, 4))
  for array, index in ((kernel, np.s_[:, iss.gate_columns(units, [0])]),
                       (recurrent, np.s_[:, iss.gate_columns(units, [0])]),
                       (recurrent, np.s_[0]), (bias, np.s_[iss.gate_columns(units, [0])]),
                       (consumer, np.s_[0])):
    array[index] = 0
  variables = [tf.Variable(v, dtype=tf.float64) for v in (kernel, recurrent, bias, consumer)]
  with tf.GradientTape() as tape:
    norms = iss.group_norms(*variables)
    total = tf.reduce_sum(norms)
  assert norms.numpy()[0] == 0
  grads = [g.numpy() for g in tape.gradient(total, variables)]
  assert all(np.all(np.isfinite(g)) for g in grads)
  # The zero group gets no pull (so a zeroed unit stays zero under SGD).
  assert np.all(grads[2][iss.gate_columns(units, [0])] == 0)


def test_extra_loss_is_lambda_times_the_sum_of_group_norms():
  model = _model()
  model_sites = iss.sites(model)
  plain = sum(_reference_norms(s).sum() for s in model_sites)
  loss = iss.extra_loss(model, iss.Config(iss_lambda=0.5))
  assert float(loss) == pytest.approx(0.5 * plain, rel=1e-5)
  weighted = sum(np.sqrt(s.group_size()) * _reference_norms(s).sum() for s in model_sites)
  loss = iss.extra_loss(model, iss.Config(iss_lambda=0.5, iss_group_weight="sqrt_size"))
  assert float(loss) == pytest.approx(0.5 * weighted, rel=1e-5)
  assert float(iss.extra_loss(model, iss.Config(iss_keep=0.5))) == 0.0


# ----- Threshold ------------------------------------------------------------------------------

def test_components_to_remove():
  norms = np.array([0.5, 0.001, 0.0, 2.0, 0.009])
  np.testing.assert_array_equal(iss.components_to_remove(norms, 0.01, 1),
                                [False, True, True, False, True])
  np.testing.assert_array_equal(iss.components_to_remove(norms, 0.0, 1),
                                [False, False, True, False, False])
  # At least min_units survive: the top norms among those below the threshold.
  np.testing.assert_array_equal(iss.components_to_remove(norms, 10.0, 2),
                                [False, True, True, False, True])
  np.testing.assert_array_equal(iss.components_to_remove(norms, 0.01, 3),
                                [False, True, True, False, False])


def test_units_multiple_rounds_the_survivors_up():
  assert [iss.kept_units(c, 200, 1, 8) for c in (1, 8, 9, 99, 135, 197)] == [8, 8, 16, 104, 136,
                                                                             200]
  assert iss.kept_units(0, 6, 2, 1) == 2 and iss.kept_units(3, 5, 1, 8) == 5
  norms = np.array([0.5, 0.001, 0.0, 2.0, 0.009])
  # 2 survive the threshold; 4 are kept: the two top norms below it join them.
  np.testing.assert_array_equal(iss.components_to_remove(norms, 0.01, 1, units_multiple=4),
                                [False, False, True, False, False])
  np.testing.assert_array_equal(iss.components_to_remove(norms, 0.01, 1, units_multiple=2),
                                [False, True, True, False, True])
  # Capped at the layer's size: everything stays, the zero group too.
  assert not iss.components_to_remove(norms, 0.01, 1, units_multiple=8).any()
  with pytest.raises(UserError, match="--iss_units_multiple=0; must be >= 1"):
    iss.Config(iss_keep=0.5, iss_units_multiple=0)


def test_threshold_zeroes_exactly_the_groups_below_it():
  model = _model()
  site = iss.sites(model)[1]
  # Shrink units 1 and 4 of lstm_1 to norms below 0.05; unit 6 stays just above.
  norms = site.norms().numpy()
  for unit, target in ((1, 0.01), (4, 0.04), (6, 0.06)):
    scale = target / norms[unit]
    variables = {"kernel": site.lstm.kernel, "recurrent_kernel": site.lstm.recurrent_kernel,
                 "bias": site.lstm.bias, "consumer_kernel": site.consumer_kernel}
    for name, mask in _masks(site, unit).items():
      variables[name].assign(np.where(mask, variables[name].numpy() * scale,
                                      variables[name].numpy()))
  norms = site.norms().numpy()
  assert norms[1] < 0.05 and norms[4] < 0.05 and 0.05 < norms[6] < 0.07
  lstm0_before = [w.numpy() for w in model.get_layer("lstm_0").weights]
  before = _site_arrays(site)
  removed = iss.apply_threshold(model, 0.05, min_units=1)
  np.testing.assert_array_equal(removed["lstm_1"], np.isin(np.arange(7), [1, 4]))
  assert not removed["lstm_0"].any()
  after = _site_arrays(site)
  zeroed = {n: _masks(site, 1)[n] | _masks(site, 4)[n] for n in before}
  for name in before:
    assert np.all(after[name][zeroed[name]] == 0)
    np.testing.assert_array_equal(after[name][~zeroed[name]], before[name][~zeroed[name]])
  for a, b in zip(lstm0_before, model.get_layer("lstm_0").weights):
    np.testing.assert_array_equal(a, b.numpy())


def test_callback_thresholds_during_training():
  model = _model()
  site = iss.sites(model)[0]
  for name, mask in _masks(site, 3).items():
    variable = {"kernel": site.lstm.kernel, "recurrent_kernel": site.lstm.recurrent_kernel,
                "bias": site.lstm.bias, "consumer_kernel": site.consumer_kernel}[name]
    variable.assign(np.where(mask, variable.numpy() * 1e-4, variable.numpy()))
  config = iss.Config(iss_lambda=0.1, iss_threshold=1e-2, iss_threshold_every=2)
  (callback,) = iss.callbacks(model, config)
  callback.set_model(model)
  callback.on_train_batch_begin(1)  # Not a multiple of 2: nothing happens.
  assert site.norms().numpy()[3] > 0
  callback.on_train_batch_begin(2)
  assert site.norms().numpy()[3] == 0
  assert iss.callbacks(model, iss.Config(iss_lambda=0.1, iss_threshold_every=0)) == []


# ----- Surgery --------------------------------------------------------------------------------

def _model_with_zeroed_units():
  """The model with units 0, 3, 4 of lstm_0 and 1, 2, 5, 6 of lstm_1 zeroed, and its outputs."""
  model = _model()
  lstm0, lstm1 = iss.sites(model)
  _zero_by_masks(lstm0, [0, 3, 4])
  _zero_by_masks(lstm1, [1, 2, 5, 6])
  return model, _outputs(model)


def test_surgery_on_zeroed_groups_gives_identical_outputs():
  model, expected = _model_with_zeroed_units()
  smaller = iss.strip_with(model, 0.0, 1)
  assert smaller is not model
  assert [l.units for l in (smaller.get_layer("lstm_0"), smaller.get_layer("lstm_1"))] == [3, 3]
  assert [t.name.split(":")[0] for t in smaller.inputs] == ["tokens", "h0", "c0", "h1", "c1"]
  assert [int(t.shape[-1]) for t in smaller.inputs[1:]] == [3, 3, 3, 3]
  assert [l.name for l in smaller.layers] == [l.name for l in model.layers]
  assert [type(l) for l in smaller.layers] == [type(l) for l in model.layers]
  outputs = _outputs(smaller)
  np.testing.assert_allclose(outputs[0], expected[0], atol=1e-5)
  kept = [[1, 2, 5], [1, 2, 5], [0, 3, 4], [0, 3, 4]]
  for out, ref, keep in zip(outputs[1:], expected[1:], kept):
    np.testing.assert_allclose(out, ref[:, keep], atol=1e-5)
  report = iss.report(smaller)
  assert report["hidden_sizes"] == [3, 3]
  assert report["layers"]["lstm_0"] == {"units_before": 6, "units_after": 3, "kept": [1, 2, 5]}
  assert report["layers"]["lstm_1"]["kept"] == [0, 3, 4]
  assert report["lstm_params_before"] == 4 * 6 * (5 + 6 + 1) + 4 * 7 * (6 + 7 + 1)
  assert report["lstm_params_after"] == 4 * 3 * (5 + 3 + 1) + 4 * 3 * (3 + 3 + 1)
  assert count_params(model) - count_params(smaller) == (
      report["lstm_params_before"] - report["lstm_params_after"] + 4 * 30)


def test_slice_lstm_matches_the_masks():
  rng = np.random.default_rng(0)
  kernel, recurrent, bias = rng.normal(size=(5, 12)), rng.normal(size=(3, 12)), rng.normal(size=12)
  k, r, b = iss.slice_lstm(kernel, recurrent, bias, keep=[0, 2], input_keep=[1, 4])
  cols = [0, 2, 3, 5, 6, 8, 9, 11]
  np.testing.assert_array_equal(k, kernel[[1, 4]][:, cols])
  np.testing.assert_array_equal(r, recurrent[[0, 2]][:, cols])
  np.testing.assert_array_equal(b, bias[cols])


def test_surgery_with_units_multiple_keeps_dead_units_and_the_outputs():
  model, expected = _model_with_zeroed_units()
  smaller = iss.strip_with(model, 0.0, 1, units_multiple=2)
  # 3 live units each, rounded up to 4: one zero (dead) unit stays, the lowest index.
  report = iss.report(smaller)
  assert report["hidden_sizes"] == [4, 4]
  assert report["layers"]["lstm_0"]["kept"] == [0, 1, 2, 5]
  assert report["layers"]["lstm_1"]["kept"] == [0, 1, 3, 4]
  np.testing.assert_allclose(_outputs(smaller)[0], expected[0], atol=1e-5)


def test_strip_without_zero_groups_returns_the_model():
  model = _model()
  assert iss.strip_with(model, 1e-6, 1) is model


def test_strip_under_a_distribution_strategy():
  strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
  with strategy.scope():
    model = _model()
  assert isinstance(model.get_layer("lstm_0").kernel, tf.distribute.DistributedValues)
  _zero_by_masks(iss.sites(model)[0], [1])
  _zero_by_masks(iss.sites(model)[1], [0, 6])
  expected = _outputs(model)
  with strategy.scope():
    config = iss.Config(iss_lambda=1.0, iss_threshold=1e-3)
    iss.compress(model, config)
    smaller = iss.strip(model, config)
  assert iss.report(smaller)["hidden_sizes"] == [5, 5]
  assert isinstance(smaller.get_layer("lstm_0").kernel, tf.distribute.DistributedValues)
  np.testing.assert_allclose(_outputs(smaller)[0], expected[0], atol=1e-5)


def test_keep_fraction_keeps_the_top_norm_units():
  model = _model()
  norms = [s.norms().numpy() for s in iss.sites(model)]
  smaller = iss.compress(model, iss.Config(iss_keep=0.5))
  report = iss.report(smaller)
  assert report["hidden_sizes"] == [3, 4]  # round(0.5 * 6), round(0.5 * 7)
  for name, n in zip(("lstm_0", "lstm_1"), norms):
    kept = report["layers"][name]["kept"]
    assert sorted(kept) == sorted(np.argsort(-n)[:len(kept)].tolist())
  # min_units wins over a small fraction.
  smaller = iss.compress(model, iss.Config(iss_keep=0.01, iss_min_units=2))
  assert iss.report(smaller)["hidden_sizes"] == [2, 2]


def test_keep_fraction_rounds_up_to_the_units_multiple():
  model = _model()
  assert iss.report(iss.compress(model, iss.Config(iss_keep=0.5, iss_units_multiple=4))
                    )["hidden_sizes"] == [4, 4]  # 3 -> 4, round(3.5) = 4
  assert iss.report(iss.compress(model, iss.Config(iss_keep=0.5, iss_units_multiple=5))
                    )["hidden_sizes"] == [5, 5]


def test_a_second_surgery_reports_indices_of_the_original():
  model = _model()
  first = iss.remove_components(model, {"lstm_0": [0, 2, 3, 5]})
  second = iss.remove_components(first, {"lstm_0": [1, 3], "lstm_1": [0, 6]})
  report = iss.report(second)
  assert report["layers"]["lstm_0"]["kept"] == [2, 5]
  assert report["layers"]["lstm_1"] == {"units_before": 7, "units_after": 2, "kept": [0, 6]}


def test_tied_embeddings_keep_the_last_layer():
  config = ModelConfig(vocab_size=30, embedding_size=6, hidden_sizes=(5, 6), tie_embeddings=True)
  model = _model(config)
  lstm0, lstm1 = iss.sites(model)
  assert lstm0.prunable and not lstm1.prunable and lstm1.consumer_kernel is None
  _zero_by_masks(lstm0, [1, 2])
  expected = _outputs(model)
  smaller = iss.strip_with(model, 0.0, 1)
  assert iss.report(smaller)["hidden_sizes"] == [3, 6]
  np.testing.assert_allclose(_outputs(smaller)[0], expected[0], atol=1e-5)
  assert iss.report(iss.compress(model, iss.Config(iss_keep=0.5)))["hidden_sizes"] == [2, 6]
  one_layer = _model(ModelConfig(vocab_size=30, embedding_size=6, hidden_sizes=(6,),
                                 tie_embeddings=True))
  with pytest.raises(UserError, match="one-layer model with tied embeddings"):
    iss.compress(one_layer, iss.Config(iss_lambda=0.1))


def test_smaller_model_round_trips_and_exports(tmp_path):
  model = _model()
  _zero_by_masks(iss.sites(model)[0], [2])
  smaller = iss.strip_with(model, 0.0, 1)
  reloaded = testing.save_and_reload(smaller)
  for a, b in zip(_outputs(smaller), _outputs(reloaded)):
    np.testing.assert_allclose(a, b, atol=1e-6)
  path = str(tmp_path / "model.keras")
  smaller.save(path)
  loaded = load_model(path)
  assert [int(t.shape[-1]) for t in loaded.inputs[1:]] == [5, 5, 7, 7]
  np.testing.assert_allclose(_outputs(loaded)[0], _outputs(smaller)[0], atol=1e-6)


# ----- Configs and errors ---------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({}, "iss needs --iss_lambda > 0"),
    ({"iss_lambda": -0.1}, "--iss_lambda=-0.1; must be a number >= 0"),
    ({"iss_lambda": float("nan")}, "--iss_lambda=nan"),
    ({"iss_lambda": 0.1, "iss_threshold": -1.0}, "--iss_threshold=-1.0; must be a number >= 0"),
    ({"iss_lambda": 0.1, "iss_min_units": 0}, "--iss_min_units=0; must be >= 1"),
    ({"iss_keep": 0.0}, r"--iss_keep=0.0; must be in \(0, 1\]"),
    ({"iss_keep": 1.5}, r"--iss_keep=1.5"),
    ({"iss_lambda": 0.1, "iss_threshold_every": -1}, "--iss_threshold_every=-1"),
    ({"iss_lambda": 0.1, "iss_group_weight": "size"}, "--iss_group_weight='size'; use one of"),
])
def test_bad_configs(kwargs, message):
  with pytest.raises(UserError, match=message):
    iss.Config(**kwargs)


def test_min_units_larger_than_a_layer():
  model = _model()
  with pytest.raises(UserError, match=r"--iss_min_units=7 exceeds the hidden size of lstm_0 "
                                      r"\(6\); use 1..6"):
    iss.compress(model, iss.Config(iss_lambda=0.1, iss_min_units=7))
  with pytest.raises(UserError, match="--iss_min_units=7"):
    iss.callbacks(model, iss.Config(iss_lambda=0.1, iss_min_units=7))


def test_replaced_layers_are_refused():
  model = low_rank.compress(_model(), low_rank.Config(lstm_rank=2))
  with pytest.raises(UserError, match="lstm_0 is LowRankLSTM: run scripts/compress.py with "
                                      "--method=iss on its own first"):
    iss.compress(model, iss.Config(iss_lambda=0.1))
  model = low_rank.compress(_model(), low_rank.Config(softmax_rank=2))
  with pytest.raises(UserError, match="Dense 'softmax' layer after the last LSTM "
                                      r"\(found LowRankDense\)"):
    iss.callbacks(model, iss.Config(iss_lambda=0.1))


def test_the_smaller_model_composes_with_other_methods():
  model = _model()
  _zero_by_masks(iss.sites(model)[1], [0, 1, 2])
  smaller = iss.strip_with(model, 0.0, 1)
  # The softmax is now 4x30: rank 4 is exact.
  full_rank = low_rank.compress(smaller, low_rank.Config(softmax_rank=4))
  np.testing.assert_allclose(_outputs(full_rank)[0], _outputs(model)[0], atol=1e-5)


def test_bad_keep_sets():
  model = _model()
  with pytest.raises(UserError, match="sorted unique indices in 0..5"):
    iss.remove_components(model, {"lstm_0": [3, 1]})
  with pytest.raises(UserError, match="no LSTM layer 'lstm_9'"):
    iss.remove_components(model, {"lstm_9": [0]})


# ----- End to end -----------------------------------------------------------------------------

def test_compress_and_finetune_removes_units(tiny_run, small_corpus, tmp_path):
  run_dir, base_metrics = tiny_run
  out = str(tmp_path / "iss")
  metrics = compress_tiny_run(tiny_run, small_corpus, out, "iss", {"iss_lambda": 0.1})
  report = metrics["method_report"]["iss"]
  assert sum(report["hidden_sizes"]) < 64, report["hidden_sizes"]
  assert metrics["params"] < base_metrics["params"]
  assert report["lstm_params_after"] < report["lstm_params_before"]
  assert metrics["test_ppl"] < 1.5 * base_metrics["test_ppl"]
  model = load_model(os.path.join(out, "model.keras"))
  assert [int(t.shape[-1]) for t in model.inputs[1:]] == list(np.repeat(report["hidden_sizes"], 2))
  testing.assert_tflite_matches_keras(model, TOKENS[0], atol=1e-4)
