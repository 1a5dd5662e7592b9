r"""The three-body kernel of n2p2's Gaussian angular types 3, 9 and 13.

For a centre ``i`` and a pair of neighbours ``j < k`` (neighbour vectors
``a = r_ij``, ``b = r_ik``, lengths ``a``, ``b``, ``d = |b - a|``,
``c = cos theta_ijk``), a function adds::

    2^(1 - zeta) (1 + lambda c)^zeta  exp(-eta S)  F

    type 3:   S = (a - rs)^2 + (b - rs)^2 + (d - rs)^2,  F = fc(a) fc(b) fc(d)
    type 9:   S = (a - rs)^2 + (b - rs)^2,               F = fc(a) fc(b)
    type 13:  as type 3, times Z_j Z_k, over every pair of neighbours

(types 3 and 9 only over pairs whose elements are the function's ``e1``,
``e2``; n2p2 sets the term to 0 where ``1 + lambda c <= 0``).

Evaluation
----------
Functions are grouped by kind (narrow, with the ``d`` terms, or wide) and
radius; each group enumerates its triplets once per pair of neighbour
elements (a block of the chunk's slots, :mod:`.chunk`). For whole-number
``zeta`` (up to 16) and ``|lambda| <= 1`` the angular factor is a
polynomial in ``c``: every function of one ``(eta, rs)`` "radial key" ``m``
is then a fixed combination of the moments ``sum_t w_m c^p`` with ``w_m =
F exp(-eta_m S_m)``, so the kernel computes one exponential per key and a
few products per triplet, whatever the number of functions. Other
functions are evaluated term by term.

Gradient
--------
Given ``dE/dG`` of the chunk's centres, the energy of a triplet is
``E_t = F sum_m e_m Phi_m(c)`` with ``e_m = exp(-eta_m S_m)`` and per-centre
polynomials ``Phi_m``. With ``U = sum_m e_m Phi_m``, ``V = sum_m eta_m e_m
Phi_m``, ``R = sum_m eta_m rs_m e_m Phi_m`` and ``Y = sum_m e_m Phi_m'``::

    dE_t/da = dF/da U - 2 F (a V - R)      (and b, d alike)
    dE_t/dc = F Y

and the chain rule through ``a = |r_ij|``, ``c = r_ij . r_ik / (a b)``,
``d = |r_ik - r_ij|`` gives the coefficients of ``r_ij`` and ``r_ik`` in
``dE/dr_ij`` and ``dE/dr_ik`` that :meth:`.chunk.Slots.add_pairs` stores.
"""

import math

import numpy as np

from .chunk import segment_sums
from .cutoffs import CutoffFunction

__all__ = ["AngularPlan", "MAX_POLYNOMIAL_ZETA", "enumerate_triplets"]

#: Largest whole-number zeta evaluated as a polynomial in cos(theta).
MAX_POLYNOMIAL_ZETA = 16


def _polynomial(zeta, lam):
    """Coefficients of ``2^(1 - zeta) (1 + lam c)^zeta`` in powers of c,
    or None when it is not a polynomial this kernel expands."""
    if not (float(zeta).is_integer() and 1 <= zeta <= MAX_POLYNOMIAL_ZETA
            and abs(lam) <= 1.0):
        return None
    n = int(zeta)
    return [2.0 ** (1 - n) * math.comb(n, p) * lam ** p for p in range(n + 1)]


