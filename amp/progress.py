"""One live progress line on standard error, for long fingerprinting and
training runs.

The line is rewritten in place with a carriage return (``\\r``), at most
once every :data:`INTERVAL` seconds, so a run shows a sign of life without
scrolling the terminal or costing time. It is shown only when standard
error is a terminal, unless the caller forces it on or off (``Amp(...,
verbose=True/False)``); the default keeps it out of CI logs, pipes and
files, where carriage-return updates would be noise.

These few lines are written here rather than taken from ``tqdm`` (the
field's usual choice): the library needs one rate-limited status line with
free-form fields (loss, RMSEs, phase names), not bars, notebooks widgets or
iterator wrapping, and a dependency for that would outweigh the code.

Examples
--------
>>> progress = Progress(40, "fingerprints", unit="images", enabled=False)
>>> for done in range(1, 41):
...     progress.update(done)
>>> progress.close()
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from typing import IO, Any

__all__ = ["Progress", "INTERVAL", "wants_progress"]

#: Seconds between two redraws of the line (and before the first one).
INTERVAL = 1.0


def wants_progress(enabled: bool | None = None,
                   stream: IO[str] | None = None) -> bool:
    """Whether a progress line should be drawn on ``stream``.

    Parameters
    ----------
    enabled : bool or None
        True or False force it on or off; None (auto) draws only when
        ``stream`` is a terminal (and ``TERM`` is not ``dumb``).
    stream : file, optional
        Default ``sys.stderr``.
    """
    if enabled is not None:
        return bool(enabled)
    stream = sys.stderr if stream is None else stream
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):
        return False
    return terminal and os.environ.get("TERM") != "dumb"


def _duration(seconds):
    """``m:ss`` or ``h:mm:ss``."""
    seconds = int(round(max(seconds, 0.0)))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return "%d:%02d:%02d" % (hours, minutes, seconds)
    return "%d:%02d" % (minutes, seconds)


def _field(name, value):
    if isinstance(value, float):
        value = "%.4g" % value if 1e-3 <= abs(value) < 1e4 or value == 0 \
            else "%.3e" % value
    return "%s %s" % (name.replace("_", " "), value)


class Progress:
    """A rate-limited, in-place status line.

    Parameters
    ----------
    total : int or None
        Units of work in all (images, steps); None when unknown (e.g. the
        optimiser's step count), then no fraction or time left is shown.
    label : str
        What is being done, the start of the line (``'fingerprints'``).
    enabled : bool or None
        See :func:`wants_progress`.
    unit : str
        Name of a unit of work in the line (``'images'``).
    stream : file, optional
        Default ``sys.stderr``.
    interval : float, optional
        Seconds between redraws; default :data:`INTERVAL`.
    limit : int, optional
        With ``total`` None, an upper bound shown as ``step n/limit``
        (e.g. an optimiser's ``maxiter``) without a fraction or time left.
    heartbeat : bool
        Redraw every ``interval`` from a background thread while the line
        is shown, so the elapsed time moves during one long call (a
        preconditioner, building batches) that reports nothing. The
        thread runs only when the line is enabled and stops at
        :meth:`close`.

    Notes
    -----
    Two forms, both drawing the same line:

    * counted work: ``update(done, **fields)`` with the units done so far;
      the line shows ``done/total``, the rate and the time left;
    * phases (e.g. a kernel solve): ``phase(name, fraction, **fields)``
      with the fraction of that phase done, between 0 and 1.

    Extra ``fields`` are shown as ``name value`` (floats with 4 digits).
    :meth:`close` redraws the final state and ends the line, only if
    something was drawn; a run shorter than ``interval``, or counted work
    of a single unit, prints nothing.
    """

    def __init__(self, total: "int | None" = None, label: str = "",
                 enabled: "bool | None" = None, unit: str = "",
                 stream: "IO[str] | None" = None,
                 interval: "float | None" = None, limit: "int | None" = None,
                 heartbeat: bool = False) -> None:
        self.stream = sys.stderr if stream is None else stream
        # One unit (an inference call's single image) is no progress.
        self.enabled = wants_progress(enabled, self.stream) and (
            total is None or total > 1)
        self.total = total
        self.label = label
        self.unit = unit
        self.interval = INTERVAL if interval is None else float(interval)
        self.done = 0
        self.fields: dict[str, Any] = {}
        self._phase: str | None = None
        self._fraction: float | None = None
        self._start = time.monotonic()
        self._last_draw = self._start
        self._drawn = False
        self._width = 0
        self.limit = limit
        self._lock = threading.Lock()
        self._beating = None
        if heartbeat and self.enabled:
            self._beating = threading.Event()
            threading.Thread(target=self._beat, args=(self._beating,),
                             name="amp-progress", daemon=True).start()

    # Reporting -----------------------------------------------------------

    def update(self, done: int, **fields: Any) -> None:
        """Record ``done`` units completed (a count, not an increment) and
        redraw when ``interval`` has passed."""
        self.done = done
        self.fields = fields
        self._maybe_draw()

    def phase(self, name: "str | None", fraction: "float | None" = None,
              **fields: Any) -> None:
        """Record the current phase and the fraction of it done (0..1, or
        None when unknown); redraw when ``interval`` has passed. A phase
        of None returns to the counted form."""
        self._phase = name
        self._fraction = fraction
        self.fields = fields
        self._maybe_draw()

    def close(self, **fields: Any) -> None:
        """Draw the final state (when anything was drawn) and end the
        line."""
        if self._beating is not None:
            self._beating.set()
            self._beating = None
        with self._lock:
            if fields:
                self.fields = fields
            if self.enabled and self._drawn:
                self._draw()
                self._write("\n")
            self._drawn = False
            self.enabled = False

    def _beat(self, stop):
        # Never faster than 10 times a second, whatever the interval.
        while not stop.wait(max(self.interval, 0.1)):
            self._maybe_draw()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # Drawing -------------------------------------------------------------

    def _maybe_draw(self):
        if not self.enabled:
            return
        with self._lock:
            now = time.monotonic()
            if self.enabled and now - self._last_draw >= self.interval:
                self._last_draw = now
                self._draw()

    def text(self) -> str:
        """The line as it would be drawn now."""
        elapsed = time.monotonic() - self._start
        parts = [self.label] if self.label else []
        if self._phase is not None:
            parts.append(self._phase if self._fraction is None else
                         "%s %3.0f%%" % (self._phase, 100.0 * self._fraction))
        elif self.total:
            parts.append("%d/%d %s (%3.0f%%)" % (
                self.done, self.total, self.unit,
                100.0 * self.done / self.total))
            if self.done and elapsed > 0:
                rate = self.done / elapsed
                parts.append("%.3g %s/s" % (rate, self.unit or "it"))
                parts.append("%s left" % _duration(
                    (self.total - self.done) / rate))
        elif self.done and self.limit:
            parts.append("%s %d/%d" % (self.unit or "step", self.done,
                                       self.limit))
        elif self.done:
            parts.append("%s %d" % (self.unit or "step", self.done))
        parts.extend(_field(k, v) for k, v in self.fields.items())
        parts.append(_duration(elapsed))
        return ", ".join(p.strip() for p in parts if p.strip())

    def _draw(self):
        columns = shutil.get_terminal_size((80, 24)).columns
        line = self.text()[:max(columns - 1, 10)]
        # Pad over the rest of a longer previous line.
        padded = line.ljust(self._width)
        self._width = len(line)
        self._write("\r" + padded)
        self._drawn = True

    def _write(self, text):
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            # A closed or broken stream must never stop a training.
            self.enabled = False
