"""A one-line progress bar with ETA, for long loops the user waits on.

  bar = progress.Bar(len(ids) - 1, "valid perplexity")
  for t in range(len(ids) - 1):
    ...
    bar.update(t + 1, ppl=math.exp(total / (t + 1)))
  bar.close()

or ``for item in progress.track(items, label="benchmark"): ...``.

The bar is drawn on stdout, in place, only when stdout is a terminal: piped
or logged output (a script's JSON, a CI log) gets none of it, and stderr stays
for errors (a script's ``error:`` line is the first line there). Standard
library only.
"""

import sys
import time
from typing import Iterable, Iterator, TextIO

_active_bar = None


def _format_seconds(seconds: float) -> str:
  seconds = int(round(seconds))
  hours, rest = divmod(seconds, 3600)
  minutes, seconds = divmod(rest, 60)
  return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class Bar:
  """``label [=====>    ] done/total  ETA m:ss  name value ...``, redrawn in place.

  Args:
    total: the count at completion (e.g. tokens, batches, timed runs).
    label: what is being counted down.
    stream: where to draw (default: ``sys.stdout`` at each draw).
    enabled: draw or not (default: whether ``stream`` is a terminal).
    min_interval: seconds between redraws (the last update always draws).
    clock: ``time.monotonic``, replaceable in tests.
  """

  def __init__(self, total: int, label: str = "", stream: TextIO | None = None,
               enabled: bool | None = None, min_interval: float = 0.2, width: int = 24,
               clock=time.monotonic):
    self.total = max(int(total), 0)
    self.label = label
    self._stream = stream
    self._enabled = enabled
    self._min_interval = min_interval
    self._width = width
    self._clock = clock
    self._start = clock()
    self._last_draw = None
    self._drawn_chars = 0
    self.done = 0

  @property
  def stream(self) -> TextIO:
    return self._stream or sys.stdout

  @property
  def enabled(self) -> bool:
    if self._enabled is None:
      isatty = getattr(self.stream, "isatty", None)
      self._enabled = bool(isatty and isatty())
    return self._enabled

  def render(self, **stats: float) -> str:
    """The bar's text for the current count (no carriage return)."""
    fraction = min(self.done / self.total, 1.0) if self.total else 1.0
    filled = int(fraction * self._width)
    arrow = ">" if 0 < filled < self._width else ""
    bar = ("=" * filled + arrow).ljust(self._width)[: self._width]
    elapsed = self._clock() - self._start
    if self.done >= self.total:
      timing = f"in {_format_seconds(elapsed)}"
    elif self.done > 0:
      timing = f"ETA {_format_seconds(elapsed / self.done * (self.total - self.done))}"
    else:
      timing = "ETA ?"
    parts = [f"{self.label} " if self.label else "", f"[{bar}] {self.done}/{self.total}  {timing}"]
    parts += [f"  {name} {value:.4g}" if isinstance(value, float) else f"  {name} {value}"
              for name, value in stats.items()]
    return "".join(parts)

  def update(self, done: int, **stats: float) -> None:
    """Sets the count to ``done`` and redraws (at most every ``min_interval`` seconds)."""
    global _active_bar
    self.done = int(done)
    if not self.enabled:
      return
    now = self._clock()
    if (self._last_draw is not None and now - self._last_draw < self._min_interval
        and self.done < self.total):
      return
    self._last_draw = now
    text = self.render(**stats)
    padding = " " * max(self._drawn_chars - len(text), 0)
    self.stream.write("\r" + text + padding)
    self.stream.flush()
    self._drawn_chars = len(text)
    _active_bar = self

  def advance(self, count: int = 1, **stats: float) -> None:
    self.update(self.done + count, **stats)

  def close(self) -> None:
    """Erases the bar, so what is printed next starts on a clean line."""
    global _active_bar
    if self._drawn_chars:
      self.stream.write("\r" + " " * self._drawn_chars + "\r")
      self.stream.flush()
      self._drawn_chars = 0
    if _active_bar is self:
      _active_bar = None

  def __enter__(self) -> "Bar":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


def track(items: Iterable, total: int | None = None, label: str = "", **bar_kwargs) -> Iterator:
  """Yields ``items`` while a :class:`Bar` counts them (``total``: default ``len(items)``)."""
  if total is None:
    total = len(items)  # type: ignore[arg-type]
  with Bar(total, label, **bar_kwargs) as bar:
    for count, item in enumerate(items, start=1):
      yield item
      bar.update(count)


def end_line() -> None:
  """Erases a bar left drawn (e.g. by an interrupt), before a message is printed."""
  if _active_bar is not None:
    _active_bar.close()
