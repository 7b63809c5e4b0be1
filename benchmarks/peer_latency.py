"""Benchmark: our step model against the stock Keras LSTM a user would convert without us.

  python benchmarks/peer_latency.py --model_dir=runs/ptb_small \\
      --output_json=docs/results/ptb_small_peer_latency.json
  python benchmarks/peer_latency.py --model_dir=runs/tiny --modes=none --rounds=3 --runs=100

The "peer" is the same trained model rebuilt from stock Keras layers, the way
a user would write a streaming one-token model without this package:
``Embedding``, one ``LSTM(units, return_sequences=True, return_state=True)``
per layer with its ``(h, c)`` as ``initial_state`` inputs and as outputs, and
``Dense(vocab)`` for the softmax (batch 1, time 1); the package model's
weights are copied over (:func:`stock_keras_model`). It is converted the
standard way, ``tf.lite.TFLiteConverter.from_keras_model`` (builtin ops only
when the converter manages, else with ``SELECT_TF_OPS``, which the JSON
says), in float32 and dynamic range (``optimizations=[Optimize.DEFAULT]``);
our step model is exported for the same modes with
``tflm_compress.export_tflite``.

Before timing, a stream of ``--parity_tokens`` seeded token ids goes through
both ``.tflite`` graphs of each mode with the state carried, and the largest
logit difference is reported; float32 graphs further than 1e-4 apart stop the
benchmark (they would not be the same model). The timing is the host
harness's side-by-side one (``host.compare_files``: interleaved rounds, each
a new interpreter on fixed inputs, one token per run), so machine noise hits
all graphs alike; ``ms_p50`` is the median over rounds of each round's p50.
Also per graph: bytes, TFLite ops (all subgraphs, so the body of each
``WHILE`` too) and their kinds, subgraphs, and the XNNPACK partitions LiteRT
cut the main graph into. ``stock/ours`` is the stock graph's ``ms_p50`` over
ours: how many times slower the peer is.
"""

import collections
import os

import numpy as np
from absl import flags

import quiet_start  # noqa: F401  (first: quiet unless --verbose; see scripts/quiet_start.py)
import tflm_compress  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf
import tf_keras as keras
from ai_edge_litert.interpreter import Interpreter

from tflm_compress import artifacts, cli, io_utils
from tflm_compress.api import MODEL_FILE
from tflm_compress.benchmark import host
from tflm_compress.errors import UserError
from tflm_compress.export import inspect_tflite, parity
from tflm_compress.export.runtime import TFLiteStepModel
from tflm_compress.export.step_model import SIGNATURE_KEY, TOKEN_INPUT, state_layout
from tflm_compress.layers import LSTM, TiedEmbedding
from tflm_compress.names import EMBEDDING, SOFTMAX, lstm_name

FLAGS = flags.FLAGS

MODES = ("none", "dynamic")
# Float32 graphs of the same weights must agree this closely, else the peer is not our model.
FP32_TOLERANCE = 1e-4
# Gate blocks of the 4H columns of kernel / recurrent_kernel / bias, in storage order.
# The package's LSTM.gates splits z as (i, f, g, o), g the tanh candidate;
# keras.layers.LSTMCell as (i, f, c, o), c being that same candidate.
PACKAGE_GATES = ("i", "f", "g", "o")
KERAS_GATES = ("i", "f", "g", "o")
_IGNORED_LAYERS = (keras.layers.InputLayer, keras.layers.Dropout)


def define_flags() -> None:
  """The script's flags (defined when run, so importing the module defines none)."""
  flags.DEFINE_string("model_dir", None, "Run dir (model.keras, vocab.txt, config.json).")
  flags.DEFINE_string("output_dir", "", "Where the .tflite files go (default: MODEL_DIR/peer).")
  flags.DEFINE_list("modes", list(MODES), f"Modes to compare, of {', '.join(MODES)}.")
  flags.DEFINE_integer("parity_tokens", 300, "Tokens streamed through both graphs of each "
                       "mode, state carried, to compare their logits.")
  cli.define_interleaved_timing_flags(runs=300, per="graph")
  FLAGS.set_default("rounds", 9)
  flags.mark_flag_as_required("model_dir")


