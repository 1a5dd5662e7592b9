"""One neighbour-list routine for every descriptor.

Atom ``j`` (any periodic image, including images of atom ``i`` itself, but
not atom ``i`` itself) is a neighbour of ``i`` when ``|R_ij| < Rc``, with
periodicity only along the directions where ``pbc`` is True: the semantics
of ASE's ``neighbor_list`` and of Amp's ``NeighborList`` with radii
``Rc / 2``, no skin and ``bothways=True``.

The search is vectorised: atoms are wrapped into the cell, the periodic
copies that can lie within ``Rc`` of the cell are generated, and atoms are
compared block by block with the copies near their block. Its cost grows
linearly with the number of atoms.
"""

import functools
from dataclasses import dataclass

import numpy as np
from ase.geometry import complete_cell

# Centre atoms per block of the dense search. Small blocks compare each atom
# with fewer far-away copies and keep temporaries below the size at which
# freed memory goes back to the kernel and each new temporary is page-faulted
# in again (a block of 32 atoms against the 27 copies of a 108-atom cell is
# about 0.75 MB of distances).
_ATOMS_PER_BLOCK = 32


@dataclass
class NeighborList:
    """Neighbour entries of one image, sorted by centre atom ``i``.

    Attributes
    ----------
    i, j : ndarray of int, shape (n_entries,)
        Centre atom and neighbour atom of every entry.
    offsets : ndarray of int, shape (n_entries, 3)
        Cell offset of the neighbour's periodic image.
    vectors : ndarray of float, shape (n_entries, 3)
        ``positions[j] + offsets @ cell - positions[i]``.
    distances : ndarray of float, shape (n_entries,)
        Lengths of ``vectors``.
    n_atoms : int
        Number of atoms in the image.
    """

    i: np.ndarray
    j: np.ndarray
    offsets: np.ndarray
    vectors: np.ndarray
    distances: np.ndarray
    n_atoms: int

    @property
    def first_entry(self):
        """``first_entry[a]:first_entry[a + 1]`` are the entries of atom a."""
        return np.searchsorted(self.i, np.arange(self.n_atoms + 1))

    def as_amp(self):
        """Amp's view: a list with ``(indices, offsets)`` for every atom."""
        return amp_view(self.i, self.j, self.offsets, self.n_atoms)


def amp_view(i, j, offsets, n_atoms):
    """Amp's ``neighborlist[hash]``: ``[(indices, offsets), ...]`` per atom.

    Parameters
    ----------
    i, j : ndarray of int, shape (n_entries,)
        Centre and neighbour atom of every entry, sorted by ``i``.
    offsets : ndarray of int, shape (n_entries, 3)
    n_atoms : int
    """
    bounds = np.searchsorted(i, np.arange(n_atoms + 1))
    return [(j[bounds[a]:bounds[a + 1]], offsets[bounds[a]:bounds[a + 1]])
            for a in range(n_atoms)]


@functools.lru_cache(maxsize=32)
def _shifts(n_images):
    """Read-only array of every cell shift with ``|shift_k| <= n_images[k]``."""
    axes = [np.arange(-n, n + 1) for n in n_images]
    shifts = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    shifts.flags.writeable = False
    return shifts


