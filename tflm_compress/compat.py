"""Compatibility shims for third-party libraries, in one place.

t3f 1.2.0 still uses ``np.int``, which NumPy removed in 1.24. ``import_t3f``
restores the alias (as the builtin ``int``, which is what it always meant)
before t3f is imported. Every module of this package that needs t3f gets it
from here instead of importing it directly.
"""

import numpy as np


def _ensure_numpy_aliases() -> None:
  if "int" not in np.__dict__:
    np.int = int  # pylint: disable=attribute-defined-outside-init


def import_t3f():
  """Returns the ``t3f`` module, imported with the NumPy aliases it needs."""
  _ensure_numpy_aliases()
  import t3f  # pylint: disable=g-import-not-at-top

  return t3f
