"""Text helpers shared by the n2p2 file readers and writers: the error,
strict number parsing, comment stripping and exact number formatting."""

import math
import re

__all__ = ["N2P2FormatError", "number", "integer"]


class N2P2FormatError(ValueError):
    """An n2p2 file is malformed, inconsistent, or uses something this
    reader refuses; the message names the file, the line and the fix."""


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\Z")
_INTEGER = re.compile(r"[+-]?\d+\Z")

# Longest element symbol, number token and line we accept.
_MAX_TOKEN = 64


def _where(name, line):
    return "%s line %d" % (name, line)


def number(token: str, name: str, line: int, what: str = "a number") -> float:
    """``float(token)``, refusing anything but a plain finite decimal."""
    if len(token) > _MAX_TOKEN or not _NUMBER.match(token):
        raise N2P2FormatError("%s: %r is not %s" % (_where(name, line),
                                                   token[:_MAX_TOKEN], what))
    value = float(token)
    if not math.isfinite(value):
        raise N2P2FormatError("%s: %r is out of range" % (_where(name, line),
                                                         token))
    return value


def integer(token: str, name: str, line: int, low: int | None = None,
            high: int | None = None) -> int:
    """``int(token)`` within ``[low, high]``, refusing anything else."""
    if len(token) > _MAX_TOKEN or not _INTEGER.match(token):
        raise N2P2FormatError("%s: %r is not a whole number"
                              % (_where(name, line), token[:_MAX_TOKEN]))
    value = int(token)
    if (low is not None and value < low) or (high is not None
                                             and value > high):
        raise N2P2FormatError("%s: %d is outside [%s, %s]" % (
            _where(name, line), value, low, high))
    return value


def _decode(data, name):
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise N2P2FormatError("%s: not UTF-8 text" % _where(name, line)) \
            from None


def _lines(text):
    """``(number, tokens)`` of every line with content, comments cut."""
    for number_, line in enumerate(text.splitlines(), 1):
        for mark in "#!":
            cut = line.find(mark)
            if cut >= 0:
                line = line[:cut]
        tokens = line.split()
        if tokens:
            yield number_, tokens


def _repr(value):
    """A float as text that reads back to the same bits (finite only:
    n2p2 has no way to read infinities back safely)."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError("cannot write %r into an n2p2 file" % value)
    return repr(value)
