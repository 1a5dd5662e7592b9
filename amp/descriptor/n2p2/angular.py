r"""The three-body kernel of n2p2's Gaussian angular types 3, 9 and 13.

For a centre ``i`` and a pair of neighbours ``j < k`` (neighbour vectors
``r_ij``, ``r_ik``, lengths ``a``, ``b``, ``d = |r_ik - r_ij|``, ``c =
cos theta_ijk``), a function adds::

    2^(1 - zeta) (1 + lambda c)^zeta  exp(-eta S)  F

    type 3:   S = (a - rs)^2 + (b - rs)^2 + (d - rs)^2,  F = fc(a) fc(b) fc(d)
    type 9:   S = (a - rs)^2 + (b - rs)^2,               F = fc(a) fc(b)
    type 13:  as type 3, times Z_j Z_k, over every pair of neighbours

(types 3 and 9 over the pairs whose elements are the function's ``e1``,
``e2``; n2p2 sets a term to 0 where ``1 + lambda c <= 0``).

Evaluation
----------
Functions are grouped by kind (narrow, with the ``d`` terms, or wide) and
radius; a group enumerates its triplets once per pair of neighbour
elements (a block, :func:`.chunk.enumerate_triplets`). For whole-number
``zeta`` up to :data:`MAX_POLYNOMIAL_ZETA` and ``|lambda| <= 1`` the
angular factor is a polynomial in ``c``, so all functions of one
``(eta, rs)`` "radial key" ``m`` are fixed combinations of the moments
``sum_t w_m c^p``, ``w_m = F exp(-eta_m S_m)``: one exponential per key and
a few products per triplet, whatever the number of functions (n2p2's
water potential: 3 keys and 9 moments for 6 functions of one element pair).
Other functions are evaluated term by term.

Gradient
--------
Given ``dE/dG`` of the chunk's centres, a triplet's energy is
``E_t = F sum_m e_m Phi_m(c)`` with ``e_m = exp(-eta_m S_m)`` and
per-centre polynomials ``Phi_m`` (the moments' coefficients). With
``U = sum_m e_m Phi_m``, ``V = sum_m eta_m e_m Phi_m``, ``R = sum_m eta_m
rs_m e_m Phi_m`` and ``Y = sum_m e_m Phi_m'``::

    dE_t/da = dF/da U - 2 F (a V - R)      (and b, d alike)
    dE_t/dc = F Y

and the chain rule through ``a = |r_ij|``, ``c = r_ij . r_ik / (a b)``,
``d = |r_ik - r_ij|`` gives the coefficients of ``r_ij`` and ``r_ik`` in
``dE/dr_ij`` and ``dE/dr_ik``::

    own_j = (dE/da) / a - (dE/dc) c / a^2 + (dE/dd) / d
    own_k = (dE/db) / b - (dE/dc) c / b^2 + (dE/dd) / d
    other = (dE/dc) / (a b) - (dE/dd) / d

(:meth:`.chunk.Slots.add_block_gradient`). Arrays are ``(centre, t)``
rows (axes ``_at``) from the chunk's scratch memory.
"""

import math

import numpy as np

from .chunk import Slots, enumerate_triplets, pair_factors
from .cutoffs import CutoffFunction

__all__ = ["AngularPlan", "MAX_POLYNOMIAL_ZETA", "slot_factors"]

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


class _Block:
    """The functions of one group acting on one pair of neighbour
    elements: moments and an expansion matrix, and the functions evaluated
    term by term."""

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
        self.max_degree = max(degree[m] for m in self.keys)
        # Moment (key, power) -> column of the moment matrix.
        self.moment = {}
        for m in self.keys:
            for p in range(degree[m] + 1):
                self.moment[(m, p)] = len(self.moment)
        self.expand = np.zeros((len(self.moment), len(self.columns)))
        for position, key, coefficients, weight in expansions:
            for p, value in enumerate(coefficients):
                self.expand[self.moment[(key, p)], position] += \
                    weight * value
        self.direct_of = {m: [d[:1] + d[2:] for d in self.direct
                              if d[1] == m] for m in self.keys}


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
        self.eta = [k[0] for k in self.keys]
        self.rs = [k[1] for k in self.keys]
        self.shifted = any(rs != 0.0 for rs in self.rs)
        for block in self.blocks.values():
            block.finish(len(self.keys))


