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

from .chunks import centre_chunks, centre_entries
from .hyperspherical import cayley_klein, full_rows, hyperspherical, kept_rows

__all__ = ["bispectrum_element"]

# Centre atoms per chunk. Fingerprints alone keep two levels of u^L at a
# time; with derivatives every level is kept (271 complex numbers per
# neighbour at jmax 5, ~3.5 MB for 8 fcc Cu atoms).
CHUNK_VALUES = 24
CHUNK_DERIVATIVES = 8


class _Plan:
    """Sparse maps and index arrays of one table, built once.

    The bispectrum is summed in two steps: the products ``c_b c_d`` of
    the distinct pairs ``(b, d)`` (``pair_b``, ``pair_d``), then
    ``Z_{f,a} = sum_t coefficient_t (c_b c_d)_t`` (``to_z``, sparse), and
    ``B_f = Re sum_a conj(c_a) Z_{f,a}``. The adjoint
    ``Gamma_{f,k} = dB_f / dc_k`` is ``conj(Z_{f,k})`` for ``k = a``, and
    ``coefficient conj(c_a) c_d`` (``c_b``) for ``k = b`` (``d``): the
    distinct products ``conj(c_p) c_q`` (``product_p``, ``product_q``)
    and ``conj(Z)`` mapped by one sparse matrix (``to_gamma``).
    """

    def __init__(self, tables):
        n_f, n_k = tables.n_features, tables.n_coefficients
        a, b, d = tables.term_a, tables.term_b, tables.term_d
        f, coefficient = tables.term_feature, tables.term_coefficient
        pairs, pair_of = np.unique(b * n_k + d, return_inverse=True)
        self.pair_b, self.pair_d = pairs // n_k, pairs % n_k
        z_keys, z_of = np.unique(f * n_k + a, return_inverse=True)
        self.z_feature, self.z_a = z_keys // n_k, z_keys % n_k
        self.to_z = scipy.sparse.csr_matrix(
            (coefficient, (z_of, pair_of)), shape=(len(z_keys), len(pairs)))
        self.z_starts = np.flatnonzero(np.diff(np.concatenate(
            [[-1], self.z_feature])))
        # dB/dc_b += coefficient conj(c_a) c_d, dB/dc_d += ... conj(c_a) c_b
        products, product_of = np.unique(
            np.concatenate([a * n_k + d, a * n_k + b]), return_inverse=True)
        self.product_p, self.product_q = products // n_k, products % n_k
        rows = np.concatenate([f * n_k + b, f * n_k + d, z_keys])
        columns = np.concatenate([product_of,
                                  len(products) + np.arange(len(z_keys))])
        values = np.concatenate([coefficient, coefficient,
                                 np.ones(len(z_keys))])
        self.to_gamma = scipy.sparse.csr_matrix(
            (values, (rows, columns)),
            shape=(n_f * n_k, len(products) + len(z_keys)))
        # Features that touch each level (through c^j1 or c^j).
        self.level_features = []
        for L in range(tables.levels):
            self.level_features.append(np.array(
                [k for k, (L1, J) in enumerate(tables.features)
                 if L1 == L or 2 * J == L], dtype=np.int64))
        # Folding an adjoint over all of u^L onto its kept rows: the
        # element (i, i') of a row i < kept_rows(L) is
        # (-1)^(i-i') conj(u[L-i, L-i']).
        self.fold = []
        for L in range(tables.levels):
            n, first = L + 1, kept_rows(L)
            i, i_prime = np.divmod(np.arange(first * n, n * n), n)
            outside = (L - i) < first
            partner = np.where(outside, (L - i) * n + (L - i_prime), n * n)
            sign = np.where((i - i_prime) % 2, -1.0, 1.0)
            self.fold.append((np.arange(first * n, n * n), partner, sign))


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
    plan = _plan(tables)
    n_f = tables.n_features
    g_af = np.zeros((len(atoms), n_f))
    entries = centre_entries(neighbors, atoms)
    if derivatives:
        dg_exf = np.zeros((len(entries), 3, n_f))
    weights = np.asarray(weights, dtype=float)
    size = CHUNK_DERIVATIVES if derivatives else CHUNK_VALUES
    for rows, span, chunk in centre_chunks(neighbors, codes, atoms, cutoff,
                                           derivatives, size):
        n_a, width = chunk.n_centres, chunk.width
        G_e = weights[chunk.code_e]
        w_e = G_e * chunk.fc_e
        w_as = chunk.padded(w_e).reshape(n_a, width)
        a_as, b_as = cayley_klein(chunk.r_asx.reshape(-1, 3), cutoff.Rc)
        u = [] if derivatives else None
        c_ka = np.empty((tables.n_coefficients, n_a), dtype=complex)
        for L, u_L in enumerate(hyperspherical(
                a_as.reshape(n_a, width), b_as.reshape(n_a, width),
                tables.levels)):
            # c^L = sum over a centre's slots of w u^L (kept rows)
            half = np.matmul(u_L.reshape(-1, n_a, 1, width),
                             w_as[:, :, None])
            c_ka[tables.offset[L]:tables.offset[L + 1]] = full_rows(
                half.reshape(-1, L + 1, n_a), L).reshape(-1, n_a)
            if derivatives:
                u.append(u_L)
        c_ka *= tables.norm_k[:, None]
        pair_ka = np.take(c_ka, plan.pair_b, axis=0)
        pair_ka *= np.take(c_ka, plan.pair_d, axis=0)
        z_ka = plan.to_z @ pair_ka
        terms = (np.conj(np.take(c_ka, plan.z_a, axis=0)) * z_ka).real
        g_af[rows] = np.add.reduceat(terms, plan.z_starts, axis=0).T
        if derivatives:
            dg_exf[span] = _derivatives(tables, plan, chunk, u, c_ka, z_ka,
                                         G_e, w_e)
    if derivatives:
        return g_af, entries, dg_exf
    return g_af, None, None


