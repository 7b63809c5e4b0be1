"""Quiet scripts: TensorFlow's and LiteRT's chatter kept off stderr unless ``--verbose``.

:func:`quiet_unless_verbose` (called by the scripts through
:func:`tflm_compress.cli.prepare_script`, before TensorFlow is imported) turns
TensorFlow's C++ logging off (``TF_CPP_MIN_LOG_LEVEL=3``), its Python logger to
ERROR, library deprecation warnings off, and passes stderr through a filter.

The filter is needed because some chatter is printed straight to file
descriptor 2, where no environment variable or Python setting reaches: C++
lines printed before TensorFlow's logging is set up (``I0000``/``E0000``/
``W0000`` lines, ``WARNING: All log messages before absl::InitializeLog()``,
``NodeDef mentions attribute Truncate`` from the converter's own copy of absl),
the LiteRT runtime's logger (``INFO: Created TensorFlow Lite XNNPACK delegate``)
and the quantizer's printf (``fully_quantize: 0, inference_type: 6, ...``).
Run as a program (``python quiet.py``), this module copies its stdin to its
stdout leaving out the lines :func:`is_noise` matches; the script's stderr
points at such a side process. Being another process, it still shows what the
script wrote just before a crash. Everything else passes unchanged: ``error:``
lines, Python tracebacks, ``F`` (fatal) log lines, progress output.

Standard library only, and nothing of the package: the filter runs as
``python -I quiet.py``, and the module can be loaded before the package.
"""

import atexit
import logging
import os
import re
import select
import signal
import subprocess
import sys
import warnings

NOISE_PATTERNS = (
    # absl/glog C++ lines (I0000 00:00:1796236105.526648    6707 port.cc:153] ...) and absl
    # Python lines (I1202 18:29:20.299838 139847 functional_saver.py:440] ...); F lines stay.
    rb"[IWE]\d{4} \d\d:\d\d:[\d.]+ +\d+ [^\s\]]+:\d+\]",
    rb"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    # The LiteRT runtime's own logger (its ERROR: lines too: the Python exception raised
    # with them carries the failure, and --verbose shows them) and TensorFlow's Python logger.
    rb"(INFO|WARNING|ERROR|VERBOSE): ",
    rb"(INFO|WARNING|ERROR):tensorflow:",
    # The quantizer's printf.
    rb"fully_quantize: \d+, inference_type: ",
    rb"To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler",
)
_NOISE = re.compile(rb"(?:" + rb"|".join(NOISE_PATTERNS) + rb")")

# A line is judged once it ends, once this long (every noise line shows what it
# is in its first 100 bytes), or once it holds a carriage return (a progress bar).
DECIDE_AFTER_BYTES = 200
# A partial line waiting this long is judged as it is (e.g. a prompt without newline).
PARTIAL_LINE_WAIT_SECONDS = 0.1

_UNDECIDED, _KEEP, _DROP = range(3)


def is_noise(line: bytes) -> bool:
  """Whether ``line`` (or its start) is TensorFlow/LiteRT chatter."""
  return _NOISE.match(line) is not None


class LineFilter:
  """Bytes in, the bytes to keep out, line by line.

  The rest of a line that was judged before it ended (long, or a progress
  bar's ``\\r`` update) passes or is dropped with its start, as it arrives.
  """

  def __init__(self):
    self._pending = b""
    self._state = _UNDECIDED

  @property
  def has_partial_line(self) -> bool:
    return bool(self._pending)

  def feed(self, data: bytes) -> bytes:
    kept = []
    while data:
      newline = data.find(b"\n")
      if self._state != _UNDECIDED:
        piece = data if newline < 0 else data[:newline + 1]
        if self._state == _KEEP:
          kept.append(piece)
        data = data[len(piece):]
        if newline >= 0:
          self._state = _UNDECIDED
      elif newline >= 0:
        line, data = self._pending + data[:newline + 1], data[newline + 1:]
        self._pending = b""
        if not is_noise(line):
          kept.append(line)
      else:
        self._pending += data
        data = b""
        if len(self._pending) >= DECIDE_AFTER_BYTES or b"\r" in self._pending:
          kept.append(self.flush())
    return b"".join(kept)

  def flush(self) -> bytes:
    """Judges the partial line so far; the rest of it follows that judgement."""
    if not self._pending:
      return b""
    partial, self._pending = self._pending, b""
    if is_noise(partial):
      self._state = _DROP
      return b""
    self._state = _KEEP
    return partial


def _write_all(fd: int, data: bytes) -> bool:
  """Writes ``data``; False once the reader is gone (then input is only drained)."""
  while data:
    try:
      data = data[os.write(fd, data):]
    except BrokenPipeError:
      return False
  return True


