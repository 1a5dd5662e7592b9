"""Streamed training batches: chunk files walked at every evaluation.

When the force data of a training set do not fit in memory, the loss
function's batches are built once, a chunk of consecutive images at a
time, into a chunk set (:mod:`amp.store.chunks`: one ``.npy`` per array
per chunk, memory-mapped read-only) and every evaluation walks the chunks
in order, adding their partial sums with
:func:`~amp.model.combine_partials`. Memory holds a few chunks whatever
the number of images; the sums are those of the in-memory batches up to
the order of the additions (fixed: chunk order), so loss and gradient
agree with the in-memory ones to rounding.

:class:`Streaming` says where the chunk sets go, how large a chunk is and
whether a set is kept; the loss function holds one as its ``streaming``
attribute (:class:`amp.Amp` sets it when the memory budget asks for
streaming). :meth:`Streaming.batches` builds (or reopens) the set and
returns :class:`StreamedBatches`, which the loss function iterates like a
list of batches.

Which set is which: a set is keyed by a SHA-256 digest of the chunk
layout version, the descriptor parameters of the fingerprint store, the
image hashes in order, their reference energies and forces and weights,
whether forces are trained and the grouping of the images into chunks. A
set is built in a private folder and published whole
(:class:`~amp.store.chunks.ChunkSetWriter`); it is opened only when its
manifest has the key asked for, so a stale set (other images, other
descriptor, other references) is never read. By default the set is
private to the run (``chunks/run-<host>-<pid>-<random>``) and removed when
training ends; with ``keep=True`` it is ``chunks/set-<key>`` and reused by
the next training of the same images and descriptor, after a check of its
arrays (index bounds, sizes), since files on disk are read as if someone
else wrote them.

A reader thread maps the next chunk and touches its pages while the
current one is evaluated (``prefetch``), so reading overlaps computing;
``bench/large_training.py`` measures both ways.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import secrets
import socket
import threading
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from ..store.chunks import ChunkSet, ChunkSetError, ChunkSetWriter, \
    remove_set
from .subsets import (BatchSource, ChunkSource, batch_arrays,
                      batch_from_arrays, select_images)
from .batch import TrainingBatch

__all__ = ["Streaming", "StreamedBatches", "chunk_key", "group_images",
           "chunk_root", "LAYOUT_VERSION"]

#: Bumped whenever what a chunk holds changes: sets of another version
#: have another key and are never reused.
LAYOUT_VERSION = 1

#: Default bytes of force data per chunk. Measured (bench/
#: large_training.py, Cu108): per image, chunks of 16-64 MB evaluate as
#: fast as one another and faster than one batch of everything, whose
#: temporaries no longer fit the caches; a chunk costs about 1 ms of
#: opening and mapping.
CHUNK_BYTES = 64 * 10 ** 6


def chunk_root(dblabel: str) -> str:
    """Where the chunk sets of a training's databases go:
    ``<dblabel>-fingerprint-primes.ampdb/chunks``."""
    return os.path.join("%s-fingerprint-primes.ampdb" % dblabel, "chunks")


def group_images(image_bytes: Sequence[float],
                 chunk_bytes: float) -> list[int]:
    """Counts of consecutive images per chunk: as many as fit in
    ``chunk_bytes`` (at least one)."""
    counts: list[int] = []
    size, count = 0.0, 0
    for nbytes in image_bytes:
        if count and size + nbytes > chunk_bytes:
            counts.append(count)
            size, count = 0.0, 0
        size += nbytes
        count += 1
    if count:
        counts.append(count)
    return counts


def chunk_key(parameters: Any, images: Mapping[str, Any],
              train_forces: bool, weights: Mapping[str, float] | None,
              counts: Sequence[int], dtype: str = "float64") -> str:
    """The SHA-256 digest that names a chunk set (see the module).

    Parameters
    ----------
    parameters : dict
        The fingerprint store's descriptor parameters.
    images : dict
        ``{hash: atoms}`` in training order, references attached.
    train_forces : bool
    weights : dict or None
        ``{hash: weight}``.
    counts : list of int
        Images per chunk.
    dtype : str
    """
    digest = hashlib.sha256()
    head = {"layout": LAYOUT_VERSION, "parameters": parameters,
            "train_forces": bool(train_forces), "counts": list(counts),
            "dtype": dtype}
    digest.update(json.dumps(head, sort_keys=True,
                             default=_plain).encode())
    weights = weights or {}
    for key, atoms in images.items():
        digest.update(key.encode())
        energy = atoms.get_potential_energy(apply_constraint=False)
        digest.update(np.float64(energy).tobytes())
        digest.update(np.float64(weights.get(key, 1.0)).tobytes())
        if train_forces:
            forces = atoms.get_forces(apply_constraint=False)
            digest.update(np.ascontiguousarray(forces, dtype="<f8")
                          .tobytes())
    return digest.hexdigest()


def _plain(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError("not JSON-able: %r" % (value,))


class Streaming:
    """Where and how a loss function streams its batches.

    Parameters
    ----------
    folder : str
        Folder of the chunk sets (e.g. :func:`chunk_root` of the
        training's ``dblabel``).
    chunk_bytes : int
        Bytes of force data per chunk (whole images; at least one).
    keep : bool
        Keep the set when training ends and reuse it when the same images
        train with the same descriptor again (it is keyed, see the
        module); by default the set is removed.
    prefetch : bool
        Read the next chunk in a thread while the current one is
        evaluated.
    image_bytes : dict, optional
        ``{hash: bytes}`` of each image's force data, for grouping; by
        default the first image's bytes per atom, measured, times each
        image's atom count.
    log : callable, optional

    Examples
    --------
    >>> from amp.model.streaming import Streaming
    >>> calc.model.lossfunction.streaming = Streaming(  # doctest: +SKIP
    ...     'train-fingerprint-primes.ampdb/chunks', chunk_bytes=32e6)
    """

    def __init__(self, folder: str | os.PathLike,
                 chunk_bytes: float = CHUNK_BYTES, keep: bool = False,
                 prefetch: bool = True,
                 image_bytes: Mapping[str, float] | None = None,
                 log: Callable[[str], Any] | None = None) -> None:
        self.folder = os.fspath(folder)
        self.chunk_bytes = int(chunk_bytes)
        if self.chunk_bytes <= 0:
            raise ValueError("chunk_bytes must be positive")
        self.keep, self.prefetch = bool(keep), bool(prefetch)
        self.image_bytes = image_bytes
        self.log = log

    def _counts(self, images, store, train_forces, weights):
        if self.image_bytes is not None:
            sizes = [self.image_bytes[key] for key in images]
        else:
            first = next(iter(images))
            batch = TrainingBatch({first: images[first]}, store,
                                  train_forces, weights)
            per_atom = _batch_bytes(batch) / len(images[first])
            sizes = [per_atom * len(atoms) for atoms in images.values()]
        return group_images(sizes, self.chunk_bytes)

    def batches(self, images: Mapping[str, Any], store: Any,
                train_forces: bool,
                weights: Mapping[str, float] | None = None,
                log: Callable[[str], Any] | None = None
                ) -> StreamedBatches:
        """The :class:`StreamedBatches` of ``images``: a kept set of the
        same key reopened, otherwise a new set built from ``store``.

        Parameters
        ----------
        images : dict
            ``{hash: atoms}``, in training order.
        store : FingerprintStore
        train_forces : bool
        weights : dict, optional
        log : callable, optional
        """
        say: Callable[[str], Any] = log or self.log or (lambda line: None)
        counts = self._counts(images, store, train_forces, weights)
        key = chunk_key(getattr(store, "parameters", None), images,
                        train_forces, weights, counts)
        if self.keep:
            folder = os.path.join(self.folder, "set-" + key[:32])
            try:
                chunkset = ChunkSet.open(folder, key)
            except FileNotFoundError:
                chunkset = None
            except (ChunkSetError, OSError) as error:
                say("Chunk set %s not reused (%s); rebuilding it."
                    % (folder, error))
                remove_set(folder)
                chunkset = None
            if chunkset is not None:
                try:
                    _check_set(chunkset)
                except (ChunkSetError, ValueError, OSError) as error:
                    say("Chunk set %s not reused (%s); rebuilding it."
                        % (folder, error))
                    remove_set(folder)
                else:
                    say("Streaming: reusing the chunk set %s (%i chunks, "
                        "%.0f MB)." % (folder, len(chunkset),
                                       chunkset.nbytes / 1e6))
                    return StreamedBatches(chunkset, True, self.prefetch)
        else:
            _remove_stale_runs(self.folder, say)
            folder = os.path.join(self.folder, "run-%s-%d-%s" % (
                _host(), os.getpid(), secrets.token_hex(4)))
        chunkset = build_chunks(folder, key, images, store, train_forces,
                                weights, counts)
        say("Streaming: %i images in %i chunks of up to %i images, %.0f MB "
            "in %s%s." % (len(images), len(counts), max(counts),
                          chunkset.nbytes / 1e6, folder,
                          " (kept for reuse)" if self.keep else
                          " (removed when training ends)"))
        return StreamedBatches(chunkset, self.keep, self.prefetch)


def _remove_stale_runs(folder, log):
    """Remove the private sets of runs on this host whose process is gone
    (killed before it could remove them)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    prefix = "run-%s-" % _host()
    for name in names:
        if not name.startswith(prefix):
            continue
        try:
            pid = int(name[len(prefix):].split("-")[0])
            os.kill(pid, 0)
        except ValueError:
            continue
        except ProcessLookupError:
            remove_set(os.path.join(folder, name))
            log("Streaming: removed %s, left by a run that ended without "
                "removing it." % os.path.join(folder, name))
        except OSError:  # another user's live process
            continue


def _host():
    name = socket.gethostname().split(".")[0]
    return "".join(c for c in name if c.isalnum() or c == "-")[:30] or "host"


def _batch_bytes(batch):
    if not batch.train_forces:
        return sum(f.nbytes for f in batch.fingerprints.values())
    m = batch.force_matrix
    return m.data.nbytes + m.indices.nbytes + m.indptr.nbytes


def build_chunks(folder: str, key: str, images: Mapping[str, Any],
                 store: Any, train_forces: bool,
                 weights: Mapping[str, float] | None,
                 counts: Sequence[int]) -> ChunkSet:
    """Write the chunk set of ``images`` (``counts`` per chunk) to
    ``folder``; returns the :class:`~amp.store.chunks.ChunkSet`. One
    chunk's batch is in memory at a time; on any failure nothing is
    left."""
    keys = list(images)
    with ChunkSetWriter(folder, key, {"n_images": len(keys),
                                      "counts": list(counts)}) as writer:
        start = 0
        for count in counts:
            group = {k: images[k] for k in keys[start:start + count]}
            batch = TrainingBatch(group, store, train_forces, weights)
            arrays, info = batch_arrays(batch)
            del batch
            writer.add(arrays, info)
            del arrays
            start += count
        return writer.commit()


def _check_set(chunkset):
    """Refuse a chunk set whose arrays could make a reader go astray
    (index bounds, sizes), chunk by chunk: one pass over the data."""
    meta = chunkset.meta
    counts = meta.get("counts")
    if not isinstance(counts, list) or len(counts) != len(chunkset) or \
            sum(counts) != meta.get("n_images"):
        raise ChunkSetError("its chunk counts do not add up")
    for index in range(len(chunkset)):
        info = chunkset.chunks[index]["info"]
        arrays = chunkset.arrays(index)
        try:
            _check_chunk(arrays, info, counts[index])
        except (KeyError, TypeError, IndexError) as error:
            raise ChunkSetError("chunk %i is malformed (%r)"
                                % (index, error)) from None
        del arrays


def _check_chunk(arrays, info, count):
    n = int(info["n_images"])
    if n != count:
        raise ChunkSetError("a chunk holds %d images, not %d" % (n, count))
    for name in TrainingBatch._ARRAYS:
        if arrays[name].shape != (n,):
            raise ChunkSetError("%s has shape %s" % (name,
                                                     arrays[name].shape))
    n_atoms = np.asarray(arrays["n_atoms"])
    if np.any(n_atoms < 1) or np.any(n_atoms != np.round(n_atoms)):
        raise ChunkSetError("bad atom counts")
    for e in info["elements"]:
        image_of_atom = np.asarray(arrays["image_of_atom." + e])
        fingerprints = arrays["fingerprints." + e]
        if fingerprints.ndim != 2 or \
                image_of_atom.shape != (fingerprints.shape[0],) or \
                (len(image_of_atom) and (image_of_atom[0] < 0 or
                                         image_of_atom[-1] >= n or
                                         np.any(np.diff(image_of_atom) < 0))):
            raise ChunkSetError("element %s: bad fingerprint rows" % e)
    if not info["train_forces"]:
        return
    rows, columns = (int(v) for v in info["force_shape"])
    total_atoms = int(n_atoms.sum())
    expected_columns = sum(arrays["fingerprints." + e].size
                           for e in info["elements"])
    start = 0
    for e in info["elements"]:
        if int(info["column_start"][e]) != start:
            raise ChunkSetError("bad column layout")
        start += arrays["fingerprints." + e].size
    indptr = np.asarray(arrays["force_indptr"])
    indices = arrays["force_indices"]
    if rows != 3 * total_atoms or columns != expected_columns or \
            indptr.shape != (rows + 1,) or indptr[0] != 0 or \
            indptr[-1] != len(indices) or \
            len(arrays["force_data"]) != len(indices) or \
            np.any(np.diff(indptr) < 0) or \
            arrays["reference_forces"].shape != (rows,) or \
            arrays["force_row_weight"].shape != (rows,):
        raise ChunkSetError("force arrays of inconsistent sizes")
    if len(indices) and (int(np.min(indices)) < 0 or
                         int(np.max(indices)) >= columns):
        raise ChunkSetError("force column indices out of bounds")


class StreamedBatches:
    """The batches of a chunk set, one chunk at a time.

    Iterating gives one :class:`~amp.model.batch.TrainingBatch` per chunk
    (its arrays memory-mapped; let it go before taking the next to keep
    memory flat), in chunk order. :meth:`select` gives the batch of any
    images (a mini-batch), reading only their rows.

    Parameters
    ----------
    chunkset : ChunkSet
    keep : bool
        Leave the files when :meth:`close` is called.
    prefetch : bool
        Map and touch the next chunk in a thread while the current one is
        in use.
    """

    def __init__(self, chunkset: ChunkSet, keep: bool = False,
                 prefetch: bool = True) -> None:
        self.chunkset, self.keep, self.prefetch = chunkset, keep, prefetch
        self.counts = [int(c["info"]["n_images"]) for c in chunkset.chunks]
        self.first_image = np.concatenate([[0], np.cumsum(self.counts)]
                                          ).astype(np.int64)
        self.n_images = int(self.first_image[-1])
        self.closed = False

    def __len__(self) -> int:
        return len(self.counts)

    def batch(self, index: int) -> TrainingBatch:
        """Chunk ``index``'s batch, memory-mapped."""
        self._check_open()
        return batch_from_arrays(self.chunkset.arrays(index),
                                 self.chunkset.chunks[index]["info"])

    def _check_open(self):
        if self.closed:
            raise RuntimeError("the streamed batches were closed (their "
                               "chunk files removed); the loss function "
                               "builds new ones when evaluated again")

    def __iter__(self) -> Iterator[TrainingBatch]:
        if not self.prefetch or len(self) < 2:
            for index in range(len(self)):
                yield self.batch(index)
            return
        yield from self._prefetched()

    def _prefetched(self) -> Iterator[Any]:
        """Chunks mapped and paged in by a reader thread, one ahead."""
        self._check_open()
        ready: queue.Queue = queue.Queue(maxsize=1)
        stop = threading.Event()

        def reader():
            try:
                for index in range(len(self)):
                    if stop.is_set():
                        return
                    batch = self.batch(index)
                    _touch(batch)
                    ready.put(batch)
                    del batch
                ready.put(None)
            except BaseException as error:  # handed to the consumer
                ready.put(error)

        thread = threading.Thread(target=reader, name="amp-chunk-reader",
                                  daemon=True)
        thread.start()
        try:
            while True:
                item = ready.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
                del item
        finally:
            stop.set()
            while thread.is_alive():  # unblock a reader waiting to put
                try:
                    ready.get(timeout=0.05)
                except queue.Empty:
                    pass
            thread.join()

    def select(self, ids: Sequence[int] | np.ndarray) -> TrainingBatch:
        """The batch of the images ``ids`` (global indices, increasing),
        read from their chunks with ``pread``."""
        self._check_open()
        ids = np.asarray(ids, dtype=np.int64)
        chunk = np.searchsorted(self.first_image, ids, "right") - 1
        parts = []
        for index in np.unique(chunk).tolist():
            local = ids[chunk == index] - self.first_image[index]
            parts.append(select_images(ChunkSource(self.chunkset, index),
                                       local))
        return TrainingBatch.concatenate(parts)

    @property
    def nbytes(self) -> int:
        """Bytes of the chunk files."""
        return self.chunkset.nbytes

    def close(self) -> None:
        """Remove the chunk files unless kept."""
        if not self.closed:
            self.closed = True
            if not self.keep:
                self.chunkset.remove()
                with contextlib.suppress(OSError):  # the last set: tidy
                    os.rmdir(os.path.dirname(self.chunkset.folder))


def _touch(batch):
    """Read one value per page of a mapped batch's large arrays, so the
    pages are in memory before the batch is used."""
    arrays = list(batch.fingerprints.values())
    if batch.train_forces:
        arrays += [batch.force_matrix.data, batch.force_matrix.indices,
                   batch.force_matrix.indptr]
    for array in arrays:
        flat = array.reshape(-1).view(np.uint8)
        if flat.size:
            flat[::4096].max()


def select_from_batches(batches: Sequence[TrainingBatch],
                        ids: Sequence[int] | np.ndarray) -> TrainingBatch:
    """The batch of images ``ids`` (global, increasing) of in-memory
    ``batches`` of consecutive images (as the loss function splits
    them)."""
    ids = np.asarray(ids, dtype=np.int64)
    first = np.concatenate([[0], np.cumsum([b.n_images for b in batches])]
                           ).astype(np.int64)
    which = np.searchsorted(first, ids, "right") - 1
    parts = [select_images(BatchSource(batches[index]),
                           ids[which == index] - first[index])
             for index in np.unique(which).tolist()]
    return TrainingBatch.concatenate(parts)
