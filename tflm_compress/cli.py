"""Shared plumbing for the absl scripts: clean one-line errors."""

import sys
from typing import Callable

from absl import app

from tflm_compress.errors import UserError


def run(main: Callable[[list[str]], None]) -> None:
  """``absl.app.run(main)``, printing a :class:`UserError` as one line, exit 1."""

  def wrapped(argv):
    try:
      main(argv)
    except UserError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(1)

  app.run(wrapped)


def reject_extra_args(argv: list[str]) -> None:
  if len(argv) > 1:
    raise UserError(f"unexpected arguments: {' '.join(argv[1:])} (flags start with --)")