def enumerate_triplets(slots, x, y, a2_s, narrow, rc):
    """The usable neighbour pairs of block ``(x, y)`` of a chunk.

    Parameters
    ----------
    slots : Slots
    x, y : int
        Neighbour elements, ``x <= y``.
    a2_s : ndarray
        Squared distance of each slot, ``inf`` where the slot is unused or
        not within this group's radius.
    narrow : bool
        Also require ``d < rc``.
    rc : float

    Returns
    -------
    dict or None
        ``centre_t``, ``slot_j_t``, ``slot_k_t``, ``gram_t`` and (narrow)
        ``d2_t``; None when there is no triplet.
    """
    c, w = slots.n_centres, slots.width
    ox, wx = slots.offsets[x], slots.widths[x]
    oy, wy = slots.offsets[y], slots.widths[y]
    if wx == 0 or wy == 0 or (x == y and wx < 2):
        return None
    r_jx = slots.r_asx[:, ox:ox + wx]
    r_kx = slots.r_asx[:, oy:oy + wy]
    gram_ajk = np.matmul(r_jx, r_kx.transpose(0, 2, 1))
    a2_aj = a2_s.reshape(c, w)[:, ox:ox + wx]
    b2_ak = a2_s.reshape(c, w)[:, oy:oy + wy]
    if narrow:
        d2_ajk = a2_aj[:, :, None] + b2_ak[:, None, :]
        d2_ajk -= 2.0 * gram_ajk
        usable = d2_ajk < rc * rc
    else:
        d2_ajk = None
        usable = np.isfinite(a2_aj)[:, :, None] & np.isfinite(b2_ak)[:,
                                                                      None, :]
    if x == y:
        usable &= np.triu(np.ones((wx, wx), dtype=bool), 1)[None]
    flat_t = np.flatnonzero(usable)
    if len(flat_t) == 0:
        return None
    block = wx * wy
    centre_t = flat_t // block
    rest_t = flat_t - centre_t * block
    j_t = rest_t // wy
    triplets = {"centre_t": centre_t,
                "slot_j_t": centre_t * w + ox + j_t,
                "slot_k_t": centre_t * w + oy + (rest_t - j_t * wy),
                "gram_t": gram_ajk.reshape(-1)[flat_t]}
    if narrow:
        triplets["d2_t"] = d2_ajk.reshape(-1)[flat_t]
    return triplets


class _Block:
    """The functions of one group that act on one pair of neighbour
    elements: polynomial features and an expansion matrix, and the
    functions evaluated term by term."""

    def __init__(self):
        self.columns = []        # fingerprint columns
        self.terms = []          # (column position, key, lam, zeta, weight)

    def finish(self, n_keys):
        self.columns = np.array(self.columns, dtype=np.int64)
        degree = [-1] * n_keys
        self.direct = []
        expansions = []
        for position, key, lam, zeta, weight in self.terms:
            coefficients = _polynomial(zeta, lam)
            if coefficients is None:
                self.direct.append((position, key, lam, zeta, weight))
                degree[key] = max(degree[key], 0)
            else:
                expansions.append((position, key, coefficients, weight))
                degree[key] = max(degree[key], len(coefficients) - 1)
        self.keys = [m for m in range(n_keys) if degree[m] >= 0]
        self.degree = degree
        # Feature (key, power) -> row of the moment matrix.
        self.feature = {}
        for m in self.keys:
            for p in range(degree[m] + 1):
                self.feature[(m, p)] = len(self.feature)
        self.expand = np.zeros((len(self.feature), len(self.columns)))
        for position, key, coefficients, weight in expansions:
            for p, value in enumerate(coefficients):
                self.expand[self.feature[(key, p)], position] += \
                    weight * value


class _Group:
    """Functions of one kind (narrow or wide) and one radius."""

    def __init__(self, narrow, rc, cutoff):
        self.narrow, self.rc, self.cutoff = narrow, rc, cutoff
        self.keys = []           # (eta, rs)
        self.blocks = {}         # (x, y) -> _Block

    def key(self, eta, rs):
        if (eta, rs) not in self.keys:
            self.keys.append((eta, rs))
        return self.keys.index((eta, rs))

    def add(self, pair, column, key, lam, zeta, weight):
        block = self.blocks.setdefault(pair, _Block())
        if column not in block.columns:
            block.columns.append(column)
        block.terms.append((block.columns.index(column), key, lam, zeta,
                            weight))

    def finish(self):
        self.eta = np.array([k[0] for k in self.keys])
        self.rs = np.array([k[1] for k in self.keys])
        self.shifted = bool(np.any(self.rs != 0.0))
        for block in self.blocks.values():
            block.finish(len(self.keys))


