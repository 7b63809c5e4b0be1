import os
import subprocess
import sys

import numpy as np
import pytest
import tf_keras as keras

from tflm_compress import export, testing
from tflm_compress.errors import UserError
from tflm_compress.export import inspect_tflite
from tflm_compress.export.meta import ModelMeta
from tflm_compress.layers import LSTM
from tflm_compress.models import ModelConfig, build_language_model

from conftest import REPO_ROOT

# Ops a step model of the baseline lowers to; anything else (WHILE, the fused
# UNIDIRECTIONAL_SEQUENCE_LSTM, Flex or custom ops) is a regression.
BASELINE_STEP_OPS = {"ADD", "FULLY_CONNECTED", "GATHER", "LOGISTIC", "MUL", "RESHAPE", "SPLIT",
                     "STRIDED_SLICE", "TANH", "DEQUANTIZE", "QUANTIZE", "TRANSPOSE",
                     "CONCATENATION", "BATCH_MATMUL"}


@pytest.fixture(scope="module")
def calibration(tiny_model, small_corpus):
  return export.representative_steps(tiny_model, small_corpus.split("train"), 200)


@pytest.fixture(scope="module")
def converted(tiny_model, calibration):
  return {q: export.convert_step_model(tiny_model, q, calibration if q == "int8" else None)
          for q in export.QUANTIZE_MODES}


def test_fp32_step_model_matches_keras_over_50_carried_steps(tiny_model, small_corpus):
  parity = testing.assert_tflite_matches_keras(tiny_model, small_corpus.split("valid")[:50],
                                               atol=1e-4)
  assert parity["steps"] == 50 and parity["argmax_agreement"] == 1.0


@pytest.mark.parametrize("quantize", export.QUANTIZE_MODES)
def test_every_mode_uses_builtin_ops_only_and_no_loops(converted, quantize):
  model = inspect_tflite.parse(converted[quantize])
  ops = set(inspect_tflite.op_names(model))
  assert ops <= BASELINE_STEP_OPS, ops - BASELINE_STEP_OPS
  assert len(model.subgraphs) == 1


@pytest.mark.parametrize("quantize", export.QUANTIZE_MODES)
def test_every_mode_keeps_argmax_agreement(converted, tiny_model, small_corpus, quantize):
  tflite_model = export.TFLiteStepModel(converted[quantize])
  parity = export.check_parity(tiny_model, tflite_model, small_corpus.split("valid")[:300])
  assert parity["argmax_agreement"] >= 0.95, parity


def test_quantized_sizes_and_ops(converted):
  sizes = {q: len(b) for q, b in converted.items()}
  assert sizes["float16"] < 0.6 * sizes["none"]
  assert sizes["dynamic"] < 0.4 * sizes["none"] and sizes["int8"] < 0.45 * sizes["none"]
  report = inspect_tflite.quantization_report(inspect_tflite.parse(converted["int8"]))
  # One FULLY_CONNECTED per LSTM layer ([x, h] @ [kernel; recurrent_kernel]) and the softmax.
  assert report["FULLY_CONNECTED"] == {"int8": 3}
  dynamic = inspect_tflite.quantization_report(inspect_tflite.parse(converted["dynamic"]))
  assert dynamic["FULLY_CONNECTED"] == {"int8_weights": 3}


def test_float_modes_take_tanh_gates_and_int8_keeps_logistic_gates(converted, tiny_model):
  # Float: one TANH for the four gates and one for the cell per layer (2 layers).
  # int8: a LOGISTIC per sigmoid gate, each quantized on its own [0, 1] range.
  for quantize in ("none", "dynamic", "float16"):
    ops = inspect_tflite.op_names(inspect_tflite.parse(converted[quantize]))
    assert "LOGISTIC" not in ops and ops.count("TANH") == 4, (quantize, ops)
  ops = inspect_tflite.op_names(inspect_tflite.parse(converted["int8"]))
  assert ops.count("LOGISTIC") == 6 and ops.count("TANH") == 4, ops
  # The int8 export's setting does not stay on the model.
  lstms = [layer for layer in tiny_model.layers if isinstance(layer, LSTM)]
  assert len(lstms) == 2 and all(layer.step_gates == "tanh" for layer in lstms)
  with pytest.raises(UserError, match="gates='relu'"):
    export.make_step_function(build_language_model(ModelConfig(vocab_size=10), seed=0), "relu")


