"""The 3-D Zernike functions as polynomials in Cartesian coordinates.

``Z_nlm(u) = R_nl(|u|) Y_lm(u / |u|)`` is a polynomial in ``u = (x, y, z)``
of degree ``n`` (see the package docstring). It is built here once per
``nmax`` with exact rational arithmetic, then written as a matrix over the
monomials ``x^a y^b z^c`` (``a + b + c <= nmax``), so that the kernel
evaluates every ``Z_nlm`` of a neighbour with one matrix product and its
gradient with the same product against shifted coefficients.
"""

import functools
import math
from fractions import Fraction

import numpy as np

__all__ = ["ZernikeTables", "zernike_tables", "zernike_features"]


def zernike_features(nmax):
    """Amp's order of the ``(n, l)`` pairs: ``n = 0..nmax``, ``l = 0..n``
    with ``n - l`` even."""
    return [(n, l) for n in range(nmax + 1) for l in range(n + 1)
            if (n - l) % 2 == 0]


def _binomial(x, k):
    """The binomial coefficient ``x choose k`` for a rational ``x``."""
    out = Fraction(1)
    for i in range(k):
        out *= (x - i)
    return out / math.factorial(k)


# Polynomials are dicts {(a, b, c): (real, imaginary)} with Fraction parts.

def _mul(p, q):
    out = {}
    for (a1, b1, c1), (re1, im1) in p.items():
        for (a2, b2, c2), (re2, im2) in q.items():
            key = (a1 + a2, b1 + b2, c1 + c2)
            re, im = out.get(key, (0, 0))
            out[key] = (re + re1 * re2 - im1 * im2, im + re1 * im2 + im1 * re2)
    return out


def _add(p, q, scale=1):
    out = dict(p)
    for key, (re, im) in q.items():
        re0, im0 = out.get(key, (0, 0))
        out[key] = (re0 + scale * re, im0 + scale * im)
    return out


def _power(p, k):
    out = {(0, 0, 0): (Fraction(1), Fraction(0))}
    for _ in range(k):
        out = _mul(out, p)
    return out


_ONE = {(0, 0, 0): (Fraction(1), Fraction(0))}
_R2 = {(2, 0, 0): (Fraction(1), 0), (0, 2, 0): (Fraction(1), 0),
       (0, 0, 2): (Fraction(1), 0)}
_X_PLUS_IY = {(1, 0, 0): (Fraction(1), 0), (0, 1, 0): (0, Fraction(1))}
_Z = {(0, 0, 1): (Fraction(1), 0)}


def _solid_harmonic(l, m):
    """``|u|^l P_l^m(cos theta) e^{i m phi}`` (Condon-Shortley phase) as a
    rational polynomial: ``(-1)^m (x + iy)^m sum_k b_k z^(l-m-2k) r^2k``
    with ``d^m P_l / dt^m = sum_k b_k t^(l-m-2k)``."""
    rest = {}
    for k in range((l - m) // 2 + 1):
        # P_l(t) = sum_k p_k t^(l-2k), differentiated m times.
        p_k = Fraction((-1) ** k * math.factorial(2 * l - 2 * k),
                       2 ** l * math.factorial(k) * math.factorial(l - k)
                       * math.factorial(l - 2 * k))
        b_k = p_k * Fraction(math.factorial(l - 2 * k),
                             math.factorial(l - 2 * k - m))
        term = _mul(_power(_Z, l - m - 2 * k), _power(_R2, k))
        rest = _add(rest, term, b_k)
    return _mul(_power(_X_PLUS_IY, m), rest), (-1) ** m


def _radial(n, l):
    """``R_nl(rho) / (sqrt(2n + 3) rho^l)`` as a polynomial in ``r^2``:
    ``sum_s (-1)^s C(k, s) C(n - s + 1/2, k) (r^2)^(k - s)``, ``k = (n -
    l) / 2``, Amp's (Novotni and Klein's) radial function."""
    k = (n - l) // 2
    out = {}
    for s in range(k + 1):
        coefficient = (-1) ** s * _binomial(Fraction(k), s) * _binomial(
            Fraction(2 * n - 2 * s + 1, 2), k)
        out = _add(out, _power(_R2, k - s), coefficient)
    return out


class ZernikeTables:
    """Coefficient matrices of every ``Z_nlm`` (``m >= 0``) for one nmax.

    Attributes
    ----------
    nmax : int
    features : list of (n, l)
        Amp's order.
    monomials : ndarray of int, shape (n_monomials, 3)
        Exponents ``(a, b, c)`` of ``x^a y^b z^c``, by degree.
    coefficients_mk : ndarray, shape (n_monomials, 2 n_terms)
        ``Z_k(u) = sum_m mono_m(u) coefficients_mk[m, k]``; the terms ``k``
        are ``(n, l, m, part)``, grouped by feature, real then imaginary
        part.
    weight_k : ndarray, shape (2 n_terms,)
        1 for ``m = 0`` and 2 for ``m > 0``: the fingerprint is
        ``sum_k weight_k c_k^2`` over the terms of its feature (the terms
        with ``m < 0`` have the same modulus).
    feature_k : ndarray of int, shape (2 n_terms,)
        The feature of each term.
    gradient_mxm : ndarray, shape (n_monomials, 3, n_monomials)
        ``d mono_m / d u_x = sum_m' gradient_mxm[m, x, m'] mono_m'``.
    """

    def __init__(self, nmax):
        self.nmax = nmax
        self.features = zernike_features(nmax)
        self.monomials = np.array(
            [(a, b, d - a - b) for d in range(nmax + 1)
             for a in range(d, -1, -1) for b in range(d - a, -1, -1)],
            dtype=np.int64)
        index = {tuple(e): i for i, e in enumerate(self.monomials.tolist())}
        columns, weights, feature_of = [], [], []
        for f, (n, l) in enumerate(self.features):
            radial = _radial(n, l)
            for m in range(l + 1):
                harmonic, sign = _solid_harmonic(l, m)
                polynomial = _mul(radial, harmonic)
                norm = sign * math.sqrt(
                    (2 * n + 3) * (2 * l + 1) / (4 * math.pi)
                    * math.factorial(l - m) / math.factorial(l + m))
                for part in (0, 1):
                    column = np.zeros(len(index))
                    for key, value in polynomial.items():
                        column[index[key]] = norm * float(value[part])
                    columns.append(column)
                    weights.append(1.0 if m == 0 else 2.0)
                    feature_of.append(f)
        self.coefficients_mk = np.array(columns).T.copy()
        self.weight_k = np.array(weights)
        self.feature_k = np.array(feature_of, dtype=np.int64)
        self.gradient_mxm = np.zeros((len(index), 3, len(index)))
        for m, exponents in enumerate(self.monomials.tolist()):
            for axis in range(3):
                if exponents[axis]:
                    lower = list(exponents)
                    lower[axis] -= 1
                    self.gradient_mxm[m, axis, index[tuple(lower)]] = \
                        exponents[axis]

    @property
    def n_features(self):
        """Fingerprint length."""
        return len(self.features)

    @property
    def n_monomials(self):
        """Monomials of degree up to nmax."""
        return len(self.monomials)


@functools.lru_cache(maxsize=16)
def zernike_tables(nmax):
    """The (cached, read-only) :class:`ZernikeTables` of ``nmax``."""
    tables = ZernikeTables(nmax)
    for array in (tables.monomials, tables.coefficients_mk, tables.weight_k,
                  tables.feature_k, tables.gradient_mxm):
        array.flags.writeable = False
    return tables