class AngularPlan:
    """The Gaussian angular functions (types 3, 9, 13) of one centre
    element.

    Parameters
    ----------
    functions : list of (int, SymmetryFunction)
    index : dict
        ``{element: n2p2 index}``.
    atomic_numbers : sequence of int
        Per element index.
    cutoff_type, cutoff_alpha : int, float
    """

    def __init__(self, functions, index, atomic_numbers, cutoff_type,
                 cutoff_alpha):
        n = len(atomic_numbers)
        groups = {}
        for column, f in functions:
            narrow = f.type in (3, 13)
            if (narrow, f.rc) not in groups:
                groups[(narrow, f.rc)] = _Group(
                    narrow, f.rc, CutoffFunction(cutoff_type, f.rc,
                                                 cutoff_alpha))
            group = groups[(narrow, f.rc)]
            key = group.key(f.eta, f.rs)
            if f.type == 13:
                pairs = [((x, y), float(atomic_numbers[x] * atomic_numbers[y]))
                         for x in range(n) for y in range(x, n)]
            else:
                pairs = [((index[f.e1], index[f.e2]), 1.0)]
            for pair, weight in pairs:
                group.add(pair, column, key, f.lam, f.zeta, weight)
        self.groups = list(groups.values())
        for group in self.groups:
            group.finish()

    def values(self, slots, g_af, gradient):
        """Add the angular terms of a chunk to ``g_af``; return what
        :meth:`gradient` needs (when ``gradient``)."""
        state = []
        for group in self.groups:
            per_slot = _slot_factors(slots, group)
            for (x, y), block in group.blocks.items():
                t = enumerate_triplets(slots, x, y, per_slot["a2_s"],
                                       group.narrow, group.rc)
                if t is None:
                    continue
                _block_values(group, block, t, per_slot, slots, g_af)
                if gradient:
                    state.append((group, block, t))
        return state

    @staticmethod
    def gradient(state, slots, dE_dg_af):
        """Add the angular terms of ``dE/dr`` to the chunk's matrix."""
        for group, block, t in state:
            _block_gradient(group, block, t, slots, dE_dg_af)


def _slot_factors(slots, group):
    """Per-slot quantities of a group: squared distance within the radius
    (else inf), cutoff, cutoff slope over distance, inverse distance."""
    d_s = slots.d_s
    inside = slots.valid_s & (d_s < group.rc)
    fc_s, dfc_s = group.cutoff(d_s)
    fc_s = np.where(inside, fc_s, 0.0)
    inverse_s = 1.0 / d_s
    return {"a2_s": np.where(inside, slots.d2_s, np.inf), "fc_s": fc_s,
            "dfc_over_d_s": np.where(inside, dfc_s, 0.0) * inverse_s,
            "inverse_s": inverse_s, "d_s": d_s}


def _block_values(group, block, t, per_slot, slots, g_af):
    """Moments (and direct terms) of one block; keep the per-triplet
    factors in ``t`` for the gradient."""
    sj, sk = t["slot_j_t"], t["slot_k_t"]
    gram_t = t["gram_t"]
    inv_a_t = per_slot["inverse_s"][sj]
    inv_b_t = per_slot["inverse_s"][sk]
    cos_t = gram_t * inv_a_t * inv_b_t
    fa_t, fb_t = per_slot["fc_s"][sj], per_slot["fc_s"][sk]
    weight_t = fa_t * fb_t
    if group.narrow:
        d2_t = t["d2_t"]
        d_t = np.sqrt(d2_t)
        fd_t, dfd_t = group.cutoff(d_t)
        weight_t = weight_t * fd_t
        square_t = 2.0 * (d2_t + gram_t)       # a^2 + b^2 + d^2
        t.update(d_t=d_t, fd_t=fd_t, dfd_over_d_t=dfd_t / d_t)
    else:
        square_t = per_slot["d_s"][sj] ** 2 + per_slot["d_s"][sk] ** 2
    t.update(cos_t=cos_t, inv_a_t=inv_a_t, inv_b_t=inv_b_t, fa_t=fa_t,
             fb_t=fb_t, weight_t=weight_t,
             dfa_t=per_slot["dfc_over_d_s"][sj],
             dfb_t=per_slot["dfc_over_d_s"][sk])
    if group.shifted:
        t["a_t"], t["b_t"] = per_slot["d_s"][sj], per_slot["d_s"][sk]
    exps = {}
    for m in block.keys:
        eta, rs = group.eta[m], group.rs[m]
        if rs == 0.0:
            s_t = square_t
        else:
            s_t = (t["a_t"] - rs) ** 2 + (t["b_t"] - rs) ** 2
            if group.narrow:
                s_t = s_t + (t["d_t"] - rs) ** 2
        exps[m] = np.exp(-eta * s_t)
    t["exps"] = exps
    counts = np.bincount(t["centre_t"], minlength=slots.n_centres)
    if block.feature:
        rows = np.empty((len(block.feature), len(cos_t)))
        for m in block.keys:
            if block.degree[m] < 0:
                continue
            row = rows[block.feature[(m, 0)]]
            np.multiply(weight_t, exps[m], out=row)
            for p in range(1, block.degree[m] + 1):
                np.multiply(rows[block.feature[(m, p - 1)]], cos_t,
                            out=rows[block.feature[(m, p)]])
        moments = segment_sums(rows, counts)
        g_af[:, block.columns] += moments @ block.expand
    for position, m, lam, zeta, weight in block.direct:
        base_t = np.maximum(1.0 + lam * cos_t, 0.0)
        term_t = weight * 2.0 ** (1.0 - zeta) * base_t ** zeta * \
            weight_t * exps[m]
        g_af[:, block.columns[position]] += segment_sums(term_t[None],
                                                         counts)[:, 0]


