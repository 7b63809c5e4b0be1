"""Compression methods, one module each; see ``methods/base.py`` for the contract.

``REGISTRY`` maps a method name to its module. A spec such as
``low_rank+tt`` applies several in order (:func:`parse_spec`).
"""

import types

from tflm_compress.errors import UserError
from tflm_compress.methods import (clustering, group_reduce, int4_qat, iss, low_rank, pruning,
                                   quantization, slim_embedding, tensor_train)
from tflm_compress.methods.base import CompressionContext

# The methods by name, in report order. Adding a method: its module here, one entry.
REGISTRY: dict[str, types.ModuleType] = {m.NAME: m for m in (
    pruning, quantization, clustering, low_rank, tensor_train, group_reduce, slim_embedding,
    iss, int4_qat)}


def get(name: str) -> types.ModuleType:
  if name not in REGISTRY:
    raise UserError(f"unknown --method={name!r}; use one of {sorted(REGISTRY)} "
                    "(or several joined with '+')")
  return REGISTRY[name]


def parse_spec(spec: str) -> list[types.ModuleType]:
  """``'a+b'`` -> the modules of ``a`` and ``b``, in order."""
  names = [n.strip() for n in spec.split("+") if n.strip()]
  if not names:
    raise UserError("--method is empty; use one of " + ", ".join(sorted(REGISTRY)))
  if len(set(names)) != len(names):
    raise UserError(f"--method={spec!r} names a method twice")
  return [get(n) for n in names]


__all__ = ["REGISTRY", "CompressionContext", "get", "parse_spec"]
