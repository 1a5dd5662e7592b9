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

:func:`neighbor_list` runs its phases in order: check the input, wrap the
atoms into the cell, measure the cutoff in cell units and refuse a
hopeless one, make the periodic copies, compare blocks of atoms with the
copies near them, and sort the pairs found into entries. Array names carry
their axes as suffixes (as in :mod:`amp.descriptor.symmetry`): ``_a``
atom, ``_c`` periodic copy of an atom, ``_e`` neighbour entry, ``_h`` cell
shift (a translation by whole cell vectors), ``_k`` cell axis (fractional
coordinates, offsets) and ``_x`` Cartesian component.
"""

import functools
import math
from dataclasses import dataclass

import numpy as np
from ase.geometry import complete_cell

from ..store.memory import available_memory

# Centre atoms per block of the dense search (on average: the blocks are
# cubes sized to hold this many atoms). Small blocks compare each atom
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

# A search estimated below this many bytes runs without asking how much
# memory is free: asking reads /proc and the cgroup files (about 0.1 ms,
# as long as the whole search of a 10-atom image), and no machine this runs
# on lacks 64 MiB.
_SURELY_AFFORDABLE = 2 ** 26


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
    """Read-only array of every cell shift with ``|shift_k| <=
    n_images[k]``."""
    axes = [np.arange(-n, n + 1) for n in n_images]
    shifts = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    shifts.flags.writeable = False
    return shifts


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
    """The image's name in error messages: ``image``, or what the function
    ``image`` returns (computed only for the message), or its size."""
    if image is None:
        return "the image (%d atoms)" % n_atoms
    return image() if callable(image) else image


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
    image : str or callable, optional
        Names the image in error messages; a callable returning the name
        is called only when there is an error to report.

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
    positions_ax = np.ascontiguousarray(positions, dtype=float)
    cell_kx = np.asarray(cell, dtype=float).reshape(3, 3)
    pbc_k = np.asarray(pbc, dtype=bool).reshape(3)
    cutoff = float(cutoff)
    n_atoms = len(positions_ax)
    _check_geometry(positions_ax, cell_kx, pbc_k)
    frame = _wrap(positions_ax, cell_kx, pbc_k)
    reach_k = _reach(frame, cutoff)
    n_shifts_k = np.where(pbc_k, np.ceil(reach_k), 0)
    _check_memory(frame, cutoff, n_shifts_k, image)
    copies = _periodic_copies(frame, reach_k, n_shifts_k.astype(np.int64))
    i_e, copy_e = _close_pairs(frame.wrapped_ax, copies, cutoff)
    nl = _entries(frame, copies, i_e, copy_e)
    close_e = np.flatnonzero(nl.distances < COINCIDENT)
    if len(close_e):
        _refuse_coincident(close_e[0], nl, _describe(image, n_atoms))
    return nl


def _check_geometry(positions_ax, cell_kx, pbc_k):
    """Refuse positions that are not finite and a periodic axis without a
    cell vector."""
    if not np.all(np.isfinite(positions_ax)):
        raise ValueError("positions contain NaN or infinite values")
    for k in np.flatnonzero(pbc_k):
        if not np.linalg.norm(cell_kx[k]) > 0.0:
            raise ValueError("the cell is periodic along axis %d but its "
                             "cell vector is zero" % k)


@dataclass
class _Frame:
    """The atoms wrapped into the cell along its periodic axes.

    ``full_cell_kx`` is the cell completed along non-periodic axes with no
    vector (:func:`ase.geometry.complete_cell`), ``inverse_xk`` its
    inverse; ``wrap_ak`` is the whole number of cell vectors each atom was
    moved by, ``wrapped_ax`` and ``fractional_ak`` its position after.
    """

    positions_ax: np.ndarray
    cell_kx: np.ndarray
    pbc_k: np.ndarray
    full_cell_kx: np.ndarray
    inverse_xk: np.ndarray
    fractional_ak: np.ndarray
    wrap_ak: np.ndarray
    wrapped_ax: np.ndarray


def _wrap(positions_ax, cell_kx, pbc_k):
    """The :class:`_Frame` of the atoms."""
    full_cell_kx = complete_cell(cell_kx)
    inverse_xk = np.linalg.inv(full_cell_kx)
    fractional_ak = positions_ax @ inverse_xk
    wrap_ak = np.where(pbc_k, np.floor(fractional_ak), 0.0).astype(np.int64)
    wrapped_ax = positions_ax - wrap_ak @ full_cell_kx
    return _Frame(positions_ax, cell_kx, pbc_k, full_cell_kx, inverse_xk,
                  fractional_ak - wrap_ak, wrap_ak, wrapped_ax)


def _reach(frame, cutoff):
    """The cutoff in fractional units along each cell axis (``Rc`` over
    the spacing of the cell's planes); refuses a cutoff that is not a
    positive finite distance."""
    reach_k = cutoff * np.linalg.norm(frame.inverse_xk, axis=0)
    if not np.all(np.isfinite(reach_k)) or not cutoff > 0.0:
        raise ValueError("the cutoff %r is not a positive finite distance"
                         % (cutoff,))
    return reach_k


def _check_memory(frame, cutoff, n_shifts_k, image):
    """Refuse a search that would need more memory than is available,
    before anything is allocated; a small one runs without asking."""
    needed = _search_bytes(frame.positions_ax, frame.inverse_xk,
                           frame.pbc_k, cutoff, n_shifts_k)
    if needed < _SURELY_AFFORDABLE:
        return
    available = available_memory()
    if available is not None and needed > available:
        raise ValueError(
            "a cutoff of %g Angstrom is too large for %s: its neighbour "
            "search would need about %.3g GB of memory (%d periodic copies "
            "of the cell), more than the %.3g GB available. Use a smaller "
            "cutoff (Amp's default is 6.5 Angstrom)."
            % (cutoff, _describe(image, len(frame.positions_ax)),
               needed / 1e9, math.prod(2 * int(n) + 1 for n in n_shifts_k),
               available / 1e9))


@dataclass
class _Copies:
    """The periodic copies of the atoms that can lie within the cutoff of
    the wrapped cell (the atoms themselves included, at shift zero).

    ``atom_c`` is the atom each copy is of, ``position_cx`` where it is,
    ``offset_ck`` its cell offset relative to the atom as given (not
    wrapped), and ``self_c`` the atom for the copy at shift zero (which is
    not its own neighbour), -1 for the others.
    """

    atom_c: np.ndarray
    position_cx: np.ndarray
    offset_ck: np.ndarray
    self_c: np.ndarray


def _periodic_copies(frame, reach_k, n_shifts_k):
    """The :class:`_Copies` within ``reach_k`` of the cell, from the
    shifts of up to ``n_shifts_k`` cells along each axis."""
    shifts_hk = _shifts(tuple(int(n) for n in n_shifts_k))
    shifted_hak = frame.fractional_ak[None, :, :] + shifts_hk[:, None, :]
    inside_ha = np.all((shifted_hak >= -reach_k)
                       & (shifted_hak < 1.0 + reach_k) | ~frame.pbc_k, axis=2)
    shift_c, atom_c = np.nonzero(inside_ha)
    shift_ck = np.take(shifts_hk, shift_c, axis=0)
    position_cx = (np.take(frame.wrapped_ax, atom_c, axis=0)
                   + shift_ck @ frame.full_cell_kx)
    offset_ck = shift_ck - np.take(frame.wrap_ak, atom_c, axis=0)
    self_c = np.where(np.any(shift_ck, axis=1), -1, atom_c)
    return _Copies(atom_c, position_cx, offset_ck, self_c)


def _spatial_blocks(wrapped_ax, cutoff):
    """The atoms in blocks of about :data:`_ATOMS_PER_BLOCK`: the pieces
    of ``np.split(order_a, bounds)`` are the atoms of one block, the
    blocks cubes of equal side over the atoms' box (at least the cutoff
    wide), so their number grows linearly with the number of atoms."""
    low_x = wrapped_ax.min(axis=0)
    extent_x = wrapped_ax.max(axis=0) - low_x
    volume = np.prod(np.maximum(extent_x, cutoff))
    side = (_ATOMS_PER_BLOCK * volume / len(wrapped_ax)) ** (1.0 / 3.0)
    n_blocks_x = np.maximum(1, np.ceil(extent_x / side)).astype(np.int64)
    block_ax = np.minimum((wrapped_ax - low_x) // side,
                          n_blocks_x - 1).astype(np.int64)
    block_a = block_ax @ np.array([1, n_blocks_x[0],
                                   n_blocks_x[0] * n_blocks_x[1]])
    order_a = np.argsort(block_a, kind="stable")
    bounds = np.flatnonzero(np.diff(block_a[order_a])) + 1
    return order_a, bounds


def _close_pairs(wrapped_ax, copies, cutoff):
    """Every (atom, copy) closer than the cutoff, the atom's own copy at
    shift zero excluded: ``i_e`` and ``copy_e``, grouped by block.

    Each block of atoms is compared densely with the copies inside its
    box grown by the cutoff.
    """
    if len(wrapped_ax) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    order_a, bounds = _spatial_blocks(wrapped_ax, cutoff)
    # Separate x, y, z arrays: gathering from them beats an (n, 3) array.
    copy_xc = [np.ascontiguousarray(copies.position_cx[:, k])
               for k in range(3)]
    pieces = [_block_pairs(centres_a, wrapped_ax, copy_xc, copies.self_c,
                           cutoff)
              for centres_a in np.split(order_a, bounds)]
    return (np.concatenate([i_e for i_e, _ in pieces]),
            np.concatenate([copy_e for _, copy_e in pieces]))


def _block_pairs(centres_a, wrapped_ax, copy_xc, self_c, cutoff):
    """The (atom, copy) pairs of one block of atoms ``centres_a``."""
    cx, cy, cz = copy_xc
    centre_ax = np.take(wrapped_ax, centres_a, axis=0)
    lo_x = centre_ax.min(axis=0) - cutoff
    hi_x = centre_ax.max(axis=0) + cutoff
    near_c = np.flatnonzero((cx >= lo_x[0]) & (cx <= hi_x[0])
                            & (cy >= lo_x[1]) & (cy <= hi_x[1])
                            & (cz >= lo_x[2]) & (cz <= hi_x[2]))
    d2_ac = np.square(centre_ax[:, 0, None] - cx[near_c])
    d2_ac += np.square(centre_ax[:, 1, None] - cy[near_c])
    d2_ac += np.square(centre_ax[:, 2, None] - cz[near_c])
    flat = np.flatnonzero(d2_ac < cutoff * cutoff)
    row = flat // len(near_c)
    centre_e = centres_a[row]
    candidate_e = near_c[flat - row * len(near_c)]
    not_self_e = self_c[candidate_e] != centre_e
    return centre_e[not_self_e], candidate_e[not_self_e]


def _entries(frame, copies, i_e, copy_e):
    """The neighbour list of the pairs ``(i_e, copy_e)``, sorted by
    centre, with vectors from the positions as given."""
    # Blocks come out grouped by centre, so a stable sort on i is cheap.
    order_e = np.argsort(i_e, kind="stable")
    i_e, copy_e = i_e[order_e], copy_e[order_e]
    j_e = copies.atom_c[copy_e]
    offsets_ek = np.take(copies.offset_ck, copy_e, axis=0)
    if frame.wrap_ak.any():
        offsets_ek += np.take(frame.wrap_ak, i_e, axis=0)
        shift_ex = offsets_ek @ frame.cell_kx
    else:  # the same numbers, one product per copy instead of per entry
        shift_ex = np.take(copies.offset_ck @ frame.cell_kx, copy_e, axis=0)
    # Vectors from the positions as given, so they match the caller's
    # coordinates to the last bit (finite differences rely on it).
    vectors_ex = np.take(frame.positions_ax, j_e, axis=0)
    vectors_ex += shift_ex
    vectors_ex -= np.take(frame.positions_ax, i_e, axis=0)
    distances_e = np.sqrt(np.einsum("ij,ij->i", vectors_ex, vectors_ex))
    return NeighborList(i=i_e, j=j_e, offsets=offsets_ek, vectors=vectors_ex,
                        distances=distances_e,
                        n_atoms=len(frame.positions_ax))


def _refuse_coincident(entry, nl, name):
    first, second = sorted((int(nl.i[entry]), int(nl.j[entry])))
    offset_k = nl.offsets[entry]
    where = "" if not np.any(offset_k) else \
        " (one of them in the periodic copy at cell offset %s)" \
        % offset_k.tolist()
    raise ValueError(
        "%s has atoms %d and %d at the same position (%.3g Angstrom apart, "
        "closer than %g Angstrom)%s; its descriptor would divide by zero. "
        "Remove one of them." % (name, first, second, nl.distances[entry],
                                 COINCIDENT, where))


def _formula_and_hash(atoms):
    from ..utilities import get_hash

    return "the image %s (hash %s)" % (atoms.get_chemical_formula(),
                                       get_hash(atoms))


def atoms_neighbor_list(atoms, cutoff, image=None):
    """:func:`neighbor_list` of an ``ase.Atoms``.

    Errors name the image by ``image`` or, without it, by its chemical
    formula and Amp's hash (computed only then).
    """
    if image is None:
        image = functools.partial(_formula_and_hash, atoms)
    return neighbor_list(atoms.positions, atoms.cell, atoms.pbc, cutoff,
                         image)