def _derivatives(tables, plan, chunk, u, c_ka, z_ka, G_e, w_e):
    """``dB / dr_e`` of every entry of a chunk, ``(n_entries, 3, n_f)``."""
    n_a, width = chunk.n_centres, chunk.width
    n_f, n_k = tables.n_features, tables.n_coefficients
    products = np.conj(np.take(c_ka, plan.product_p, axis=0))
    products *= np.take(c_ka, plan.product_q, axis=0)
    gamma = plan.to_gamma @ np.concatenate([products, np.conj(z_ka)])
    gamma = gamma.T.reshape(n_a, n_f, n_k) * tables.norm_k
    S = np.zeros((n_a, n_f, width))
    V = np.zeros((n_a, 4, n_f, width))
    offset = tables.offset
    for L in range(tables.levels):
        n = L + 1
        own = plan.level_features[L]
        upper = plan.level_features[L + 1] if L + 1 < tables.levels else \
            np.zeros(0, dtype=np.int64)
        # Real-linear functionals of (Re u, Im u) over all n*n elements:
        # S = Re sum Gamma u; Va, Vb (re, im) from the next level.
        g = gamma[:, own, offset[L]:offset[L + 1]]
        real, imaginary = [g.real], [-g.imag]
        if len(upper):
            m = n + 1
            G = gamma[:, upper, offset[L + 1]:offset[L + 2]].reshape(
                n_a, len(upper), m, m)
            i_prime = np.arange(m)
            up = G * i_prime                 # i' Gamma
            down = G * (L + 1 - i_prime)     # (L + 1 - i') Gamma
            G00, G10 = up[..., 1:, 1:], up[..., :-1, 1:]
            G01, G11 = down[..., 1:, :-1], down[..., :-1, :-1]
            for re, im in ((G00.real + G11.real, -G00.imag - G11.imag),
                           (G00.imag - G11.imag, G00.real - G11.real),
                           (G01.real - G10.real, G10.imag - G01.imag),
                           (G01.imag + G10.imag, G01.real + G10.real)):
                real.append(re.reshape(n_a, len(upper), n * n))
                imaginary.append(im.reshape(n_a, len(upper), n * n))
        real = np.concatenate(real, axis=1)  # (a, columns, n*n)
        imaginary = np.concatenate(imaginary, axis=1)
        # Fold the rows below kept_rows(L) onto their mirror images.
        kept, partner, sign = plan.fold[L]
        pad = np.zeros(real.shape[:2] + (1,))
        real = real[:, :, kept] + sign * np.concatenate(
            [real, pad], axis=2)[:, :, partner]
        imaginary = imaginary[:, :, kept] - sign * np.concatenate(
            [imaginary, pad], axis=2)[:, :, partner]
        adjoint = np.concatenate([real, imaginary], axis=2)
        u_L = u[L].reshape(-1, n_a, width)
        u_L = np.concatenate([u_L.real, u_L.imag]).transpose(1, 0, 2)
        out = np.matmul(adjoint, u_L)  # (a, columns, slots)
        S[:, own] += out[:, :len(own)]
        if len(upper):
            V[:, :, upper] += out[:, len(own):].reshape(
                n_a, 4, len(upper), width)
    slot = chunk.slot_e
    S = S.transpose(0, 2, 1).reshape(-1, n_f)[slot]
    V = V.transpose(0, 3, 1, 2).reshape(-1, 4, n_f)[slot]
    _, _, da_ex, db_ex = cayley_klein(chunk.r_ex, chunk.Rc, True)
    radial_e = G_e * chunk.fc_prime_e / chunk.d_e
    dg = (chunk.r_ex * radial_e[:, None])[:, :, None] * S[:, None, :]
    dg += w_e[:, None, None] * (
        V[:, None, 0] * da_ex.real[:, :, None]
        - V[:, None, 1] * da_ex.imag[:, :, None]
        + V[:, None, 2] * db_ex.real[:, :, None]
        - V[:, None, 3] * db_ex.imag[:, :, None])
    return dg