# ----- The stock Keras model ---------------------------------------------------------------

def keras_gate_columns(units: int) -> np.ndarray:
  """Column indices taking a package LSTM weight's ``4*units`` columns to Keras's gate order."""
  return np.concatenate([np.arange(units) + PACKAGE_GATES.index(gate) * units
                         for gate in KERAS_GATES])


def _num_layers(model: keras.Model) -> int:
  names, _ = state_layout(model)
  if len(model.inputs) < 3 or len(names) % 2:
    raise UserError(f"model {model.name!r} is not a tflm_compress language model: expected "
                    f"inputs [tokens, h0, c0, ...], got {[t.name for t in model.inputs]}")
  return len(names) // 2


def _layer(model: keras.Model, name: str):
  try:
    return model.get_layer(name)
  except ValueError:
    raise UserError(f"model {model.name!r} has no layer {name!r}; peer_latency takes the "
                    "package's language model (embedding, lstm_0, ..., softmax)") from None


def stock_weights(model: keras.Model) -> dict:
  """The weights of the package model ``model`` as stock Keras layers hold them.

  Returns:
    ``{"embedding": [V, E], "lstm": [(kernel, recurrent_kernel, bias), ...]}``
    (columns in Keras's gate order), ``"softmax": (kernel [H, V], bias [V])``,
    all float32 numpy arrays.

  Raises:
    UserError: a layer with no stock equivalent (a compressed or QAT-wrapped
      layer: strip the model, or compare an uncompressed run).
  """
  num_layers = _num_layers(model)
  expected = {EMBEDDING, SOFTMAX, *(lstm_name(i) for i in range(num_layers))}
  for layer in model.layers:
    if not isinstance(layer, _IGNORED_LAYERS) and layer.name not in expected:
      raise UserError(f"layer {layer.name!r} ({type(layer).__name__}) has no stock Keras "
                      "equivalent; peer_latency compares an uncompressed model")
  embedding = _layer(model, EMBEDDING)
  if type(embedding) not in (keras.layers.Embedding, TiedEmbedding):
    raise UserError(f"layer {EMBEDDING!r} is a {type(embedding).__name__}, not a plain or tied "
                    "embedding; peer_latency compares an uncompressed model")
  table = np.asarray(embedding.embeddings.numpy(), np.float32)
  lstms = []
  for i in range(num_layers):
    layer = _layer(model, lstm_name(i))
    # Exactly the dense LSTM: its subclasses (low-rank, tensor-train...) store other weights.
    if type(layer) is not LSTM:  # pylint: disable=unidiomatic-typecheck
      raise UserError(f"layer {layer.name!r} is a {type(layer).__name__}, not the package's "
                      "dense LSTM; peer_latency compares an uncompressed model")
    columns = keras_gate_columns(layer.units)
    lstms.append(tuple(np.asarray(w.numpy(), np.float32)[..., columns]
                       for w in (layer.kernel, layer.recurrent_kernel, layer.bias)))
  if isinstance(embedding, TiedEmbedding):
    softmax = (table.T.copy(), np.asarray(embedding.bias.numpy(), np.float32))
  else:
    dense = _layer(model, SOFTMAX)
    if type(dense) is not keras.layers.Dense:  # pylint: disable=unidiomatic-typecheck
      raise UserError(f"layer {SOFTMAX!r} is a {type(dense).__name__}, not a Dense; "
                      "peer_latency compares an uncompressed model")
    softmax = (np.asarray(dense.kernel.numpy(), np.float32),
               np.asarray(dense.bias.numpy(), np.float32))
  return {"embedding": table, "lstm": lstms, "softmax": softmax}


