"""Cutoff functions that take interactions smoothly to zero at ``Rc``.

Both work on scalars or arrays of distances and are zero beyond ``Rc``.
Their serialised form, ``{'name': 'Cosine', 'kwargs': {'Rc': 6.5}}``, is
Amp's.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from numpy.polynomial import chebyshev
from numpy.typing import ArrayLike


def _power_series(function, degree):
    """Power-series coefficients (lowest first) of ``function`` on [0, 1].

    Chebyshev interpolation, then conversion to the monomial basis; for the
    smooth functions below, degree 10 is accurate to about 2e-15.
    """
    fit = chebyshev.Chebyshev.interpolate(function, degree, domain=[0, 1])
    return fit.convert(kind=np.polynomial.Polynomial, domain=[0, 1],
                       window=[0, 1]).coef


def _horner(coefficients, u, out=None):
    """``sum(c_n u^n)`` by Horner's rule, in place on one temporary
    (``out`` when given, an array of ``u``'s shape)."""
    u = np.asarray(u, dtype=float)
    if len(coefficients) == 1:
        if out is None:
            return np.full_like(u, coefficients[0])
        out.fill(coefficients[0])
        return out
    out = np.multiply(u, coefficients[-1], out=out)
    out += coefficients[-2]
    for c in coefficients[-3::-1]:
        out *= u
        out += c
    return out


# (1 + cos(pi sqrt(u))) / 2 and sin(pi sqrt(u)) / (pi sqrt(u)) for
# u = (R / Rc)^2 in [0, 1] are entire functions of u, so the Cosine cutoff
# and its derivative divided by R need neither a square root nor a
# trigonometric call (each costs ~15 ns per element in numpy, the
# polynomial ~6 ns).
_COSINE_CUTOFF = _power_series(
    lambda u: 0.5 * (np.cos(np.pi * np.sqrt(u)) + 1.0), 10)
_SINC_SQRT = _power_series(lambda u: np.sinc(np.sqrt(u)), 10)


# exp(-eta u) times these functions of u = (R / Rc)^2, as fused series.
_SERIES_FACTORS = {
    "cutoff": lambda u: 0.5 * (np.cos(np.pi * np.sqrt(u)) + 1.0),
    "sinc": lambda u: np.sinc(np.sqrt(u)),
}


@functools.lru_cache(maxsize=64)
def _gaussian_series(factor, eta):
    """Power series on [0, 1] of ``exp(-eta u)`` times ``factor`` (the
    Cosine cutoff, or ``sin(pi sqrt u) / (pi sqrt u)`` for its derivative
    over R), or None when no degree up to 24 is accurate to 1e-14 (large
    eta)."""
    def f(u):
        return np.exp(-eta * u) * _SERIES_FACTORS[factor](u)

    u = np.linspace(0.0, 1.0, 2001)
    for degree in range(10, 25, 2):
        coefficients = _power_series(f, degree)
        if np.abs(_horner(coefficients, u) - f(u)).max() < 1e-14:
            return coefficients
    return None


@functools.lru_cache(maxsize=128)
def _rescaled(series, Rc):
    """Coefficients of ``series`` = (factor, eta) as a polynomial in R^2
    for radius ``Rc``: ``c_n / Rc^(2n)``, times ``-pi^2 / (2 Rc^2)`` for
    the derivative factor ``'sinc'`` (so that it gives ``prime(R) / R``).
    ``eta`` None is the cutoff alone; None when there is no short series.
    """
    factor, eta = series
    if eta is None:
        coefficients = _COSINE_CUTOFF if factor == "cutoff" else _SINC_SQRT
    else:
        coefficients = _gaussian_series(factor, eta)
        if coefficients is None:
            return None
    coefficients = coefficients / (Rc * Rc) ** np.arange(len(coefficients))
    if factor == "sinc":
        coefficients = coefficients * (-0.5 * (np.pi / Rc) ** 2)
    return tuple(coefficients.tolist())


def _written(value, out):
    """``value``, copied into ``out`` when that is given."""
    if out is None:
        return value
    out[...] = value
    return out


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

    def __init__(self, Rc: float) -> None:
        self.Rc = _check_radius(Rc)

    def __call__(self, R: ArrayLike) -> np.ndarray:
        """Value of the cutoff function at distance(s) ``R``."""
        R = np.asarray(R, dtype=float)
        value = 0.5 * (np.cos(np.pi * R / self.Rc) + 1.0)
        return np.where(R <= self.Rc, value, 0.0)

    def prime(self, R: ArrayLike) -> np.ndarray:
        """Derivative with respect to ``R``."""
        R = np.asarray(R, dtype=float)
        value = -0.5 * np.pi / self.Rc * np.sin(np.pi * R / self.Rc)
        return np.where(R <= self.Rc, value, 0.0)

    def _in_squares(self, series, R2, inside, out=None):
        """A power series in ``u = R^2 / Rc^2`` evaluated from ``R2``
        directly (coefficients rescaled once per radius), zero beyond
        ``Rc`` unless ``inside``; written to ``out`` when given."""
        coefficients = _rescaled(series, self.Rc)
        if coefficients is None:
            return None
        value = _horner(coefficients, R2, out)
        if inside:
            return value
        if out is None:
            return np.where(np.asarray(R2) <= self.Rc * self.Rc, value, 0.0)
        np.copyto(out, 0.0, where=~(np.asarray(R2) <= self.Rc * self.Rc))
        return out

    def squared(self, R2: np.ndarray, inside: bool = False,
                out: np.ndarray | None = None) -> np.ndarray:
        """Value at the distance(s) whose squares are ``R2``.

        ``inside=True`` promises ``R2 <= Rc^2`` (up to rounding) and skips
        the test; the series is then continued a rounding error past Rc,
        where it is zero to 1e-14. The same holds for the methods below.
        ``out``, an array of ``R2``'s shape, receives the result (the
        kernels pass their reusable scratch memory).
        """
        return self._in_squares(("cutoff", None), R2, inside, out)

    def gaussian_squared(self, R2: np.ndarray, eta: float,
                         inside: bool = False,
                         out: np.ndarray | None = None) -> np.ndarray | None:
        """``exp(-eta R^2 / Rc^2)`` times the value, from ``R2``, as one
        polynomial (no exponential, no cosine); None when ``eta`` is too
        large for a short series."""
        return self._in_squares(("cutoff", float(eta)), R2, inside, out)

    def gaussian_prime_over_r_squared(self, R2: np.ndarray, eta: float,
                                      inside: bool = False,
                                      out: np.ndarray | None = None
                                      ) -> np.ndarray | None:
        """``exp(-eta R^2 / Rc^2) prime(R) / R`` from ``R2`` as one
        polynomial; None when ``eta`` is too large for a short series."""
        return self._in_squares(("sinc", float(eta)), R2, inside, out)

    def prime_over_r_squared(self, R2: np.ndarray, inside: bool = False,
                             out: np.ndarray | None = None) -> np.ndarray:
        """``prime(R) / R`` at the distance(s) whose squares are ``R2``."""
        return self._in_squares(("sinc", None), R2, inside, out)

    def todict(self) -> dict[str, Any]:
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

    def __init__(self, Rc: float, gamma: float = 4) -> None:
        self.Rc = _check_radius(Rc)
        try:
            self.gamma = float(gamma)
        except (TypeError, ValueError):
            raise TypeError("Polynomial gamma must be a number, got %r"
                            % (gamma,))
        if not np.isfinite(self.gamma) or self.gamma <= 0.0:
            raise ValueError("Polynomial gamma must be positive, got %r"
                             % gamma)

    def __call__(self, R: ArrayLike) -> np.ndarray:
        """Value of the cutoff function at distance(s) ``R``."""
        x = np.asarray(R, dtype=float) / self.Rc
        g = self.gamma
        value = 1.0 + g * x ** (g + 1.0) - (g + 1.0) * x ** g
        return np.where(x <= 1.0, value, 0.0)

    def prime(self, R: ArrayLike) -> np.ndarray:
        """Derivative with respect to ``R``."""
        x = np.asarray(R, dtype=float) / self.Rc
        g = self.gamma
        value = g * (g + 1.0) / self.Rc * (x ** g - x ** (g - 1.0))
        return np.where(x <= 1.0, value, 0.0)

    def squared(self, R2: np.ndarray, inside: bool = False,
                out: np.ndarray | None = None) -> np.ndarray:
        """Value at the distance(s) whose squares are ``R2`` (``inside``
        as for :meth:`Cosine.squared`, accepted and unused; ``out`` as
        there)."""
        return _written(self(np.sqrt(R2)), out)

    def gaussian_squared(self, R2: np.ndarray, eta: float,
                         inside: bool = False,
                         out: np.ndarray | None = None) -> np.ndarray | None:
        """Not available in closed polynomial form: None (the caller
        multiplies the Gaussian and :meth:`squared` itself)."""
        return None

    def gaussian_prime_over_r_squared(self, R2: np.ndarray, eta: float,
                                      inside: bool = False,
                                      out: np.ndarray | None = None
                                      ) -> np.ndarray | None:
        """None, as :meth:`gaussian_squared`."""
        return None

    def prime_over_r_squared(self, R2: np.ndarray, inside: bool = False,
                             out: np.ndarray | None = None) -> np.ndarray:
        """``prime(R) / R`` at the distance(s) whose squares are ``R2``.

        Finite at ``R = 0`` only for ``gamma >= 2``.
        """
        return _written(self._prime_over_r_squared(R2), out)

    def _prime_over_r_squared(self, R2):
        x2 = np.asarray(R2, dtype=float) / (self.Rc * self.Rc)
        g = self.gamma
        # prime / R = g (g + 1) / Rc^2 (x^(g-1) - x^(g-2)), x = sqrt(x2).
        with np.errstate(divide="ignore", invalid="ignore"):
            value = g * (g + 1.0) / self.Rc ** 2 * (
                x2 ** ((g - 1.0) / 2.0) - x2 ** ((g - 2.0) / 2.0))
        return np.where(x2 <= 1.0, value, 0.0)

    def todict(self) -> dict[str, Any]:
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


def dict2cutoff(dct: Cosine | Polynomial | dict[str, Any] | float
                ) -> Cosine | Polynomial:
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
