"""Shared plumbing for the absl scripts: clean one-line errors, Ctrl-C, flag parsing.

A script starts with ``import quiet_start`` (scripts/quiet_start.py: quiet
unless ``--verbose``, before anything imports TensorFlow) and runs its
``main`` with :func:`run`:

  from absl import flags

  import quiet_start  # noqa: F401  (first: quiet unless --verbose; see scripts/quiet_start.py)
  from tflm_compress import cli, training
  ...
  if __name__ == "__main__":
    cli.run(main, stage="train")

Importing this module defines ``--verbose`` (read by quiet_start from argv
before absl parses it) and changes nothing else in the process.
"""

import dataclasses
import signal
import sys
import types
import typing
from typing import Callable

from absl import app, flags
from absl import logging as absl_logging

from tflm_compress import progress, quiet
from tflm_compress.benchmark.schema import TIMERS
from tflm_compress.errors import UserError

flags.DEFINE_bool("verbose", False, "Show TensorFlow's and LiteRT's logging, deprecation "
                  "warnings and converter output (hidden by default).")


def interrupted_stage(tb: types.TracebackType | None, stage: str | None = None) -> str | None:
  """What was running when an interrupt came: ``stage``, refined from the traceback.

  The innermost pipeline stage (``StageRunner.run``'s description, e.g.
  ``baseline: train``) replaces ``stage``, and a training epoch in progress
  (``run_training``) is added: ``baseline: train, epoch 2/4``.
  """
  epoch = None
  while tb is not None:
    frame = tb.tb_frame
    module, function = frame.f_globals.get("__name__"), frame.f_code.co_name
    local = frame.f_locals
    if module == "tflm_compress.stages" and function == "run":
      description = local.get("description")
      if isinstance(description, str):
        stage, epoch = description, None
    elif module == "tflm_compress.training" and function == "run_training":
      done, config = local.get("epoch"), local.get("train_config")
      total = getattr(config, "epochs", None)
      if isinstance(done, int) and isinstance(total, int):
        epoch = f"epoch {done + 1}/{total}"
    tb = tb.tb_next
  if stage and epoch:
    return f"{stage}, {epoch}"
  return stage or epoch


def _report_interrupt(stage: str | None) -> None:
  signal.signal(signal.SIGINT, signal.SIG_IGN)  # A second Ctrl-C while exiting changes nothing.
  progress.end_line()
  print(quiet.interrupt_message(stage), file=sys.stderr, flush=True)


def run(main: Callable[[list[str]], None], stage: str | None = None) -> None:
  """``absl.app.run(main)`` with one-line endings.

  A :class:`UserError` prints ``error: ...`` (exit 1). Ctrl-C prints
  ``interrupted in stage STAGE; rerun the same command to resume`` (exit
  130): ``stage`` names the script's work, refined by :func:`interrupted_stage`.
  Every artifact is written atomically, so an interrupt leaves nothing half-written.
  """

  def wrapped(argv):
    if quiet.is_quiet() and not flags.FLAGS["verbosity"].present:
      absl_logging.set_verbosity(absl_logging.ERROR)
    try:
      main(argv)
    except UserError as e:
      progress.end_line()
      print(f"error: {e}", file=sys.stderr)
      sys.exit(1)
    except KeyboardInterrupt:
      _report_interrupt(interrupted_stage(sys.exc_info()[2], stage))
      sys.exit(quiet.INTERRUPTED_EXIT_CODE)

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


_DEFINERS = {int: flags.DEFINE_integer, float: flags.DEFINE_float, str: flags.DEFINE_string,
             bool: flags.DEFINE_bool}


def define_method_flags() -> None:
  """One absl flag per field of each method's ``Config`` (names are unique across methods)."""
  from tflm_compress import methods  # pylint: disable=g-import-not-at-top

  for module in methods.REGISTRY.values():
    hints = typing.get_type_hints(module.Config)
    for field in dataclasses.fields(module.Config):
      kind = hints[field.name]
      base = next((t for t in typing.get_args(kind) if t is not type(None)), kind)
      _DEFINERS[base](field.name, field.default, module.FLAG_HELP.get(field.name, ""))

