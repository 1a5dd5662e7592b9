"""The Zernike kernel: fingerprints and their derivatives per element.

For the centre atoms of one element, a few at a time (a
:class:`~amp.descriptor.symmetry.chunk.Chunk`), the kernel

1. evaluates the monomials ``x^a y^b z^c`` of every neighbour's scaled
   vector ``u_e = r_e / Rc`` (``mono_asm``, padded slots);
2. sums them, weighted by ``w_e = G[centre][neighbour] fc(R_e)``, into
   moments per centre, and turns the moments into the Zernike moments
   ``c_ak`` with the coefficient matrix (:mod:`.zernike_tables`);
3. squares and adds: ``g_af = sum_k weight_k c_ak^2`` over the terms of
   each feature.

For the derivatives, ``d g_af / d r_e = d/dr_e [w_e q_af(u_e)]`` where
``q_af(u) = sum_k 2 weight_k c_ak Z_k(u)`` is one polynomial per centre
and feature; its coefficients over the monomials, and those of its
gradient, are formed per centre, and one batched matrix product with the
monomials of the centre's neighbours gives ``q`` and ``grad q`` for every
entry at once.
"""

import functools

import numpy as np

from .chunks import centre_chunks, centre_entries

__all__ = ["zernike_element", "CHUNK_ATOMS"]

# Centre atoms per chunk: on fcc Cu (Rc 6.5, ~100 neighbours, nmax 5) a
# chunk's padded monomials are ~0.7 MB.
CHUNK_ATOMS = 16


def _monomials(tables, u_ex):
    """``x^a y^b z^c`` of every row of ``u_ex``, shape (n, n_monomials)."""
    powers = np.ones((3, len(u_ex), tables.nmax + 1))
    for d in range(1, tables.nmax + 1):
        np.multiply(powers[:, :, d - 1], u_ex.T, out=powers[:, :, d])
    a, b, c = tables.monomials.T
    out = powers[0][:, a]
    out *= powers[1][:, b]
    out *= powers[2][:, c]
    return out


def _derivative_matrix(tables):
    """``(2 n_terms, n_features * 4 * n_monomials)``: maps the scaled
    moments ``2 weight_k c_k`` to the monomial coefficients of ``q_f``
    and of its three partial derivatives, ``[f, (value, x, y, z), m]``."""
    n_mono, n_f = tables.n_monomials, tables.n_features
    # value and gradient coefficients of each Z_k: (2K, 4, n_mono)
    C_km = tables.coefficients_mk.T
    grad = np.einsum("km,mxn->kxn", C_km, tables.gradient_mxm)
    per_term = np.concatenate([C_km[:, None, :], grad], axis=1)
    out = np.zeros((len(C_km), n_f, 4, n_mono))
    out[np.arange(len(C_km)), tables.feature_k] = per_term
    return out.reshape(len(C_km), n_f * 4 * n_mono)


def zernike_element(tables, cutoff, neighbors, codes, weights, atoms,
                    derivatives=False):
    """Zernike fingerprints of the centre atoms ``atoms`` (one element).

    Parameters
    ----------
    tables : ZernikeTables
        Of the element's ``nmax``.
    cutoff : Cosine or Polynomial
    neighbors : NeighborList
        Of the whole image.
    codes : ndarray of int
        Element code of every atom of the image.
    weights : ndarray
        ``weights[code]``: the density coefficient ``G[element][x]`` of a
        neighbour of element code ``code``.
    atoms : ndarray of int
        Indices of the centre atoms, ascending.
    derivatives : bool
        Also return the per-entry derivatives.

    Returns
    -------
    g_af : ndarray, shape (len(atoms), n_features)
    entries : ndarray of int or None
        Neighbour entries whose centre is in ``atoms``, in order.
    dg_exf : ndarray or None
        ``d g / d r_e``, shape ``(len(entries), 3, n_features)``.
    """
    n_f, n_mono = tables.n_features, tables.n_monomials
    Rc = cutoff.Rc
    g_af = np.zeros((len(atoms), n_f))
    entries = centre_entries(neighbors, atoms)
    if derivatives:
        dg_exf = np.zeros((len(entries), 3, n_f))
        to_q = _derivative_matrix_cached(tables)
    weights = np.asarray(weights, dtype=float)
    for rows, span, chunk in centre_chunks(neighbors, codes, atoms, cutoff,
                                           derivatives, CHUNK_ATOMS):
        n_a, width = chunk.n_centres, chunk.width
        G_e = weights[chunk.code_e]
        w_e = G_e * chunk.fc_e
        mono_em = _monomials(tables, chunk.r_ex * (1.0 / Rc))
        mono_asm = chunk.padded(mono_em).reshape(n_a, width, n_mono)
        w_as = chunk.padded(w_e).reshape(n_a, 1, width)
        moments_am = np.matmul(w_as, mono_asm).reshape(n_a, n_mono)
        c_ak = moments_am @ tables.coefficients_mk
        squares_ak = c_ak * c_ak * tables.weight_k
        g_af[rows] = np.add.reduceat(squares_ak, _feature_starts(tables),
                                      axis=1)
        if not derivatives:
            continue
        # Coefficients of q_f and grad q_f per centre: (a, m, f*4).
        scaled_ak = c_ak * (2.0 * tables.weight_k)
        q_afxm = (scaled_ak @ to_q).reshape(n_a, n_f * 4, n_mono)
        q_asv = np.matmul(mono_asm, q_afxm.transpose(0, 2, 1))
        q_ev = q_asv.reshape(n_a * width, n_f, 4)[chunk.slot_e]
        # d/dr [w(R) q(r / Rc)] = w'(R) r/R q + w grad q / Rc
        radial_e = G_e * chunk.fc_prime_e / chunk.d_e
        dg = q_ev[:, :, 1:].transpose(0, 2, 1) * (w_e / Rc)[:, None, None]
        dg += (chunk.r_ex * radial_e[:, None])[:, :, None] \
            * q_ev[:, None, :, 0]
        dg_exf[span] = dg
    if derivatives:
        return g_af, entries, dg_exf
    return g_af, None, None


@functools.lru_cache(maxsize=16)
def _derivative_matrix_cached(tables):
    return _derivative_matrix(tables)


def _feature_starts(tables):
    return np.flatnonzero(np.diff(np.concatenate([[-1], tables.feature_k])))