def test_bytes_by_group_accounts_for_every_weight(tiny_model, converted):
  groups = inspect_tflite.bytes_by_group(inspect_tflite.parse(converted["none"]))
  for layer in ("embedding", "lstm_0", "lstm_1", "softmax"):
    params = sum(int(np.prod(w.shape)) for w in tiny_model.get_layer(layer).weights)
    assert groups[layer] == 4 * params, layer


def test_tflite_perplexity_equals_keras_perplexity(tiny_model, small_corpus, converted):
  from tflm_compress.training import evaluate_perplexity  # pylint: disable=g-import-not-at-top

  ids = small_corpus.split("test")[:1500]
  keras_ppl = evaluate_perplexity(tiny_model, ids, batch_size=1, num_steps=35)
  tflite_ppl = export.TFLiteStepModel(converted["none"]).perplexity(ids)
  assert tflite_ppl["tokens"] == keras_ppl["tokens"] == 1499
  assert tflite_ppl["ppl"] == pytest.approx(keras_ppl["ppl"], rel=1e-4)


def test_bundle_and_meta_round_trip(tiny_model, small_corpus, tmp_path):
  out = str(tmp_path / "bundle" / "model.tflite")
  summary = export.export_step_model(tiny_model, small_corpus.vocab, out, "dynamic")
  folder = tmp_path / "bundle"
  assert sorted(os.listdir(folder)) == ["model.tflite", "model_meta.json", "vocab.txt"]
  meta = ModelMeta.load(str(folder / "model_meta.json"))
  assert meta.state_inputs == ("h0", "c0", "h1", "c1")
  assert meta.state_outputs == ("h0_out", "c0_out", "h1_out", "c1_out")
  assert meta.state_sizes == (32, 32, 32, 32) and meta.quantization == "dynamic"
  assert meta.eos_id == small_corpus.vocab.eos_id and meta.vocab_size == len(small_corpus.vocab)
  assert ModelMeta.from_dict(meta.to_dict()) == meta
  assert summary["tflite_bytes"] == os.path.getsize(out)
  runtime = export.TFLiteStepModel(out)
  assert runtime.state_names == list(meta.state_inputs)


def test_meta_missing_fields(tmp_path):
  path = tmp_path / "model_meta.json"
  path.write_text('{"model_file": "m.tflite"}')
  with pytest.raises(UserError, match="lacks"):
    ModelMeta.load(str(path))


def test_unsupported_layer_is_named_at_conversion():
  tokens = keras.Input((None,), dtype="int32", name="tokens")
  h, c = keras.Input((4,), name="h0"), keras.Input((4,), name="c0")
  x = keras.layers.Embedding(10, 4, name="embedding")(tokens)
  x = keras.layers.GRU(4, return_sequences=True, name="my_gru")(x)
  model = keras.Model([tokens, h, c], [keras.layers.Dense(10)(x), h, c])
  with pytest.raises(UserError, match=r"layer 'my_gru' \(GRU\) cannot be exported.*LSTM"):
    export.convert_step_model(model)


def test_vocab_mismatch_and_bad_mode(tiny_model, tmp_path):
  from tflm_compress.data import Vocabulary  # pylint: disable=g-import-not-at-top

  with pytest.raises(UserError, match="logits but the vocabulary has 3 words"):
    export.export_step_model(tiny_model, Vocabulary(["a", "<eos>", "<unk>"]),
                             str(tmp_path / "m.tflite"))
  with pytest.raises(UserError, match=r"--quantize='int3'; use one of \('none', 'dynamic', "
                                      r"'float16', 'int8', 'int4', 'mixed', 'auto'\)"):
    export.convert_step_model(tiny_model, "int3")
  with pytest.raises(UserError, match="--quantize=int4 is written by export_step_model"):
    export.convert_step_model(tiny_model, "int4")
  with pytest.raises(UserError, match="needs representative data"):
    export.convert_step_model(tiny_model, "int8")
  assert not os.listdir(tmp_path)


