"""Centre atoms a few at a time, as the spherical kernels take them."""

import numpy as np

from ..symmetry.chunk import Chunk, ragged

__all__ = ["centre_entries", "centre_chunks"]


def centre_entries(neighbors, atoms):
    """Neighbour entries whose centre is in ``atoms`` (ascending), in
    order; the kernels' derivative rows follow it."""
    first = neighbors.first_entry
    return ragged(first[atoms], first[atoms + 1] - first[atoms])


def centre_chunks(neighbors, codes, atoms, cutoff, derivatives, size):
    """Chunks of ``size`` centre atoms that have neighbours.

    Yields
    ------
    rows : slice
        The chunk's centres, as rows of ``atoms``.
    span : slice
        Their entries, as positions in :func:`centre_entries`.
    chunk : Chunk
        The entries in flat and padded ``(centre, slot)`` layouts, with
        their cutoff values (and slopes with ``derivatives``).
    """
    first = neighbors.first_entry
    counts_a = first[atoms + 1] - first[atoms]
    entries = ragged(first[atoms], counts_a)
    entry_start = np.concatenate([[0], np.cumsum(counts_a)])
    for a0 in range(0, len(atoms), size):
        a1 = min(a0 + size, len(atoms))
        e0, e1 = entry_start[a0], entry_start[a1]
        if e1 == e0:
            continue  # no neighbours: the fingerprints stay zero
        yield slice(a0, a1), slice(e0, e1), Chunk(
            neighbors, codes, entries[e0:e1], counts_a[a0:a1], cutoff,
            derivatives, None)
