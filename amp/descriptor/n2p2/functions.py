"""n2p2's symmetry functions as parameter records, in n2p2's order.

A :class:`SymmetryFunction` holds one ``symfunction_short`` line's
parameters. n2p2 sorts each element's functions before using them (its
``SymFnc*::operator<``); the network's inputs and the rows of
``scaling.data`` follow that order, so :func:`sort_key` reproduces it: the
type first, then for the Gaussian types the cutoff, ``rc``, ``eta``,
``rs``, ``zeta``, ``lambda`` and the neighbour element indices, and for the
compact types the subtype, the neighbour indices, ``rc``, ``rl`` and the
angles (see the table in :mod:`amp.descriptor.n2p2`). Elements are indexed
in order of atomic number.
"""

import math
from collections.abc import Iterable
from dataclasses import dataclass

from ase.data import atomic_numbers

__all__ = ["SymmetryFunction", "sort_key", "element_order", "RADIAL",
           "ANGULAR", "COMPACT", "WEIGHTED", "NARROW"]

#: Types with one neighbour (two-body), with two (three-body), compact
#: polynomial types, types weighted by atomic numbers instead of an element,
#: and three-body types with the ``r_jk`` terms.
RADIAL = frozenset({2, 12, 20, 23})
ANGULAR = frozenset({3, 9, 13, 21, 22, 24, 25})
COMPACT = frozenset({20, 21, 22, 23, 24, 25})
WEIGHTED = frozenset({12, 13, 23, 24, 25})
NARROW = frozenset({3, 13, 21, 24})


def element_order(symbols: Iterable[str]) -> list[str]:
    """``symbols`` sorted by atomic number (n2p2's element indices).

    Raises
    ------
    ValueError
        A symbol that is not a chemical element.
    """
    for symbol in symbols:
        if atomic_numbers.get(symbol, 0) == 0:
            raise ValueError("%r is not a chemical element" % (symbol,))
    return sorted(symbols, key=atomic_numbers.get)


@dataclass(frozen=True)
class SymmetryFunction:
    """One n2p2 symmetry function of a centre element.

    Parameters that a type does not have stay at their defaults. Lengths
    are in the potential's own unit, ``eta`` in its inverse square.

    Attributes
    ----------
    element : str
        Centre element.
    type : int
        n2p2's type (2, 3, 9, 12, 13, 20 to 25).
    e1, e2 : str or None
        Neighbour elements (``e1 <= e2`` by atomic number for three-body
        types, as n2p2 stores them).
    eta, rs, lam, zeta, rc : float
        Gaussian width, shift, ``lambda``, ``zeta`` and cutoff radius.
    rl : float
        Left end of a compact radial function (its right end is ``rc``).
    angle_left, angle_right : float
        Ends of a compact angular function, degrees.
    subtype : str or None
        Compact function: ``'p1'`` ... ``'p4'``, ``'p1a'`` ... ``'p4a'``,
        ``'e'``.
    line : int or None
        Line of ``input.nn`` it came from (for messages).
    """

    element: str
    type: int
    e1: object = None
    e2: object = None
    eta: float = 0.0
    rs: float = 0.0
    lam: float = 0.0
    zeta: float = 0.0
    rc: float = 0.0
    rl: float = 0.0
    angle_left: float = 0.0
    angle_right: float = 0.0
    subtype: object = None
    line: object = None

    @classmethod
    def from_parameters(cls, element: str, kind: int, parameters: dict,
                        line: int | None = None) -> "SymmetryFunction":
        """Build from a type and the named fields of its
        ``symfunction_short`` line (``e1``, ``e2``, ``eta``, ``rs``,
        ``lambda``, ``zeta``, ``rc``, ``rl``, ``angle_left``,
        ``angle_right``, ``subtype``), checked as n2p2 checks them.

        Raises
        ------
        ValueError
            Parameters n2p2 refuses, or that make no function (named with
            the line).
        """
        p = dict(parameters)
        if "lambda" in p:
            p["lam"] = p.pop("lambda")
        e1, e2 = p.get("e1"), p.get("e2")
        if e1 is not None and e2 is not None and \
                atomic_numbers[e1] > atomic_numbers[e2]:
            p["e1"], p["e2"] = e2, e1
        function = cls(element=element, type=kind, line=line, **p)
        function.check()
        return function

    def describe(self) -> str:
        """``'symmetry function of O, type 3 (input.nn line 12)'``."""
        where = "" if self.line is None else " (input.nn line %d)" % self.line
        return "symmetry function of %s, type %d%s" % (self.element,
                                                       self.type, where)

    def check(self) -> None:
        """Raise ValueError for parameters that define no function."""
        def refuse(reason):
            raise ValueError("%s: %s" % (self.describe(), reason))

        if not (self.rc > 0.0 and math.isfinite(self.rc)):
            refuse("the cutoff radius must be positive")
        if self.type in COMPACT:
            if not self.rl < self.rc:
                refuse("the left radius rl must be smaller than rc")
        elif self.type in ANGULAR and not self.zeta > 0.0:
            refuse("zeta must be positive")
        if self.type in ANGULAR and self.type in COMPACT:
            left, right = self.angle_left, self.angle_right
            if not left < right:
                refuse("the left angle must be smaller than the right one")
            center = (left + right) / 2.0
            if (left < 0.0 and center != 0.0) or (right > 180.0
                                                  and center != 180.0):
                refuse("an angle range outside [0, 180] degrees must be "
                       "centred on 0 or 180 degrees")
            if right - left > 360.0:
                refuse("the angle range spans more than 360 degrees")

    @property
    def neighbors(self) -> tuple[str, ...]:
        """The neighbour elements named by the function (``()`` for the
        weighted types, which take every neighbour)."""
        return tuple(e for e in (self.e1, self.e2) if e is not None)


def sort_key(function: SymmetryFunction, index: dict, cutoff_type: int = 0,
             cutoff_alpha: float = 0.0, conv_length: float = 1.0) -> tuple:
    """n2p2's ordering key of a function of one centre element.

    Parameters
    ----------
    function : SymmetryFunction
    index : dict
        ``{element: n2p2 index}`` (order of atomic number).
    cutoff_type, cutoff_alpha : int, float
        The potential's cutoff (the same for every function; part of
        n2p2's key).
    conv_length : float
        n2p2 compares lengths after normalisation (``conv_length``);
        scaling keeps the order but two numbers one unit in the last place
        apart may become equal, so the key uses the same products.
    """
    f = function
    rc, rs, rl = f.rc * conv_length, f.rs * conv_length, f.rl * conv_length
    eta = f.eta / (conv_length * conv_length)
    e1 = index[f.e1] if f.e1 is not None else -1
    e2 = index[f.e2] if f.e2 is not None else -1
    if f.type == 2:
        rest = (cutoff_type, cutoff_alpha, rc, eta, rs, e1)
    elif f.type in (3, 9):
        rest = (cutoff_type, cutoff_alpha, rc, eta, rs, f.zeta, f.lam, e1,
                e2)
    elif f.type == 12:
        rest = (cutoff_type, cutoff_alpha, rc, eta, rs)
    elif f.type == 13:
        rest = (cutoff_type, cutoff_alpha, rc, eta, rs, f.zeta, f.lam)
    elif f.type == 20:
        rest = (f.subtype, e1, rc, rl)
    elif f.type in (21, 22):
        rest = (f.subtype, e1, e2, rc, rl, f.angle_left, f.angle_right)
    elif f.type == 23:
        rest = (f.subtype, rc, rl)
    else:
        rest = (f.subtype, rc, rl, f.angle_left, f.angle_right)
    return (f.type,) + rest