@pytest.mark.parametrize("content, message", [
    (b"", "not a TFLite model"),
    (b"garbage!garbage!", "not a TFLite model"),
])
def test_corrupt_tflite_is_a_clear_error(tmp_path, content, message):
  path = tmp_path / "bad.tflite"
  path.write_bytes(content)
  with pytest.raises(UserError, match=message):
    export.TFLiteStepModel(str(path))


def test_truncated_tflite_is_a_clear_error(converted, tmp_path):
  path = tmp_path / "cut.tflite"
  path.write_bytes(converted["none"][: len(converted["none"]) // 2])
  with pytest.raises(UserError, match="corrupt or truncated|cannot load"):
    export.TFLiteStepModel(str(path))


def test_tied_model_exports_with_parity():
  config = ModelConfig(vocab_size=25, embedding_size=8, hidden_sizes=(8,), tie_embeddings=True)
  model = build_language_model(config, seed=2)
  testing.assert_tflite_matches_keras(model, np.arange(25) % 25, atol=1e-4)


# XNNPACK partitions per mode (before session 4's step graph: 2, 3, 3, 3). The
# float and dynamic graphs are one delegate call per token; float16 and int8
# (not the modes the benchmarks favour) are still cut in two.
STEP_GRAPH_PARTITIONS = {"none": 1, "dynamic": 1, "float16": 2, "int8": 2}


@pytest.mark.parametrize("quantize", export.QUANTIZE_MODES)
def test_step_graph_xnnpack_partitions(converted, quantize):
  # No LOGISTIC-split gates and no STRIDED_SLICE glue: XNNPACK takes the LSTMs whole.
  # pylint: disable=g-import-not-at-top
  from ai_edge_litert.interpreter import Interpreter
  from tflm_compress.benchmark.host import delegate_partitions

  interpreter = Interpreter(model_content=converted[quantize])
  interpreter.allocate_tensors()
  assert delegate_partitions(interpreter) == STEP_GRAPH_PARTITIONS[quantize]


def _convert(*args):
  return subprocess.run([sys.executable, os.path.join(REPO_ROOT, "scripts", "convert.py"), *args],
                        capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)


def _error(result) -> str:
  lines = [l for l in result.stderr.splitlines() if l.startswith("error:")]
  assert result.returncode == 1 and len(lines) == 1, result.stderr[-2000:]
  return lines[0]


def test_convert_never_replaces_files_it_did_not_write(tiny_run, tmp_path):
  # Issue #25: the user's own model.tflite and vocab.txt stay unless --overwrite.
  folder = tmp_path / "bundle"
  folder.mkdir()
  (folder / "model.tflite").write_bytes(b"the user's own model")
  (folder / "vocab.txt").write_text("the user's own words\n")
  args = [f"--model_dir={tiny_run[0]}", f"--output={folder / 'model.tflite'}",
          "--parity_steps=0"]
  line = _error(_convert(*args))
  assert line == (f"error: --output={str(folder / 'model.tflite')!r}: "
                  f"{str(folder / 'model.tflite')!r} exists and is not from a bundle convert.py "
                  "wrote (no model_meta.json naming model.tflite); pass --overwrite to replace "
                  "it, or choose another --output")
  assert (folder / "model.tflite").read_bytes() == b"the user's own model"
  assert (folder / "vocab.txt").read_text() == "the user's own words\n"
  assert sorted(os.listdir(folder)) == ["model.tflite", "vocab.txt"]
  # Only vocab.txt of the user's: refused too.
  (folder / "model.tflite").unlink()
  assert "'vocab.txt' exists" in _error(_convert(*args)).replace(str(folder) + "/", "")
  assert _convert(*args, "--overwrite").returncode == 0
  assert ModelMeta.load(str(folder / "model_meta.json")).model_file == "model.tflite"
  assert (folder / "vocab.txt").read_text() != "the user's own words\n"
  # Its own bundle: replaced without --overwrite.
  assert _convert(*args, "--quantize=dynamic").returncode == 0
  assert ModelMeta.load(str(folder / "model_meta.json")).quantization == "dynamic"
  # Another bundle's folder (its meta names other.tflite): its meta and vocab are not ours.
  line = _error(_convert(f"--model_dir={tiny_run[0]}", f"--output={folder / 'other.tflite'}",
                         "--parity_steps=0"))
  assert "model_meta.json' exists and is not from a bundle" in line
  assert "naming other.tflite" in line
