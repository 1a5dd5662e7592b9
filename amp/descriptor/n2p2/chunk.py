"""The centres of one element with their neighbours in slots grouped by
element, and the neighbour pairs (triplets) of a few centres laid out in
padded per-centre rows.

:class:`Slots` gives every centre atom of one element a row of slots per
neighbour element ``x``: ``widths[x]`` real slots (the most neighbours of
element ``x`` any centre has) and one dummy slot at the end of the row
(axes ``_as``; vectors ``0``, squared distance ``inf``, cutoff value 0).
The neighbour pairs ``(j, k)`` of elements ``x`` and ``y`` then form a
rectangular block ``(centre, j, k)`` (axes ``_ajk``), and
:func:`enumerate_triplets` lays the usable ones of a few centres out as
``(centre, t)`` rows padded to the longest row (axes ``_at``), the padding
pointing at the dummy slots: per-centre factors act by broadcasting,
per-centre sums are sums along rows, and every term made in the padding is
0.

Gradients: :attr:`Slots.grad` holds ``dE / d r_s`` per slot. A
three-body term with neighbour vectors ``r_j``, ``r_k`` adds ``own_j r_j +
other r_k`` to slot ``j`` and ``own_k r_k + other r_j`` to slot ``k``
(:meth:`Slots.add_block_gradient`: two bin counts and one batched matrix
product per block).
"""

import functools
import math

import numpy as np

from ..symmetry.chunk import ragged

__all__ = ["Slots", "Triplets", "enumerate_triplets", "Scratch",
           "pair_factors"]


class Scratch:
    """Arrays for one chunk's temporaries, carved from buffers kept from
    chunk to chunk (no fresh, page-faulting memory per temporary; see
    :mod:`amp.descriptor.symmetry.workspace`). :meth:`reset` frees them
    all; a buffer grows at the next reset to the most a chunk has used.
    """

    def __init__(self):
        self._buffers = {}      # dtype -> [buffer, used, peak]

    def reset(self) -> None:
        """Free every array; grow buffers that were too small."""
        for entry in self._buffers.values():
            if entry[2] > len(entry[0]):
                entry[0] = np.empty(entry[2], entry[0].dtype)
            entry[1] = 0

    def __call__(self, shape: int | tuple, dtype=np.float64) -> np.ndarray:
        """An uninitialised array of ``shape`` (int or tuple)."""
        entry = self._buffers.get(dtype)
        if entry is None:
            entry = self._buffers[dtype] = [np.empty(0, dtype), 0, 0]
        n = shape if isinstance(shape, int) else math.prod(shape)
        start = entry[1]
        end = entry[1] = start + n
        if end > entry[2]:
            entry[2] = end
        if end > len(entry[0]):
            return np.empty(shape, dtype)
        return entry[0][start:end].reshape(shape)

    def zeros(self, shape: int | tuple, dtype=np.float64) -> np.ndarray:
        """As :meth:`__call__`, filled with zeros."""
        out = self(shape, dtype)
        out.fill(0)
        return out


@functools.lru_cache(maxsize=64)
def _upper(width):
    """Read-only ``(width, width)`` mask of ``j < k``."""
    mask = np.triu(np.ones((width, width), dtype=bool), 1)
    mask.flags.writeable = False
    return mask


