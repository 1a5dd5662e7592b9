"""The two-body kernel: n2p2's radial types 2, 12, 20 and 23.

For a neighbour entry ``e`` of centre ``i`` at distance ``r``, each
function adds a term ``q(r)``::

    type 2    exp(-eta (r - rs)^2) fc(r)          neighbours of element e1
    type 12   Z_j exp(-eta (r - rs)^2) fc(r)      every neighbour
    type 20   C(r; rl, rc)                        neighbours of element e1
    type 23   Z_j C(r; rl, rc)                    every neighbour

(``fc`` the potential's cutoff function of radius ``rc``, ``C`` a compact
function, nonzero for ``rl < r < rc``, ``Z_j`` the neighbour's atomic
number). Its gradient with respect to the entry vector is ``q'(r) r_e /
r``: given ``dE/dG``, the kernel adds ``sum_f dE/dG_f q_f'(r) / r`` on the
diagonal of the chunk's gradient matrix (:mod:`.chunk`).

Functions are grouped by neighbour element (or "every neighbour") and
radius, so each group works on just its entries, every array laid out
``(function, entry)`` (axes ``_fe``) so that the sums per centre run over
contiguous memory.
"""

import numpy as np

from ..symmetry.chunk import row_sums as segment_sums
from .cutoffs import CompactFunction, CutoffFunction

__all__ = ["RadialPlan"]


class _Group:
    """Functions sharing neighbour selection, radius and kind."""

    def __init__(self, code, compact, rc, rl, subtype, cutoff):
        self.code, self.compact, self.rc = code, compact, rc
        self.columns, self.eta, self.rs = [], [], []
        self.weighted = code is None
        self.function = (CompactFunction(subtype, rl, rc) if compact
                         else cutoff)
        self.rl = rl

    def finish(self):
        self.columns = np.array(self.columns, dtype=np.int64)
        self.eta_f1 = np.array(self.eta, dtype=float)[:, None]
        self.rs_f1 = np.array(self.rs, dtype=float)[:, None]


class RadialPlan:
    """The radial functions of one centre element.

    Parameters
    ----------
    functions : list of (int, SymmetryFunction)
        Column in the fingerprint and function, radial types only.
    index : dict
        ``{element: n2p2 index}``.
    atomic_numbers : ndarray of int
        Atomic number of each element index.
    cutoff_type, cutoff_alpha : int, float
    """

    def __init__(self, functions, index, atomic_numbers, cutoff_type,
                 cutoff_alpha):
        self.atomic_numbers = np.asarray(atomic_numbers, dtype=float)
        groups = {}
        for column, f in functions:
            compact = f.type in (20, 23)
            code = None if f.type in (12, 23) else index[f.e1]
            key = (code, compact, f.rc, f.rl if compact else None,
                   f.subtype if compact else None)
            if key not in groups:
                groups[key] = _Group(code, compact, f.rc, f.rl, f.subtype,
                                     None if compact else CutoffFunction(
                                         cutoff_type, f.rc, cutoff_alpha))
            group = groups[key]
            group.columns.append(column)
            group.eta.append(f.eta)
            group.rs.append(f.rs)
        self.groups = list(groups.values())
        for group in self.groups:
            group.finish()

    def values(self, slots, g_af: np.ndarray) -> list:
        """Add the radial terms of a chunk to its fingerprints ``g_af``.

        Returns
        -------
        list
            What :meth:`gradient` needs, per group.
        """
        state = []
        for group in self.groups:
            if group.weighted:
                pick = np.arange(len(slots.d_e))
            else:
                pick = np.flatnonzero(slots.code_e == group.code)
            d_e = slots.d_e[pick]
            if group.compact:
                inside = (d_e > group.rl) & (d_e < group.rc)
                pick, d_e = pick[inside], d_e[inside]
                value_e, slope_e = group.function(d_e)
                value_fe, slope_fe = value_e[None, :], slope_e[None, :]
            else:
                fc_e, dfc_e = group.function(d_e)
                shifted_fe = d_e[None, :] - group.rs_f1
                gauss_fe = np.exp(-group.eta_f1 * shifted_fe * shifted_fe)
                value_fe = gauss_fe * fc_e
                slope_fe = gauss_fe * (dfc_e - 2.0 * group.eta_f1
                                       * shifted_fe * fc_e)
            if group.weighted:
                z_e = self.atomic_numbers[slots.code_e[pick]]
                value_fe = value_fe * z_e
                slope_fe = slope_fe * z_e
            value_fe = np.broadcast_to(value_fe,
                                       (len(group.columns), len(pick)))
            counts = np.bincount(slots.row_e[pick],
                                 minlength=slots.n_centres)
            g_af[:, group.columns] += segment_sums(
                np.ascontiguousarray(value_fe), counts)
            state.append((group, pick, d_e, slope_fe))
        return state

    @staticmethod
    def gradient(state: list, slots, dE_dg_af: np.ndarray) -> None:
        """Add the radial terms of ``dE/dr`` to the chunk's matrix."""
        for group, pick, d_e, slope_fe in state:
            if len(pick) == 0:
                continue
            weight_ef = dE_dg_af[:, group.columns][slots.row_e[pick]]
            slope_e = np.einsum("fe,ef->e", np.broadcast_to(
                slope_fe, (len(group.columns), len(pick))), weight_ef)
            slots.grad_ex[pick] += (slope_e / d_e)[:, None] * \
                slots.r_ex[pick]