def stock_keras_model(model: keras.Model) -> keras.Model:
  """``model`` rebuilt from stock Keras layers, one token at a time, weights copied.

  Inputs: ``token`` int32 ``[1, 1]`` and ``h{i}``, ``c{i}`` float32 ``[1, H_i]``
  per LSTM layer; outputs: the logits ``[1, 1, V]`` then the new ``h{i}``,
  ``c{i}``, in that order (``model.output_names`` names them as the converted
  signature does).
  """
  weights = stock_weights(model)
  vocab_size, embedding_size = weights["embedding"].shape
  token = keras.Input(shape=(1,), batch_size=1, dtype=tf.int32, name=TOKEN_INPUT)
  names, sizes = state_layout(model)
  states = [keras.Input(shape=(size,), batch_size=1, name=name)
            for name, size in zip(names, sizes)]
  embedding = keras.layers.Embedding(vocab_size, embedding_size, name="embedding")
  x = embedding(token)
  new_states, lstms = [], []
  for i, (kernel, _, _) in enumerate(weights["lstm"]):
    lstm = keras.layers.LSTM(kernel.shape[1] // 4, return_sequences=True, return_state=True,
                             name=f"lstm_{i}")
    x, h, c = lstm(x, initial_state=[states[2 * i], states[2 * i + 1]])
    new_states += [h, c]
    lstms.append(lstm)
  dense = keras.layers.Dense(vocab_size, name="softmax")
  logits = dense(x)
  stock = keras.Model([token] + states, [logits] + new_states, name="stock_lstm_lm")
  embedding.set_weights([weights["embedding"]])
  for lstm, values in zip(lstms, weights["lstm"]):
    lstm.set_weights(list(values))
  dense.set_weights(list(weights["softmax"]))
  return stock


def stock_stream_logits(stock: keras.Model, token_ids: np.ndarray) -> np.ndarray:
  """Logits after each token, fed one at a time to the stock model, state carried: [T, V]."""
  states = [np.zeros((1, int(t.shape[-1])), np.float32) for t in stock.inputs[1:]]
  logits = []
  for token in np.asarray(token_ids, np.int32):
    outputs = stock([np.array([[token]], np.int32)] + states, training=False)
    logits.append(np.asarray(outputs[0])[0, 0])
    states = [np.asarray(s) for s in outputs[1:]]
  return np.stack(logits)


def keras_logit_diff(model: keras.Model, stock: keras.Model, token_ids: np.ndarray) -> float:
  """Max abs logit difference: ``model`` on the whole stream vs ``stock`` token by token."""
  return float(np.abs(parity.keras_stream_logits(model, token_ids)
                      - stock_stream_logits(stock, token_ids)).max())


# ----- The stock .tflite -------------------------------------------------------------------

def convert_stock(stock: keras.Model, quantize: str) -> tuple[bytes, str]:
  """``stock`` through ``TFLiteConverter.from_keras_model``: (bytes, ops set used).

  Builtin ops only if the converter manages (``"TFLITE_BUILTINS"``), else with
  TensorFlow ops (``"TFLITE_BUILTINS+SELECT_TF_OPS"``). ``quantize``: ``none``
  (float32) or ``dynamic`` (``optimizations=[tf.lite.Optimize.DEFAULT]``).
  """
  if quantize not in MODES:
    raise UserError(f"quantize={quantize!r}; use one of {MODES}")
  attempts = (("TFLITE_BUILTINS", [tf.lite.OpsSet.TFLITE_BUILTINS]),
              ("TFLITE_BUILTINS+SELECT_TF_OPS",
               [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]))
  failures = []
  for name, ops in attempts:
    converter = tf.lite.TFLiteConverter.from_keras_model(stock)
    converter.target_spec.supported_ops = ops
    if quantize == "dynamic":
      converter.optimizations = [tf.lite.Optimize.DEFAULT]
    try:
      return converter.convert(), name
    except Exception as e:  # pylint: disable=broad-except  (ConverterError and others)
      failures.append(f"{name}: {str(e).strip().splitlines()[0] if str(e).strip() else e!r}")
  raise UserError(f"TFLite conversion of the stock Keras model (quantize={quantize}) failed: "
                  f"{'; '.join(failures)}")


