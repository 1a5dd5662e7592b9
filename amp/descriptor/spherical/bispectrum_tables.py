"""Clebsch-Gordan coefficients and the bispectrum's term lists.

For a given ``jmax`` the tables list Amp's features ``(j1, j)``, the
layout of the expansion coefficients ``c^j`` of every ``2j = 0..2 jmax``
in one flat vector, and every product ``conj(c^j_a) c^j1_b c^j1_d`` that
the bispectrum sums, with its Clebsch-Gordan weight. Products that are
equal (swapping the two ``c^j1`` factors) or complex conjugates of each
other (``m -> -m`` everywhere, see the package docstring) are merged
first, which leaves about a quarter of them.
"""

import functools
import math
from fractions import Fraction

import numpy as np

__all__ = ["clebsch_gordan", "BispectrumTables", "bispectrum_tables",
           "bispectrum_features"]


def clebsch_gordan(j1, m1, j2, m2, j, m):
    """``<j1 m1 j2 m2 | j m>`` in the Condon-Shortley convention.

    Arguments are integers or half-integers. Racah's closed form
    (Varshalovich et al., Sec. 8.2, Eq. 3), summed exactly in rationals.
    """
    twice = []
    for x in (j1, m1, j2, m2, j, m):
        t = int(round(2 * float(x)))
        if abs(2 * float(x) - t) > 1e-9:
            raise ValueError("angular momenta must be integers or "
                             "half-integers, got %r" % (x,))
        twice.append(t)
    return _clebsch_gordan_twice(*twice)


