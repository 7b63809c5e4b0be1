"""Model and training configurations, and the named presets.

Presets follow Zaremba, Sutskever & Vinyals (2014), "Recurrent neural network
regularization": ``small`` 2x200 (no dropout), ``medium`` 2x650 (dropout 0.5),
``large`` 2x1500 (dropout 0.65); uniform init in +-init_scale, SGD lr 1 decayed
per epoch after ``decay_start_epoch`` epochs, gradient global-norm clip.
``tiny`` is for tests and the generated corpus.
"""

import dataclasses

from tflm_compress.errors import UserError


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Architecture of an LSTM language model.

  Attributes:
    vocab_size: ``V``; 0 means "take it from the corpus vocabulary".
    embedding_size: ``E``, the input embedding width.
    hidden_sizes: units of each LSTM layer, bottom first.
    dropout: drop rate on non-recurrent connections (0 = none).
    tie_embeddings: share the input embedding with the softmax (needs
      ``embedding_size == hidden_sizes[-1]``).
    init_scale: weights start uniform in ``[-init_scale, init_scale]``.
  """

  vocab_size: int = 0
  embedding_size: int = 200
  hidden_sizes: tuple[int, ...] = (200, 200)
  dropout: float = 0.0
  tie_embeddings: bool = False
  init_scale: float = 0.1

  def __post_init__(self):
    object.__setattr__(self, "hidden_sizes", tuple(int(h) for h in self.hidden_sizes))
    if self.vocab_size < 0:
      raise UserError(f"vocab_size={self.vocab_size}; must be >= 0 (0 = from the corpus)")
    if self.embedding_size <= 0:
      raise UserError(f"embedding_size={self.embedding_size}; must be > 0")
    if not self.hidden_sizes or any(h <= 0 for h in self.hidden_sizes):
      raise UserError(f"hidden_sizes={list(self.hidden_sizes)}; need one or more sizes > 0")
    if not 0.0 <= self.dropout < 1.0:
      raise UserError(f"dropout={self.dropout}; must be in [0, 1)")
    if self.init_scale <= 0:
      raise UserError(f"init_scale={self.init_scale}; must be > 0")
    if self.tie_embeddings and self.embedding_size != self.hidden_sizes[-1]:
      raise UserError(
          f"tie_embeddings needs embedding_size ({self.embedding_size}) == last hidden size "
          f"({self.hidden_sizes[-1]})")

  def with_vocab_size(self, vocab_size: int) -> "ModelConfig":
    return dataclasses.replace(self, vocab_size=vocab_size)

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d["hidden_sizes"] = list(self.hidden_sizes)
    return d

  @classmethod
  def from_dict(cls, d: dict) -> "ModelConfig":
    return cls(**{**d, "hidden_sizes": tuple(d["hidden_sizes"])})


OPTIMIZERS = ("sgd", "adam")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """How to train.

  Attributes:
    batch_size: global batch (rows), split evenly over replicas.
    num_steps: truncated-BPTT length.
    epochs: total epochs (0 = no training: evaluate and save as is).
    optimizer: ``sgd`` (the Zaremba recipe) or ``adam``.
    learning_rate: initial learning rate.
    lr_decay: factor applied per epoch once ``decay_start_epoch`` epochs ran.
    decay_start_epoch: epochs at the initial rate (Zaremba's ``max_epoch``).
    max_grad_norm: clip gradients to this global norm.
    seed: seeds weights init and dropout.
    eval_batch_size: rows for validation/test perplexity (1 = the whole split
      as one stream, the standard way).
    eval_num_steps: window length for evaluation (does not change the result
      when state is carried; only speed).
  """

  batch_size: int = 20
  num_steps: int = 20
  epochs: int = 13
  optimizer: str = "sgd"
  learning_rate: float = 1.0
  lr_decay: float = 0.5
  decay_start_epoch: int = 4
  max_grad_norm: float = 5.0
  seed: int = 0
  eval_batch_size: int = 1
  eval_num_steps: int = 35

  def __post_init__(self):
    for name in ("batch_size", "num_steps", "eval_batch_size", "eval_num_steps"):
      if getattr(self, name) <= 0:
        raise UserError(f"--{name}={getattr(self, name)}; must be > 0")
    if self.epochs < 0:
      raise UserError(f"--epochs={self.epochs}; must be >= 0 (0 = evaluate only)")
    if self.optimizer not in OPTIMIZERS:
      raise UserError(f"--optimizer={self.optimizer!r}; use one of {OPTIMIZERS}")
    if self.learning_rate <= 0:
      raise UserError(f"--learning_rate={self.learning_rate}; must be > 0")
    if not 0 < self.lr_decay <= 1:
      raise UserError(f"--lr_decay={self.lr_decay}; must be in (0, 1]")
    if self.decay_start_epoch < 0:
      raise UserError(f"--decay_start_epoch={self.decay_start_epoch}; must be >= 0")
    if self.max_grad_norm <= 0:
      raise UserError(f"--max_grad_norm={self.max_grad_norm}; must be > 0")

  def learning_rate_at(self, epoch: int) -> float:
    """Learning rate of 0-based ``epoch`` (Zaremba: lr * decay^max(e+1-max_epoch, 0))."""
    return self.learning_rate * self.lr_decay ** max(epoch + 1 - self.decay_start_epoch, 0)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Preset:
  model: ModelConfig
  train: TrainConfig


PRESETS = {
    "tiny": Preset(
        ModelConfig(embedding_size=32, hidden_sizes=(32, 32), init_scale=0.1),
        TrainConfig(batch_size=16, num_steps=20, epochs=4, optimizer="adam",
                    learning_rate=0.01, lr_decay=0.5, decay_start_epoch=3,
                    eval_batch_size=1, eval_num_steps=50)),
    "small": Preset(
        ModelConfig(embedding_size=200, hidden_sizes=(200, 200), dropout=0.0, init_scale=0.1),
        TrainConfig(batch_size=20, num_steps=20, epochs=13, learning_rate=1.0, lr_decay=0.5,
                    decay_start_epoch=4, max_grad_norm=5.0)),
    "medium": Preset(
        ModelConfig(embedding_size=650, hidden_sizes=(650, 650), dropout=0.5, init_scale=0.05),
        TrainConfig(batch_size=20, num_steps=35, epochs=39, learning_rate=1.0, lr_decay=0.8,
                    decay_start_epoch=6, max_grad_norm=5.0)),
    "large": Preset(
        ModelConfig(embedding_size=1500, hidden_sizes=(1500, 1500), dropout=0.65,
                    init_scale=0.04),
        TrainConfig(batch_size=20, num_steps=35, epochs=55, learning_rate=1.0,
                    lr_decay=1 / 1.15, decay_start_epoch=14, max_grad_norm=10.0)),
}


def get_preset(name: str) -> Preset:
  if name not in PRESETS:
    raise UserError(f"unknown --config={name!r}; use one of {sorted(PRESETS)}")
  return PRESETS[name]