class Slots:
    """The neighbours of the centre atoms of one element, in slots.

    Parameters
    ----------
    neighbors : NeighborList
        Of the whole image (vectors in Angstrom).
    first : ndarray of int
        ``neighbors.first_entry``.
    codes : ndarray of int
        Element index of every atom of the image.
    centres : ndarray of int
        The centre atoms (rows, in this order).
    n_elements : int
    scale : float
        Length conversion (Angstrom to the potential's unit).
    scratch : Scratch
        Scratch memory of the three-body kernels.

    Attributes
    ----------
    entries : ndarray of int
        Neighbour-entry ids of the centres, row by row.
    row_e, code_e, rank_e : ndarray of int
        Centre row, neighbour element and slot (within the element's
        slots) of each entry.
    r_ex : ndarray, shape (n_entries, 3)
    d_e : ndarray
        Distances (potential's unit).
    n_centres : int
    widths : list of int
        Real slots per neighbour element (one dummy slot follows).
    r_asx, d_as, d2_as : dict
        Per neighbour element: vectors ``(n_centres, width + 1, 3)``,
        distances (1 in unused slots) and squared distances (inf there).
    grad : dict
        Per neighbour element: ``dE / d r_s``, like ``r_asx``.
    grad_ex : ndarray, shape (n_entries, 3)
        Two-body terms of ``dE / d r_e``.
    """

    def __init__(self, neighbors, first, codes, centres, n_elements, scale,
                 scratch):
        self.scratch = scratch
        counts = first[centres + 1] - first[centres]
        self.n_centres = c = len(centres)
        self.entries = entries = ragged(first[centres], counts)
        self.row_e = np.repeat(np.arange(c), counts)
        self.code_e = codes[neighbors.j[entries]]
        group_e = self.row_e * n_elements + self.code_e
        per_group = np.bincount(group_e, minlength=c * n_elements)
        self.widths = [int(w) for w in
                       per_group.reshape(c, n_elements).max(axis=0)] \
            if c else [0] * n_elements
        order = np.argsort(group_e, kind="stable")
        starts = np.cumsum(per_group) - per_group
        self.rank_e = np.empty(len(entries), dtype=np.int64)
        self.rank_e[order] = np.arange(len(entries)) - starts[group_e[order]]
        self.r_ex = np.take(neighbors.vectors, entries, axis=0) * scale
        self.d_e = neighbors.distances[entries] * scale
        self.r_asx, self.d_as, self.d2_as, self.grad = {}, {}, {}, {}
        self._pick = {}
        for x in range(n_elements):
            pick = np.flatnonzero(self.code_e == x)
            slot = self.row_e[pick] * (self.widths[x] + 1) + self.rank_e[pick]
            self._pick[x] = (pick, slot)
            size = c * (self.widths[x] + 1)
            r = np.zeros((size, 3))
            r[slot] = self.r_ex[pick]
            d = np.ones(size)
            d[slot] = self.d_e[pick]
            d2 = np.full(size, np.inf)
            d2[slot] = self.d_e[pick] ** 2
            shape = (c, self.widths[x] + 1)
            self.r_asx[x] = r.reshape(shape + (3,))
            self.d_as[x] = d.reshape(shape)
            self.d2_as[x] = d2.reshape(shape)
            self.grad[x] = np.zeros(shape + (3,))
        self.grad_ex = np.zeros((len(entries), 3))

    def add_block_gradient(self, t: "Triplets", own_j_at: np.ndarray,
                           own_k_at: np.ndarray,
                           other_at: np.ndarray) -> None:
        """Add a three-body block's coefficients to :attr:`grad`.

        ``own_j`` multiplies ``r_j`` and ``other`` ``r_k`` in ``dE/dr_j``;
        ``own_k`` multiplies ``r_k`` and ``other`` ``r_j`` in ``dE/dr_k``.
        """
        rows = t.rows
        c = rows.stop - rows.start
        nx, ny = self.widths[t.x] + 1, self.widths[t.y] + 1
        r_jx = self.r_asx[t.x][rows]
        r_kx = self.r_asx[t.y][rows]
        diag_j = np.bincount(t.index_j, own_j_at.reshape(-1),
                             minlength=c * nx).reshape(c, nx, 1)
        diag_k = np.bincount(t.index_k, own_k_at.reshape(-1),
                             minlength=c * ny).reshape(c, ny, 1)
        other = self.scratch.zeros(c * nx * ny)
        other[t.flat] = other_at.reshape(-1)
        other_ajk = other.reshape(c, nx, ny)
        grad_j = self.grad[t.x][rows]
        grad_k = self.grad[t.y][rows]
        grad_j += diag_j * r_jx
        grad_j += np.matmul(other_ajk, r_kx)
        grad_k += diag_k * r_kx
        grad_k += np.matmul(other_ajk.transpose(0, 2, 1), r_jx)

    def entry_gradients(self) -> np.ndarray:
        """``dE / d r_e`` of the entries (potential's units)."""
        out = self.grad_ex.copy()
        for x, (pick, slot) in self._pick.items():
            out[pick] += self.grad[x].reshape(-1, 3)[slot]
        return out


class Triplets:
    """The usable neighbour pairs of one block for a few centre rows,
    padded per centre (see :func:`enumerate_triplets`).

    Attributes
    ----------
    x, y : int
        Neighbour elements of slots ``j`` and ``k``.
    rows : slice
        The centre rows.
    length : int
        Padded row length.
    flat : ndarray of int, shape (n_rows * length,)
        Position of each triplet in the dense ``(centre, j, k)`` block
        (dummy slots included); padding points at ``(0, dummy, dummy)``.
    index_j, index_k : ndarray of int
        Position of slot ``j`` in the rows' ``(centre, slot)`` block of
        element ``x`` (dummy slot for padding), and of ``k`` likewise.
    dense_at : ndarray, shape (n_rows, length)
        Narrow: ``|r_k - r_j|^2`` (``(rc/2)^2`` in padding); wide:
        ``r_j . r_k`` (0 in padding).
    counts : ndarray of int
        Real triplets per centre.
    """


