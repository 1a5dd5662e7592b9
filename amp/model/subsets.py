"""Some images of a batch as a batch of their own: what a mini-batch is.

:func:`select_images` builds the :class:`~amp.model.batch.TrainingBatch`
of chosen images of a *source*: a batch in memory
(:class:`BatchSource`) or one chunk of a chunk set on disk
(:class:`ChunkSource`, which reads only the chosen images' rows with
``pread``, so memory follows the mini-batch, not the chunk). The arrays
are those :class:`TrainingBatch` would build from the images themselves:
fingerprint rows in image order, the force matrix's rows of the chosen
images with its columns renumbered into the subset's element-major
layout. Subsets of consecutive sources joined with
:meth:`TrainingBatch.concatenate` equal the subset of the joined source
array for array, so a mini-batch gives the same loss whether its images
come from memory or from chunk files.

:func:`minibatch_loss` is the loss a mini-batch optimizer steps on.
"""

from __future__ import annotations

from typing import Any, Sequence, Union

import numpy as np
import scipy.sparse

from .batch import TrainingBatch

__all__ = ["BatchSource", "ChunkSource", "select_images", "minibatch_loss",
           "batch_arrays"]


def batch_arrays(batch: TrainingBatch) -> tuple[dict[str, np.ndarray],
                                                dict[str, Any]]:
    """A batch's arrays by the flat names chunk files use
    (``fingerprints.<element>``, ``image_of_atom.<element>``,
    ``force_data``, ...) and the rest of its definition as JSON data
    (``info``); :func:`batch_from_arrays` is the inverse."""
    d = batch.todict()
    arrays = {name: d[name] for name in TrainingBatch._ARRAYS}
    for e in batch.elements:
        arrays["fingerprints." + e] = d["fingerprints"][e]
        arrays["image_of_atom." + e] = np.asarray(d["image_of_atom"][e],
                                                  dtype=np.int64)
    info = {"n_images": d["n_images"], "train_forces": d["train_forces"],
            "elements": list(d["elements"])}
    if batch.train_forces:
        for name in TrainingBatch._FORCE_ARRAYS:
            arrays[name] = d[name]
        arrays.update(force_data=d["force_data"],
                      force_indices=d["force_indices"],
                      force_indptr=d["force_indptr"])
        info.update(force_shape=[int(n) for n in d["force_shape"]],
                    column_start={e: int(v)
                                  for e, v in d["column_start"].items()})
    return arrays, info


def batch_from_arrays(arrays: dict[str, np.ndarray],
                      info: dict[str, Any]) -> TrainingBatch:
    """The :class:`TrainingBatch` of :func:`batch_arrays`' form (the arrays
    are used as they are: memory-mapped ones stay mapped)."""
    d = dict(info)
    for name in TrainingBatch._ARRAYS + (TrainingBatch._FORCE_ARRAYS
                                         if info["train_forces"] else ()):
        d[name] = arrays[name]
    d["fingerprints"] = {e: arrays["fingerprints." + e]
                         for e in info["elements"]}
    d["image_of_atom"] = {e: arrays["image_of_atom." + e]
                          for e in info["elements"]}
    if info["train_forces"]:
        d.update(force_data=arrays["force_data"],
                 force_indices=arrays["force_indices"],
                 force_indptr=arrays["force_indptr"])
    return TrainingBatch.fromdict(d)


