"""The three-body kernel of n2p2's compact polynomial types 21, 22, 24, 25.

For a centre and neighbours ``j < k`` (lengths ``a``, ``b``, ``d`` as in
:mod:`.angular`, angle ``theta``) a function adds::

    type 21:  C(a) C(b) C(d) A(theta)           pairs of elements e1, e2
    type 22:  C(a) C(b) A(theta)                pairs of elements e1, e2
    type 24:  Z_j Z_k C(a) C(b) C(d) A(theta)   every pair of neighbours
    type 25:  Z_j Z_k C(a) C(b) A(theta)        every pair of neighbours

``C`` is the compact function on ``(rl, rc)`` of the function's subtype,
``A`` the compact function of the same core on the angle range (never the
asymmetric variant), in radians. As in n2p2, a triplet counts only when
``rl < a, b < rc`` (and ``rl^2 < d^2 < rc^2`` with ``rl`` taken as 0 when
negative, for 21 and 24), when ``-1 < cos theta < 1`` and when ``theta``
lies within the angle range. Each function is evaluated term by term; its
gradient uses the chain rule of :mod:`.angular` with
``d theta / d cos theta = -1 / sin theta``.
"""

import math

import numpy as np

from .angular import enumerate_triplets
from .chunk import segment_sums
from .cutoffs import CompactFunction

__all__ = ["CompactPlan"]


class _Function:
    def __init__(self, column, f, weight_of_pair):
        self.column = column
        self.radial = CompactFunction(f.subtype, f.rl, f.rc)
        left = f.angle_left * math.pi / 180.0
        right = f.angle_right * math.pi / 180.0
        self.left, self.right = left, right
        self.angular = CompactFunction(f.subtype, left, right,
                                       asymmetric=False)
        self.weight_of_pair = weight_of_pair


class CompactPlan:
    """The compact angular functions of one centre element.

    Parameters
    ----------
    functions : list of (int, SymmetryFunction)
    index : dict
    atomic_numbers : sequence of int
    """

    def __init__(self, functions, index, atomic_numbers):
        n = len(atomic_numbers)
        self.groups = {}
        for column, f in functions:
            if f.type in (24, 25):
                pairs = {(x, y): float(atomic_numbers[x] * atomic_numbers[y])
                         for x in range(n) for y in range(x, n)}
            else:
                pairs = {(index[f.e1], index[f.e2]): 1.0}
            key = (f.type in (21, 24), f.rc, f.rl)
            group = self.groups.setdefault(key, {})
            for pair, weight in pairs.items():
                group.setdefault(pair, []).append(
                    _Function(column, f, weight))

    def values(self, slots, g_af, gradient):
        """Add the compact angular terms of a chunk to ``g_af``."""
        state = []
        for (narrow, rc, rl), blocks in self.groups.items():
            inside = slots.valid_s & (slots.d_s < rc) & (slots.d_s > rl)
            a2_s = np.where(inside, slots.d2_s, np.inf)
            for (x, y), functions in blocks.items():
                t = enumerate_triplets(slots, x, y, a2_s, narrow, rc)
                if t is None:
                    continue
                t = _geometry(t, slots, narrow, rl)
                if t is None:
                    continue
                counts = np.bincount(t["centre_t"],
                                     minlength=slots.n_centres)
                terms = []
                for function in functions:
                    term = _terms(function, t, narrow)
                    g_af[:, function.column] += segment_sums(
                        (term["value_t"] * function.weight_of_pair)[None],
                        counts)[:, 0]
                    terms.append(term)
                if gradient:
                    state.append((narrow, functions, t, terms))
        return state

    @staticmethod
    def gradient(state, slots, dE_dg_af):
        """Add the compact angular terms of ``dE/dr`` to the matrix."""
        for narrow, functions, t, terms in state:
            n_t = len(t["cos_t"])
            ea, eb, ed, ec = (np.zeros(n_t) for _ in range(4))
            for function, term in zip(functions, terms):
                g_t = dE_dg_af[:, function.column][t["centre_t"]] * \
                    function.weight_of_pair
                ea += g_t * term["da_t"]
                eb += g_t * term["db_t"]
                ec += g_t * term["dc_t"]
                if narrow:
                    ed += g_t * term["dd_t"]
            inv_a, inv_b, cos_t = t["inv_a_t"], t["inv_b_t"], t["cos_t"]
            own_j = ea * inv_a - ec * cos_t * inv_a * inv_a
            own_k = eb * inv_b - ec * cos_t * inv_b * inv_b
            other = ec * inv_a * inv_b
            if narrow:
                ed_d = ed / t["d_t"]
                own_j += ed_d
                own_k += ed_d
                other -= ed_d
            slots.add_pairs(t["slot_j_t"], t["slot_k_t"], own_j, own_k,
                            other)


def _geometry(t, slots, narrow, rl):
    """Lengths and angle of the triplets; drops those n2p2 skips."""
    sj, sk = t["slot_j_t"], t["slot_k_t"]
    a_t, b_t = slots.d_s[sj], slots.d_s[sk]
    cos_t = t["gram_t"] / (a_t * b_t)
    keep = (cos_t > -1.0) & (cos_t < 1.0)
    if narrow:
        keep &= t["d2_t"] > (rl * rl if rl > 0.0 else 0.0)
    if not keep.all():
        t = {name: value[keep] for name, value in t.items()}
        if len(t["centre_t"]) == 0:
            return None
        sj, sk = t["slot_j_t"], t["slot_k_t"]
        a_t, b_t, cos_t = a_t[keep], b_t[keep], cos_t[keep]
    t.update(a_t=a_t, b_t=b_t, cos_t=cos_t, inv_a_t=1.0 / a_t,
             inv_b_t=1.0 / b_t, theta_t=np.arccos(cos_t))
    if narrow:
        t["d_t"] = np.sqrt(t["d2_t"])
    return t


def _terms(function, t, narrow):
    """One function's value and partial derivatives per triplet."""
    theta_t = t["theta_t"]
    within = (theta_t >= function.left) & (theta_t <= function.right)
    ang_t, dang_t = function.angular(np.clip(theta_t, function.left,
                                             function.right))
    ang_t = np.where(within, ang_t, 0.0)
    dang_t = np.where(within, dang_t, 0.0)
    ra, dra = function.radial(t["a_t"])
    rb, drb = function.radial(t["b_t"])
    if narrow:
        rd, drd = function.radial(t["d_t"])
    else:
        rd, drd = 1.0, 0.0
    radial_t = ra * rb * rd
    sin_t = np.sqrt(1.0 - t["cos_t"] * t["cos_t"])
    term = {"value_t": radial_t * ang_t,
            "da_t": dra * rb * rd * ang_t,
            "db_t": ra * drb * rd * ang_t,
            "dc_t": -radial_t * dang_t / sin_t}
    if narrow:
        term["dd_t"] = ra * rb * drd * ang_t
    return term
