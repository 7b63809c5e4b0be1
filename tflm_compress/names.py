"""Names the model, the methods and the exporter share (a leaf module: no imports).

The package's language model names its layers ``embedding``, ``lstm_{i}``,
``dropout_{i}`` and ``softmax`` (see :mod:`tflm_compress.models.lstm_lm`), and
its LSTM states ``h{i}``, ``c{i}``; methods find the pieces they target by
these names, and reports group tensors by :data:`GROUPS`.
"""

EMBEDDING = "embedding"
SOFTMAX = "softmax"

# Tensor groups of a language model, in model order.
GROUPS = ("embedding", "lstm", "softmax")


def lstm_name(i: int) -> str:
  return f"lstm_{i}"


def state_names(num_layers: int) -> list[str]:
  """State tensor names in model order: ``h0, c0, h1, c1, ...``."""
  return [n for i in range(num_layers) for n in (f"h{i}", f"c{i}")]


def layer_kind(layer) -> str:
  """``embedding``, ``lstm``, ``softmax`` or ``other`` (by the model's layer names)."""
  if layer.name == EMBEDDING:
    return "embedding"
  if layer.name == SOFTMAX:
    return "softmax"
  if layer.name.startswith("lstm_"):
    return "lstm"
  return "other"