def pair_factors(slots: Slots, a2: dict, narrow: bool) -> dict:
    """What :func:`enumerate_triplets` needs from a group: ``a2`` (per
    element, squared slot distances, inf where a slot does not count) and,
    narrow, ``left`` and ``right`` rows ``(r, a^2, 1)`` and ``(-2 r, 1,
    a^2)``."""
    out = {"a2": a2, "left": {}, "right": {}}
    if narrow:
        for x, a2_as in a2.items():
            r = slots.r_asx[x]
            ones = np.ones(a2_as.shape + (1,))
            out["left"][x] = np.concatenate([r, a2_as[..., None], ones], -1)
            out["right"][x] = np.concatenate(
                [-2.0 * r, ones, a2_as[..., None]], -1)
    return out


def enumerate_triplets(slots: Slots, x: int, y: int, rows: slice,
                       factors: dict, narrow: bool,
                       rc: float) -> "Triplets | None":
    """The usable neighbour pairs ``(j, k)`` of block ``(x, y)``.

    Parameters
    ----------
    slots : Slots
    x, y : int
        Neighbour elements, ``x <= y`` (``j < k`` within one element).
    rows : slice
        Centre rows.
    factors : dict
        The group's per-slot arrays (:func:`.angular.slot_factors`): for
        a narrow group ``left`` and ``right``, rows ``(r, a^2, 1)`` and
        ``(-2 r, 1, a^2)`` whose products are the squared distances
        ``|r_k - r_j|^2`` (``a^2`` inf for unused slots and those outside
        the radius); for a wide one ``a2``.
    narrow : bool
        Also require ``|r_k - r_j| < rc``.
    rc : float

    Returns
    -------
    Triplets or None
    """
    scratch = slots.scratch
    c = rows.stop - rows.start
    if slots.widths[x] == 0 or slots.widths[y] == 0 or (
            x == y and slots.widths[x] < 2):
        return None
    nx, ny = slots.widths[x] + 1, slots.widths[y] + 1
    size = c * nx * ny
    dense = scratch(size)
    dense_ajk = dense.reshape(c, nx, ny)
    usable = scratch((c, nx, ny), np.bool_)
    if narrow:
        np.matmul(factors["left"][x][rows],
                  factors["right"][y][rows].transpose(0, 2, 1),
                  out=dense_ajk)
        np.less(dense_ajk, rc * rc, out=usable)
        dense_ajk[0, nx - 1, ny - 1] = 0.25 * rc * rc   # padding: inside
    else:
        np.matmul(slots.r_asx[x][rows],
                  slots.r_asx[y][rows].transpose(0, 2, 1), out=dense_ajk)
        np.logical_and(np.isfinite(factors["a2"][x][rows])[:, :, None],
                       np.isfinite(factors["a2"][y][rows])[:, None, :],
                       out=usable)
        dense_ajk[0, nx - 1, ny - 1] = 0.0
    if x == y:
        usable &= _upper(nx)[None]
    flat_t = np.flatnonzero(usable)
    if len(flat_t) == 0:
        return None
    # flat = centre * nx * ny + j * ny + k
    jj = flat_t // ny
    centre = jj // nx
    counts = np.bincount(centre, minlength=c)
    length = int(counts.max())
    t = Triplets()
    t.x, t.y, t.rows, t.length, t.counts = x, y, rows, length, counts
    starts = np.cumsum(counts) - counts
    padded = np.repeat(np.arange(c) * length - starts, counts)
    padded += np.arange(len(flat_t))
    kk = flat_t - jj * ny
    centre *= ny
    kk += centre
    n = c * length
    t.flat = scratch(n, np.int64)
    t.flat.fill((nx - 1) * ny + ny - 1)
    t.flat[padded] = flat_t
    t.index_j = scratch(n, np.int64)
    t.index_j.fill(nx - 1)
    t.index_j[padded] = jj
    t.index_k = scratch(n, np.int64)
    t.index_k.fill(ny - 1)
    t.index_k[padded] = kk
    t.dense_at = np.take(dense, t.flat, out=scratch((c, length)).reshape(-1),
                         mode="clip").reshape(c, length)
    return t