class BatchSource:
    """Rows of a batch held in memory, as :func:`select_images` reads
    them."""

    def __init__(self, batch: TrainingBatch) -> None:
        self.batch = batch
        self.elements = list(batch.elements)
        self.train_forces = batch.train_forces
        self.n_images = batch.n_images
        if batch.train_forces:
            self.column_start = dict(batch.column_start)
            self.n_columns = batch.force_matrix.shape[1]

    def whole(self, name: str) -> np.ndarray:
        """A small array in full."""
        b = self.batch
        if name.startswith("image_of_atom."):
            return b.image_of_atom[name.split(".", 1)[1]]
        if name == "force_indptr":
            return b.force_matrix.indptr
        return getattr(b, name)

    def rows(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of a large array."""
        b = self.batch
        if name.startswith("fingerprints."):
            return b.fingerprints[name.split(".", 1)[1]][start:stop]
        if name == "force_data":
            return b.force_matrix.data[start:stop]
        if name == "force_indices":
            return b.force_matrix.indices[start:stop]
        return getattr(b, name)[start:stop]


class ChunkSource:
    """Rows of one chunk of a :class:`~amp.store.chunks.ChunkSet`, read
    with ``pread`` (nothing stays mapped)."""

    def __init__(self, chunkset: Any, index: int) -> None:
        self.chunkset, self.index = chunkset, index
        info = chunkset.chunks[index]["info"]
        self.elements = list(info["elements"])
        self.train_forces = bool(info["train_forces"])
        self.n_images = int(info["n_images"])
        if self.train_forces:
            self.column_start = dict(info["column_start"])
            self.n_columns = int(info["force_shape"][1])
        self._small: dict[str, np.ndarray] = {}

    def whole(self, name: str) -> np.ndarray:
        """A small array in full (read once)."""
        if name not in self._small:
            spec = self.chunkset.chunks[self.index]["arrays"][name]
            self._small[name] = self.chunkset.read_rows(
                self.index, name, 0, spec["shape"][0])
        return self._small[name]

    def rows(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of a large array, read with ``pread``."""
        return self.chunkset.read_rows(self.index, name, start, stop)


def _runs(starts, stops):
    """Adjacent ranges merged: ``[(start, stop), ...]`` covering the same
    rows in the same order (fewer reads)."""
    runs = []
    for a, b in zip(starts.tolist(), stops.tolist()):
        if b <= a:
            continue
        if runs and runs[-1][1] == a:
            runs[-1][1] = b
        else:
            runs.append([a, b])
    return runs


def _gather(source, name, starts, stops, dtype):
    parts = [source.rows(name, a, b) for a, b in _runs(starts, stops)]
    if not parts:
        return np.empty(0, dtype=dtype)
    return np.concatenate(parts)


Source = Union[BatchSource, ChunkSource]


def select_images(source: Source,
                  ids: Sequence[int] | np.ndarray) -> TrainingBatch:
    """The batch of some images of ``source``.

    Parameters
    ----------
    source : BatchSource or ChunkSource
    ids : array_like of int
        Image indices within the source, increasing.

    Returns
    -------
    TrainingBatch
        Array for array what :class:`TrainingBatch` builds from those
        images (with the same weights).
    """
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) and (np.any(np.diff(ids) <= 0) or ids[0] < 0
                     or ids[-1] >= source.n_images):
        raise ValueError("image indices must increase within 0..%d"
                         % (source.n_images - 1))
    out = TrainingBatch.__new__(TrainingBatch)
    out.n_images = len(ids)
    out.train_forces = source.train_forces
    n_atoms = np.asarray(source.whole("n_atoms"))
    out.n_atoms = np.array(n_atoms[ids], dtype=float)
    out.image_weight = np.array(source.whole("image_weight")[ids],
                                dtype=float)
    out.reference_energies = np.array(
        source.whole("reference_energies")[ids], dtype=float)
    out.fingerprints, out.image_of_atom, element_rows = {}, {}, {}
    for e in source.elements:
        image_of_atom = np.asarray(source.whole("image_of_atom." + e))
        starts = np.searchsorted(image_of_atom, ids, "left")
        stops = np.searchsorted(image_of_atom, ids, "right")
        if not np.any(stops > starts):
            continue
        out.fingerprints[e] = np.array(_gather(
            source, "fingerprints." + e, starts, stops, float), dtype=float)
        out.image_of_atom[e] = np.repeat(np.arange(len(ids)),
                                         stops - starts)
        element_rows[e] = (starts, stops)
    out.elements = [e for e in source.elements if e in out.fingerprints]
    if out.train_forces:
        _select_forces(source, ids, n_atoms, out, element_rows)
    return out


