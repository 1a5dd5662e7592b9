"""Cutoff functions that take interactions smoothly to zero at ``Rc``.

Both work on scalars or arrays of distances and are zero beyond ``Rc``.
Their serialised form, ``{'name': 'Cosine', 'kwargs': {'Rc': 6.5}}``, is
Amp's.
"""

import numpy as np


def _check_radius(Rc):
    try:
        Rc = float(Rc)
    except (TypeError, ValueError):
        raise TypeError("cutoff radius must be a number, got %r" % (Rc,))
    if not np.isfinite(Rc) or Rc <= 0.0:
        raise ValueError("cutoff radius must be positive and finite, got %r"
                         % Rc)
    return Rc


class Cosine:
    """Cosine cutoff, ``0.5 (cos(pi R / Rc) + 1)`` for ``R <= Rc``.

    Parameters
    ----------
    Rc : float
        Cutoff radius in Angstrom.
    """

    def __init__(self, Rc):
        self.Rc = _check_radius(Rc)

    def __call__(self, R):
        """Value of the cutoff function at distance(s) ``R``."""
        R = np.asarray(R, dtype=float)
        value = 0.5 * (np.cos(np.pi * R / self.Rc) + 1.0)
        return np.where(R <= self.Rc, value, 0.0)

    def prime(self, R):
        """Derivative with respect to ``R``."""
        R = np.asarray(R, dtype=float)
        value = -0.5 * np.pi / self.Rc * np.sin(np.pi * R / self.Rc)
        return np.where(R <= self.Rc, value, 0.0)

    def todict(self):
        """Amp's serialised form."""
        return {"name": "Cosine", "kwargs": {"Rc": self.Rc}}

    def __repr__(self):
        return "<Cosine cutoff with Rc=%.3f from amp.descriptor.cutoffs>" \
            % self.Rc

    def __eq__(self, other):
        return isinstance(other, Cosine) and other.Rc == self.Rc


class Polynomial:
    """Polynomial cutoff of Khorshidi and Peterson.

    ``1 + gamma (R/Rc)^(gamma+1) - (gamma+1) (R/Rc)^gamma`` for ``R <= Rc``.

    Parameters
    ----------
    Rc : float
        Cutoff radius in Angstrom.
    gamma : float
        Exponent; larger values make the function steeper near ``Rc``.
    """

    def __init__(self, Rc, gamma=4):
        self.Rc = _check_radius(Rc)
        try:
            self.gamma = float(gamma)
        except (TypeError, ValueError):
            raise TypeError("Polynomial gamma must be a number, got %r"
                            % (gamma,))
        if not np.isfinite(self.gamma) or self.gamma <= 0.0:
            raise ValueError("Polynomial gamma must be positive, got %r"
                             % gamma)

    def __call__(self, R):
        """Value of the cutoff function at distance(s) ``R``."""
        x = np.asarray(R, dtype=float) / self.Rc
        g = self.gamma
        value = 1.0 + g * x ** (g + 1.0) - (g + 1.0) * x ** g
        return np.where(x <= 1.0, value, 0.0)

    def prime(self, R):
        """Derivative with respect to ``R``."""
        x = np.asarray(R, dtype=float) / self.Rc
        g = self.gamma
        value = g * (g + 1.0) / self.Rc * (x ** g - x ** (g - 1.0))
        return np.where(x <= 1.0, value, 0.0)

    def todict(self):
        """Amp's serialised form."""
        return {"name": "Polynomial",
                "kwargs": {"Rc": self.Rc, "gamma": self.gamma}}

    def __repr__(self):
        return ("<Polynomial cutoff with Rc=%.3f and gamma=%g "
                "from amp.descriptor.cutoffs>" % (self.Rc, self.gamma))

    def __eq__(self, other):
        return (isinstance(other, Polynomial) and other.Rc == self.Rc
                and other.gamma == self.gamma)


_CUTOFFS = {"Cosine": Cosine, "Polynomial": Polynomial}


def dict2cutoff(dct):
    """Build a cutoff object from its dict form (or pass one through).

    Parameters
    ----------
    dct : dict, Cosine, Polynomial or float
        ``{'name': ..., 'kwargs': {...}}``; a cutoff object is returned as
        it is and a plain number means ``Cosine`` of that radius.
    """
    if isinstance(dct, (Cosine, Polynomial)):
        return dct
    if isinstance(dct, (int, float, np.number)) and not isinstance(dct, bool):
        return Cosine(dct)
    if not isinstance(dct, dict) or "name" not in dct:
        raise TypeError("a cutoff must be Cosine, Polynomial, a radius or "
                        "{'name': ..., 'kwargs': {...}}, got %r" % (dct,))
    if dct["name"] not in _CUTOFFS:
        raise ValueError("unknown cutoff function %r; known: %s"
                         % (dct["name"], ", ".join(_CUTOFFS)))
    return _CUTOFFS[dct["name"]](**dct.get("kwargs", {}))