def neighbor_list(positions, cell, pbc, cutoff):
    """Find every neighbour closer than ``cutoff``.

    Parameters
    ----------
    positions : array_like, shape (n_atoms, 3)
    cell : array_like, shape (3, 3)
        Cell vectors as rows; a vector may be zero along a direction that is
        not periodic.
    pbc : array_like of bool, shape (3,)
    cutoff : float
        Neighbours are strictly closer than this.

    Returns
    -------
    NeighborList
    """
    positions = np.ascontiguousarray(positions, dtype=float)
    cell = np.asarray(cell, dtype=float).reshape(3, 3)
    pbc = np.asarray(pbc, dtype=bool).reshape(3)
    n_atoms = len(positions)
    cutoff = float(cutoff)
    if not np.all(np.isfinite(positions)):
        raise ValueError("positions contain NaN or infinite values")
    for k in np.flatnonzero(pbc):
        if not np.linalg.norm(cell[k]) > 0.0:
            raise ValueError("the cell is periodic along axis %d but its "
                             "cell vector is zero" % k)

    full_cell = complete_cell(cell)
    inverse = np.linalg.inv(full_cell)
    fractional = positions @ inverse
    wrap = np.where(pbc, np.floor(fractional), 0.0).astype(np.int64)
    wrapped = positions - wrap @ full_cell
    fractional = fractional - wrap

    # Periodic copies that can lie within the cutoff of the wrapped cell.
    reach = cutoff * np.linalg.norm(inverse, axis=0)  # Rc / plane spacing
    n_images = np.where(pbc, np.ceil(reach), 0).astype(np.int64)
    shifts = _shifts(tuple(int(n) for n in n_images))
    shifted = fractional[None, :, :] + shifts[:, None, :]
    inside = np.all((shifted >= -reach) & (shifted < 1.0 + reach)
                    | ~pbc, axis=2)
    shift_index, copy_atom = np.nonzero(inside)
    copy_shift = np.take(shifts, shift_index, axis=0)
    copy_position = np.take(wrapped, copy_atom, axis=0) + copy_shift @ full_cell
    # Offset of each copy relative to the unwrapped atom, and as a vector.
    copy_offset = copy_shift - np.take(wrap, copy_atom, axis=0)
    wrapped_any = bool(wrap.any())

    # Centre atoms are grouped into spatial blocks of a few hundred atoms;
    # each block is compared densely with the copies inside its box grown by
    # the cutoff. Small systems are one block; the number of blocks, and so
    # the cost, grows linearly with the number of atoms.
    low = wrapped.min(axis=0)
    extent = wrapped.max(axis=0) - low
    volume = np.prod(np.maximum(extent, cutoff))
    side = (_ATOMS_PER_BLOCK * volume / n_atoms) ** (1.0 / 3.0)
    n_blocks = np.maximum(1, np.ceil(extent / side)).astype(np.int64)
    block = np.minimum((wrapped - low) // side, n_blocks - 1).astype(np.int64)
    block_id = block @ np.array([1, n_blocks[0], n_blocks[0] * n_blocks[1]])
    order = np.argsort(block_id, kind="stable")
    bounds = np.flatnonzero(np.diff(block_id[order])) + 1
    cx, cy, cz = (np.ascontiguousarray(copy_position[:, k]) for k in range(3))
    # The copy that is atom i itself (zero shift) is not its own neighbour.
    copy_self = np.where(np.any(copy_shift, axis=1), -1, copy_atom)
    cutoff2 = cutoff * cutoff
    pieces = []
    for centres in np.split(order, bounds):
        centre_position = np.take(wrapped, centres, axis=0)
        lo = centre_position.min(axis=0) - cutoff
        hi = centre_position.max(axis=0) + cutoff
        near = np.flatnonzero((cx >= lo[0]) & (cx <= hi[0])
                              & (cy >= lo[1]) & (cy <= hi[1])
                              & (cz >= lo[2]) & (cz <= hi[2]))
        d2 = np.square(centre_position[:, 0, None] - cx[near])
        d2 += np.square(centre_position[:, 1, None] - cy[near])
        d2 += np.square(centre_position[:, 2, None] - cz[near])
        flat = np.flatnonzero(d2 < cutoff2)
        row = flat // len(near)
        column = flat - row * len(near)
        centre, candidate = centres[row], near[column]
        not_self = copy_self[candidate] != centre
        pieces.append((centre[not_self], candidate[not_self]))

    if pieces:
        i = np.concatenate([p[0] for p in pieces])
        copy = np.concatenate([p[1] for p in pieces])
    else:
        i = copy = np.zeros(0, dtype=np.int64)
    # Blocks come out grouped by centre, so a stable sort on i is cheap.
    entry_order = np.argsort(i, kind="stable")
    i, copy = i[entry_order], copy[entry_order]
    j = copy_atom[copy]
    offsets = np.take(copy_offset, copy, axis=0)
    if wrapped_any:
        offsets += np.take(wrap, i, axis=0)
        shift = offsets @ cell
    else:  # the same numbers, one product per copy instead of per entry
        shift = np.take(copy_offset @ cell, copy, axis=0)
    # Vectors from the positions as given, so they match the caller's
    # coordinates to the last bit (finite differences rely on it).
    vectors = np.take(positions, j, axis=0)
    vectors += shift
    vectors -= np.take(positions, i, axis=0)
    distances = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))
    return NeighborList(i=i, j=j, offsets=offsets, vectors=vectors,
                        distances=distances, n_atoms=n_atoms)


def atoms_neighbor_list(atoms, cutoff):
    """:func:`neighbor_list` of an ``ase.Atoms``."""
    return neighbor_list(atoms.positions, atoms.cell, atoms.pbc, cutoff)
