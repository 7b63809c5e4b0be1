"""``model_meta.json``: what an app needs to drive an exported step model."""

import dataclasses
from tflm_compress import io_utils
from tflm_compress.errors import UserError

META_FILE = "model_meta.json"
FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class ModelMeta:
  """Attributes:
    model_file, vocab_file: file names, relative to the meta file's folder.
    vocab_size: number of logits.
    eos_id, unk_id: ids of ``<eos>`` and ``<unk>``.
    signature: the signature key to run.
    token_input, logits_output: tensor names in the signature.
    state_inputs: state input names in order (``h0, c0, h1, c1, ...``).
    state_outputs: the matching output names (``h0_out, ...``), same order.
    state_sizes: the width of each state, same order.
    quantization: ``none``, ``dynamic``, ``float16`` or ``int8``; for the
      sub-8-bit modes the recipe on one line, e.g. ``int4 (ai-edge-quantizer
      dynamic_wi4c_afp32: embedding:4,lstm_0:4,lstm_1:4,softmax:4)``.
    method: how the model was compressed (``baseline`` if not).
  """

  model_file: str
  vocab_file: str
  vocab_size: int
  eos_id: int
  unk_id: int
  signature: str
  token_input: str
  logits_output: str
  state_inputs: tuple[str, ...]
  state_outputs: tuple[str, ...]
  state_sizes: tuple[int, ...]
  quantization: str
  method: str = "baseline"
  format_version: int = FORMAT_VERSION

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    for key in ("state_inputs", "state_outputs", "state_sizes"):
      d[key] = list(d[key])
    return d

  def save(self, path: str) -> None:
    io_utils.atomic_write_json(path, self.to_dict())

  @classmethod
  def from_dict(cls, d: dict) -> "ModelMeta":
    fields = {f.name for f in dataclasses.fields(cls)}
    missing = sorted(f.name for f in dataclasses.fields(cls)
                     if f.name not in d and f.default is dataclasses.MISSING)
    if missing:
      raise UserError(f"model_meta.json lacks {missing}")
    if d.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
      raise UserError(f"model_meta.json format_version {d['format_version']} is newer than "
                      f"this package reads ({FORMAT_VERSION})")
    kwargs = {k: v for k, v in d.items() if k in fields}
    for key in ("state_inputs", "state_outputs", "state_sizes"):
      kwargs[key] = tuple(kwargs[key])
    return cls(**kwargs)

  @classmethod
  def load(cls, path: str) -> "ModelMeta":
    try:
      return cls.from_dict(io_utils.read_json(path))
    except UserError as e:
      raise UserError(f"{path}: {e}") from None

