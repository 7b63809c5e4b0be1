"""Running an exported step model with the LiteRT interpreter."""

import math

import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from tflm_compress import progress as progress_bar
from tflm_compress.errors import UserError
from tflm_compress.export import inspect_tflite
from tflm_compress.export.step_model import LOGITS_OUTPUT, SIGNATURE_KEY, TOKEN_INPUT


def log_softmax(logits: np.ndarray) -> np.ndarray:
  logits = logits.astype(np.float64)
  shifted = logits - logits.max(axis=-1, keepdims=True)
  return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


class TFLiteStepModel:
  """A ``.tflite`` step model driven one token at a time, state carried.

  Args:
    model: path to a ``.tflite`` file, or its bytes.
    num_threads: interpreter threads.
  """

  def __init__(self, model: str | bytes, num_threads: int = 1):
    if isinstance(model, (bytes, bytearray)):
      self.source, model_bytes = "<bytes>", bytes(model)
    else:
      self.source = model
      if not tf.io.gfile.exists(model):
        raise UserError(f"TFLite model not found: {model!r}")
      with tf.io.gfile.GFile(model, "rb") as f:
        model_bytes = f.read()
    inspect_tflite.parse(model_bytes, self.source)  # Clear error on a corrupt file.
    self.model_bytes = model_bytes
    try:
      self.interpreter = Interpreter(model_content=model_bytes, num_threads=num_threads)
      self.interpreter.allocate_tensors()
      runner = self.interpreter.get_signature_runner(SIGNATURE_KEY)
    except (ValueError, RuntimeError) as e:
      raise UserError(f"LiteRT cannot load {self.source}: {str(e).splitlines()[0]}") from None
    inputs, outputs = runner.get_input_details(), runner.get_output_details()
    if TOKEN_INPUT not in inputs or LOGITS_OUTPUT not in outputs:
      raise UserError(f"{self.source} is not a step model: signature {SIGNATURE_KEY!r} has "
                      f"inputs {sorted(inputs)} and outputs {sorted(outputs)}")
    self.state_names = sorted((n for n in inputs if n != TOKEN_INPUT),
                              key=lambda n: (int(n[1:]), n[0] != "h"))
    self._token_index = inputs[TOKEN_INPUT]["index"]
    self._logits_index = outputs[LOGITS_OUTPUT]["index"]
    self._state_in = [inputs[n]["index"] for n in self.state_names]
    self._state_out = [outputs[f"{n}_out"]["index"] for n in self.state_names]
    self.state_sizes = [int(inputs[n]["shape"][-1]) for n in self.state_names]
    self.vocab_size = int(outputs[LOGITS_OUTPUT]["shape"][-1])

  @property
  def tensor_indices(self) -> dict:
    """Interpreter tensor indices of the signature: ``token``, ``logits``,
    ``state_inputs`` and ``state_outputs`` (lists in state order). They come
    from the file, so they hold for any interpreter built from the same model."""
    return {"token": self._token_index, "logits": self._logits_index,
            "state_inputs": list(self._state_in), "state_outputs": list(self._state_out)}

  @property
  def size_bytes(self) -> int:
    return len(self.model_bytes)

  def zero_states(self) -> list[np.ndarray]:
    return [np.zeros((1, s), np.float32) for s in self.state_sizes]

  def step(self, token: int, states: list[np.ndarray]):
    """One token -> (logits float32 [V], new states)."""
    it = self.interpreter
    it.set_tensor(self._token_index, np.array([token], np.int32))
    for index, state in zip(self._state_in, states):
      it.set_tensor(index, state)
    it.invoke()
    logits = it.get_tensor(self._logits_index)[0]
    return logits, [it.get_tensor(i) for i in self._state_out]

  def run(self, token_ids: np.ndarray) -> np.ndarray:
    """Logits after each token of a stream from the zero state, [T, V]."""
    states = self.zero_states()
    out = np.empty((len(token_ids), self.vocab_size), np.float32)
    for t, token in enumerate(token_ids):
      out[t], states = self.step(int(token), states)
    return out

  def perplexity(self, token_ids: np.ndarray, progress: bool = True) -> dict:
    """Perplexity of a stream, state carried over the whole of it.

    Every token after the first is predicted once (``<eos>`` included), as
    in the Keras evaluation with ``batch_size=1``. ``progress``: a bar with
    ETA on a terminal (nothing when stdout is a pipe or a log).
    """
    token_ids = np.asarray(token_ids)
    if len(token_ids) < 2:
      raise UserError("perplexity needs at least 2 tokens")
    states = self.zero_states()
    total = 0.0
    with progress_bar.Bar(len(token_ids) - 1, ".tflite perplexity",
                          enabled=None if progress else False) as bar:
      for t in range(len(token_ids) - 1):
        logits, states = self.step(int(token_ids[t]), states)
        shifted = logits.astype(np.float64) - logits.max()
        total += math.log(np.exp(shifted).sum()) - shifted[int(token_ids[t + 1])]
        bar.update(t + 1, ppl=math.exp(total / (t + 1)))
    count = len(token_ids) - 1
    return {"ppl": math.exp(total / count), "nll": total / count, "tokens": count}
