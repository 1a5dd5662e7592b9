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
``rl < a, b < rc`` (and ``rl^2 < d^2 < rc^2``, ``rl`` taken as 0 when
negative, for 21 and 24), when ``-1 < cos theta < 1`` and when ``theta``
lies within the angle range. Each function is evaluated term by term on
the padded ``(centre, t)`` rows of :func:`.chunk.enumerate_triplets`; its
gradient uses the chain rule of :mod:`.angular` with
``d theta / d cos theta = -1 / sin theta``.
"""

import math

import numpy as np

from .chunk import Slots, enumerate_triplets, pair_factors
from .cutoffs import CompactFunction

__all__ = ["CompactPlan"]


class _Function:
    def __init__(self, column, f, weight_of_pair):
        self.column = column
        self.radial = CompactFunction(f.subtype, f.rl, f.rc)
        self.left = f.angle_left * math.pi / 180.0
        self.right = f.angle_right * math.pi / 180.0
        self.angular = CompactFunction(f.subtype, self.left, self.right,
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

    def prepare(self, slots: Slots) -> list:
        """Per-slot squared distances of each group (inf outside
        ``(rl, rc)``) for one :class:`.chunk.Slots`."""
        out = []
        for (narrow, rc, rl) in self.groups:
            a2 = {}
            for x, d_as in slots.d_as.items():
                d2_as = slots.d2_as[x]
                inside = np.isfinite(d2_as) & (d_as < rc) & (d_as > rl)
                a2[x] = np.where(inside, d2_as, np.inf)
            out.append(pair_factors(slots, a2, narrow))
        return out

    def values(self, slots: Slots, factors: list, rows: slice,
               g_af: np.ndarray, gradient: bool) -> list:
        """Add the compact angular terms of the centre ``rows`` to
        ``g_af``."""
        state = []
        for ((narrow, rc, rl), blocks), a2 in zip(self.groups.items(),
                                                  factors):
            for (x, y), functions in blocks.items():
                t = enumerate_triplets(slots, x, y, rows, a2, narrow, rc)
                if t is None:
                    continue
                geometry = _geometry(t, slots, narrow, rl)
                terms = []
                for function in functions:
                    term = _terms(function, geometry, narrow)
                    g_af[:, function.column] += (
                        term["value"] * function.weight_of_pair).sum(axis=1)
                    terms.append(term)
                if gradient:
                    state.append((narrow, functions, t, geometry, terms))
        return state

    @staticmethod
    def gradient(state: list, slots: Slots, dE_dg_af: np.ndarray) -> None:
        """Add the compact angular terms of ``dE/dr`` to the gradient."""
        for narrow, functions, t, geometry, terms in state:
            shape = geometry["cos"].shape
            ea, eb, ed, ec = (np.zeros(shape) for _ in range(4))
            for function, term in zip(functions, terms):
                g = dE_dg_af[:, function.column, None] * \
                    function.weight_of_pair
                ea += g * term["da"]
                eb += g * term["db"]
                ec += g * term["dc"]
                if narrow:
                    ed += g * term["dd"]
            inv_a, inv_b = 1.0 / geometry["a"], 1.0 / geometry["b"]
            cos = geometry["cos"]
            own_j = ea * inv_a - ec * cos * inv_a * inv_a
            own_k = eb * inv_b - ec * cos * inv_b * inv_b
            other = ec * inv_a * inv_b
            if narrow:
                ed_d = ed / geometry["d"]
                own_j += ed_d
                own_k += ed_d
                other -= ed_d
            slots.add_block_gradient(t, own_j, own_k, other)


def _geometry(t, slots, narrow, rl):
    """Lengths, angle and the mask of the triplets n2p2 counts."""
    shape = (t.rows.stop - t.rows.start, t.length)
    a = slots.d_as[t.x][t.rows].reshape(-1)[t.index_j].reshape(shape)
    b = slots.d_as[t.y][t.rows].reshape(-1)[t.index_k].reshape(shape)
    if narrow:
        d2 = t.dense_at
        cos = (a * a + b * b - d2) / (2.0 * a * b)
    else:
        cos = t.dense_at / (a * b)
    keep = np.arange(t.length)[None, :] < t.counts[:, None]
    keep &= (cos > -1.0) & (cos < 1.0)
    geometry = {"a": a, "b": b, "cos": cos}
    if narrow:
        keep &= d2 > (rl * rl if rl > 0.0 else 0.0)
        geometry["d"] = np.sqrt(d2)
    geometry["keep"] = keep
    geometry["theta"] = np.arccos(np.clip(cos, -1.0, 1.0))
    geometry["sin"] = np.sqrt(np.maximum(1.0 - cos * cos, 1e-300))
    return geometry


def _terms(function, geometry, narrow):
    """One function's value and partial derivatives per triplet."""
    theta = geometry["theta"]
    within = geometry["keep"] & (theta >= function.left) & (
        theta <= function.right)
    ang, dang = function.angular(np.clip(theta, function.left,
                                         function.right))
    ang = np.where(within, ang, 0.0)
    dang = np.where(within, dang, 0.0)
    radial = function.radial
    ra, dra = radial(np.clip(geometry["a"], radial.left, radial.right))
    rb, drb = radial(np.clip(geometry["b"], radial.left, radial.right))
    if narrow:
        rd, drd = radial(np.clip(geometry["d"], radial.left, radial.right))
    else:
        rd, drd = 1.0, 0.0
    product = ra * rb * rd
    term = {"value": product * ang,
            "da": dra * rb * rd * ang,
            "db": ra * drb * rd * ang,
            "dc": -product * dang / geometry["sin"]}
    if narrow:
        term["dd"] = ra * rb * drd * ang
    return term
