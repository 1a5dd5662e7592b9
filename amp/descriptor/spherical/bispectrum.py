"""The bispectrum kernel: fingerprints and their derivatives per element.

For the centre atoms of one element, a few at a time:

1. the hyperspherical polynomials ``u^L`` of every neighbour
   (:mod:`.hyperspherical`), in padded ``(centre, slot)`` blocks;
2. the expansion coefficients ``c_ak = norm_k sum_s w_as u_ask`` (``w =
   G[centre][neighbour] fc(R)``);
3. the bispectrum ``B_af = Re sum_t coefficient_t conj(c_a) c_b c_d``
   over the terms of each feature (:mod:`.bispectrum_tables`).

Derivatives: ``B`` is real, so ``dB_af = Re sum_k Gamma_afk dc_ak`` with
the adjoint ``Gamma`` (one product of two ``c`` per term and factor).
``dc`` of entry ``e`` is ``w'(R) r/R U_k + w dU_k/dr``, and ``dU`` of
level ``L`` is level ``L - 1`` times the derivatives of the Cayley-Klein
parameters, so::

    dB_aef / dr = w'(R) r/R S_ef + w Re(Va_ef da_e/dr + Vb_ef db_e/dr)

where ``S_ef = Re sum_k Gamma_afk norm_k u_ek`` and ``Va``, ``Vb`` are
the same contractions of the previous level with ``Gamma`` shifted and
scaled (``Va`` collects the ``M00`` and ``conj(M11)`` parts, ``Vb`` the
``M01`` and ``-conj(M10)`` parts). All five are real-linear in ``u``,
so each level is one batched matrix product of the neighbours' ``u^L``
(viewed as real numbers) with a per-centre adjoint matrix.
"""

import functools

import numpy as np
import scipy.sparse

from ..symmetry.chunk import Chunk, ragged
from .hyperspherical import cayley_klein, hyperspherical

__all__ = ["bispectrum_element", "CHUNK_ATOMS"]

# Centre atoms per chunk: at jmax 5 a neighbour's u^L are 506 complex
# numbers, so a chunk of 8 fcc Cu atoms (~100 neighbours each) holds
# ~6.5 MB of them.
CHUNK_ATOMS = 8


class _Plan:
    """What the derivative path needs of the tables, built once."""

    def __init__(self, tables):
        n_f, n_k = tables.n_features, tables.n_coefficients
        a, b, d = tables.term_a, tables.term_b, tables.term_d
        f = tables.term_feature
        T = len(a)
        rows = np.arange(3 * T)
        columns = np.concatenate([f * n_k + b, f * n_k + d, f * n_k + a])
        self.scatter = scipy.sparse.csr_matrix(
            (np.ones(3 * T), (rows, columns)), shape=(3 * T, n_f * n_k))
        self.scatter_t = self.scatter.T.tocsr()
        # Features that touch each level (through c^j1 or c^j).
        self.level_features = []
        for L in range(tables.levels):
            self.level_features.append(np.array(
                [k for k, (L1, J) in enumerate(tables.features)
                 if L1 == L or 2 * J == L], dtype=np.int64))


@functools.lru_cache(maxsize=8)
def _plan(tables):
    return _Plan(tables)


def bispectrum_element(tables, cutoff, neighbors, codes, weights, atoms,
                       derivatives=False):
    """Bispectrum fingerprints of the centre atoms ``atoms`` (one element).

    Parameters and returns as
    :func:`~amp.descriptor.spherical.zernike.zernike_element`, with the
    element's :class:`~.bispectrum_tables.BispectrumTables`.
    """
    n_f = tables.n_features
    g_af = np.zeros((len(atoms), n_f))
    first = neighbors.first_entry
    counts_a = first[atoms + 1] - first[atoms]
    entries = ragged(first[atoms], counts_a)
    if derivatives:
        dg_exf = np.zeros((len(entries), 3, n_f))
    entry_start = np.concatenate([[0], np.cumsum(counts_a)])
    weights = np.asarray(weights, dtype=float)
    feature_starts = np.flatnonzero(np.diff(np.concatenate(
        [[-1], tables.term_feature])))
    for a0 in range(0, len(atoms), CHUNK_ATOMS):
        a1 = min(a0 + CHUNK_ATOMS, len(atoms))
        e0, e1 = entry_start[a0], entry_start[a1]
        if e1 == e0:
            continue
        chunk = Chunk(neighbors, codes, entries[e0:e1], counts_a[a0:a1],
                      cutoff, derivatives, None)
        n_a, width = chunk.n_centres, chunk.width
        G_e = weights[chunk.code_e]
        w_e = G_e * chunk.fc_e
        a_as, b_as = cayley_klein(chunk.r_asx.reshape(-1, 3), cutoff.Rc)
        u = hyperspherical(a_as.reshape(n_a, width),
                           b_as.reshape(n_a, width), tables.levels)
        w_as = chunk.padded(w_e).reshape(n_a, 1, width)
        c_ak = np.concatenate(
            [np.matmul(w_as, u_L.reshape(n_a, width, -1)).reshape(n_a, -1)
             for u_L in u], axis=1)
        c_ak *= tables.norm_k
        ca = np.conj(c_ak[:, tables.term_a])
        cb = c_ak[:, tables.term_b]
        cd = c_ak[:, tables.term_d]
        ab = ca * cb
        terms = (ab * cd).real * tables.term_coefficient
        g_af[a0:a1] = np.add.reduceat(terms, feature_starts, axis=1)
        if not derivatives:
            continue
        dg_exf[e0:e1] = _derivatives(tables, chunk, u, ca, cb, cd, G_e, w_e)
    if derivatives:
        return g_af, entries, dg_exf
    return g_af, None, None


