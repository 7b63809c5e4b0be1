"""Sub-8-bit exports (int4, mixed, auto) through ai-edge-quantizer."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tflm_compress import compose, export
from tflm_compress.benchmark import floor
from tflm_compress.errors import UserError
from tflm_compress.export import inspect_tflite, sub8bit
from tflm_compress.export.meta import ModelMeta
from tflm_compress.methods import low_rank
from tflm_compress.models import ModelConfig, build_language_model

from conftest import REPO_ROOT

# Parity of the tiny trained model against Keras over 300 carried steps, per mode.
# Measured (ai-edge-quantizer 0.10.0, LiteRT 2.3.0): dynamic int8 0.024, int4 0.25,
# mixed embedding/lstm 8 + softmax 4 0.19, auto (chose int4 everywhere) 0.25; argmax 1.0.
TOLERANCE = {"int4": 0.5, "mixed": 0.4, "auto": 0.5}
MIN_ARGMAX_AGREEMENT = 0.95
TINY_GROUPS = ["embedding", "lstm_0", "lstm_1", "softmax"]
WEIGHT_OPS = ("FULLY_CONNECTED", "EMBEDDING_LOOKUP")


def _weight_types(model_bytes: bytes) -> dict[str, list[str]]:
  """Layer -> the tensor types of its FULLY_CONNECTED / EMBEDDING_LOOKUP weights."""
  out = {}
  for row in inspect_tflite.weight_types(inspect_tflite.parse(model_bytes)):
    if row["op"] in WEIGHT_OPS:
      out.setdefault(row["group"], []).append(row["type"])
  return out


@pytest.fixture(scope="module")
def float_tiny(tiny_model):
  model_bytes = sub8bit.float_step_model(tiny_model)
  return model_bytes, sub8bit.weight_groups(model_bytes, tiny_model)


@pytest.fixture(scope="module")
def exported(tiny_model, small_corpus, tmp_path_factory):
  """The tiny model exported as a bundle in each sub-8-bit mode: mode -> (path, summary).

  With plain min-max scales, so each weight is one tensor of the requested width (the
  default Hadamard rotation adds float rotation matrices: see its own test)."""
  settings = {"int4": {}, "mixed": {"bits": "embedding:8,lstm:8,softmax:4"},
              "auto": {"validation_ids": small_corpus.split("valid")[:1000],
                       "max_ppl_increase": "1%"}}
  settings = {mode: {**kwargs, "algorithm": "min_max"} for mode, kwargs in settings.items()}
  out = {}
  for mode, kwargs in settings.items():
    path = str(tmp_path_factory.mktemp(mode) / "model.tflite")
    summary = export.export_step_model(tiny_model, small_corpus.vocab, path, mode,
                                       log=lambda _: None, **kwargs)
    out[mode] = path, summary
  return out


def test_embedding_lookup_rewrite_is_exact(tiny_model, small_corpus, float_tiny):
  gather = export.convert_step_model(tiny_model, "none")
  lookup, _ = float_tiny
  ops = inspect_tflite.op_names(inspect_tflite.parse(lookup))
  assert "GATHER" not in ops and ops.count("EMBEDDING_LOOKUP") == 1
  ids = small_corpus.split("valid")[:100]
  np.testing.assert_array_equal(export.TFLiteStepModel(lookup).run(ids),
                                export.TFLiteStepModel(gather).run(ids))


def test_weight_groups_of_the_baseline(tiny_model, float_tiny):
  _, groups = float_tiny
  vocab_size = export.vocab_size_of(tiny_model)
  assert [g.name for g in groups] == TINY_GROUPS
  assert [g.ops for g in groups] == [("EMBEDDING_LOOKUP",)] + [("FULLY_CONNECTED",)] * 3
  assert [g.shape for g in groups] == [(vocab_size, 32), (128, 64), (128, 64), (vocab_size, 32)]
  assert all(g.quantizable for g in groups)


@pytest.mark.parametrize("mode", sub8bit.SUB8BIT_MODES)
def test_mode_converts_loads_and_matches_keras(exported, tiny_model, small_corpus, mode):
  path, summary = exported[mode]
  tflite_model = export.TFLiteStepModel(path)
  parity = export.check_parity(tiny_model, tflite_model, small_corpus.split("valid")[:300])
  assert parity["max_abs_logit_diff"] <= TOLERANCE[mode], parity
  assert parity["argmax_agreement"] >= MIN_ARGMAX_AGREEMENT, parity
  model = inspect_tflite.parse(tflite_model.model_bytes)
  assert not inspect_tflite.non_builtin_ops(model) and len(model.subgraphs) == 1
  meta = ModelMeta.load(os.path.join(os.path.dirname(path), "model_meta.json"))
  assert meta.quantization == summary["sub8bit"]["quantization"]
  assert meta.quantization.startswith(f"{mode} (ai-edge-quantizer ")
  json.dumps(summary)  # The export report is JSON-ready.


@pytest.mark.parametrize("mode, expected", [
    ("int4", {"embedding": ["INT4"], "lstm_0": ["INT4"], "lstm_1": ["INT4"],
              "softmax": ["INT4"]}),
    ("mixed", {"embedding": ["INT8"], "lstm_0": ["INT8"], "lstm_1": ["INT8"],
               "softmax": ["INT4"]}),
])
def test_weights_have_the_requested_bit_width(exported, mode, expected):
  path, summary = exported[mode]
  with open(path, "rb") as f:
    assert _weight_types(f.read()) == expected
  assert summary["sub8bit"]["bits"] == {k: 8 if v == ["INT8"] else 4 for k, v in expected.items()}
  assert summary["weight_bytes_by_dtype"].get("FLOAT32", 0) < 4_000  # Biases and gate constants.


def test_int4_quantization_names_the_recipe(exported):
  _, summary = exported["int4"]
  assert summary["sub8bit"]["quantization"] == (
      "int4 (ai-edge-quantizer dynamic_wi4c_afp32: embedding:4,lstm_0:4,lstm_1:4,softmax:4)")
  assert summary["sub8bit"]["recipe"], "the ai-edge-quantizer recipe goes into the report"
  assert summary["quantization"]["FULLY_CONNECTED"] == {"int4_weights": 3}


def test_int4_step_cost_reads_half_a_byte_per_weight_and_its_floor_is_int4(exported,
                                                                          tiny_model):
  path, _ = exported["int4"]
  with open(path, "rb") as f:
    cost = floor.step_cost(inspect_tflite.parse(f.read()))
  width, hidden = compose.model_dims(tiny_model)
  vocab = int(tiny_model.get_layer("softmax").units)
  inputs = [width] + hidden[:-1]
  kernels = sum(4 * h * (i + h) for i, h in zip(inputs, hidden)) + vocab * hidden[-1]
  biases = 4 * (sum(4 * h for h in hidden) + vocab)  # float32, beside the 4-bit kernels.
  assert cost.weight_bytes_by_op["FULLY_CONNECTED"] == kernels // 2 + biases
  assert cost.main_weight_kind == "int4_weights"
  reference = floor.plan_reference(cost)
  assert reference.weight_kind == "int4_weights"
  assert reference.weight_bytes >= cost.weight_bytes


def test_auto_report_follows_the_greedy_rule(exported):
  path, summary = exported["auto"]
  auto = summary["sub8bit"]["auto"]
  assert sorted(auto["sensitivity"]) == TINY_GROUPS
  assert auto["order"] == sub8bit.greedy_order(auto["sensitivity"])
  assert [step["group"] for step in auto["steps"]] == auto["order"]
  kept = {step["group"] for step in auto["steps"] if step["kept"]}
  assert summary["sub8bit"]["bits"] == {g: 4 if g in kept else 8 for g in TINY_GROUPS}
  assert auto["valid_ppl"] <= auto["reference_ppl"] * 1.01
  for step in auto["steps"]:
    assert step["kept"] == (step["ppl"] <= auto["reference_ppl"] * 1.01)
  assert os.path.getsize(path) == auto["tflite_bytes"]
  with open(path, "rb") as f:
    types = _weight_types(f.read())
  assert types == {g: ["INT4" if b == 4 else "INT8"] for g, b in summary["sub8bit"]["bits"].items()}


def test_block_wise_and_weight_only(float_tiny):
  model_bytes, groups = float_tiny
  bits = {g.name: 4 for g in groups}
  blocked, recipe = sub8bit.quantize_groups(model_bytes, groups, bits, block_size=32,
                                            algorithm="min_max")
  rows = {r["group"]: r for r in inspect_tflite.weight_types(inspect_tflite.parse(blocked))}
  assert rows["softmax"]["blockwise"] and rows["lstm_0"]["blockwise"]
  assert recipe["per_group"]["softmax"] == "dynamic_wi4b32_afp32"
  # 64 does not divide the softmax's 32 inputs: that group stays per channel.
  plan = sub8bit.plan_granularity(groups, bits, block_size=64)
  assert plan["softmax"] == "CHANNELWISE" and plan["lstm_0"] == "BLOCKWISE_64"
  weight_only, recipe = sub8bit.quantize_groups(model_bytes, groups, bits, compute="weight_only",
                                                algorithm="min_max")
  ops = inspect_tflite.op_names(inspect_tflite.parse(weight_only))
  assert ops.count("DEQUANTIZE") == 4
  assert set(recipe["per_group"].values()) == {"weight_only_wi4c_afp32"}


def test_unsupported_recipe_is_one_clear_error_and_nothing_is_written(tiny_model, small_corpus,
                                                                      tmp_path):
  # 2-bit block-wise FULLY_CONNECTED weights: ai-edge-quantizer writes them, but LiteRT
  # 2.3.0's XNNPACK delegate rejects INT2 block-wise tensors.
  with pytest.raises(UserError) as error:
    export.export_step_model(tiny_model, small_corpus.vocab, str(tmp_path / "m.tflite"),
                             "mixed", bits="*:2", block_size=32)
  message = str(error.value)
  assert "cannot run recipe" in message and "dynamic_wi2b32_hr_afp32" in message, message
  assert "FULLY_CONNECTED" in message and "INT2 weights" in message, message
  assert "\n" not in message
  assert not os.listdir(tmp_path)


def test_low_rank_factors_are_groups(tiny_model):
  model = low_rank.compress(tiny_model, low_rank.Config(rank=8))
  float_bytes = sub8bit.float_step_model(model)
  groups = sub8bit.weight_groups(float_bytes, model)
  names = [g.name for g in groups]
  assert names[:2] == ["embedding.embeddings", "embedding.projection"]
  assert {"softmax.kernel_u", "softmax.kernel_v", "lstm_0.kernel_u", "lstm_0.kernel_v",
          "lstm_0.recurrent_u", "lstm_0.recurrent_v"} <= set(names)
  bits = sub8bit.resolve_bits(sub8bit.parse_bits("*:8,softmax.kernel_v:4,lstm_1:4"), groups)
  model_bytes, _ = sub8bit.quantize_groups(float_bytes, groups, bits)
  by_tensor = {r["tensor"]: r["type"]
               for r in inspect_tflite.weight_types(inspect_tflite.parse(model_bytes))}
  for group in groups:
    expected = "INT4" if group.name == "softmax.kernel_v" or group.layer == "lstm_1" else "INT8"
    assert by_tensor[group.tensor] == expected, group.name


def test_tied_table_is_one_group_for_both_ops():
  config = ModelConfig(vocab_size=25, embedding_size=8, hidden_sizes=(8,), tie_embeddings=True)
  model = build_language_model(config, seed=2)
  float_bytes = sub8bit.float_step_model(model)
  groups = sub8bit.weight_groups(float_bytes, model)
  tied = [g for g in groups if len(g.ops) == 2]
  assert len(tied) == 1 and sorted(tied[0].ops) == ["EMBEDDING_LOOKUP", "FULLY_CONNECTED"]
  model_bytes, _ = sub8bit.quantize_groups(float_bytes, groups, {g.name: 4 for g in groups})
  parity = export.check_parity(model, export.TFLiteStepModel(model_bytes), np.arange(25))
  assert parity["max_abs_logit_diff"] < 0.05, parity


def test_gather_keeps_the_table_float(tiny_model):
  float_bytes = sub8bit.float_step_model(tiny_model, embedding_op="gather")
  groups = sub8bit.weight_groups(float_bytes, tiny_model)
  assert groups[0].ops == ("GATHER",) and not groups[0].quantizable
  assert sub8bit.resolve_bits({"*": 4}, groups)["embedding"] == 32
  with pytest.raises(UserError, match=r"^--bits=embedding:4: the embedding table is read by "
                                      r"GATHER.*--embedding_op=lookup"):
    sub8bit.resolve_bits({"embedding": 4, "*": 4}, groups)


@pytest.mark.parametrize("spec, message", [
    ("", "--bits is empty; give GROUP:BITS pairs, e.g. --bits=embedding:8,lstm:8,softmax:4"),
    ("embedding8", "--bits entry 'embedding8' is not GROUP:BITS (e.g. embedding:8)"),
    ("embedding:", "--bits entry 'embedding:' is not GROUP:BITS (e.g. embedding:8)"),
    (":4", "--bits entry ':4' is not GROUP:BITS (e.g. embedding:8)"),
    ("lstm:3", "--bits entry 'lstm:3': bits must be one of 2, 4, 8, 32 (32 keeps the group "
               "float32)"),
    ("lstm:four", "--bits entry 'lstm:four': bits must be one of 2, 4, 8, 32 (32 keeps the "
                  "group float32)"),
    ("lstm:8,softmax:4,lstm:4", "--bits names 'lstm' twice"),
])
def test_bits_spec_errors(spec, message):
  with pytest.raises(UserError) as error:
    sub8bit.parse_bits(spec)
  assert str(error.value) == message


def test_bits_spec_resolution(float_tiny):
  _, groups = float_tiny
  assert sub8bit.parse_bits(" embedding:8, lstm:8 ,softmax:4") == {
      "embedding": 8, "lstm": 8, "softmax": 4}
  resolve = lambda spec: sub8bit.resolve_bits(sub8bit.parse_bits(spec), groups)
  assert resolve("lstm:8,lstm_1:4,*:2") == {"embedding": 2, "lstm_0": 8, "lstm_1": 4,
                                           "softmax": 2}
  assert resolve("*:4,softmax:32") == {"embedding": 4, "lstm_0": 4, "lstm_1": 4, "softmax": 32}
  with pytest.raises(UserError) as error:
    resolve("decoder:4,*:8")
  assert str(error.value) == (
      "--bits names 'decoder', which is not a weight group of this model; groups: embedding, "
      "lstm_0, lstm_1, softmax (also lstm for every LSTM layer, * for the rest)")
  with pytest.raises(UserError) as error:
    resolve("embedding:8,lstm_0:4")
  assert str(error.value) == ("--bits gives no bit width for lstm_1, softmax; add them or a "
                              "default such as *:8")


def test_mode_argument_errors(tiny_model, small_corpus, tmp_path):
  vocab, path = small_corpus.vocab, str(tmp_path / "m.tflite")
  cases = [
      ({"quantize": "mixed"}, "--quantize=mixed needs --bits, e.g. "
                              "--bits=embedding:8,lstm:8,softmax:4"),
      ({"quantize": "int4", "bits": "*:4"}, "--bits=*:4 is for --quantize=mixed, not "
                                            "--quantize=int4"),
      ({"quantize": "auto"}, "--quantize=auto needs validation text (the corpus's valid split)"),
      ({"quantize": "int3"}, "--quantize='int3'; use one of ('none', 'dynamic', 'float16', "
                             "'int8', 'int4', 'mixed', 'auto')"),
      ({"quantize": "int4", "block_size": 48}, "--block_size=48; use one of (0, 32, 64, 128, "
                                               "256) (0 = per channel)"),
      ({"quantize": "int4", "compute": "fp8"}, "--compute='fp8'; use one of ('dynamic', "
                                               "'weight_only')"),
      ({"quantize": "int4", "embedding_op": "onehot"}, "--embedding_op='onehot'; use one of "
                                                       "('lookup', 'gather')"),
  ]
  for kwargs, message in cases:
    with pytest.raises(UserError) as error:
      export.export_step_model(tiny_model, vocab, path, **kwargs)
    assert str(error.value) == message
  assert not os.listdir(tmp_path)
  with pytest.raises(UserError, match="written by export_step_model"):
    export.convert_step_model(tiny_model, "int4")


@pytest.mark.parametrize("value, expected", [("1%", 0.01), ("0.5%", 0.005), ("0.02", 0.02)])
def test_max_ppl_increase(value, expected):
  assert sub8bit.parse_ppl_increase(value) == pytest.approx(expected)


@pytest.mark.parametrize("value", ["1", "0", "-1%", "100%", "one", ""])
def test_max_ppl_increase_errors(value):
  with pytest.raises(UserError) as error:
    sub8bit.parse_ppl_increase(value)
  assert str(error.value) == (f"--max_ppl_increase={value}; give a percent such as 1% or a "
                              "fraction such as 0.01 (above 0, below 100%)")


# A hand-made sensitivity table: relative increase when only that group is lowered,
# and the bytes it saves. Cost per byte: softmax 1e-8, embedding 2e-8 (a negative
# increase counts as 0: lstm_1 first), lstm_0 1e-6; "other" saves nothing.
SENSITIVITY = {
    "embedding": {"ppl_increase": 0.002, "bytes_saved": 100_000},
    "lstm_0": {"ppl_increase": 0.004, "bytes_saved": 4_000},
    "lstm_1": {"ppl_increase": -0.001, "bytes_saved": 4_000},
    "softmax": {"ppl_increase": 0.001, "bytes_saved": 100_000},
    "other": {"ppl_increase": 0.0, "bytes_saved": 0},
}


def test_greedy_order_is_cheapest_loss_per_byte_first():
  assert sub8bit.greedy_order(SENSITIVITY) == ["lstm_1", "softmax", "embedding", "lstm_0"]
  # Ties (two free groups) go to the one saving more bytes.
  tie = {"a": {"ppl_increase": 0.0, "bytes_saved": 10},
         "b": {"ppl_increase": 0.0, "bytes_saved": 20}}
  assert sub8bit.greedy_order(tie) == ["b", "a"]


def test_choose_bits_keeps_each_step_only_within_budget():
  reference = 100.0

  def evaluate(bits):  # Increases add up, relative to the reference.
    lowered = [g for g, b in bits.items() if b == 4]
    return reference * (1 + sum(max(SENSITIVITY[g]["ppl_increase"], 0) for g in lowered))

  start = {g: 8 for g in SENSITIVITY}
  order = sub8bit.greedy_order(SENSITIVITY)
  bits, steps = sub8bit.choose_bits(start, order, 4, evaluate, reference, 0.005)
  # lstm_1 (+0), softmax (+0.1%), embedding (+0.3% in all) fit in 0.5%; lstm_0 would
  # bring the total to 0.7%.
  assert [s["kept"] for s in steps] == [True, True, True, False]
  assert bits == {"embedding": 4, "lstm_0": 8, "lstm_1": 4, "softmax": 4, "other": 8}
  assert steps[-1]["ppl_increase"] == pytest.approx(0.007)
  # A budget below every group's cost keeps none.
  bits, steps = sub8bit.choose_bits(start, ["lstm_0"], 4, evaluate, reference, 0.001)
  assert bits == start and steps[0]["kept"] is False


@pytest.mark.parametrize("mode", ["int4"])
def test_int4_step_graph_is_one_xnnpack_partition(exported, mode):
  # pylint: disable=g-import-not-at-top
  from ai_edge_litert.interpreter import Interpreter
  from tflm_compress.benchmark.host import delegate_partitions

  interpreter = Interpreter(model_path=exported[mode][0])
  interpreter.allocate_tensors()
  # EMBEDDING_LOOKUP (and its RESHAPEs) run before XNNPACK's one partition.
  assert delegate_partitions(interpreter) == 1


def _convert(*args):
  return subprocess.run([sys.executable, os.path.join(REPO_ROOT, "scripts", "convert.py"), *args],
                        capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)


def test_convert_script_writes_a_mixed_bundle_with_its_report(tiny_run, tmp_path):
  out = tmp_path / "mixed" / "model.tflite"
  result = _convert(f"--model_dir={tiny_run[0]}", "--quantize=mixed",
                    "--bits=embedding:8,lstm:4,softmax:4", "--algorithm=min_max", f"--output={out}",
                    "--eval_split=valid")
  assert result.returncode == 0, result.stderr[-2000:]
  summary = json.loads(result.stdout)
  assert summary == json.loads((tmp_path / "mixed" / "model.json").read_text())
  assert summary["sub8bit"]["bits"] == {"embedding": 8, "lstm_0": 4, "lstm_1": 4, "softmax": 4}
  assert summary["parity"]["argmax_agreement"] >= MIN_ARGMAX_AGREEMENT
  assert summary["parity"]["max_abs_logit_diff"] <= TOLERANCE["int4"]
  assert summary["valid_ppl"] > 1.0
  assert _weight_types(out.read_bytes()) == {"embedding": ["INT8"], "lstm_0": ["INT4"],
                                             "lstm_1": ["INT4"], "softmax": ["INT4"]}
  meta = ModelMeta.load(str(tmp_path / "mixed" / "model_meta.json"))
  assert meta.quantization == ("mixed (ai-edge-quantizer per group: embedding:8,lstm_0:4,"
                               "lstm_1:4,softmax:4)")


@pytest.mark.parametrize("args, message", [
    (["--quantize=mixed", "--bits=lstm:3"], "error: --bits entry 'lstm:3': bits must be one of "
                                            "2, 4, 8, 32 (32 keeps the group float32)"),
    (["--quantize=int4", "--bits=lstm:4"], "error: --bits=lstm:4 is for --quantize=mixed, not "
                                           "--quantize=int4"),
    (["--quantize=auto", "--max_ppl_increase=2"],
     "error: --max_ppl_increase=2; give a percent such as 1% or a fraction such as 0.01 (above "
     "0, below 100%)"),
])
def test_convert_script_bad_sub8bit_flags(tiny_run, tmp_path, args, message):
  out = tmp_path / "out"
  result = _convert(f"--model_dir={tiny_run[0]}", f"--output={out / 'model.tflite'}", *args)
  lines = [l for l in result.stderr.splitlines() if l.startswith("error:")]
  assert result.returncode == 1 and lines == [message], result.stderr[-2000:]
  assert not out.exists()


def test_default_scales_are_hadamard_rotated(tiny_model, small_corpus, exported, tmp_path):
  assert sub8bit.DEFAULT_ALGORITHM == "hadamard"
  path = str(tmp_path / "model.tflite")
  summary = export.export_step_model(tiny_model, small_corpus.vocab, path, "int4",
                                     log=lambda _: None)
  assert summary["sub8bit"]["algorithm"] == "hadamard"
  with open(path, "rb") as f:
    model_bytes = f.read()
  types = _weight_types(model_bytes)
  for group in TINY_GROUPS:  # The weights at 4 bits, beside float rotation matrices.
    assert "INT4" in types[group] and set(types[group]) <= {"INT4", "FLOAT32"}, types
  ops = inspect_tflite.op_names(inspect_tflite.parse(model_bytes))
  min_max_ops = inspect_tflite.op_names(inspect_tflite.parse(open(exported["int4"][0], "rb").read()))
  assert ops.count("FULLY_CONNECTED") > min_max_ops.count("FULLY_CONNECTED")
  assert set(ops) <= set(min_max_ops) | {"RESHAPE"}  # Builtin ops only, no new kinds.
  ids = small_corpus.split("valid")[:200]
  keras_logits = export.keras_stream_logits(tiny_model, ids)
  tflite_logits = export.TFLiteStepModel(path).run(ids)
  assert np.abs(tflite_logits - keras_logits).max() < TOLERANCE["int4"]


def test_hadamard_falls_back_to_min_max_on_odd_widths(tiny_model):
  """A rotation needs a power of two dividing the input width: an odd-rank factor
  (GroupReduce blocks of odd rank, here low-rank 7) keeps min-max scales, the rest
  is rotated, and the model quantizes and runs (ai-edge-quantizer fails otherwise)."""
  model = low_rank.compress(tiny_model, low_rank.Config(rank=7))
  float_bytes = sub8bit.float_step_model(model)
  groups = sub8bit.weight_groups(float_bytes, model)
  odd = sorted(g.name for g in groups if g.shape[-1] % 2)
  assert "softmax.kernel_v" in odd and "embedding.embeddings" in odd
  bits = sub8bit.resolve_bits(sub8bit.parse_bits("*:4"), groups)
  model_bytes, recipe = sub8bit.quantize_groups(float_bytes, groups, bits)
  for group in groups:
    expected = "dynamic_wi4c_afp32" if group.name in odd else "dynamic_wi4c_hr_afp32"
    assert recipe["per_group"][group.name] == expected, group.name
  by_tensor = {r["tensor"]: r["type"]
               for r in inspect_tflite.weight_types(inspect_tflite.parse(model_bytes))}
  assert all(by_tensor[g.tensor] == "INT4" for g in groups)


def test_odd_width_lookup_tables_stay_at_8_bits(tiny_model, small_corpus):
  """LiteRT reads wrong rows from a 4-bit EMBEDDING_LOOKUP table of odd row width (a
  row ends mid-byte): such tables are raised to 8 bits, said in the report, and the
  int4 model stays close to Keras; the FULLY_CONNECTED weights stay at 4 bits."""
  model = low_rank.compress(tiny_model, low_rank.Config(rank=7))
  model_bytes, report = sub8bit.export_sub8bit(model, "int4")
  assert report["raised_to_8_bits"] == ["embedding.embeddings"]
  groups = {g["name"]: g for g in report["groups"]}
  assert groups["embedding.embeddings"]["bits"] == 8
  assert groups["softmax.kernel_v"]["bits"] == 4
  by_tensor = {r["tensor"]: r["type"]
               for r in inspect_tflite.weight_types(inspect_tflite.parse(model_bytes))}
  assert by_tensor[groups["embedding.embeddings"]["tensor"]] == "INT8"
  assert by_tensor[groups["softmax.kernel_v"]["tensor"]] == "INT4"
  groups_of = sub8bit.weight_groups(sub8bit.float_step_model(model), model)
  bits, raised = sub8bit.lookup_safe_bits(groups_of, {g.name: 4 for g in groups_of})
  assert raised == ["embedding.embeddings"] and bits["softmax.kernel_v"] == 4
  even = low_rank.compress(tiny_model, low_rank.Config(rank=8))
  assert "raised_to_8_bits" not in sub8bit.export_sub8bit(even, "int4")[1]


def _zero_point_lengths(model_bytes: bytes) -> list[int]:
  model = inspect_tflite.parse(model_bytes)
  return [len(t.quantization.zeroPoint) for sg in model.subgraphs for t in sg.tensors
          if t.quantization is not None and t.quantization.zeroPoint is not None]


def test_equal_zero_points_are_stored_once_and_outputs_are_bit_identical(tiny_model):
  # pylint: disable=g-import-not-at-top
  from ai_edge_litert.interpreter import Interpreter
  from tflm_compress.export import dedupe

  model = low_rank.compress(tiny_model, low_rank.Config(rank=8))
  float_bytes = sub8bit.float_step_model(model)
  groups = sub8bit.weight_groups(float_bytes, model)
  bits = {g.name: 4 for g in groups}
  engine = sub8bit.build_quantizer(float_bytes, groups, bits,
                                   sub8bit.plan_granularity(groups, bits, algorithm="min_max"),
                                   "dynamic", "min_max")
  raw = bytes(engine.quantize(enable_progress_report=False).quantized_model)
  shared = dedupe.share_zero_points(raw)
  lengths = _zero_point_lengths(raw)
  assert lengths == _zero_point_lengths(shared)  # Every tensor keeps its zero points.
  # Each repeated vector (all zeros: symmetric weights) is now stored once: the
  # file shrinks by at least 8 bytes per int64 of each repeat.
  repeats = sum(n * (lengths.count(n) - 1) for n in set(lengths) if n >= 2)
  assert repeats > 0
  assert len(raw) - len(shared) >= 8 * repeats, (len(raw), len(shared), repeats)

  def run(model_bytes):
    interpreter = Interpreter(model_content=model_bytes, num_threads=1)
    interpreter.allocate_tensors()
    outputs = []
    for token in (3, 0, 17, 5):
      for detail in interpreter.get_input_details():
        if detail["dtype"] == np.int32:
          interpreter.set_tensor(detail["index"], np.array([token], np.int32))
        else:
          interpreter.set_tensor(detail["index"], np.full(detail["shape"], 0.1, np.float32))
      interpreter.invoke()
      outputs += [interpreter.get_tensor(o["index"]).copy()
                  for o in interpreter.get_output_details()]
    return outputs

  for a, b in zip(run(raw), run(shared)):
    np.testing.assert_array_equal(a, b)
  assert len(dedupe.share_zero_points(shared)) == len(shared)  # Nothing left to share.
  # quantize_groups writes the shared form.
  assert len(sub8bit.quantize_groups(float_bytes, groups, bits, algorithm="min_max")[0]) == len(
      shared)


def test_auto_with_blocks_tries_groups_a_block_does_not_fit(tiny_model, small_corpus):
  # 64 divides the LSTM inputs (64) but not the 32-wide rows; auto's trial plans (every
  # group at 8 bits, one group at 4) have no blocks, and must not be refused for it.
  model_bytes, report = sub8bit.export_sub8bit(
      tiny_model, "auto", block_size=64, algorithm="min_max",
      validation_ids=small_corpus.split("valid")[:600], max_ppl_increase="5%",
      log=lambda _: None)
  bits = report["bits"]
  assert len(report["auto"]["sensitivity"]) == len(TINY_GROUPS)
  assert 4 in (bits["lstm_0"], bits["lstm_1"]), bits  # Else the check below shows nothing.
  rows = {r["group"]: r for r in inspect_tflite.weight_types(inspect_tflite.parse(model_bytes))
          if r["op"] in WEIGHT_OPS}
  for group in TINY_GROUPS:
    assert rows[group]["blockwise"] == (bits[group] == 4 and group.startswith("lstm")), rows


def test_auto_with_a_block_that_fits_nothing_is_one_clear_error(tiny_model, small_corpus):
  with pytest.raises(UserError, match=r"^--block_size=128 fits no weight of this model "
                     r"\(input widths 32, 64; "):
    sub8bit.export_sub8bit(tiny_model, "auto", block_size=128,
                           validation_ids=small_corpus.split("valid")[:600],
                           log=lambda _: None)


def test_blocks_where_they_fit_leaves_other_weights_per_channel(tiny_model):
  # The pipeline's setting: --block_size=128 fits no weight of the tiny model (widths 32,
  # 64); the export is then per channel (the same file as --block_size=0), not an error.
  loose, report = sub8bit.export_sub8bit(tiny_model, "int4", block_size=128,
                                         algorithm="min_max", require_blocks=False)
  per_channel, _ = sub8bit.export_sub8bit(tiny_model, "int4", algorithm="min_max")
  assert loose == per_channel
  assert set(report["recipe_per_group"].values()) == {"dynamic_wi4c_afp32"}
  with pytest.raises(UserError, match=r"^--block_size=128 fits no weight"):
    sub8bit.export_sub8bit(tiny_model, "int4", block_size=128, algorithm="min_max")


@pytest.mark.parametrize("algorithm", ["hadamard", "min_max", "gptq"])
def test_a_pruned_all_zero_row_gets_per_channel_min_max_scales(algorithm):
  """ai-edge-quantizer 0.10.0 gives an all-zero block (and, rotated, an all-zero row) scale 0,
  which XNNPACK refuses to load: such a group keeps min-max scales per channel."""
  model = build_language_model(ModelConfig(vocab_size=40, embedding_size=32,
                                           hidden_sizes=(32,)), seed=1)
  kernel = model.get_layer("softmax").kernel
  kernel.assign(kernel.numpy() * (np.arange(40) != 5))  # Word 5's row of the FC: zeros.
  groups = sub8bit.weight_groups(sub8bit.float_step_model(model), model)
  softmax = next(g for g in groups if g.name == "softmax")
  assert softmax.zero_rows and softmax.zero_blocks == (32,)
  assert not any(g.zero_rows for g in groups if g.name != "softmax")
  ids = np.random.default_rng(0).integers(0, 40, 3000)
  model_bytes, report = sub8bit.export_sub8bit(model, "int4", block_size=32,
                                               algorithm=algorithm, calibration_ids=ids)
  assert report["recipe_per_group"]["softmax"] == "dynamic_wi4c_afp32"
  assert report["recipe_per_group"]["lstm_0"].startswith("dynamic_wi4b32")
  logits = export.TFLiteStepModel(model_bytes).run(ids[:50])
  assert np.all(np.isfinite(logits))
