"""Training images stacked into arrays: what the loss is evaluated on.

A :class:`TrainingBatch` holds the fingerprints of many images per element,
their reference energies and forces, and each image's force matrix (the
linear map from ``dE/dG`` to its forces, built directly without its exact
zeros by :meth:`~amp.descriptor.fingerprints.ImageFingerprints.force_matrix`); :meth:`TrainingBatch.partial` returns
the partial sums of the loss and its gradient over the batch, which the
loss function adds over batches (or over workers) in a fixed order. The
network maths it calls is in :mod:`amp.model._network`.
"""

from typing import Any, Optional

import numpy as np
import scipy.sparse

# The largest int32. While every column index and row pointer of a force
# matrix stays below it, they are stored as int32 (as scipy.sparse itself
# does): half the bytes of int64 in the largest array training holds.
_INT32_INDEX_LIMIT = 2 ** 31 - 1


def reference_stress(atoms: Any) -> Optional[np.ndarray]:
    """The stress ``atoms`` carries for training (ASE's Voigt order,
    eV/A^3), or None: a cell periodic in three directions whose
    calculator gives a finite stress."""
    if atoms.calc is None or atoms.cell.rank != 3 or not all(atoms.pbc):
        return None
    try:
        stress = np.asarray(atoms.get_stress(voigt=True,
                                             apply_constraint=False),
                            dtype=float)
    except Exception:  # no stress there: PropertyNotImplementedError, ...
        return None
    if stress.shape != (6,) or not np.all(np.isfinite(stress)):
        return None
    return stress


def _grown(array, used, capacity, dtype):
    """A new uninitialised array of ``capacity`` holding ``array[:used]``."""
    out = np.empty(capacity, dtype=dtype)
    if array is not None:
        out[:used] = array[:used]
    return out