def _derivatives(tables, chunk, u, ca, cb, cd, G_e, w_e):
    plan = _plan(tables)
    n_a, width = chunk.n_centres, chunk.width
    n_f, n_k = tables.n_features, tables.n_coefficients
    coefficient = tables.term_coefficient
    contributions = np.concatenate(
        [coefficient * ca * cd, coefficient * ca * cb,
         coefficient * np.conj(cb * cd)], axis=1)
    gamma = (plan.scatter_t @ contributions.T).T.reshape(n_a, n_f, n_k)
    gamma *= tables.norm_k
    S = np.zeros((n_a, width, n_f))
    Va = np.zeros((n_a, width, n_f, 2))
    Vb = np.zeros((n_a, width, n_f, 2))
    offset = tables.offset
    for L in range(tables.levels):
        n = L + 1
        own = plan.level_features[L]
        upper = plan.level_features[L + 1] if L + 1 < tables.levels else \
            np.zeros(0, dtype=np.int64)
        g = gamma[:, own, offset[L]:offset[L + 1]]  # (a, f, n*n)
        columns = [np.stack([g.real, -g.imag], axis=-1).reshape(
            n_a, len(own), 2 * n * n)]
        if len(upper):
            m = n + 1
            G = gamma[:, upper, offset[L + 1]:offset[L + 2]].reshape(
                n_a, len(upper), m, m)
            i_prime = np.arange(m)
            up = G * i_prime                 # i' Gamma
            down = G * (L + 1 - i_prime)     # (L + 1 - i') Gamma
            G00, G10 = up[..., 1:, 1:], up[..., :-1, 1:]
            G01, G11 = down[..., 1:, :-1], down[..., :-1, :-1]
            parts = [(G00.real + G11.real, -G00.imag - G11.imag),
                     (G00.imag - G11.imag, G00.real - G11.real),
                     (G01.real - G10.real, -G01.imag + G10.imag),
                     (G01.imag + G10.imag, G01.real + G10.real)]
            for re, im in parts:
                columns.append(np.stack([re, im], axis=-1).reshape(
                    n_a, len(upper), 2 * n * n))
        adjoint = np.concatenate(columns, axis=1)  # (a, cols, 2 n n)
        u_L = u[L].reshape(n_a, width, n * n).view(float)
        out = np.matmul(u_L, adjoint.transpose(0, 2, 1))
        S[:, :, own] += out[:, :, :len(own)]
        if len(upper):
            k = len(own)
            q = len(upper)
            Va[:, :, upper, 0] += out[:, :, k:k + q]
            Va[:, :, upper, 1] += out[:, :, k + q:k + 2 * q]
            Vb[:, :, upper, 0] += out[:, :, k + 2 * q:k + 3 * q]
            Vb[:, :, upper, 1] += out[:, :, k + 3 * q:k + 4 * q]
    slot = chunk.slot_e
    S = S.reshape(-1, n_f)[slot]
    Va = Va.reshape(-1, n_f, 2)[slot]
    Vb = Vb.reshape(-1, n_f, 2)[slot]
    _, _, da_ex, db_ex = cayley_klein(chunk.r_ex, chunk.Rc, True)
    radial_e = G_e * chunk.fc_prime_e / chunk.d_e
    dg = (chunk.r_ex * radial_e[:, None])[:, :, None] * S[:, None, :]
    w = w_e[:, None, None]
    dg += w * (Va[:, None, :, 0] * da_ex.real[:, :, None]
               - Va[:, None, :, 1] * da_ex.imag[:, :, None]
               + Vb[:, None, :, 0] * db_ex.real[:, :, None]
               - Vb[:, None, :, 1] * db_ex.imag[:, :, None])
    return dg