def stock_tflite_stream_logits(model: str | bytes, output_names: list[str],
                               token_ids: np.ndarray) -> np.ndarray:
  """Logits after each token of a stock ``.tflite``, one token a run, state carried: [T, V].

  Args:
    model: the ``.tflite`` path or bytes of :func:`convert_stock`.
    output_names: the stock Keras model's ``output_names`` (logits, then the
      states in input order): the converted signature's output keys.
  """
  source = model if isinstance(model, str) else "the stock .tflite"
  try:
    if isinstance(model, str):
      interpreter = Interpreter(model_path=model, num_threads=1)
    else:
      interpreter = Interpreter(model_content=bytes(model), num_threads=1)
    runner = interpreter.get_signature_runner(SIGNATURE_KEY)
  except (ValueError, RuntimeError) as e:
    raise UserError(f"LiteRT cannot load {source}: {str(e).splitlines()[0]}") from None
  inputs = runner.get_input_details()
  input_states = sorted((n for n in inputs if n != TOKEN_INPUT),
                        key=lambda n: (int(n[1:]), n[0] != "h"))
  states = {n: np.zeros(inputs[n]["shape"], np.float32) for n in input_states}
  logits = []
  for token in np.asarray(token_ids, np.int32):
    outputs = runner(**{TOKEN_INPUT: np.array([[token]], np.int32)}, **states)
    logits.append(np.asarray(outputs[output_names[0]]).reshape(-1))
    states = {n: outputs[o] for n, o in zip(input_states, output_names[1:])}
  return np.stack(logits)


def tflite_logit_diff(stock_model: str | bytes, output_names: list[str], ours_path: str,
                      token_ids: np.ndarray) -> float:
  """Max abs logit difference of a stock ``.tflite`` and our step ``.tflite`` on one stream."""
  ours = TFLiteStepModel(ours_path).run(token_ids)
  return float(np.abs(stock_tflite_stream_logits(stock_model, output_names, token_ids)
                      - ours).max())


def graph_facts(path: str) -> dict:
  """Ops of a ``.tflite``: ``tflite_ops`` by kind (``op_kinds``), ``while_ops``, ``subgraphs``."""
  with open(path, "rb") as f:
    parsed = inspect_tflite.parse(f.read(), path)
  ops = inspect_tflite.op_names(parsed)
  kinds = collections.Counter(ops)
  return {"op_kinds": dict(sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))),
          "while_ops": kinds.get("WHILE", 0), "subgraphs": len(parsed.subgraphs),
          "non_builtin_ops": inspect_tflite.non_builtin_ops(parsed)}


# ----- The script --------------------------------------------------------------------------

def _check_flags() -> None:
  bad = [m for m in FLAGS.modes if m not in MODES]
  if bad or not FLAGS.modes or len(set(FLAGS.modes)) != len(FLAGS.modes):
    raise UserError(f"--modes={','.join(FLAGS.modes)}; use some of {', '.join(MODES)}, once each")
  if FLAGS.parity_tokens < 2:
    raise UserError(f"--parity_tokens={FLAGS.parity_tokens}; must be >= 2")
  host.check_rounds(FLAGS.rounds)


