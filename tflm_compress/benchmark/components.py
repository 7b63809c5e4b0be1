"""Latency of the LSTM stack alone, several models timed side by side.

A model's whole step graph mixes the embedding GATHER, the LSTMs and the
softmax. A method that shrinks only the LSTMs (ISS, LSTM-only low rank) moves
only part of that time, so its whole-step speedup understates what it did to
the LSTMs. :func:`lstm_stack_tflite` cuts the LSTM stack out of a model as its
own step graph (input: one embedded token ``[1, E]`` and the states; output:
the top layer's ``h`` and the new states), with the model's own LSTM layers, so
it lowers to the same builtins as in the full export.
:func:`compare_lstm_latency` times several models' stacks in interleaved
rounds (A, B, A, B, ...) with the host benchmark, so machine noise hits all
of them alike (``host.compare_files``); each model's figures are the median
and the minimum over rounds of its per-round p50.
"""

import os

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tflm_compress import io_utils
from tflm_compress.benchmark.host import BenchmarkSettings, check_rounds, compare_files
from tflm_compress.errors import UserError
from tflm_compress.export.step_model import state_layout
from tflm_compress.names import lstm_name


def lstm_stack_layers(model: keras.Model) -> list[keras.layers.Layer]:
  """The layers named ``lstm_0``, ``lstm_1``, ... (any LSTM class of the package)."""
  layers = []
  while True:
    try:
      layers.append(model.get_layer(lstm_name(len(layers))))
    except ValueError:
      break
  if not layers:
    raise UserError(f"model {model.name!r} has no layer named {lstm_name(0)!r}; the LSTM stack "
                    "is cut out of the package's models (load user models with load_model)")
  return layers


def lstm_state_sizes(model: keras.Model) -> list[int]:
  """Hidden size of each LSTM layer (from its state inputs)."""
  return state_layout(model)[1][::2]


def lstm_params(model: keras.Model) -> int:
  return int(sum(np.prod(w.shape) for layer in lstm_stack_layers(model)
                 for w in layer.trainable_weights))


def lstm_stack_model(model: keras.Model) -> keras.Model:
  """``[x [1, 1, E], h0, c0, h1, c1, ...] -> [top h, h0', c0', ...]`` with the model's layers."""
  layers = lstm_stack_layers(model)
  names, sizes = state_layout(model)
  embedded = keras.Input((1, int(model.get_layer("embedding").output.shape[-1])), batch_size=1,
                         name="x")
  states = [keras.Input((size,), batch_size=1, name=name) for name, size in zip(names, sizes)]
  x, new_states = embedded, []
  for i, layer in enumerate(layers):
    x, h, c = layer([x, states[2 * i], states[2 * i + 1]])
    new_states += [h, c]
  return keras.Model([embedded] + states, [x] + new_states, name="lstm_stack")


def lstm_stack_tflite(model: keras.Model) -> bytes:
  """The LSTM stack of ``model`` as a float32 ``.tflite`` (batch 1, one step).

  Signature inputs ``x`` (``[1, 1, E]``), ``h0, c0, ...``; outputs ``top``
  (the last layer's ``h``, ``[1, H]``) and ``h0_out, c0_out, ...``.
  """
  stack = lstm_stack_model(model)
  specs = [tf.TensorSpec(t.shape, t.dtype, name=t.name.split(":")[0]) for t in stack.inputs]

  names = [f"{name}_out" for name in state_layout(model)[0]]

  @tf.function(input_signature=specs)
  def step(*inputs):
    outputs = stack(list(inputs), training=False)
    return {"top": tf.reshape(outputs[0], [1, -1]), **dict(zip(names, outputs[1:]))}

  converter = tf.lite.TFLiteConverter.from_concrete_functions([step.get_concrete_function()],
                                                              stack)
  return converter.convert()


def compare_lstm_latency(models: dict[str, keras.Model], workdir: str,
                         settings: BenchmarkSettings = BenchmarkSettings(),
                         rounds: int = 3, timer: str = "python") -> list[dict]:
  """Times each model's LSTM stack, interleaved over ``rounds``; one row per model.

  Rows (in the order given): ``name``, ``hidden_sizes``, ``lstm_params``,
  ``tflite_bytes``, ``tflite_ops``, ``delegate_partitions`` (see
  ``host.delegate_partitions``), ``lstm_ms_p50`` (median over rounds),
  ``lstm_ms_best_round`` (minimum over rounds), ``round_p50s``, and relative to
  the first model: ``param_reduction`` (its params / these), ``speedup`` and
  ``speedup_best_round`` (its ms / these). ``timer``: ``python`` or ``native``
  (``host.fixed_inputs_benchmark``).
  """
  if not models:
    raise UserError("no models to compare")
  check_rounds(rounds)  # Before any conversion.
  io_utils.makedirs(workdir)
  paths = {}
  for name, model in models.items():
    paths[name] = os.path.join(workdir, f"{name}_lstm_stack.tflite")
    io_utils.atomic_write_bytes(paths[name], lstm_stack_tflite(model))
  timed = compare_files(paths, settings, rounds, timer)
  rows = []
  for (name, model), file_row in zip(models.items(), timed):
    rows.append({"name": name, "hidden_sizes": lstm_state_sizes(model),
                 "lstm_params": lstm_params(model), "tflite_bytes": file_row["bytes"],
                 "tflite_ops": file_row["tflite_ops"],
                 "delegate_partitions": file_row["delegate_partitions"],
                 "lstm_ms_p50": file_row["ms_p50"], "lstm_ms_best_round": file_row["ms_best_round"],
                 "round_p50s": file_row["round_p50s"], "speedup": file_row["speedup"],
                 "speedup_best_round": file_row["speedup_best_round"]})
  for row in rows:
    row["param_reduction"] = rows[0]["lstm_params"] / row["lstm_params"]
  return rows