def _select_forces(source, ids, n_atoms, out, element_rows):
    """The force part of :func:`select_images`."""
    atom_start = np.concatenate([[0], np.cumsum(n_atoms)]).astype(np.int64)
    row_start, row_stop = 3 * atom_start[ids], 3 * atom_start[ids + 1]
    indptr = np.asarray(source.whole("force_indptr"))
    data = _gather(source, "force_data", indptr[row_start], indptr[row_stop],
                   float)
    indices = _gather(source, "force_indices", indptr[row_start],
                      indptr[row_stop], indptr.dtype)
    counts = np.concatenate([np.diff(indptr[a:b + 1]) for a, b in
                             zip(row_start.tolist(), row_stop.tolist())]
                            ) if len(ids) else np.empty(0, np.int64)
    out.reference_forces = np.array(_gather(
        source, "reference_forces", row_start, row_stop, float), dtype=float)
    out.force_row_weight = np.array(_gather(
        source, "force_row_weight", row_start, row_stop, float), dtype=float)
    # Columns: old element-major position -> the subset's.
    out.column_start, start = {}, 0
    column_map = np.full(source.n_columns, -1, dtype=np.int64)
    for e in out.elements:
        width = out.fingerprints[e].shape[1]
        starts, stops = element_rows[e]
        old_rows = np.concatenate([np.arange(a, b) for a, b in
                                   zip(starts.tolist(), stops.tolist())])
        features = np.arange(width)
        old = (source.column_start[e] + old_rows[:, None] * width
               + features).ravel()
        out.column_start[e] = start
        column_map[old] = start + np.arange(old.size)
        start += old.size
    index_type = np.int32 if max(start, len(data)) < 2 ** 31 - 1 \
        else np.int64
    new_indices = column_map[indices]
    if len(new_indices) and new_indices.min() < 0:
        raise ValueError("the force data of the chosen images refer to "
                         "atoms outside them; the source is damaged")
    new_indptr = np.zeros(len(counts) + 1, dtype=index_type)
    np.cumsum(counts, out=new_indptr[1:])
    out.force_matrix = scipy.sparse.csr_matrix(
        (np.array(data, dtype=float), new_indices.astype(index_type),
         new_indptr), shape=(len(counts), start))


def minibatch_loss(batch: TrainingBatch, networks: dict, raveler: Any,
                   parameters: Any, vector: np.ndarray, n_images: int,
                   lossprime: bool = True) -> dict[str, Any]:
    """The loss a mini-batch optimizer steps on, from one mini-batch.

    The image terms of the batch scaled by ``n_images / batch.n_images``
    (an unbiased estimate of the whole set's terms, whose gradient is the
    whole loss's gradient on average over the batches of an epoch), plus
    the ``overfit`` penalty.

    Parameters
    ----------
    batch : TrainingBatch
    networks, raveler
        The model's ``element_networks()`` and ``raveler`` at ``vector``.
    parameters : Parameters
        The loss function's (``energy_coefficient``, ``force_coefficient``,
        ``overfit``).
    vector : ndarray
    n_images : int
        Images of the whole training set.
    lossprime : bool

    Returns
    -------
    dict
        ``loss``, ``dloss_dparameters`` (None without ``lossprime``),
        ``energy_rmse``, ``force_rmse`` over the batch.
    """
    p = parameters
    force_coefficient = p.force_coefficient if batch.train_forces else None
    part = batch.partial(networks, lossprime, p.energy_coefficient,
                         force_coefficient, raveler)
    scale = n_images / max(batch.n_images, 1)
    loss = p.energy_coefficient * part["energy_loss"]
    if force_coefficient is not None:
        loss += force_coefficient * part["force_loss"]
    loss *= scale
    gradient = None if not lossprime else scale * part["gradient"]
    if p.overfit:
        mask = raveler.weight_mask()
        loss += p.overfit * float(np.sum(vector[mask] ** 2))
        if lossprime:
            gradient = gradient + 2.0 * p.overfit * np.where(mask, vector,
                                                             0.0)
    weight = max(part["n_images"], 1e-300)
    return {"loss": float(loss), "dloss_dparameters": gradient,
            "energy_rmse": float(np.sqrt(part["energy_loss"] / weight)),
            "force_rmse": float(np.sqrt(part["force_loss"] / weight))}