def _block_gradient(group, block, t, slots, dE_dg_af):
    centre_t, cos_t = t["centre_t"], t["cos_t"]
    beta = dE_dg_af[:, block.columns] @ block.expand.T
    n_t = len(cos_t)
    u_t, v_t, y_t = np.zeros(n_t), np.zeros(n_t), np.zeros(n_t)
    r_t = np.zeros(n_t) if group.shifted else None
    direct = {}
    for position, m, lam, zeta, weight in block.direct:
        direct.setdefault(m, []).append((position, lam, zeta, weight))
    for m in block.keys:
        degree = block.degree[m]
        if degree >= 0 and (m, degree) in block.feature:
            phi_t = beta[:, block.feature[(m, degree)]][centre_t]
            dphi_t = np.zeros(n_t)
            for p in range(degree - 1, -1, -1):
                dphi_t = dphi_t * cos_t + phi_t
                phi_t = phi_t * cos_t + beta[:, block.feature[(m, p)]][
                    centre_t]
        else:
            phi_t, dphi_t = np.zeros(n_t), np.zeros(n_t)
        for position, lam, zeta, weight in direct.get(m, ()):
            g_t = dE_dg_af[:, block.columns[position]][centre_t] * (
                weight * 2.0 ** (1.0 - zeta))
            base_t = 1.0 + lam * cos_t
            positive = base_t > 0.0
            base_t = np.where(positive, base_t, 1.0)
            power_t = np.where(positive, base_t ** (zeta - 1.0), 0.0)
            phi_t = phi_t + g_t * power_t * base_t
            dphi_t = dphi_t + g_t * zeta * lam * power_t
        e_phi_t = t["exps"][m] * phi_t
        u_t += e_phi_t
        v_t += group.eta[m] * e_phi_t
        if r_t is not None:
            r_t += group.eta[m] * group.rs[m] * e_phi_t
        y_t += t["exps"][m] * dphi_t
    inv_a_t, inv_b_t = t["inv_a_t"], t["inv_b_t"]
    fa_t, fb_t, weight_t = t["fa_t"], t["fb_t"], t["weight_t"]
    sj, sk = t["slot_j_t"], t["slot_k_t"]
    # fc'(a) / a and fc'(b) / b.
    dfa_t, dfb_t = t["dfa_t"], t["dfb_t"]
    p_t = weight_t * v_t
    if group.narrow:
        fd_t = t["fd_t"]
        fu_t = fd_t * u_t
        ea_t = dfa_t * fb_t * fu_t - 2.0 * p_t
        eb_t = fa_t * dfb_t * fu_t - 2.0 * p_t
        ed_t = fa_t * fb_t * t["dfd_over_d_t"] * u_t - 2.0 * p_t
    else:
        ea_t = dfa_t * fb_t * u_t - 2.0 * p_t
        eb_t = fa_t * dfb_t * u_t - 2.0 * p_t
        ed_t = None
    if r_t is not None:
        q_t = 2.0 * weight_t * r_t
        ea_t += q_t * inv_a_t
        eb_t += q_t * inv_b_t
        if ed_t is not None:
            ed_t += q_t / t["d_t"]
    ec_t = weight_t * y_t
    ecc_t = ec_t * cos_t
    own_j = ea_t - ecc_t * inv_a_t * inv_a_t
    own_k = eb_t - ecc_t * inv_b_t * inv_b_t
    other = ec_t * inv_a_t * inv_b_t
    if ed_t is not None:
        own_j += ed_t
        own_k += ed_t
        other -= ed_t
    slots.add_pairs(sj, sk, own_j, own_k, other)

