"""A chunk: a few centre atoms' neighbour entries in the kernels' layout.

A :class:`Chunk` holds the entries of its centres flat (axis ``_e``) and in
a padded ``(centre, slot)`` block (axes ``_as``, flattened ``_s``), and
the :class:`~.workspace.Workspace` that the pair (:mod:`.pairs`) and
triplet (:mod:`.triplets`) kernels draw their temporaries from.
"""

import functools

import numpy as np

from .._rows import put_rows


def ragged(starts, counts):
    """Concatenate ``arange(s, s + c)`` for every (s, c)."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(np.cumsum(counts) - counts, counts)
    return np.repeat(starts, counts) + (np.arange(total) - offsets)


class Chunk:
    """A few centre atoms' neighbour entries, flat and in padded slots.

    Entry ``e`` of centre row ``row_e[e]`` sits in slot ``slot_e[e]`` of
    a ``(n_centres, width)`` block; padding slots have zero vectors and
    zero cutoff values, so they contribute nothing.

    Attributes
    ----------
    r_ex : ndarray, shape (n_entries, 3)
        Neighbour vectors ``r_j + offset - r_i``.
    d_e, fc_e, fc_prime_e : ndarray, shape (n_entries,)
        Distances, cutoff values and (with derivatives) cutoff slopes.
    code_e : ndarray of int
        Element code of each entry's neighbour.
    counts_a : ndarray of int, shape (n_centres,)
        Entries per centre.
    workspace : Workspace
        Where the kernels take their temporaries from.
    """

    def __init__(self, neighbors, codes, entries, counts_a, cutoff,
                 derivatives, workspace):
        self.cutoff = cutoff
        self.Rc = cutoff.Rc
        self.workspace = workspace
        self.n_centres = len(counts_a)
        self.width = width = int(counts_a.max())
        self.counts_a = counts_a
        self.row_e = np.repeat(np.arange(len(counts_a)), counts_a)
        starts_a = np.cumsum(counts_a) - counts_a
        self.slot_e = (self.row_e * width + np.arange(len(entries))
                       - np.repeat(starts_a, counts_a))
        self.r_ex = np.take(neighbors.vectors, entries, axis=0)
        self.d_e = neighbors.distances[entries]
        self.code_e = codes[neighbors.j[entries]]
        self.fc_e = cutoff(self.d_e)
        self.fc_prime_e = cutoff.prime(self.d_e) if derivatives else None

    def padded(self, values_e, fill=0.0):
        """Scatter per-entry values ``(n_entries, ...)`` into
        ``(n_centres * width, ...)``, one row per slot."""
        shape = (self.n_centres * self.width,) + values_e.shape[1:]
        out = np.full(shape, fill, dtype=values_e.dtype)
        put_rows(out, self.slot_e, values_e)
        return out

    @functools.cached_property
    def r_asx(self):
        """The neighbour vectors in slots, shape ``(n_centres, width, 3)``."""
        return self.padded(self.r_ex).reshape(self.n_centres, self.width, 3)


def row_sums(terms_fe, counts_a):
    """Sum ``terms_fe`` (k, n) over consecutive runs of ``counts_a`` entries.

    Returns an array of shape ``(len(counts_a), k)``. Each of the k rows
    is contiguous, so ``reduceat`` runs over contiguous memory.
    """
    out = np.zeros((len(counts_a), terms_fe.shape[0]))
    nonempty = np.flatnonzero(counts_a)
    if len(nonempty):
        starts = (np.cumsum(counts_a) - counts_a)[nonempty]
        out[nonempty] = np.add.reduceat(terms_fe, starts, axis=1).T
    return out
