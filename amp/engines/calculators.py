"""What the engine couplings need to know about a calculator.

The couplings use a calculator through ASE's protocol only; the two facts
below they read from the calculators of this library when present
(:class:`amp.Amp` has a descriptor with its elements and cutoff;
:class:`amp.gdml.calculator.GDMLCalculator` has the model's species ``z``).
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

import numpy as np
from ase.data import chemical_symbols

__all__ = ["check_elements", "cutoff_radius", "known_elements"]


def cutoff_radius(calc: Any) -> Optional[float]:
    """The calculator's cutoff radius (Angstrom), or None if it declares
    none (``calc.descriptor.cutoff``, a number or an object with ``Rc``)."""
    cutoff = getattr(getattr(calc, "descriptor", None), "cutoff", None)
    radius: Any = getattr(cutoff, "Rc", cutoff)
    try:
        radius = float(radius)
    except (TypeError, ValueError):
        return None
    return radius if np.isfinite(radius) and radius > 0 else None


def known_elements(calc: Any) -> Optional[list]:
    """The chemical symbols the calculator's model knows (sorted), or None
    when the calculator does not say."""
    elements = getattr(getattr(calc, "descriptor", None), "elements", None)
    if elements:
        return sorted(str(e) for e in elements)
    z = getattr(calc, "z", None)  # GDMLCalculator: the model's species
    if z is not None:
        return sorted({chemical_symbols[int(n)] for n in np.ravel(z)})
    return None


def check_elements(calc: Any, symbols: Iterable[str], where: str) -> None:
    """Raise ValueError if an element of ``symbols`` is unknown to the model.

    Parameters
    ----------
    calc : ase.calculators.calculator.Calculator
    symbols : iterable of str
    where : str
        Where the symbols come from, for the message (e.g. ``'the i-PI
        client's atoms'``).
    """
    known = known_elements(calc)
    if known is None:
        return
    unknown = sorted(set(symbols) - set(known))
    if unknown:
        raise ValueError("%s hold %s, which the model does not know (it "
                         "knows %s)" % (where, ", ".join(unknown),
                                        ", ".join(known)))
