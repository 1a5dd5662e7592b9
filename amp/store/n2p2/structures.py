"""n2p2's ``input.data`` structure files (for ``nnp-predict``).

Each structure is ``begin``, optional ``comment`` lines, zero or three
``lattice`` lines (cell vectors), one ``atom x y z element charge energy
fx fy fz`` line per atom, optional ``energy`` and ``charge`` lines, and
``end``. Numbers are in the units of the potential.
"""

import os
from collections.abc import Iterable

from .. import limits
from ..files import read_file
from .settings import _symbol
from .text import (_MAX_TOKEN, N2P2FormatError, _decode, _lines, _repr,
                   _where, number)

__all__ = ["read_structures", "format_structures"]


def read_structures(path: str | os.PathLike,
                    max_structures: int | None = None) -> list[dict]:
    """Read structures from an n2p2 ``input.data`` file.

    Each structure is ``begin``, optional ``comment`` lines, zero or three
    ``lattice`` lines, ``atom x y z element charge energy fx fy fz`` lines,
    optional ``energy`` and ``charge`` lines, and ``end``.

    Returns
    -------
    list of dict
        ``cell`` (3 rows or None), ``positions``, ``symbols``, ``energy``
        (or None) and ``forces`` (rows), numbers as given.
    """
    text = _decode(read_file(path, limits.MAX_MODEL_FILE_BYTES), path)
    structures, current = [], None
    for line, tokens in _lines(text):
        keyword = tokens[0]
        if keyword == "begin":
            if current is not None:
                raise N2P2FormatError("%s: begin before end" %
                                      _where(path, line))
            current = {"cell": [], "positions": [], "symbols": [],
                       "forces": [], "energy": None}
        elif current is None:
            raise N2P2FormatError("%s: %r outside begin ... end"
                                  % (_where(path, line),
                                     keyword[:_MAX_TOKEN]))
        elif keyword == "comment":
            continue
        elif keyword == "lattice":
            current["cell"].append([number(t, path, line)
                                    for t in tokens[1:4]])
        elif keyword == "atom":
            if len(tokens) != 10:
                raise N2P2FormatError("%s: an atom line has 10 columns"
                                      % _where(path, line))
            current["positions"].append([number(t, path, line)
                                         for t in tokens[1:4]])
            current["symbols"].append(_symbol(tokens[4], tokens[4], path,
                                              line, listed=False))
            current["forces"].append([number(t, path, line)
                                      for t in tokens[7:10]])
        elif keyword == "energy":
            current["energy"] = number(tokens[1], path, line)
        elif keyword == "charge":
            continue
        elif keyword == "end":
            if len(current["cell"]) not in (0, 3):
                raise N2P2FormatError("%s: a structure needs 0 or 3 lattice "
                                      "lines" % _where(path, line))
            current["cell"] = current["cell"] or None
            structures.append(current)
            current = None
            if max_structures is not None and len(structures) >= \
                    max_structures:
                break
        else:
            raise N2P2FormatError("%s: unknown input.data keyword %r"
                                  % (_where(path, line),
                                     keyword[:_MAX_TOKEN]))
    if current is not None:
        raise N2P2FormatError("%s: the last structure has no end" % path)
    return structures


def format_structures(structures: Iterable[dict]) -> str:
    """The ``input.data`` text of structures (dicts as
    :func:`read_structures` returns; ``energy`` and ``forces`` may be None,
    written as 0)."""
    out = []
    for s in structures:
        out.append("begin")
        for row in s["cell"] or ():
            out.append("lattice %s %s %s" % tuple(_repr(v) for v in row))
        forces = s.get("forces") or [[0.0] * 3] * len(s["symbols"])
        for position, symbol, force in zip(s["positions"], s["symbols"],
                                           forces):
            out.append("atom %s %s %s %s 0.0 0.0 %s %s %s" % (
                tuple(_repr(v) for v in position) + (symbol,)
                + tuple(_repr(v) for v in force)))
        out.append("energy %s" % _repr(s.get("energy") or 0.0))
        out.append("charge 0.0")
        out.append("end")
    return "\n".join(out) + "\n"
