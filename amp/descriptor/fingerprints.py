"""The array form of one image's fingerprints, and Amp's views of it.

An :class:`ImageFingerprints` holds, for every element, the fingerprints of
its atoms as one ``(n_atoms_of_element, n_features)`` block and, when
derivatives were computed, ``d G_i / d r_e`` for every neighbour entry
``e = (i, j, offset)`` of those atoms. Forces and the virial are
contractions of the latter with ``dE/dG``; Amp's dictionaries
(``fingerprints[hash]`` and ``fingerprintprimes[hash]``) are built from the
arrays only when asked for.
"""

import numpy as np

from .neighbors import NeighborList

# Version of the flat storage form written by :meth:`ImageFingerprints.todict`.
STORAGE_VERSION = 1
# ASE's Voigt order of a symmetric 3x3 tensor: xx, yy, zz, yz, xz, xy.
_VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


def entry_forces(neighbors, entry_gradient):
    """Forces from ``dE / d r_e`` of every neighbour entry.

    Entry ``e`` is the vector from atom ``i[e]`` to (an image of) atom
    ``j[e]``: its gradient acts with opposite signs on the two atoms.

    Returns
    -------
    ndarray, shape (n_atoms, 3)
    """
    n = neighbors.n_atoms
    forces = np.empty((n, 3))
    for axis in range(3):
        forces[:, axis] = (
            np.bincount(neighbors.i, entry_gradient[:, axis], minlength=n)
            - np.bincount(neighbors.j, entry_gradient[:, axis], minlength=n))
    return forces


def entry_virial(neighbors, entry_gradient):
    """The virial ``sum_e r_e (x) dE/dr_e`` from every entry's gradient.

    For an energy that depends on the atoms only through the entry vectors
    ``r_e``, this is the derivative of the energy with respect to a
    homogeneous strain of the cell and the atoms, at zero strain; the
    stress is the virial divided by the cell volume. It is symmetric for a
    rotation-invariant energy; the (round-off) antisymmetric part is
    dropped.

    Returns
    -------
    ndarray, shape (3, 3)
    """
    virial = neighbors.vectors.T @ entry_gradient
    return 0.5 * (virial + virial.T)