def main(argv):
  cli.reject_extra_args(argv)
  _check_flags()
  settings = host.BenchmarkSettings(num_threads=FLAGS.threads, num_runs=FLAGS.runs)
  host.fixed_inputs_benchmark(FLAGS.timer)  # A bad --timer fails before any conversion.
  artifacts.resolve(model_dir=FLAGS.model_dir)  # One-line errors for a missing dir or file.
  model = tflm_compress.load_model(FLAGS.model_dir)
  stock = stock_keras_model(model)
  output_dir = FLAGS.output_dir or os.path.join(FLAGS.model_dir, "peer")
  io_utils.makedirs(output_dir)
  vocab_size = int(stock.outputs[0].shape[-1])
  token_ids = host.token_sequence(vocab_size, FLAGS.parity_tokens, settings.seed)

  paths, modes = {}, []
  for mode in FLAGS.modes:
    stock_bytes, ops_set = convert_stock(stock, mode)
    stock_path = os.path.join(output_dir, f"stock_{mode}.tflite")
    io_utils.atomic_write_bytes(stock_path, stock_bytes)
    ours_path = os.path.join(output_dir, f"ours_{mode}", MODEL_FILE)
    tflm_compress.export_tflite(model, os.path.dirname(ours_path), quantize=mode,
                                log=lambda _: None)
    diff = tflite_logit_diff(stock_path, stock.output_names, ours_path, token_ids)
    if mode == "none" and not diff <= FP32_TOLERANCE:
      raise UserError(f"the stock float32 .tflite and ours disagree: max abs logit difference "
                      f"{diff:.3g} over {len(token_ids)} tokens (> {FP32_TOLERANCE:g}); the "
                      "weights were not mapped onto the stock layers exactly")
    paths[f"stock_{mode}"], paths[f"ours_{mode}"] = stock_path, ours_path
    modes.append({"mode": mode, "stock_ops_set": ops_set, "stock_path": stock_path,
                  "ours_path": ours_path, "parity_tokens": len(token_ids),
                  "max_abs_logit_diff": diff})

  rows = host.compare_files(paths, settings, FLAGS.rounds, FLAGS.timer)
  for row in rows:
    row.update(graph_facts(row["path"]))
    row["graph"], row["mode"] = row["name"].split("_", 1)
    del row["speedup"], row["speedup_best_round"]  # Against the first file: meaningless here.
  by_name = {row["name"]: row for row in rows}
  for entry in modes:
    stock_row, ours_row = by_name[f"stock_{entry['mode']}"], by_name[f"ours_{entry['mode']}"]
    entry["stock_over_ours"] = stock_row["ms_p50"] / ours_row["ms_p50"]
    entry["stock_over_ours_best_round"] = stock_row["ms_best_round"] / ours_row["ms_best_round"]
  result = {"model_dir": FLAGS.model_dir, "output_dir": output_dir,
            "stock_model": {"layers": [type(l).__name__ for l in stock.layers],
                            "output_names": stock.output_names,
                            "converter": "tf.lite.TFLiteConverter.from_keras_model"},
            "settings": settings.to_dict(), "rounds": FLAGS.rounds, "timer": FLAGS.timer,
            "modes": modes, "rows": rows}
  if FLAGS.output_json:
    io_utils.atomic_write_json(FLAGS.output_json, result)
  print("| mode | graph | bytes | TFLite ops | WHILE | subgraphs | XNNPACK partitions | "
        "ms/token p50 (median of rounds) | best round ms | stock/ours |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  for entry in modes:
    for graph in ("stock", "ours"):
      r = by_name[f"{graph}_{entry['mode']}"]
      ratio = f"{entry['stock_over_ours']:.2f}x" if graph == "stock" else ""
      print(f"| {entry['mode']} | {graph} | {r['bytes']:,} | {r['tflite_ops']} | "
            f"{r['while_ops']} | {r['subgraphs']} | {r['delegate_partitions']} | "
            f"{r['ms_p50']:.4f} | {r['ms_best_round']:.4f} | {ratio} |")
  print()
  for entry in modes:
    print(f"{entry['mode']}: stock converted with {entry['stock_ops_set']}; max abs logit diff "
          f"stock vs ours {entry['max_abs_logit_diff']:.2e} over {entry['parity_tokens']} tokens")
  for r in rows:
    print(f"{r['name']} ops: " + ", ".join(f"{k} {v}" for k, v in r["op_kinds"].items()))


if __name__ == "__main__":
  define_flags()
  cli.run(main, stage="peer latency")
