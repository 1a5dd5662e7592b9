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

Two atoms closer than :data:`COINCIDENT` (a zero distance would make every
descriptor divide by zero) and a cutoff whose search would not fit in
memory are refused with a ``ValueError`` that names the image, before any
number is computed from them.
"""

import functools
import math
import os
from dataclasses import dataclass

import numpy as np
from ase.geometry import complete_cell

# Centre atoms per block of the dense search. Small blocks compare each atom
# with fewer far-away copies and keep temporaries below the size at which
# freed memory goes back to the kernel and each new temporary is page-faulted
# in again (a block of 32 atoms against the 27 copies of a 108-atom cell is
# about 0.75 MB of distances).
_ATOMS_PER_BLOCK = 32

#: Atoms closer than this (Angstrom) are refused as coincident.
COINCIDENT = 1e-6

# Bytes the search needs per (cell shift, atom) pair while generating the
# periodic copies, and per neighbour entry it returns (its arrays and their
# temporaries), measured roughly; used only to refuse hopeless cutoffs.
_BYTES_PER_COPY = 64
_BYTES_PER_ENTRY = 160


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


def available_memory():
    """Bytes this process may still allocate: the smaller of the system's
    available memory and the room left under ``RLIMIT_AS`` (None when
    neither is known)."""
    candidates = []
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    candidates.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError, IndexError):
        try:
            candidates.append(os.sysconf("SC_AVPHYS_PAGES")
                              * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            pass
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            with open("/proc/self/statm") as handle:
                used = int(handle.read().split()[0]) * os.sysconf(
                    "SC_PAGE_SIZE")
            candidates.append(max(soft - used, 0))
    except (ImportError, OSError, ValueError, IndexError):
        pass
    return min(candidates) if candidates else None


def _search_bytes(positions, inverse, pbc, cutoff, n_images):
    """Rough bytes :func:`neighbor_list` needs: the periodic copies it
    generates, and its entries (each atom times the atoms expected in its
    cutoff sphere, from the density in the cell along periodic directions
    and in the atoms' extent, at least the cutoff, along the others)."""
    n_atoms = len(positions)
    n_shifts = math.prod(2 * int(n) + 1 for n in n_images)
    extent = np.ptp(positions, axis=0) if n_atoms else np.zeros(3)
    # 1 / |column k of the inverse cell| is the spacing of the cell's
    # planes along axis k.
    spacing = 1.0 / np.linalg.norm(inverse, axis=0)
    box = np.where(pbc, spacing, np.maximum(extent, cutoff))
    density = n_atoms / float(np.prod(np.maximum(box, 1e-3)))
    in_sphere = density * 4.0 / 3.0 * math.pi * cutoff ** 3
    entries = n_atoms * min(in_sphere, n_atoms * n_shifts)
    return _BYTES_PER_COPY * n_shifts * n_atoms + _BYTES_PER_ENTRY * entries


def _describe(image, n_atoms):
    return image if image is not None else "the image (%d atoms)" % n_atoms


def neighbor_list(positions, cell, pbc, cutoff, image=None):
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
    image : str, optional
        Names the image in error messages.

    Returns
    -------
    NeighborList

    Raises
    ------
    ValueError
        Two atoms closer than :data:`COINCIDENT` (naming both), positions
        that are not finite, or a cutoff whose search would need more memory
        than is available (estimated before anything is allocated).
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
    if not np.all(np.isfinite(reach)) or not cutoff > 0.0:
        raise ValueError("the cutoff %r is not a positive finite distance"
                         % (cutoff,))
    n_images = np.where(pbc, np.ceil(reach), 0)
    needed = _search_bytes(positions, inverse, pbc, cutoff, n_images)
    available = available_memory()
    if available is not None and needed > available:
        raise ValueError(
            "a cutoff of %g Angstrom is too large for %s: its neighbour "
            "search would need about %.3g GB of memory (%d periodic copies "
            "of the cell), more than the %.3g GB available. Use a smaller "
            "cutoff (Amp's default is 6.5 Angstrom)."
            % (cutoff, _describe(image, n_atoms), needed / 1e9,
               math.prod(2 * int(n) + 1 for n in n_images), available / 1e9))
    n_images = n_images.astype(np.int64)
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
    close = np.flatnonzero(distances < COINCIDENT)
    if len(close):
        _refuse_coincident(close[0], i, j, offsets, distances, image,
                           n_atoms)
    return NeighborList(i=i, j=j, offsets=offsets, vectors=vectors,
                        distances=distances, n_atoms=n_atoms)


def _refuse_coincident(entry, i, j, offsets, distances, image, n_atoms):
    first, second = sorted((int(i[entry]), int(j[entry])))
    where = "" if not np.any(offsets[entry]) else \
        " (one of them in the periodic copy at cell offset %s)" \
        % offsets[entry].tolist()
    raise ValueError(
        "%s has atoms %d and %d at the same position (%.3g Angstrom apart, "
        "closer than %g Angstrom)%s; its descriptor would divide by zero. "
        "Remove one of them." % (_describe(image, n_atoms), first, second,
                      distances[entry], COINCIDENT, where))


def atoms_neighbor_list(atoms, cutoff, image=None):
    """:func:`neighbor_list` of an ``ase.Atoms``.

    Errors name the image by ``image`` or, without it, by its chemical
    formula and Amp's hash (computed only then).
    """
    try:
        return neighbor_list(atoms.positions, atoms.cell, atoms.pbc, cutoff,
                             image)
    except ValueError as error:
        if image is not None or "the image (" not in str(error):
            raise
        from ..utilities import get_hash

        named = "the image %s (hash %s)" % (atoms.get_chemical_formula(),
                                            get_hash(atoms))
        raise ValueError(str(error).replace(
            "the image (%d atoms)" % len(atoms), named, 1)) from None