class ImageFingerprints:
    """Fingerprints of one image as arrays.

    Parameters
    ----------
    symbols : list of str
        Chemical symbol of every atom.
    values : dict
        ``{element: (n_e, n_features_e) array}``, rows in atom order.
    neighbors : NeighborList, optional
        Needed for derivatives.
    entries : dict, optional
        ``{element: entry ids}``: the neighbour entries whose centre is of
        that element, in order.
    derivatives : dict, optional
        ``{element: (len(entries[element]), 3, n_features_e) array}``.

    Attributes
    ----------
    atom_index : dict
        ``{element: indices of its atoms}``, ascending.
    """

    def __init__(self, symbols, values, neighbors=None, entries=None,
                 derivatives=None):
        self.symbols = list(symbols)
        self.values = values
        self.neighbors = neighbors
        self.entries = entries
        self.derivatives = derivatives
        symbol_array = np.array(self.symbols)
        self.atom_index = {element: np.flatnonzero(symbol_array == element)
                           for element in values}

    @property
    def n_atoms(self):
        """Number of atoms in the image."""
        return len(self.symbols)

    @property
    def has_derivatives(self):
        """Whether the derivative terms are present."""
        return self.derivatives is not None

    def _entry_rows(self, element):
        """Row, within the element's block, of each entry's centre atom."""
        row_of_atom = np.empty(self.n_atoms, dtype=np.int64)
        row_of_atom[self.atom_index[element]] = np.arange(
            len(self.atom_index[element]))
        return row_of_atom[self.neighbors.i[self.entries[element]]]

    def entry_gradients(self, dE_dG):
        """``dE / d r_e`` of every neighbour entry.

        Parameters
        ----------
        dE_dG : dict
            ``{element: (n_e, n_features_e) array}``, the derivative of the
            energy with respect to each fingerprint.

        Returns
        -------
        ndarray, shape (n_entries, 3)
        """
        if not self.has_derivatives:
            raise ValueError("these fingerprints were computed without "
                             "derivatives")
        gradient = np.zeros((len(self.neighbors.i), 3))
        for element, block in self.derivatives.items():
            if len(block) == 0:
                continue
            rows = self._entry_rows(element)
            gradient[self.entries[element]] = np.einsum(
                "ek,elk->el", dE_dG[element][rows], block)
        return gradient

    def forces(self, dE_dG):
        """Forces, minus the gradient of the energy, shape (n_atoms, 3).

        A vector–Jacobian product: ``dE/dG`` is contracted with the
        per-entry derivatives, and each entry's ``dE / d r_e`` acts with
        opposite signs on its two atoms.
        """
        return entry_forces(self.neighbors, self.entry_gradients(dE_dG))

    def force_matrix(self):
        """The linear map from ``dE/dG`` to the forces, as a sparse matrix
        without its exact zeros.

        ``forces.ravel() == T @ g`` where ``g`` is
        ``np.concatenate([dE_dG[e].ravel() for e in sorted(values)])``
        (each element's block row-major: atom row, then feature). Its
        transpose maps force residuals back to fingerprint space, which
        force training needs at every step.

        Built directly, without a sparse library's sort of every value: an
        entry's derivative block goes, with a plus sign, to its centre
        atom's rows and, with a minus sign, to its neighbour's; the blocks
        of one (row atom, centre atom) pair are added in one ``reduceat``
        over the entries sorted by pair, and each pair's block is scattered
        to its place in the three rows of its atom (4x faster than building
        it as a COO matrix on the 32-atom benchmark cells). With several
        elements most values are exact zeros (a G2 of element X does not
        move with a neighbour of element Y, a G4 only with neighbours of
        its pair's elements: 55 % with three elements); dropping them
        halves the memory and the sparse products, and a sum without its
        0.0 terms is the same.

        Returns
        -------
        scipy.sparse.csr_matrix, shape (3 n_atoms, n_columns)
            Columns sorted in every row.
        """
        if not self.has_derivatives:
            raise ValueError("these fingerprints were computed without "
                             "derivatives")
        return _force_rows(self)

    def virial(self, dE_dG):
        """The stress times the volume, 3x3 (see :func:`entry_virial`)."""
        return entry_virial(self.neighbors, self.entry_gradients(dE_dG))

    def virial_matrix(self) -> np.ndarray:
        """The linear map from ``dE/dG`` to the virial, in Voigt order.

        ``V @ g`` is :meth:`virial` as ASE's Voigt vector (``xx, yy, zz,
        yz, xz, xy``), with ``g`` laid out as for :meth:`force_matrix`;
        divided by the cell volume it is the stress. Component ``ab``
        gathers ``(r_e,a dG/dr_e,b + r_e,b dG/dr_e,a) / 2`` over the
        entries ``e`` of each centre atom: the same derivatives as the
        forces, weighted by the entry vectors (stress training needs no
        other descriptor work).

        Returns
        -------
        ndarray, shape (6, n_columns)
        """
        if not self.has_derivatives:
            raise ValueError("these fingerprints were computed without "
                             "derivatives")
        import scipy.sparse

        blocks = []
        for element in sorted(self.values):
            n_rows, n_features = np.shape(self.values[element])
            block_exf = np.asarray(self.derivatives[element])
            entries_e = np.asarray(self.entries[element])
            if len(entries_e) == 0:
                blocks.append(np.zeros((6, n_rows * n_features)))
                continue
            vector_ex = self.neighbors.vectors[entries_e]
            # (r_a D_b + r_b D_a) / 2 per entry, Voigt component and feature.
            term_evf = np.empty((len(entries_e), 6, n_features))
            for v, (a, b) in enumerate(_VOIGT):
                term_evf[:, v] = 0.5 * (
                    vector_ex[:, a, None] * block_exf[:, b]
                    + vector_ex[:, b, None] * block_exf[:, a])
            # Summed over each centre atom's entries by one sparse product.
            gather = scipy.sparse.csr_matrix(
                (np.ones(len(entries_e)),
                 (self._entry_rows(element), np.arange(len(entries_e)))),
                shape=(n_rows, len(entries_e)))
            summed_avf = (gather @ term_evf.reshape(len(entries_e), -1)) \
                .reshape(n_rows, 6, n_features)
            blocks.append(summed_avf.transpose(1, 0, 2).reshape(6, -1))
        return np.concatenate(blocks, axis=1) if blocks else np.zeros((6, 0))

    # Amp's views ---------------------------------------------------------

    def as_amp_fingerprints(self):
        """Amp's ``fingerprints[hash]``: ``[(symbol, [G, ...]), ...]``."""
        rows = {}
        for element, index in self.atom_index.items():
            for row, atom in enumerate(index):
                rows[atom] = (element, self.values[element][row].tolist())
        return [rows[atom] for atom in range(self.n_atoms)]

    def as_amp_primes(self):
        """Amp's ``fingerprintprimes[hash]``.

        Keys ``(m, symbol_m, n, symbol_n, l)`` map to ``d G_n / d x_{m,l}``
        as a list over atom n's features; keys exist for ``m == n`` and for
        every neighbour pair.
        """
        if not self.has_derivatives:
            raise ValueError("these fingerprints were computed without "
                             "derivatives")
        nl = self.neighbors
        primes = {}
        for element, block in self.derivatives.items():
            entries = self.entries[element]
            centre, neighbor = nl.i[entries], nl.j[entries]
            n_features = block.shape[2]
            for n in self.atom_index[element]:
                for axis in range(3):
                    primes[(n, self.symbols[n], n, self.symbols[n],
                            axis)] = np.zeros(n_features)
            if len(entries) == 0:
                continue
            # d G_n / d x_m gains +D from entries (n -> m) and -D at m = n.
            pair_key = centre * self.n_atoms + neighbor
            unique, inverse = np.unique(pair_key, return_inverse=True)
            flat = block.reshape(len(entries), -1)
            summed = np.zeros((len(unique), flat.shape[1]))
            np.add.at(summed, inverse, flat)
            summed = summed.reshape(len(unique), 3, n_features)
            total = np.zeros((self.n_atoms, 3, n_features))
            np.add.at(total, centre, block)
            for k, key in enumerate(unique):
                n, m = divmod(int(key), self.n_atoms)
                for axis in range(3):
                    name = (m, self.symbols[m], n, self.symbols[n], axis)
                    if name not in primes:
                        primes[name] = np.zeros(n_features)
                    primes[name] = primes[name] + summed[k, axis]
            for n in self.atom_index[element]:
                for axis in range(3):
                    name = (n, self.symbols[n], n, self.symbols[n], axis)
                    primes[name] = primes[name] - total[n, axis]
        return {key: primes[key].tolist() for key in sorted(primes)}

    # Storage ---------------------------------------------------------------

    def todict(self, parts=("values", "derivatives")):
        """Flat ``{name: array}`` form for a database entry.

        Parameters
        ----------
        parts : tuple of str
            ``'values'``, ``'neighbors'`` (the neighbour list) and/or
            ``'derivatives'`` (which includes the neighbour list it refers
            to).
        """
        out = {"version": STORAGE_VERSION, "symbols": list(self.symbols)}
        if "values" in parts:
            for element, block in self.values.items():
                out["values/" + element] = block
        derivatives = "derivatives" in parts and self.has_derivatives
        if (derivatives or "neighbors" in parts) and \
                self.neighbors is not None:
            nl = self.neighbors
            out.update({"nl/i": nl.i, "nl/j": nl.j, "nl/offsets": nl.offsets,
                        "nl/vectors": nl.vectors})
        if derivatives:
            for element, block in self.derivatives.items():
                out["entries/" + element] = self.entries[element]
                out["derivatives/" + element] = block
        return out

    @classmethod
    def fromdict(cls, values_dict, derivatives_dict=None):
        """Rebuild from :meth:`todict` forms (values, and optionally the
        neighbour-list and derivative part).

        Raises
        ------
        ValueError
            When an entry has an unknown version or misses a part.
        """
        for part in (values_dict, derivatives_dict):
            if part is not None and part.get("version") != STORAGE_VERSION:
                raise ValueError("fingerprint entry of unknown version %r"
                                 % part.get("version"))
        symbols = values_dict["symbols"]
        values = {name[len("values/"):]: np.asarray(array)
                  for name, array in values_dict.items()
                  if name.startswith("values/")}
        if derivatives_dict is None:
            return cls(symbols, values)
        d = derivatives_dict
        vectors = np.asarray(d["nl/vectors"], dtype=float)
        nl = NeighborList(i=np.asarray(d["nl/i"]), j=np.asarray(d["nl/j"]),
                          offsets=np.asarray(d["nl/offsets"]),
                          vectors=vectors,
                          distances=np.sqrt(np.einsum("ij,ij->i", vectors,
                                                      vectors)),
                          n_atoms=len(symbols))
        entries = {name[len("entries/"):]: np.asarray(array)
                   for name, array in d.items() if name.startswith("entries/")}
        derivatives = {name[len("derivatives/"):]: np.asarray(array)
                       for name, array in d.items()
                       if name.startswith("derivatives/")}
        if not derivatives:  # the neighbour list alone
            return cls(symbols, values, nl)
        return cls(symbols, values, nl, entries, derivatives)

    @property
    def nbytes(self):
        """Bytes held by the arrays (values, derivatives, neighbour list)."""
        total = sum(block.nbytes for block in self.values.values())
        if self.has_derivatives:
            nl = self.neighbors
            total += sum(block.nbytes for block in self.derivatives.values())
            total += sum(e.nbytes for e in self.entries.values())
            total += (nl.i.nbytes + nl.j.nbytes + nl.offsets.nbytes
                      + nl.vectors.nbytes + nl.distances.nbytes)
        return total


