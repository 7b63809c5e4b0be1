"""Shared plumbing for the absl scripts: clean one-line errors."""

import sys
from typing import Callable

from absl import app, flags

from tflm_compress.benchmark.schema import TIMERS
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


def parse_floats(flag: str, values: list[str]) -> list[float]:
  """A comma-list flag's entries as floats; one clear error naming the flag and entry."""
  parsed = []
  for value in values:
    try:
      parsed.append(float(value))
    except ValueError:
      raise UserError(f"--{flag} entry {value!r} is not a number") from None
  return parsed


def parse_named_paths(pairs: list[str], flag: str = "--models") -> dict[str, str]:
  """``NAME=PATH`` flag entries, in order; one clear error for a malformed or repeated name."""
  parsed = {}
  for pair in pairs:
    name, sep, path = pair.partition("=")
    if not sep or not name or not path:
      raise UserError(f"{flag} entry {pair!r}; use NAME=PATH")
    if name in parsed:
      raise UserError(f"{flag} names {name!r} twice")
    parsed[name] = path
  return parsed


def define_interleaved_timing_flags(runs: int, per: str) -> None:
  """``--threads``, ``--runs``, ``--rounds``, ``--timer``, ``--output_json`` of the
  side-by-side latency benchmarks (``per``: what one timed run is of, e.g. "model")."""
  flags.DEFINE_integer("threads", 1, "Interpreter threads.")
  flags.DEFINE_integer("runs", runs, f"Timed runs per round per {per} (at least).")
  flags.DEFINE_integer("rounds", 5, "Interleaved rounds (A, B, A, B, ...).")
  flags.DEFINE_enum("timer", "python", list(TIMERS),
                    "python: Interpreter.invoke() timed from Python; native: "
                    "LiteRtRunCompiledModel timed from C (no Python in the timed runs).")
  flags.DEFINE_string("output_json", "", "Write the rows here too.")