def filter_stream(in_fd: int, out_fd: int) -> None:
  """Copies ``in_fd`` to ``out_fd`` without the noise lines, until end of input."""
  line_filter = LineFilter()
  writable = True
  while True:
    if line_filter.has_partial_line:
      ready, _, _ = select.select([in_fd], [], [], PARTIAL_LINE_WAIT_SECONDS)
      if not ready:
        kept = line_filter.flush()
        writable = writable and _write_all(out_fd, kept)
        continue
    data = os.read(in_fd, 65536)
    if not data:
      break
    kept = line_filter.feed(data)
    writable = writable and _write_all(out_fd, kept)
  if writable:
    _write_all(out_fd, line_filter.flush())


# Libraries whose Python warnings (deprecations, converter notes) are chatter to a user.
CHATTY_MODULES = (r"(tensorflow|tf_keras|keras|tensorflow_model_optimization|ai_edge_litert|"
                  r"tflite_runtime|t3f|absl|google\.protobuf|h5py)(\.|$)")

_quiet = False
_stderr_filter = None  # (filter process, a fd of the real stderr) while filtering.
_stderr_was_terminal = None


def wants_verbose(argv: list[str]) -> bool:
  """Whether ``argv`` sets ``--verbose`` (read before absl parses flags; the last one wins)."""
  verbose = False
  for arg in argv[1:]:
    if arg == "--":
      break
    if not arg.startswith("-"):
      continue
    name, sep, value = arg.lstrip("-").partition("=")
    if name == "verbose":
      verbose = not sep or value.lower() in ("true", "t", "1", "yes", "y")
    elif name == "noverbose" and not sep:
      verbose = False
  return verbose


def quiet_unless_verbose(argv: list[str] | None = None) -> bool:
  """Quiets this process unless ``argv`` (default ``sys.argv``) has ``--verbose``.

  Call before TensorFlow is imported: its C++ logging level is read then, and
  what it prints while loading goes through the filter. Returns whether quiet.
  """
  global _quiet, _stderr_was_terminal
  argv = sys.argv if argv is None else argv
  if _quiet or wants_verbose(argv):
    return _quiet
  _quiet = True
  _stderr_was_terminal = os.isatty(2)
  os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
  logging.getLogger("tensorflow").setLevel(logging.ERROR)
  for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
    warnings.filterwarnings("ignore", category=category)
  warnings.filterwarnings("ignore", module=CHATTY_MODULES)
  _start_stderr_filter()
  return True


def is_quiet() -> bool:
  return _quiet


def stderr_is_terminal() -> bool:
  """Whether the real stderr (not the filter's pipe) is a terminal."""
  return os.isatty(2) if _stderr_was_terminal is None else _stderr_was_terminal


def _start_stderr_filter() -> None:
  global _stderr_filter
  if os.name != "posix":
    return  # select() on pipes is POSIX only; elsewhere the settings above are all.
  sys.stderr.flush()
  try:
    process = subprocess.Popen([sys.executable, "-I", os.path.abspath(__file__)],
                               stdin=subprocess.PIPE, stdout=2, stderr=2,
                               start_new_session=True)  # The terminal's Ctrl-C skips it.
  except OSError:
    return
  real_stderr = os.dup(2)  # Not inherited by child processes.
  os.dup2(process.stdin.fileno(), 2)
  process.stdin.close()
  _stderr_filter = (process, real_stderr)
  atexit.register(stop_stderr_filter)


def stop_stderr_filter() -> None:
  """Points stderr back at the real one and lets the filter print what it still holds.

  Runs at exit (registered before TensorFlow's exit handlers, so after them).
  """
  global _stderr_filter
  if _stderr_filter is None:
    return
  process, real_stderr = _stderr_filter
  _stderr_filter = None
  try:
    sys.stderr.flush()
  except (OSError, ValueError):
    pass
  os.dup2(real_stderr, 2)  # Closes this process's end of the pipe: the filter sees EOF.
  os.close(real_stderr)
  try:
    process.wait(timeout=5)  # Longer only while a child process still holds the pipe.
  except subprocess.TimeoutExpired:
    pass


INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, what a shell reports for Ctrl-C.


def interrupt_message(stage: str | None = None) -> str:
  """The one line a Ctrl-C prints (``stage``: what was running, if known)."""
  where = f" in stage {stage}" if stage else ""
  return f"interrupted{where}; rerun the same command to resume"


def install_interrupt_hook() -> None:
  """A Ctrl-C before the script's ``main`` runs (e.g. while TensorFlow loads): the
  one line and exit 130 instead of a traceback (``main`` itself:
  :func:`tflm_compress.cli.run`)."""
  previous = sys.excepthook
  if getattr(previous, "is_interrupt_hook", False):
    return

  def hook(kind, value, tb):
    if not issubclass(kind, KeyboardInterrupt):
      previous(kind, value, tb)
      return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    print(interrupt_message(), file=sys.stderr, flush=True)
    stop_stderr_filter()
    os._exit(INTERRUPTED_EXIT_CODE)  # pylint: disable=protected-access

  hook.is_interrupt_hook = True
  sys.excepthook = hook


def main() -> None:
  # Ctrl-C is for the script; this process ends when the script's stderr closes.
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  filter_stream(sys.stdin.fileno(), sys.stdout.fileno())


if __name__ == "__main__":
  main()