def _force_rows(fp):
    """The body of :meth:`ImageFingerprints.force_matrix`: the summed
    blocks of every (row atom, centre atom) pair, laid out as CSR rows."""
    offset_e, n_columns = {}, 0
    for e in sorted(fp.values):
        offset_e[e] = n_columns
        n_columns += fp.values[e].size
    pairs = [_pair_blocks(fp, e, offset_e[e], n_columns)
             for e in sorted(fp.values) if len(fp.derivatives[e])]
    return _csr_rows(pairs, fp.n_atoms, n_columns)


def _pair_blocks(fp, element, offset, n_columns):
    """One element's derivative blocks summed per (row atom, centre atom).

    Returns
    -------
    row_atom_p : ndarray, shape (n_pairs,)
        The atom whose force rows a pair's block goes to, sorted.
    column_p : ndarray, shape (n_pairs,)
        The first column of the pair's centre atom in ``g``.
    block_pxf : ndarray, shape (n_pairs, 3, n_features)
        The summed blocks: plus for the centre's own rows, minus for the
        neighbour's.
    """
    nl = fp.neighbors
    block_exf = np.asarray(fp.derivatives[element])
    entries_e = np.asarray(fp.entries[element])
    row_of_atom_a = np.zeros(fp.n_atoms, dtype=np.int64)
    index = fp.atom_index[element]
    row_of_atom_a[index] = np.arange(len(index))
    centre_e = nl.i[entries_e]
    base_e = offset + row_of_atom_a[centre_e] * block_exf.shape[2]
    # Each entry twice: to its centre's rows (+) and its neighbour's (-).
    row_atom = np.concatenate([centre_e, nl.j[entries_e]])
    column = np.concatenate([base_e, base_e])
    key = row_atom * (n_columns + 1) + column
    order = np.argsort(key, kind="stable")
    first = np.flatnonzero(np.r_[True, key[order][1:] != key[order][:-1]])
    signed = block_exf[order % len(entries_e)]
    signed[order >= len(entries_e)] *= -1.0
    return (row_atom[order[first]], column[order[first]],
            np.add.reduceat(signed, first, axis=0))