@functools.lru_cache(maxsize=None)
def _clebsch_gordan_twice(a, alpha, b, beta, c, gamma):
    """:func:`clebsch_gordan` of the doubled arguments (integers)."""
    if alpha + beta != gamma:
        return 0.0
    for x, mx in ((a, alpha), (b, beta), (c, gamma)):
        if abs(mx) > x or (x - mx) % 2:
            return 0.0
    if a + b - c < 0 or a - b + c < 0 or b + c - a < 0 or (a + b + c) % 2:
        return 0.0

    def half(t):  # (t / 2)! for an even t
        return math.factorial(t // 2)

    root = Fraction((c + 1) * half(a + b - c) * half(a - b + c)
                    * half(b + c - a) * half(a + alpha) * half(a - alpha)
                    * half(b + beta) * half(b - beta) * half(c + gamma)
                    * half(c - gamma), half(a + b + c + 2))
    total = Fraction(0)
    for z in range(0, (a + b + c) // 2 + 1):
        args = [2 * z, a + b - c - 2 * z, a - alpha - 2 * z,
                b + beta - 2 * z, c - b + alpha + 2 * z,
                c - a - beta + 2 * z]
        if min(args) < 0:
            continue
        denominator = 1
        for t in args:
            denominator *= half(t)
        total += Fraction((-1) ** z, denominator)
    value = math.sqrt(root * total * total)
    return value if total >= 0 else -value


def bispectrum_features(jmax):
    """Amp's features ``(2 j1, j)``: ``2 j1 = 0..2 jmax`` and for each,
    the integers ``j = 0..min(2 j1, jmax)``."""
    twice = int(round(2 * jmax))
    return [(l1, j) for l1 in range(twice + 1)
            for j in range(int(min(l1, jmax)) + 1)]


class BispectrumTables:
    """Everything the bispectrum kernel needs for one ``jmax``.

    Attributes
    ----------
    levels : int
        ``2 jmax + 1``: the levels ``L = 2j = 0..2 jmax``.
    offset : ndarray of int, shape (levels + 1,)
        Level ``L``'s ``(L + 1)^2`` coefficients ``c^L[i, i']`` (``i =
        j + m``, ``i' = j + m'``) start at ``offset[L]`` of the flat
        vector (row-major).
    norm_k : ndarray, shape (n_coefficients,)
        ``sqrt((j+m)! (j-m)! / ((j+m')! (j-m')!))``: the hyperspherical
        harmonic over the recursion's unnormalised polynomial.
    features : list of (int, int)
        ``(2 j1, j)`` in Amp's order.
    term_a, term_b, term_d : ndarray of int
        Flat indices of ``c^j``, ``c^j1`` and ``c^j1`` of every term.
    term_coefficient : ndarray
        Its weight (Clebsch-Gordan product, times its multiplicity).
    term_feature : ndarray of int
        Its feature; terms are sorted by feature.
    """

    def __init__(self, jmax):
        twice = int(round(2 * jmax))
        self.jmax = jmax
        self.levels = twice + 1
        sizes = [(L + 1) ** 2 for L in range(self.levels)]
        self.offset = np.concatenate([[0], np.cumsum(sizes)]).astype(
            np.int64)
        norm, mirror = [], []
        for L in range(self.levels):
            i = np.arange(L + 1)
            row = np.array([math.sqrt(math.factorial(k)
                                      * math.factorial(L - k)) for k in i])
            norm.append((row[:, None] / row[None, :]).ravel())
            # (i, i') -> (L - i, L - i'): m -> -m, m' -> -m'
            mirror.append(self.offset[L] + ((L - i)[:, None] * (L + 1)
                                            + (L - i)[None, :]).ravel())
        self.norm_k = np.concatenate(norm)
        mirror = np.concatenate(mirror)
        self.features = bispectrum_features(jmax)
        a, b, d, coefficient, feature = [], [], [], [], []
        for f, (L1, J) in enumerate(self.features):
            # Pairs (i1, i2) of level L1 coupling to each mu of level 2J.
            i1, i2 = np.meshgrid(np.arange(L1 + 1), np.arange(L1 + 1),
                                 indexing="ij")
            i1, i2 = i1.ravel(), i2.ravel()
            mu = i1 + i2 - L1 + J  # index of m1 + m2 at level 2J
            keep = (mu >= 0) & (mu <= 2 * J)
            i1, i2, mu = i1[keep], i2[keep], mu[keep]
            cg = np.array([_clebsch_gordan_twice(
                L1, 2 * int(p) - L1, L1, 2 * int(q) - L1, 2 * J,
                2 * (int(r) - J)) for p, q, r in zip(i1, i2, mu)])
            nz = np.flatnonzero(cg)
            i1, i2, mu, cg = i1[nz], i2[nz], mu[nz], cg[nz]
            # (i1, i2, mu) for rows times (i1', i2', mu') for columns.
            P, Q = np.meshgrid(np.arange(len(cg)), np.arange(len(cg)),
                               indexing="ij")
            P, Q = P.ravel(), Q.ravel()
            a.append(self.offset[2 * J] + mu[P] * (2 * J + 1) + mu[Q])
            b.append(self.offset[L1] + i1[P] * (L1 + 1) + i1[Q])
            d.append(self.offset[L1] + i2[P] * (L1 + 1) + i2[Q])
            coefficient.append(cg[P] * cg[Q])
            feature.append(np.full(len(P), f))
        a, b, d = (np.concatenate(x) for x in (a, b, d))
        coefficient, feature = np.concatenate(coefficient), \
            np.concatenate(feature)
        # Merge equal terms (b <-> d) and conjugate ones (the mirror).
        n = int(self.offset[-1])

        def term_key(a, b, d):  # one integer per term, b and d unordered
            return ((feature * n + a) * n + np.minimum(b, d)) * n \
                + np.maximum(b, d)

        key = np.minimum(term_key(a, b, d),
                         term_key(mirror[a], mirror[b], mirror[d]))
        unique, inverse = np.unique(key, return_inverse=True)
        merged = np.bincount(inverse, coefficient, minlength=len(unique))
        keep = np.abs(merged) > 1e-14
        unique, merged = unique[keep], merged[keep]
        self.term_d = unique % n
        rest = unique // n
        self.term_b = rest % n
        rest //= n
        self.term_a = rest % n
        self.term_feature = rest // n
        self.term_coefficient = merged

    @property
    def n_features(self):
        """Fingerprint length."""
        return len(self.features)

    @property
    def n_coefficients(self):
        """Length of the flat vector of every ``c^L``."""
        return int(self.offset[-1])


@functools.lru_cache(maxsize=8)
def bispectrum_tables(jmax):
    """The (cached, read-only) :class:`BispectrumTables` of ``jmax``."""
    tables = BispectrumTables(jmax)
    for name, value in vars(tables).items():
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
    return tables