class TrainingBatch:
    """Stacked training data of a set of images, and its loss partial sums.

    All atoms of one element over all images of the batch form one block;
    the forces of the batch are one sparse product ``T @ g`` with ``T`` the
    block-diagonal stack of the images' force matrices, columns reordered
    to the element-major layout of ``g``.

    Parameters
    ----------
    images : dict
        ``{hash: ase.Atoms}``, reference energies/forces attached.
    arrays : mapping
        ``arrays[hash]`` is the image's :class:`ImageFingerprints`.
    train_forces : bool
        Build the force part (needs fingerprint derivatives).
    weights : dict, optional
        ``{hash: weight}`` of each image in the loss (duplicates); 1 if
        missing.
    train_stress : bool
        Also build the stress part (with ``train_forces``): the images
        that carry a stress (:func:`reference_stress`) get six rows of
        the virial map of their fingerprint derivatives, divided by
        their volume; the others have no stress term.
    """

    def __init__(self, images, arrays, train_forces, weights=None,
                 train_stress=False):
        keys = list(images)
        weights = weights or {}
        self.n_images = len(keys)
        self.train_forces = train_forces
        self.train_stress = bool(train_stress and train_forces)
        self.image_weight = np.array([float(weights.get(k, 1.0))
                                      for k in keys])
        self.n_atoms = np.array([len(images[k]) for k in keys], dtype=float)
        self.reference_energies = np.empty(self.n_images)
        fingerprints = {}   # element -> list of blocks
        image_of_atom = {}  # element -> list of image ids per row
        for n, key in enumerate(keys):
            atoms = images[key]
            energy = atoms.get_potential_energy(apply_constraint=False)
            if energy is None or not np.isfinite(energy):
                raise ValueError("image %s has no finite reference energy"
                                 % key)
            self.reference_energies[n] = energy
            fp = arrays[key]
            for element, block in fp.values.items():
                fingerprints.setdefault(element, []).append(
                    np.asarray(block, dtype=float))
                image_of_atom.setdefault(element, []).append(
                    np.full(len(block), n, dtype=np.int64))
        self.elements = sorted(fingerprints)
        self.fingerprints = {}
        for e in self.elements:
            widths = {b.shape[1] for b in fingerprints[e] if len(b)}
            if len(widths) > 1:
                raise ValueError("element %s has fingerprints of different "
                                 "lengths %s across images" % (e, widths))
            self.fingerprints[e] = np.concatenate(fingerprints[e])
        self.image_of_atom = {e: np.concatenate(image_of_atom[e])
                              for e in self.elements}
        if train_forces:
            self._build_forces(keys, images, arrays)

    def _build_stress(self, stress_rows, n_columns):
        """The stress part from each stress image's ``(image, weight,
        reference, (6, n_columns) map)``."""
        count = len(stress_rows)
        self.stress_matrix = scipy.sparse.vstack(
            [rows[3] for rows in stress_rows], format="csr") if count \
            else scipy.sparse.csr_matrix((0, n_columns))
        self.reference_stress = np.concatenate(
            [rows[2] for rows in stress_rows]) if count else np.zeros(0)
        # d(stress_loss)/d(stress_row) = 2 * weight / 6 * residual.
        self.stress_row_weight = np.repeat(
            [rows[1] / 6.0 for rows in stress_rows], 6) if count \
            else np.zeros(0)
        self.n_stress_images = float(sum(rows[1] for rows in stress_rows))

    def _build_forces(self, keys, images, arrays):
        """Stack the force matrices and reference forces of the images."""
        # Element-major column layout of g: offset of each element's block.
        column_start, start = {}, 0
        for e in self.elements:
            column_start[e] = start
            start += self.fingerprints[e].size
        n_columns = start
        # Rows of each (image, element) within the element's stacked block.
        row_start = {e: np.searchsorted(self.image_of_atom[e],
                                        np.arange(self.n_images))
                     for e in self.elements}
        # Each image's force matrix (duplicates already summed) with its
        # columns mapped to the batch's element-major layout. The mapping
        # is increasing, so column order within a row is kept.
        index_type = np.int32 if n_columns < _INT32_INDEX_LIMIT else np.int64
        n_rows = 3 * int(self.n_atoms.sum())
        row_counts = np.empty(n_rows, dtype=np.int64)
        data = indices = None
        reference, at, row = [], 0, 0
        stress_rows = []
        for n, key in enumerate(keys):
            fp = arrays[key]
            atoms = images[key]
            if not fp.has_derivatives:
                raise ValueError("image %s has no fingerprint derivatives; "
                                 "force training needs them" % key)
            forces = atoms.get_forces(apply_constraint=False)
            if forces is None or not np.all(np.isfinite(forces)):
                raise ValueError("image %s has no finite reference forces"
                                 % key)
            reference.append(np.asarray(forces, dtype=float).ravel())
            matrix = fp.force_matrix()
            mapping = np.empty(matrix.shape[1], dtype=np.int64)
            local = 0
            for e in sorted(fp.values):
                size = fp.values[e].size
                n_features = fp.values[e].shape[1] if size else 0
                mapping[local:local + size] = (
                    column_start[e] + row_start[e][n] * n_features
                    + np.arange(size))
                local += size
            stress = reference_stress(atoms) if self.train_stress else None
            if stress is not None:
                local_map = scipy.sparse.csr_matrix(
                    fp.virial_matrix() / atoms.get_volume())
                stress_map = scipy.sparse.csr_matrix(
                    (local_map.data, mapping[local_map.indices],
                     local_map.indptr), shape=(6, n_columns))
                stress_rows.append((n, self.image_weight[n], stress,
                                    stress_map))
            # Each image goes straight into the batch's arrays, so only one
            # copy of the force data is ever held. They are sized from the
            # first image (1.5x per image, grown if a later image needs
            # more); np.empty pages are committed only once written, so the
            # unused tail costs address space, not memory.
            if data is None or at + matrix.nnz > len(data):
                capacity = max(at + matrix.nnz, int(1.5 * (at + matrix.nnz)
                                                    * self.n_images / (n + 1)))
                data = _grown(data, at, capacity, float)
                indices = _grown(indices, at, capacity, index_type)
            data[at:at + matrix.nnz] = matrix.data
            indices[at:at + matrix.nnz] = mapping[matrix.indices]
            row_counts[row:row + matrix.shape[0]] = np.diff(matrix.indptr)
            at += matrix.nnz
            row += matrix.shape[0]
        if at >= _INT32_INDEX_LIMIT:
            index_type = np.int64
        indptr = np.zeros(n_rows + 1, dtype=index_type)
        np.cumsum(row_counts, out=indptr[1:])
        data, indices = data[:at], indices[:at]
        self.force_matrix = scipy.sparse.csr_matrix(
            (data, indices, indptr), shape=(n_rows, n_columns))
        self.reference_forces = np.concatenate(reference)
        self.column_start = column_start
        atoms_per_row = np.repeat(self.n_atoms, 3 * self.n_atoms.astype(int))
        weight_per_row = np.repeat(self.image_weight,
                                   3 * self.n_atoms.astype(int))
        # d(force_loss)/dF_row = 2 * row_weight * residual.
        self.force_row_weight = weight_per_row / (3.0 * atoms_per_row)
        if self.train_stress:
            self._build_stress(stress_rows, n_columns)

    # Arrays that define a batch, for sending it to a worker.
    _ARRAYS = ("image_weight", "n_atoms", "reference_energies")
    _FORCE_ARRAYS = ("reference_forces", "force_row_weight")
    _STRESS_ARRAYS = ("reference_stress", "stress_row_weight")

    @classmethod
    def concatenate(cls, batches):
        """One batch of the images of ``batches``, in their order.

        The batches of consecutive shares of a set of images give the
        batch of the whole set, array for array (the serial evaluation
        after workers were found not to pay off).
        """
        if len(batches) == 1:
            return batches[0]
        out = cls.__new__(cls)
        out.n_images = sum(batch.n_images for batch in batches)
        out.train_forces = all(batch.train_forces for batch in batches)
        out.train_stress = out.train_forces and all(
            getattr(batch, "train_stress", False) for batch in batches)
        for name in cls._ARRAYS:
            setattr(out, name, np.concatenate([getattr(batch, name)
                                               for batch in batches]))
        out.elements = sorted({e for batch in batches
                               for e in batch.elements})
        first_image = np.cumsum([0] + [b.n_images for b in batches])
        out.fingerprints, out.image_of_atom = {}, {}
        for e in out.elements:
            having = [(n, b) for n, b in enumerate(batches)
                      if e in b.elements]
            out.fingerprints[e] = np.concatenate(
                [b.fingerprints[e] for _, b in having])
            out.image_of_atom[e] = np.concatenate(
                [b.image_of_atom[e] + first_image[n] for n, b in having])
        if not out.train_forces:
            return out
        for name in cls._FORCE_ARRAYS:
            setattr(out, name, np.concatenate([getattr(batch, name)
                                               for batch in batches]))
        out.column_start, start = {}, 0
        for e in out.elements:
            out.column_start[e] = start
            start += out.fingerprints[e].size
        nnz = sum(batch.force_matrix.nnz for batch in batches)
        n_rows = sum(batch.force_matrix.shape[0] for batch in batches)
        index_type = (np.int32 if max(start, nnz) < _INT32_INDEX_LIMIT
                      else np.int64)
        data = np.empty(nnz)
        indices = np.empty(nnz, dtype=index_type)
        indptr = np.zeros(n_rows + 1, dtype=index_type)
        rows_before = dict.fromkeys(out.elements, 0)
        at = row = 0
        mappings = []
        for batch in batches:
            matrix = batch.force_matrix
            mapping = np.empty(matrix.shape[1], dtype=index_type)
            for e in batch.elements:
                size = batch.fingerprints[e].size
                width = batch.fingerprints[e].shape[1]
                local = batch.column_start[e]
                mapping[local:local + size] = (
                    out.column_start[e] + rows_before[e] * width
                    + np.arange(size))
                rows_before[e] += batch.fingerprints[e].shape[0]
            mappings.append(mapping)
            data[at:at + matrix.nnz] = matrix.data
            np.take(mapping, matrix.indices, out=indices[at:at + matrix.nnz])
            indptr[row + 1:row + 1 + matrix.shape[0]] = \
                matrix.indptr[1:] + at
            at += matrix.nnz
            row += matrix.shape[0]
        out.force_matrix = scipy.sparse.csr_matrix(
            (data, indices, indptr), shape=(n_rows, start))
        if out.train_stress:
            for name in cls._STRESS_ARRAYS:
                setattr(out, name, np.concatenate([getattr(batch, name)
                                                   for batch in batches]))
            out.n_stress_images = sum(b.n_stress_images for b in batches)
            out.stress_matrix = scipy.sparse.vstack([
                scipy.sparse.csr_matrix(
                    (b.stress_matrix.data, mapping[b.stress_matrix.indices],
                     b.stress_matrix.indptr),
                    shape=(b.stress_matrix.shape[0], start))
                for b, mapping in zip(batches, mappings)], format="csr")
        return out

    def todict(self):
        """The batch as plain arrays, numbers and dicts (what
        :mod:`amp.parallel.wire` carries); :meth:`fromdict` rebuilds it."""
        out = {name: getattr(self, name) for name in self._ARRAYS}
        out.update(n_images=self.n_images, train_forces=self.train_forces,
                   elements=list(self.elements),
                   fingerprints=dict(self.fingerprints),
                   image_of_atom=dict(self.image_of_atom))
        if self.train_forces:
            matrix = self.force_matrix
            out.update({name: getattr(self, name)
                        for name in self._FORCE_ARRAYS})
            out.update(force_data=matrix.data, force_indices=matrix.indices,
                       force_indptr=matrix.indptr,
                       force_shape=list(matrix.shape),
                       column_start=dict(self.column_start))
        if getattr(self, "train_stress", False):
            matrix = self.stress_matrix
            out.update({name: getattr(self, name)
                        for name in self._STRESS_ARRAYS})
            out.update(train_stress=True,
                       n_stress_images=self.n_stress_images,
                       stress_data=matrix.data,
                       stress_indices=matrix.indices,
                       stress_indptr=matrix.indptr,
                       stress_shape=list(matrix.shape))
        return out

    @classmethod
    def fromdict(cls, d):
        """Rebuild a batch from :meth:`todict`'s form (no images needed)."""
        batch = cls.__new__(cls)  # the constructor builds from images
        for name in cls._ARRAYS:
            setattr(batch, name, np.asarray(d[name], dtype=float))
        batch.n_images = int(d["n_images"])
        batch.train_forces = bool(d["train_forces"])
        batch.elements = list(d["elements"])
        batch.fingerprints = {e: np.asarray(d["fingerprints"][e], dtype=float)
                              for e in batch.elements}
        batch.image_of_atom = {e: np.asarray(d["image_of_atom"][e])
                               for e in batch.elements}
        if batch.train_forces:
            for name in cls._FORCE_ARRAYS:
                setattr(batch, name, np.asarray(d[name], dtype=float))
            batch.force_matrix = scipy.sparse.csr_matrix(
                (d["force_data"], d["force_indices"], d["force_indptr"]),
                shape=tuple(d["force_shape"]))
            batch.column_start = {e: int(v)
                                  for e, v in d["column_start"].items()}
        batch.train_stress = bool(d.get("train_stress", False))
        if batch.train_stress:
            for name in cls._STRESS_ARRAYS:
                setattr(batch, name, np.asarray(d[name], dtype=float))
            batch.n_stress_images = float(d["n_stress_images"])
            batch.stress_matrix = scipy.sparse.csr_matrix(
                (d["stress_data"], d["stress_indices"], d["stress_indptr"]),
                shape=tuple(d["stress_shape"]))
        return batch

    def partial(self, networks, lossprime=True, energy_coefficient=1.0,
                force_coefficient=None, raveler=None,
                stress_coefficient=None):
        """Partial sums of the loss over this batch's images.

        Parameters
        ----------
        networks : dict
            ``{element: ElementNetwork}``.
        lossprime : bool
            Also compute the gradient.
        energy_coefficient, force_coefficient : float
            Coefficients of the loss (force None or 0 → no force term).
        raveler : Raveler
            Layout of the gradient vector (needed when ``lossprime``).
        stress_coefficient : float, optional
            Coefficient of the stress term (batches built with
            ``train_stress``; None: no stress term).

        Returns
        -------
        dict
            ``energy_loss``, ``force_loss`` (weighted sums), ``gradient``
            (of ``energy_coefficient * energy_loss + force_coefficient *
            force_loss [+ stress_coefficient * stress_loss]``; None without
            ``lossprime``), ``energy_maxresid``, ``force_maxresid``,
            ``n_images`` (sum of the image weights) and, with a stress
            term, ``stress_loss`` (``sum_images weight * sum_Voigt
            dsigma^2 / 6``), ``stress_maxresid`` and ``n_stress_images``.
        """
        train_forces = self.train_forces and force_coefficient is not None
        train_stress = train_forces and stress_coefficient is not None \
            and getattr(self, "train_stress", False)
        outputs, predicted = {}, np.zeros(self.n_images)
        for e in self.elements:
            if e not in networks:
                raise ValueError("the model has no network for element %s"
                                 % e)
            net = networks[e]
            if self.fingerprints[e].shape[1] != net.n_features:
                raise ValueError(
                    "element %s: fingerprints have %i features but the "
                    "network takes %i" % (e, self.fingerprints[e].shape[1],
                                          net.n_features))
            outputs[e] = net.forward(self.fingerprints[e])
            predicted += np.bincount(self.image_of_atom[e],
                                     net.energies(outputs[e]),
                                     minlength=self.n_images)
        per_atom = (predicted - self.reference_energies) / self.n_atoms
        result = {"energy_loss": float(self.image_weight @ per_atom ** 2),
                  "energy_maxresid": float(np.max(np.abs(per_atom),
                                                  initial=0.0)),
                  "force_loss": 0.0, "force_maxresid": 0.0,
                  "n_images": float(self.image_weight.sum()),
                  "gradient": None}
        directions = {}
        if train_forces:
            g = np.concatenate([networks[e].input_gradient(outputs[e]).ravel()
                                for e in self.elements])
            residual = self.force_matrix @ g - self.reference_forces
            result["force_loss"] = float(
                self.force_row_weight @ residual ** 2)
            result["force_maxresid"] = float(np.max(np.abs(residual),
                                                    initial=0.0))
            if train_stress:
                stress_residual = self.stress_matrix @ g - \
                    self.reference_stress
                result.update(
                    stress_loss=float(self.stress_row_weight
                                      @ stress_residual ** 2),
                    stress_maxresid=float(np.max(np.abs(stress_residual),
                                                 initial=0.0)),
                    n_stress_images=self.n_stress_images)
            if lossprime:
                # The transpose is a CSC view of the same arrays (no copy).
                back = self.force_matrix.T @ (
                    (2.0 * force_coefficient) * self.force_row_weight
                    * residual)
                if train_stress:  # the same fingerprint-space direction
                    back += self.stress_matrix.T @ (
                        (2.0 * stress_coefficient) * self.stress_row_weight
                        * stress_residual)
                for e in self.elements:
                    start = self.column_start[e]
                    directions[e] = back[
                        start:start + self.fingerprints[e].size].reshape(
                            self.fingerprints[e].shape)
        if not lossprime:
            return result
        # dLoss/dE_image, then per atom through image_of_atom.
        d_energy = (2.0 * energy_coefficient) * self.image_weight * \
            per_atom / self.n_atoms
        gradient = np.zeros(raveler.count)
        for e in self.elements:
            grads, d_intercept, d_slope = networks[e].parameter_gradient(
                outputs[e], d_energy[self.image_of_atom[e]],
                directions.get(e))
            for piece, grad in zip(raveler.weight_slices[e], grads):
                gradient[piece] += grad.ravel()
            i, s = raveler.scaling_index[e]
            gradient[i] += d_intercept
            gradient[s] += d_slope
        result["gradient"] = gradient
        return result
