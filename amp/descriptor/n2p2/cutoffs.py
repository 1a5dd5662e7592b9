"""n2p2's cutoff functions and the compact functions of its polynomial
symmetry functions, vectorised, with their derivatives.

Cutoff functions (``cutoff_type``; all are 0 for ``r >= rc``)::

    0  hard       f = 1
    1  cos        f = (cos(pi x) + 1) / 2
    2  tanhu      f = tanh^3(1 - r / rc)
    3  tanh       f = c tanh^3(1 - r / rc), c = tanh(1)^-3 (so f(0) = 1)
    4  exp        f = e exp(1 / (x^2 - 1))
    5  poly1      f = (2x - 3) x^2 + 1
    6  poly2      f = ((15 - 6x) x - 10) x^3 + 1
    7  poly3      f = (x (x (20x - 70) + 84) - 35) x^4 + 1
    8  poly4      f = (x (x ((315 - 70x) x - 540) + 420) - 126) x^5 + 1

with ``x = (r - alpha rc) / (rc - alpha rc)`` and ``f = 1`` below the inner
cutoff ``alpha rc`` for types 1 and 4 to 8 (types 0, 2 and 3 ignore
``alpha``, as n2p2 does). The same polynomials and exponential are the
*core functions* ``C(x)`` of n2p2's compact functions (types 20 to 25): on
``[left, right]`` with centre ``c`` and half-width ``w``,
``f(a) = C(|a - c| / w)``; the ``a`` variants ("p2a") use
``C((2 - x) x)`` instead of ``C(x)``. Formulas as in n2p2's
``CutoffFunction`` and ``CoreFunction``.
"""

import math

import numpy as np

__all__ = ["CutoffFunction", "CompactFunction", "CUTOFF_NAMES"]

#: n2p2's names of the cutoff types.
CUTOFF_NAMES = ("hard", "cos", "tanhu", "tanh", "exp", "poly1", "poly2",
                "poly3", "poly4")

_TANH_PRE = ((math.e + 1 / math.e) / (math.e - 1 / math.e)) ** 3