class AngularPlan:
    """The Gaussian angular functions (types 3, 9, 13) of one centre
    element.

    Parameters
    ----------
    functions : list of (int, SymmetryFunction)
        Fingerprint column and function.
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

    def prepare(self, slots: Slots) -> list:
        """Per-slot factors of each group for one :class:`.chunk.Slots`."""
        return [slot_factors(slots, group.rc, group.cutoff, group.narrow)
                for group in self.groups]

    def values(self, slots: Slots, factors: list, rows: slice,
               g_af: np.ndarray, gradient: bool) -> list:
        """Add the angular terms of the centre ``rows`` to their
        fingerprints ``g_af``; return what :meth:`gradient` needs (when
        ``gradient``)."""
        state = []
        for group, per_slot in zip(self.groups, factors):
            for (x, y), block in group.blocks.items():
                t = enumerate_triplets(slots, x, y, rows, per_slot,
                                       group.narrow, group.rc)
                if t is None:
                    continue
                kept = _block_values(group, block, t, per_slot, slots, g_af)
                if gradient:
                    state.append((group, block, t, kept))
        return state

    @staticmethod
    def gradient(state: list, slots: Slots, dE_dg_af: np.ndarray) -> None:
        """Add the angular terms of ``dE/dr`` of the rows to the slots'
        gradient."""
        for group, block, t, kept in state:
            _block_gradient(group, block, t, kept, slots, dE_dg_af)


def slot_factors(slots: Slots, rc: float, cutoff: CutoffFunction,
                 narrow: bool) -> dict:
    """Per-slot quantities for one radius, per neighbour element ``x``
    (arrays ``(n_centres, widths[x] + 1)``): ``a2`` (squared distance,
    inf outside the radius), ``fc`` (0 outside and in the dummy slot),
    ``dfc_over_d``, ``d``; for a narrow group also ``left`` and ``right``
    (see :func:`.chunk.enumerate_triplets`)."""
    a2, out = {}, {"fc": {}, "dfc_over_d": {}, "d": {}}
    for x in slots.d_as:
        d_as, d2_as = slots.d_as[x], slots.d2_as[x]
        inside = np.isfinite(d2_as) & (d_as < rc)
        fc, dfc = cutoff(d_as)
        a2[x] = np.where(inside, d2_as, np.inf)
        out["fc"][x] = np.where(inside, fc, 0.0)
        out["dfc_over_d"][x] = np.where(inside, dfc, 0.0) / d_as
        out["d"][x] = d_as
    out.update(pair_factors(slots, a2, narrow))
    return out


def _block_values(group, block, t, factors, slots, g_af):
    """Moments (and direct terms) of one block. Returns the per-triplet
    arrays the gradient needs."""
    scratch = slots.scratch
    shape = (t.rows.stop - t.rows.start, t.length)
    x, y, rows = t.x, t.y, t.rows

    def gather(name, element, index):
        source = factors[name][element][rows].reshape(-1)
        return np.take(source, index, out=scratch(shape).reshape(-1),
                       mode="clip").reshape(shape)

    def new():
        return scratch(shape)

    a_at = gather("d", x, t.index_j)
    b_at = gather("d", y, t.index_k)
    fa_at, fb_at = gather("fc", x, t.index_j), gather("fc", y, t.index_k)
    inv_a_at = np.divide(1.0, a_at, out=new())
    inv_b_at = np.divide(1.0, b_at, out=new())
    square_at = np.multiply(a_at, a_at, out=new())
    square_at += np.multiply(b_at, b_at, out=new())     # a^2 + b^2
    cos_at = new()
    weight_at = np.multiply(fa_at, fb_at, out=new())
    kept = {"inv_a": inv_a_at, "inv_b": inv_b_at, "fa": fa_at, "fb": fb_at,
            "cos": cos_at, "a": a_at, "b": b_at,
            "dfa": gather("dfc_over_d", x, t.index_j),
            "dfb": gather("dfc_over_d", y, t.index_k)}
    if group.narrow:
        d2_at = t.dense_at
        np.subtract(square_at, d2_at, out=cos_at)         # 2 a . b
        cos_at *= 0.5
        square_at += d2_at                                 # a^2 + b^2 + d^2
        d_at = np.sqrt(d2_at, out=new())
        fd_at, dfd_at = group.cutoff.inside(d_at, scratch)
        dfd_at /= d_at
        weight_at *= fd_at
        kept.update(d=d_at, fd=fd_at, dfd=dfd_at)
    else:
        np.copyto(cos_at, t.dense_at)                      # a . b
    cos_at *= inv_a_at
    cos_at *= inv_b_at
    kept["weight"] = weight_at
    exps = {}
    for m in block.keys:
        eta, rs = group.eta[m], group.rs[m]
        if rs == 0.0:
            e_at = np.multiply(square_at, -eta, out=new())
        else:
            e_at = _shifted_square(kept, rs, group.narrow, new)
            e_at *= -eta
        exps[m] = np.exp(e_at, out=e_at)
    kept["exps"] = exps
    # F c^p for the moments sum_t F e_m c^p: one row-by-row dot product
    # (a batched matrix product, no temporary) per moment.
    weighted = [weight_at]
    for p in range(1, block.max_degree + 1):
        weighted.append(np.multiply(weighted[-1], cos_at, out=new()))
    moments_ma = np.empty((len(block.moment), shape[0]))
    for (m, p), row in block.moment.items():
        np.matmul(exps[m][:, None, :], weighted[p][:, :, None],
                  out=moments_ma[row].reshape(-1, 1, 1))
    for m in block.keys:
        for position, lam, zeta, factor in block.direct_of[m]:
            base_at = np.maximum(1.0 + lam * cos_at, 0.0)
            value_at = factor * 2.0 ** (1.0 - zeta) * base_at ** zeta * \
                weight_at
            g_af[:, block.columns[position]] += np.einsum(
                "ij,ij->i", value_at, exps[m])
    if len(block.moment):
        g_af[:, block.columns] += moments_ma.T @ block.expand
    return kept


def _shifted_square(kept, rs, narrow, new):
    """``(a - rs)^2 + (b - rs)^2 (+ (d - rs)^2)``."""
    out_at = np.subtract(kept["a"], rs, out=new())
    out_at *= out_at
    tmp_at = np.subtract(kept["b"], rs, out=new())
    tmp_at *= tmp_at
    out_at += tmp_at
    if narrow:
        np.subtract(kept["d"], rs, out=tmp_at)
        tmp_at *= tmp_at
        out_at += tmp_at
    return out_at


def _block_gradient(group, block, t, kept, slots, dE_dg_af):
    scratch = slots.scratch
    shape = (t.rows.stop - t.rows.start, t.length)
    cos_at, exps = kept["cos"], kept["exps"]
    # dE/d(moment) of every centre: beta_am.
    beta_am = dE_dg_af[:, block.columns] @ block.expand.T
    u_at, v_at, y_at = (scratch.zeros(shape), scratch.zeros(shape),
                        scratch.zeros(shape))
    r_at = scratch.zeros(shape) if group.shifted else None
    phi_at, dphi_at, q_at = scratch(shape), scratch(shape), scratch(shape)
    for m in block.keys:
        degree = block.degree[m]
        # Horner: phi = sum_p beta_p c^p, dphi = sum_p p beta_p c^(p-1).
        top = block.moment.get((m, degree))
        if top is None:
            phi_at.fill(0.0)
            dphi_at.fill(0.0)
        elif degree == 0:
            phi_at[...] = beta_am[:, top, None]
            dphi_at.fill(0.0)
        else:
            np.multiply(beta_am[:, top, None], cos_at, out=phi_at)
            phi_at += beta_am[:, block.moment[(m, degree - 1)], None]
            dphi_at[...] = beta_am[:, top, None]
            for p in range(degree - 2, -1, -1):
                dphi_at *= cos_at
                dphi_at += phi_at
                phi_at *= cos_at
                phi_at += beta_am[:, block.moment[(m, p)], None]
        for position, lam, zeta, factor in block.direct_of[m]:
            g_a1 = dE_dg_af[:, block.columns[position], None] * (
                factor * 2.0 ** (1.0 - zeta))
            base_at = 1.0 + lam * cos_at
            positive_at = base_at > 0.0
            base_at = np.where(positive_at, base_at, 1.0)
            power_at = np.where(positive_at, base_at ** (zeta - 1.0), 0.0)
            phi_at += g_a1 * power_at * base_at
            dphi_at += g_a1 * zeta * lam * power_at
        np.multiply(exps[m], phi_at, out=q_at)
        u_at += q_at
        q_at *= group.eta[m]
        v_at += q_at
        if r_at is not None:
            q_at *= group.rs[m]
            r_at += q_at
        np.multiply(exps[m], dphi_at, out=q_at)
        y_at += q_at
    _add_gradient(group, t, kept, slots, u_at, v_at, r_at, y_at)


def _add_gradient(group, t, kept, slots, u_at, v_at, r_at, y_at):
    """From U, V, R, Y to the coefficients of the neighbour vectors."""
    scratch = slots.scratch
    shape = u_at.shape
    weight_at, fa_at, fb_at = kept["weight"], kept["fa"], kept["fb"]
    inv_a_at, inv_b_at, cos_at = kept["inv_a"], kept["inv_b"], kept["cos"]
    # 2 F V: the Gaussian's part of (dE/da) / a.
    p2_at = np.multiply(weight_at, v_at, out=v_at)
    p2_at *= 2.0
    if group.narrow:
        u_fd_at = np.multiply(u_at, kept["fd"], out=scratch(shape))
    else:
        u_fd_at = u_at
    own_j_at = np.multiply(kept["dfa"], fb_at, out=scratch(shape))
    own_j_at *= u_fd_at
    own_j_at -= p2_at
    own_k_at = np.multiply(kept["dfb"], fa_at, out=scratch(shape))
    own_k_at *= u_fd_at
    own_k_at -= p2_at
    tmp_at = scratch(shape)
    q_at = None
    if r_at is not None:
        q_at = np.multiply(weight_at, r_at, out=r_at)
        q_at *= 2.0
        own_j_at += np.multiply(q_at, inv_a_at, out=tmp_at)
        own_k_at += np.multiply(q_at, inv_b_at, out=tmp_at)
    # dE/dc = F Y.
    ec_at = np.multiply(weight_at, y_at, out=y_at)
    other_at = np.multiply(ec_at, inv_a_at, out=scratch(shape))
    other_at *= inv_b_at
    ec_at *= cos_at
    np.multiply(ec_at, inv_a_at, out=tmp_at)
    tmp_at *= inv_a_at
    own_j_at -= tmp_at
    np.multiply(ec_at, inv_b_at, out=tmp_at)
    tmp_at *= inv_b_at
    own_k_at -= tmp_at
    if group.narrow:
        # (dE/dd) / d = fa fb (fd' / d) U - 2 F V (+ 2 F R / d).
        ed_at = np.multiply(fa_at, fb_at, out=tmp_at)
        ed_at *= kept["dfd"]
        ed_at *= u_at
        ed_at -= p2_at
        if q_at is not None:
            q_at /= kept["d"]
            ed_at += q_at
        own_j_at += ed_at
        own_k_at += ed_at
        other_at -= ed_at
    slots.add_block_gradient(t, own_j_at, own_k_at, other_at)