def _csr_rows(pairs, n_atoms, n_columns):
    """The CSR matrix of the pair blocks of every element (see
    :func:`_pair_blocks`), its exact zeros dropped: each atom's three rows
    hold its pairs element by element, in pair order."""
    import scipy.sparse

    # Length of each atom's rows: per element, its pairs times the width.
    lengths_ak = np.zeros((n_atoms, len(pairs) + 1), dtype=np.int64)
    for k, (atom_p, _, block_pxf) in enumerate(pairs):
        lengths_ak[:, k + 1] = np.bincount(atom_p, minlength=n_atoms) * \
            block_pxf.shape[2]
    indptr = np.zeros(3 * n_atoms + 1, dtype=np.int64)
    np.cumsum(np.repeat(lengths_ak.sum(axis=1), 3), out=indptr[1:])
    before_ak = np.cumsum(lengths_ak, axis=1)  # each element's segment
    data = np.empty(indptr[-1])
    columns = np.empty(indptr[-1], dtype=np.int64)
    axis_x = np.arange(3)
    for k, (atom_p, column_p, block_pxf) in enumerate(pairs):
        width = block_pxf.shape[2]
        rank_p = np.arange(len(atom_p)) - np.searchsorted(atom_p, atom_p)
        start_px = (indptr[3 * atom_p[:, None] + axis_x]
                    + before_ak[atom_p, k][:, None]
                    + (rank_p * width)[:, None])
        where = start_px[:, :, None] + np.arange(width)
        data[where] = block_pxf
        columns[where] = column_p[:, None, None] + np.arange(width)
    keep = data != 0
    counts = np.bincount(np.repeat(np.arange(3 * n_atoms),
                                   np.diff(indptr))[keep],
                         minlength=3 * n_atoms)
    kept_indptr = np.zeros(3 * n_atoms + 1, dtype=np.int64)
    np.cumsum(counts, out=kept_indptr[1:])
    return scipy.sparse.csr_matrix(
        (data[keep], columns[keep], kept_indptr),
        shape=(3 * n_atoms, n_columns))
