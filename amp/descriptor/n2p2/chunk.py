"""A few centre atoms' neighbours in padded slots, grouped by element.

Each centre ``a`` of a :class:`Slots` has a row of ``width`` slots; the
slots of neighbour element ``x`` are ``offsets[x] : offsets[x] +
widths[x]`` of every row, so that the neighbour pairs of two elements form
rectangular blocks ``(centre, slot j, slot k)`` and the three-body kernels
(:mod:`.angular`, :mod:`.compact`) enumerate each element pair's triplets
as one block. Unused slots hold zero vectors and an infinite squared
distance, so that no distance test selects them.

The gradient of the energy with respect to the neighbour vectors is
gathered in one ``(centre, slot, slot)`` matrix ``M`` (axes ``_ass``):
``dE / d r_s = sum_t M[s, t] r_t`` over the slots ``t`` of the same
centre. A two-body term ``q(r_s)`` adds ``(dq/dr) / r`` on the diagonal;
a three-body term with neighbour vectors ``r_j``, ``r_k`` adds its
coefficients of ``r_j`` and ``r_k`` in ``dE/dr_j`` and ``dE/dr_k`` at
``(j, j)``, ``(j, k)``, ``(k, j)`` and ``(k, k)``; one batched product at
the end turns ``M`` into per-entry gradients.
"""

import numpy as np

from ..symmetry.chunk import ragged

__all__ = ["Slots", "segment_sums"]


def segment_sums(terms_fe, counts):
    """Sums of ``terms_fe`` (rows) over consecutive runs of ``counts``
    columns, shape ``(len(counts), n_rows)``."""
    out = np.zeros((len(counts), terms_fe.shape[0]))
    nonempty = np.flatnonzero(counts)
    if len(nonempty) and terms_fe.shape[0]:
        starts = (np.cumsum(counts) - counts)[nonempty]
        out[nonempty] = np.add.reduceat(terms_fe, starts, axis=1).T
    return out


class Slots:
    """The neighbour entries of a few centres, in element blocks of slots.

    Parameters
    ----------
    neighbors : NeighborList
        Of the whole image (vectors in Angstrom).
    codes : ndarray of int
        Element index of every atom of the image.
    centres : ndarray of int
        The centre atoms, ascending.
    n_elements : int
    scale : float
        Length unit conversion: vectors are multiplied by it (Angstrom to
        the potential's unit).

    Attributes
    ----------
    entries : ndarray of int
        Neighbour-entry ids of the centres, in order.
    row_e, code_e, slot_e : ndarray of int
        Centre row, neighbour element and slot of each entry.
    d_e : ndarray
        Distances (potential's unit).
    counts : ndarray of int
        Entries per centre.
    n_centres, width : int
    offsets, widths : ndarray of int
        Slot range of each neighbour element within a row.
    r_asx : ndarray, shape (n_centres, width, 3)
    d_s, d2_s : ndarray, shape (n_centres * width,)
        Distances (1 in unused slots) and squared distances (inf there).
    valid_s : ndarray of bool
    """

    def __init__(self, neighbors, codes, centres, n_elements, scale):
        first = neighbors.first_entry
        counts = first[centres + 1] - first[centres]
        self.counts = counts
        self.n_centres = c = len(centres)
        entries = ragged(first[centres], counts)
        self.entries = entries
        n_entries = len(entries)
        self.row_e = np.repeat(np.arange(c), counts)
        self.code_e = codes[neighbors.j[entries]]
        group_e = self.row_e * n_elements + self.code_e
        per_group = np.bincount(group_e, minlength=c * n_elements)
        self.widths = per_group.reshape(c, n_elements).max(axis=0) \
            if c else np.zeros(n_elements, dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.widths)[:-1]])
        self.width = w = int(self.widths.sum())
        # Rank of each entry among its centre's neighbours of its element.
        order = np.argsort(group_e, kind="stable")
        starts = np.cumsum(per_group) - per_group
        rank = np.empty(n_entries, dtype=np.int64)
        rank[order] = np.arange(n_entries) - starts[group_e[order]]
        self.slot_e = self.row_e * w + self.offsets[self.code_e] + rank
        r_ex = np.take(neighbors.vectors, entries, axis=0) * scale
        self.d_e = neighbors.distances[entries] * scale
        r_sx = np.zeros((c * w, 3))
        r_sx[self.slot_e] = r_ex
        self.r_asx = r_sx.reshape(c, w, 3)
        self.d_s = np.ones(c * w)
        self.d_s[self.slot_e] = self.d_e
        self.d2_s = np.full(c * w, np.inf)
        self.d2_s[self.slot_e] = self.d_e * self.d_e
        self.valid_s = np.zeros(c * w, dtype=bool)
        self.valid_s[self.slot_e] = True
        self._matrix = None

    def block(self, values_s, x):
        """The ``(n_centres, widths[x])`` slots of element ``x`` of a
        per-slot array."""
        rows = values_s.reshape(self.n_centres, self.width)
        return rows[:, self.offsets[x]:self.offsets[x] + self.widths[x]]

    @property
    def matrix(self):
        """The gradient matrix ``M``, flat (``n_centres * width**2``),
        zero until terms are added."""
        if self._matrix is None:
            self._matrix = np.zeros(self.n_centres * self.width * self.width)
        return self._matrix

    def add_diagonal(self, slots, values):
        """Add ``values`` at ``M[s, s]`` for each slot ``s`` (repeats
        allowed)."""
        w = self.width
        sums = np.bincount(slots, values, minlength=self.n_centres * w)
        diagonal = np.arange(self.n_centres * w) * w + np.tile(
            np.arange(w), self.n_centres)
        self.matrix[diagonal] += sums

    def add_pairs(self, slot_j, slot_k, own_j, own_k, other):
        """Add a three-body term's coefficients: ``own_j`` at ``(j, j)``,
        ``own_k`` at ``(k, k)`` and ``other`` at ``(j, k)`` and ``(k, j)``.
        Each ``(j, k)`` must occur once per call."""
        w = self.width
        self.add_diagonal(np.concatenate([slot_j, slot_k]),
                          np.concatenate([own_j, own_k]))
        row_j = slot_j // w
        # flat (c, j, k) = s_j * w + (s_k - c * w)
        jk = slot_j * w + (slot_k - row_j * w)
        kj = slot_k * w + (slot_j - row_j * w)
        matrix = self.matrix
        matrix[jk] += other
        matrix[kj] += other

    def entry_gradients(self):
        """``dE / d r_e`` of the entries (potential's units), from ``M``."""
        if self._matrix is None:
            return np.zeros((len(self.entries), 3))
        c, w = self.n_centres, self.width
        grad_asx = np.matmul(self._matrix.reshape(c, w, w), self.r_asx)
        return grad_asx.reshape(c * w, 3)[self.slot_e]
