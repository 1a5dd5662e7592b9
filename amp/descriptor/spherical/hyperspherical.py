"""Hyperspherical harmonics: the rotation matrices ``U^j`` of a neighbour.

A neighbour at ``r`` (``R = |r| < Rc``) is the rotation by the angle
``omega = arcsin(R / Rc)`` about the axis ``r / R``; its Cayley-Klein
parameters are::

    a = cos(omega / 2) - i sin(omega / 2) z / R
    b = sin(omega / 2) (-y - i x) / R

and ``U^j`` is the spin-``j`` representation of the unitary matrix
``M = [[a, b], [-conj(b), conj(a)]]``. Both parameters are smooth
functions of ``r`` inside the cutoff sphere: with ``s = sqrt(1 - R^2 /
Rc^2)``, ``cos(omega / 2) = sqrt((1 + s) / 2)`` and ``sin(omega / 2) / R
= 1 / (Rc sqrt(2 (1 + s)))``, no division by ``R``.

:func:`hyperspherical` gives the unnormalised polynomials ``u^L`` (``L =
2j``): ``u^L[i, i']`` (``i = j + m``, ``i' = j + m'``) is the coefficient
of ``x^i y^(L-i)`` in ``p^i' q^(L-i')`` with ``p = M00 x + M10 y`` and
``q = M01 x + M11 y``, so that ``U^j = N u^L`` with
``N[i, i'] = sqrt(i! (L-i)! / (i'! (L-i')!))``. They follow from one
level to the next with two products per element::

    u^L[i, i'] = M00 u^(L-1)[i-1, i'-1] + M10 u^(L-1)[i, i'-1]    (i' >= 1)
    u^L[i, 0]  = M01 u^(L-1)[i-1, 0]   + M11 u^(L-1)[i, 0]

and their derivatives with respect to the entries of ``M`` are the
previous level again: ``d u^L[i, i'] / d M00 = i' u^(L-1)[i-1, i'-1]``,
``/ d M10 = i' u^(L-1)[i, i'-1]``, ``/ d M01 = (L - i') u^(L-1)[i-1, i']``,
``/ d M11 = (L - i') u^(L-1)[i, i']``.
"""

import numpy as np

__all__ = ["cayley_klein", "hyperspherical"]


def cayley_klein(r_ex, Rc, derivatives=False):
    """The Cayley-Klein parameters of neighbour vectors.

    Parameters
    ----------
    r_ex : ndarray, shape (n, 3)
        Vectors strictly inside the cutoff sphere (zero vectors allowed).
    Rc : float
    derivatives : bool
        Also return ``d a / d r`` and ``d b / d r``.

    Returns
    -------
    a_e, b_e : ndarray of complex, shape (n,)
    da_ex, db_ex : ndarray of complex, shape (n, 3)
        Only with ``derivatives``.
    """
    x, y, z = r_ex[:, 0], r_ex[:, 1], r_ex[:, 2]
    R2 = x * x + y * y + z * z
    s = np.sqrt(1.0 - R2 * (1.0 / (Rc * Rc)))
    cos_half = np.sqrt(0.5 * (1.0 + s))
    sin_half_over_R = 1.0 / (Rc * np.sqrt(2.0 * (1.0 + s)))
    a_e = cos_half - 1j * (sin_half_over_R * z)
    b_e = sin_half_over_R * (-y - 1j * x)
    if not derivatives:
        return a_e, b_e
    # d s / d r = -r / (Rc^2 s); d cos_half / d r = (d s / d r) / (4 cos_half)
    # d sin_half_over_R / d r = sin_half_over_R^3 r / s
    dcos_half = (-1.0 / (4.0 * Rc * Rc)) / (s * cos_half)
    dsin_half = sin_half_over_R ** 3 / s
    da_ex = (dcos_half[:, None] * r_ex).astype(complex)
    da_ex -= 1j * (dsin_half * z)[:, None] * r_ex
    da_ex[:, 2] -= 1j * sin_half_over_R
    db_ex = (dsin_half * (-y - 1j * x))[:, None] * r_ex
    db_ex[:, 0] -= 1j * sin_half_over_R
    db_ex[:, 1] -= sin_half_over_R
    return a_e, b_e, da_ex, db_ex


def kept_rows(L):
    """First row kept of level ``L``: rows ``i >= (L + 1) // 2``; the
    others follow from the mirror symmetry ``u[L-i, L-i'] = (-1)^(i-i')
    conj(u[i, i'])``."""
    return (L + 1) // 2


def hyperspherical(a, b, levels):
    """The unnormalised ``u^L`` of every level ``L < levels``, upper rows.

    A generator: each level is made from the previous one, so a caller
    that only sums them keeps two levels in memory.

    Parameters
    ----------
    a, b : ndarray of complex, shape ``s``
        Cayley-Klein parameters of the neighbours.
    levels : int

    Yields
    ------
    ndarray of complex
        ``u^L`` of shape ``(L + 1 - kept_rows(L), L + 1) + s``: the rows
        ``i >= kept_rows(L)``, the neighbours on the last axes (so that
        every operation runs over them, contiguously).
    """
    M00, M10 = a, -np.conj(b)
    M01, M11 = b, np.conj(a)
    previous = np.ones((1, 1) + np.shape(a), dtype=complex)
    yield previous
    for L in range(1, levels):
        first = kept_rows(L)
        if kept_rows(L - 1) > first - 1:
            # Row first - 1 of the previous level, by the mirror symmetry.
            K, rho = L - 1, L - first
            extra = np.conj(previous[rho - kept_rows(K), ::-1])
            extra[(rho - K + np.arange(K + 1)) % 2 == 1] *= -1.0
            previous = np.concatenate([extra[None], previous], axis=0)
        new = np.empty((L + 1 - first, L + 1) + np.shape(a), dtype=complex)
        # columns i' >= 1 from column i' - 1 of the previous level
        np.multiply(M00, previous, out=new[:, 1:])
        new[:-1, 1:] += M10 * previous[1:]
        # column 0 from column 0
        column = previous[:, 0]
        np.multiply(M01, column, out=new[:, 0])
        new[:-1, 0] += M11 * column[1:]
        previous = new
        yield new


def full_rows(u_half, L):
    """The whole ``u^L`` from its kept rows (first two axes ``(rows,
    L + 1)``, as :func:`hyperspherical` gives them)."""
    first = kept_rows(L)
    i = np.arange(first)
    lower = np.conj(u_half[L - i - first, ::-1])
    odd = (i[:, None] - np.arange(L + 1)[None, :]) % 2 == 1
    lower[odd] *= -1.0
    return np.concatenate([lower, u_half], axis=0)