def core(kind: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A core function and its derivative at ``x`` (in [0, 1]).

    Parameters
    ----------
    kind : str
        ``'poly1'`` to ``'poly4'`` or ``'exp'``.
    x : ndarray

    Returns
    -------
    f, df : ndarray
    """
    x2 = x * x
    if kind == "poly1":
        return (2.0 * x - 3.0) * x2 + 1.0, x * (6.0 * x - 6.0)
    if kind == "poly2":
        return (((15.0 - 6.0 * x) * x - 10.0) * x * x2 + 1.0,
                x2 * ((60.0 - 30.0 * x) * x - 30.0))
    if kind == "poly3":
        return ((x * (x * (20.0 * x - 70.0) + 84.0) - 35.0) * x2 * x2 + 1.0,
                x2 * x * (x * (x * (140.0 * x - 420.0) + 420.0) - 140.0))
    if kind == "poly4":
        x4 = x2 * x2
        return ((x * (x * ((315.0 - 70.0 * x) * x - 540.0) + 420.0) - 126.0)
                * x * x4 + 1.0,
                x4 * (x * (x * ((2520.0 - 630.0 * x) * x - 3780.0) + 2520.0)
                      - 630.0))
    if kind == "exp":
        with np.errstate(divide="ignore", over="ignore"):
            t = 1.0 / (x2 - 1.0)
            e = np.exp(t)
        return math.e * e, -2.0 * math.e * x * t * t * e
    raise ValueError("unknown core function %r" % (kind,))


class CutoffFunction:
    """One of n2p2's cutoff functions for one radius.

    Parameters
    ----------
    kind : int
        n2p2's ``cutoff_type`` (0 to 8).
    rc : float
        Cutoff radius.
    alpha : float
        Inner cutoff ``alpha rc`` (0 <= alpha < 1).
    """

    def __init__(self, kind, rc, alpha=0.0):
        if kind not in range(len(CUTOFF_NAMES)):
            raise ValueError("unknown n2p2 cutoff type %r (0 to 8)" % (kind,))
        if not (0.0 <= alpha < 1.0):
            raise ValueError("the cutoff alpha must be in [0, 1), got %r"
                             % (alpha,))
        if not (rc > 0.0 and math.isfinite(rc)):
            raise ValueError("a cutoff radius must be positive, got %r"
                             % (rc,))
        self.kind, self.rc, self.alpha = int(kind), float(rc), float(alpha)
        self.inner = self.rc * self.alpha
        self.inverse_width = 1.0 / (self.rc - self.inner)

    def __call__(self, r) -> tuple[np.ndarray, np.ndarray]:
        """``f(r)`` and ``df/dr``, both 0 where ``r >= rc``."""
        r = np.asarray(r, dtype=float)
        inside = r < self.rc
        kind = self.kind
        if kind == 0:
            return inside.astype(float), np.zeros_like(r)
        if kind in (2, 3):
            t = np.tanh(1.0 - r / self.rc)
            t2 = t * t
            f, df = t * t2, 3.0 * t2 * (t2 - 1.0) / self.rc
            if kind == 3:
                f, df = _TANH_PRE * f, _TANH_PRE * df
            return np.where(inside, f, 0.0), np.where(inside, df, 0.0)
        x = np.clip((r - self.inner) * self.inverse_width, 0.0, 1.0)
        if kind == 1:
            f = 0.5 * (np.cos(np.pi * x) + 1.0)
            df = -0.5 * np.pi * self.inverse_width * np.sin(np.pi * x)
        else:
            f, df = core(CUTOFF_NAMES[kind], x)
            df = self.inverse_width * df
        below = r < self.inner
        f = np.where(below, 1.0, np.where(inside, f, 0.0))
        df = np.where(below | ~inside, 0.0, df)
        return f, df


    def inside(self, r: np.ndarray,
               scratch) -> tuple[np.ndarray, np.ndarray]:
        """``f(r)`` and ``df/dr`` for ``0 < r < rc`` (not tested), in
        arrays from ``scratch(shape)``."""
        f, df = scratch(r.shape), scratch(r.shape)
        kind = self.kind
        if kind == 0:
            f.fill(1.0)
            df.fill(0.0)
            return f, df
        if kind in (2, 3):
            t = np.multiply(r, -1.0 / self.rc, out=scratch(r.shape))
            t += 1.0
            np.tanh(t, out=t)
            np.multiply(t, t, out=df)          # t^2
            np.multiply(df, t, out=f)          # t^3
            np.subtract(df, 1.0, out=t)        # t^2 - 1
            df *= t
            df *= 3.0 / self.rc
            if kind == 3:
                f *= _TANH_PRE
                df *= _TANH_PRE
            return f, df
        value, slope = self(r)
        f[...] = value
        df[...] = slope
        return f, df


class CompactFunction:
    """n2p2's compact function ``C(|a - c| / w)`` on ``[left, right]``.

    Values outside ``(left, right)`` are not defined here: callers select
    the arguments inside first, as n2p2 does.

    Parameters
    ----------
    subtype : str
        ``'p1'`` to ``'p4'``, ``'p1a'`` to ``'p4a'`` or ``'e'``.
    left, right : float
    asymmetric : bool or None
        Use ``C((2 - x) x)``; None takes it from the subtype (an angular
        part never is, as in n2p2).
    """

    def __init__(self, subtype, left, right, asymmetric=None):
        if not left < right:
            raise ValueError("a compact function needs left < right, got "
                             "%r, %r" % (left, right))
        self.kind = "exp" if subtype == "e" else "poly" + subtype[1]
        self.asymmetric = (subtype.endswith("a") if asymmetric is None
                           else asymmetric)
        self.left, self.right = float(left), float(right)
        self.center = (self.right + self.left) / 2.0
        self.width = (self.right - self.left) / 2.0
        self.scale = 1.0 / self.width

    def __call__(self, a) -> tuple[np.ndarray, np.ndarray]:
        """``f(a)`` and ``df/da`` for ``a`` inside ``(left, right)``."""
        u = (np.asarray(a, dtype=float) - self.center) * self.scale
        x = np.abs(u)
        if self.asymmetric:
            p = (2.0 - x) * x
            f, df = core(self.kind, p)
            df = df * (2.0 - 2.0 * x)
        else:
            f, df = core(self.kind, x)
        return f, np.copysign(self.scale, u) * df
