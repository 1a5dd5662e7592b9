"""The memory force training will need, known before anything is computed.

Force training holds, for every image, the linear map from ``dE/dG`` to the
forces (:meth:`~amp.descriptor.fingerprints.ImageFingerprints.force_matrix`)
as one sparse matrix for the whole fit, without its exact zeros. Its
stored values can be counted from the neighbour lists alone: the row of
atom ``a`` and direction ``x`` has a value for feature ``f`` of atom ``n``
when ``a`` is a neighbour of ``n`` (periodic images of one atom count
once) and ``f`` involves ``a``'s element (a G2 of that element, a G4 or G5
whose pair contains it), or when ``a`` is ``n``; in both cases only if
``n`` has the neighbours ``f`` needs (one of the G2's element, two for a
G4 of a pair of one element). A neighbour list costs about 1-2 ms for a
108-atom cell, against 20-25 ms for the derivatives themselves, so the
estimate is cheap next to the work it guards. Each stored value takes 8
bytes and a 4-byte column index.

:func:`derivative_memory` gives the estimate; :func:`check_memory` logs it
and raises :class:`TrainingMemoryError` when it exceeds the memory
available or a limit the user gave. :func:`plan_training` chooses instead:
in memory when the estimate fits, otherwise streamed from chunk files
(:mod:`amp.model.streaming`), with the chunk size, the memory the chunks
take at once and the disk they need (checked against the free space
before anything is written); it refuses only what neither way can do.
"""

import re
from typing import Any, Callable

import numpy as np

from ..store.memory import available_memory
from .neighbors import atoms_neighbor_list

__all__ = ["derivative_memory", "image_derivative_bytes", "available_memory",
           "parse_bytes", "check_memory", "check_rank_memory",
           "plan_training", "TrainingPlan", "local_share",
           "TrainingMemoryError", "format_bytes"]

_VALUE_BYTES = 8 + 4  # float64 value and int32 column index
_ROW_BYTES = 4  # int32 row pointer


class TrainingMemoryError(MemoryError):
    """Force training would need more memory than the limit; raised before
    any fingerprint derivative is computed."""


def _needs(Gs, elements):
    """``(n_features, n_elements)`` neighbours of each element a feature
    needs: one for a G2's element, one per element of a G4/G5 pair."""
    need = np.zeros((len(Gs), len(elements)), dtype=np.int64)
    for row, G in enumerate(Gs):
        involved = [G["element"]] if "element" in G else G["elements"]
        for element in involved:
            need[row, elements.index(element)] += 1
    return need


def derivative_memory(descriptor, images):
    """Bytes that force training will hold for the images' derivatives.

    The sum of :func:`image_derivative_bytes` and one row pointer.

    Parameters
    ----------
    descriptor : Gaussian
        Gives the cutoff radius and the symmetry functions (those
        :meth:`~amp.descriptor.gaussian.Gaussian.resolve` gives for the
        images when it has none; the descriptor is not changed).
    images : dict
        ``{hash: ase.Atoms}``.

    Returns
    -------
    int
        Estimated bytes of the force matrices of all images (within a few
        per cent of the arrays built).
    """
    return int(image_derivative_bytes(descriptor, images).sum()) + \
        _ROW_BYTES


def image_derivative_bytes(descriptor: "Any", images: dict) -> np.ndarray:
    """Bytes of each image's force matrix (values, column indices and row
    pointers), counted from its neighbour list (see the module).

    Parameters
    ----------
    descriptor : Gaussian
    images : dict
        ``{hash: ase.Atoms}``.

    Returns
    -------
    ndarray of int64
        One value per image, in the images' order.
    """
    descriptor = descriptor.resolve(images)
    elements = sorted(set(descriptor.Gs) | {s for atoms in images.values()
                                             for s in atoms.symbols})
    code_of = {element: k for k, element in enumerate(elements)}
    needs = {element: _needs(Gs, elements)
             for element, Gs in descriptor.Gs.items()}
    cutoff = descriptor.cutoff.Rc
    sizes = np.empty(len(images), dtype=np.int64)
    for index, atoms in enumerate(images.values()):
        n = len(atoms)
        symbols = atoms.get_chemical_symbols()
        code = np.array([code_of[s] for s in symbols], dtype=np.int64)
        nl = atoms_neighbor_list(atoms, cutoff)
        # Neighbour entries of each atom by element.
        counts = np.zeros((n, len(elements)), dtype=np.int64)
        np.add.at(counts, (nl.i, code[nl.j]), 1)
        # involved[a, x]: features of atom a moved by a neighbour of
        # element x; own[a]: features of a that move at all.
        involved = np.zeros((n, len(elements)), dtype=np.int64)
        own = np.zeros(n, dtype=np.int64)
        for element, need in needs.items():
            atoms_e = np.flatnonzero(np.array(symbols) == element)
            if not len(atoms_e):
                continue
            met = np.all(counts[atoms_e][:, None, :] >= need[None], axis=2)
            involved[atoms_e] = met.astype(np.int64) @ (need > 0)
            own[atoms_e] = met.sum(axis=1)
        pairs = np.unique(nl.i * n + nl.j)
        centre, other = pairs // n, pairs % n
        distinct = centre != other  # an atom's own periodic images: own row
        values = 3 * int(involved[centre[distinct],
                                  code[other[distinct]]].sum())
        values += 3 * int(own.sum())
        sizes[index] = values * _VALUE_BYTES + 3 * n * _ROW_BYTES
    return sizes


_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6,
          "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12, "kib": 2 ** 10,
          "mib": 2 ** 20, "gib": 2 ** 30, "tib": 2 ** 40}


def parse_bytes(value):
    """Bytes from a number or a string such as ``'4 GB'`` or ``'500MiB'``.

    Raises
    ------
    ValueError
        For anything else, or a value that is not positive.
    """
    if isinstance(value, str):
        found = re.fullmatch(r"\s*([0-9.eE+]+)\s*([A-Za-z]*)\s*", value)
        unit = found.group(2).lower() if found else None
        if not found or unit not in _UNITS:
            raise ValueError("memory_limit %r is not a size (e.g. 4e9, "
                             "'4 GB' or '512 MiB')" % value)
        number = float(found.group(1)) * _UNITS[unit]
    else:
        number = float(value)
    if not number > 0:
        raise ValueError("memory_limit must be positive, got %r" % (value,))
    return int(number)


def format_bytes(size):
    """``'5.1 GB'``, ``'38 MB'``, ``'12 kB'``."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            value = size / scale
            return ("%.1f %s" if value < 10 else "%.0f %s") % (value, unit)
    return "%d bytes" % size


def local_share(cores):
    """Fraction of the workers (hence of the training images) on this
    machine, from Amp's ``cores`` (an int or ``{host: count}``)."""
    if not isinstance(cores, dict) or not cores:
        return 1.0
    from ..parallel.launch import is_local

    total = sum(cores.values())
    here = sum(count for host, count in cores.items() if is_local(host))
    return here / total if total else 1.0


def _log_estimate(total, n_images, memory_limit, log, cores):
    """Log the estimate line; ``(share, here, limit, source, count)``."""
    share = local_share(cores)
    here = int(total * share)
    if memory_limit is None:
        limit, source = available_memory(), "memory available now"
    else:
        limit, source = parse_bytes(memory_limit), "memory_limit"
    count = "{:,}".format(n_images)
    line = "Fingerprint derivatives for %s images: about %s" % (
        count, format_bytes(total))
    if share < 1.0:
        line += " (%s on this machine)" % format_bytes(here)
    if limit is not None:
        line += "; limit %s (%s)." % (format_bytes(limit), source)
    if log is not None:
        log(line)
    return share, here, limit, source, count


def check_memory(descriptor, images, memory_limit=None, log=None,
                 cores=None):
    """Log the memory force training will need; refuse it when too much.

    Parameters
    ----------
    descriptor : descriptor
        Any descriptor with ``derivative_memory(images)`` (e.g.
        :class:`~amp.descriptor.gaussian.Gaussian`).
    images : dict
        ``{hash: ase.Atoms}``, all the training images.
    memory_limit : int, float or str, optional
        Bytes (or ``'4 GB'``); by default the memory available now
        (:func:`amp.store.memory.available_memory`: the system's, under
        ``RLIMIT_AS`` and under the process's cgroup limits).
    log : callable, optional
    cores : int, dict, WorkerPool or MPIContext, optional
        Amp's ``cores`` (or the pool made of them): with workers on other
        hosts this machine holds only its workers' share of the
        derivatives; the ranks of an MPI job each hold their own share
        (:func:`check_rank_memory`).

    Returns
    -------
    int
        The estimate for this machine (MPI: this rank), in bytes.

    Raises
    ------
    TrainingMemoryError
        The estimate exceeds the limit; nothing has been computed.
    """
    from ..parallel import is_mpi

    if is_mpi(cores):
        return check_rank_memory(descriptor, images, cores, memory_limit,
                                 log)
    cores = getattr(cores, "hosts", cores)  # a WorkerPool's hosts
    total = descriptor.derivative_memory(images)
    share, here, limit, source, count = _log_estimate(
        total, len(images), memory_limit, log, cores)
    if limit is not None and here > limit:
        raise TrainingMemoryError(
            "force training needs about %s for the fingerprint derivatives "
            "of %s images%s, more than the limit of %s (%s); nothing has "
            "been computed. Options: train on fewer images; train energies "
            "only (LossFunction(force_coefficient=None) needs no "
            "derivatives); spread the images over workers on more hosts "
            "(cores={'host1': n, 'host2': m}); or give a larger "
            "memory_limit= to Amp.train if more memory will be free."
            % (format_bytes(here), count, "" if share >= 1.0 else
               " on this machine", format_bytes(limit), source))
    return here


#: Streamed training holds about this many chunks at once: the one being
#: evaluated, the next one mapped by the reader thread, and the
#: evaluation's temporaries (or, at set-up, the one being built).
CHUNKS_HELD = 3
#: Largest chunk of force data chosen for streaming, in bytes (larger
#: chunks do not evaluate faster; see :mod:`amp.model.streaming`).
MAX_CHUNK_BYTES = 64 * 10 ** 6
_NPY_HEADER = 128


class TrainingPlan:
    """How force training will hold its data (see :func:`plan_training`).

    Attributes
    ----------
    streamed : bool
        False: in memory; True: streamed from chunk files.
    estimate : int
        Bytes of force data of all images (:func:`derivative_memory`).
    limit : int or None
        The memory limit, in bytes.
    chunk_bytes : int or None
        Bytes of force data per chunk (streamed).
    image_bytes : dict
        ``{hash: bytes}`` of each image's force data.
    disk_bytes : int or None
        Bytes of the chunk files (streamed).
    held_bytes : int or None
        Force data in memory at once when streamed.
    folder : str or None
        Where the chunk files go.
    """

    def __init__(self, streamed: bool, estimate: int, limit: "int | None",
                 image_bytes: dict, chunk_bytes: "int | None" = None,
                 disk_bytes: "int | None" = None,
                 held_bytes: "int | None" = None,
                 folder: "str | None" = None) -> None:
        self.streamed, self.estimate, self.limit = streamed, estimate, limit
        self.image_bytes, self.chunk_bytes = image_bytes, chunk_bytes
        self.disk_bytes, self.held_bytes = disk_bytes, held_bytes
        self.folder = folder


def _per_image(descriptor, images):
    """Each image's force-data bytes: counted for descriptors this module
    knows (Gaussian), otherwise the descriptor's total shared by atom
    count."""
    if hasattr(descriptor, "Gs") and hasattr(descriptor, "cutoff"):
        return image_derivative_bytes(descriptor, images)
    atoms = np.array([len(a) for a in images.values()], dtype=float)
    total = descriptor.derivative_memory(images)
    return np.round(total * atoms / atoms.sum()).astype(np.int64)


def _chunk_file_bytes(descriptor, images, sizes):
    """Bytes of each image's share of the chunk files: its force matrix,
    fingerprint rows, reference forces and row weights, per-image
    numbers."""
    Gs = getattr(descriptor.resolve(images), "Gs", None) or {}
    out = np.array(sizes, dtype=np.int64)
    for index, atoms in enumerate(images.values()):
        features = sum(len(Gs.get(s, ())) for s in atoms.symbols)
        out[index] += 8 * features + 8 * len(atoms) + 48 * len(atoms) + 24
    return out


def plan_training(descriptor: "Any", images: dict,
                  memory_limit: "int | float | str | None" = None,
                  log: "Callable[[str], Any] | None" = None,
                  cores: "int | dict | None" = None,
                  folder: "str | None" = None) -> TrainingPlan:
    """Choose how force training holds its data, before anything is
    computed; log the figures.

    In memory when the force data fit the limit (as :func:`check_memory`);
    otherwise streamed from chunk files in ``folder``: chunks of at most
    :data:`MAX_CHUNK_BYTES` such that :data:`CHUNKS_HELD` of them fit the
    limit, after checking that the chunk files fit the free disk space.

    Parameters
    ----------
    descriptor : descriptor
        With ``derivative_memory(images)`` (e.g. Gaussian).
    images : dict
        ``{hash: ase.Atoms}``, all the training images.
    memory_limit : int, float or str, optional
        Bytes (or ``'4 GB'``) of force data in memory; by default the
        memory available now.
    log : callable, optional
    cores : int or dict, optional
        Amp's ``cores`` (see :func:`check_memory`).
    folder : str, optional
        Where chunk files would go; None: streaming is not possible and
        too large a set is refused as by :func:`check_memory`.

    Returns
    -------
    TrainingPlan

    Raises
    ------
    TrainingMemoryError
        Not even :data:`CHUNKS_HELD` chunks of one image each fit the
        limit (or no ``folder`` was given and the data do not fit).
    amp.store.chunks.DiskSpaceError
        The chunk files would not fit on the disk; nothing was written.
    """
    sizes = _per_image(descriptor, images)
    image_bytes = dict(zip(images, sizes.tolist()))
    total = int(sizes.sum()) + _ROW_BYTES
    if folder is None:
        here = check_memory(descriptor, images, memory_limit, log, cores)
        return TrainingPlan(False, here, None, image_bytes)
    _, here, limit, source, count = _log_estimate(
        total, len(images), memory_limit, log, cores)
    if limit is None or here <= limit:
        return TrainingPlan(False, total, limit, image_bytes)
    largest = int(sizes.max()) if len(sizes) else 0
    if CHUNKS_HELD * largest > limit:
        raise TrainingMemoryError(
            "force training needs about %s for the fingerprint derivatives "
            "of %s images, more than the limit of %s (%s), and even "
            "streamed from chunk files it would hold %d images of up to %s "
            "at once; nothing has been computed. Options: train on fewer "
            "images (or smaller ones); train energies only "
            "(LossFunction(force_coefficient=None) needs no derivatives); "
            "spread the images over workers on more hosts "
            "(cores={'host1': n, 'host2': m}); or give a larger "
            "memory_limit= to Amp.train."
            % (format_bytes(here), count, format_bytes(limit), source,
               CHUNKS_HELD, format_bytes(largest)))
    chunk_bytes = max(largest, min(MAX_CHUNK_BYTES, limit // CHUNKS_HELD))
    files = _chunk_file_bytes(descriptor, images, sizes)
    n_chunks = max(1, int(np.ceil(total / chunk_bytes)))
    disk = int(files.sum()) + n_chunks * 12 * _NPY_HEADER
    held = CHUNKS_HELD * chunk_bytes
    from ..store.chunks import check_free_space

    # The largest file: a chunk's force values (8 of every 12 bytes).
    check_free_space(folder, disk, largest_file=chunk_bytes * 2 // 3,
                     what="chunk files of streamed training", log=log)
    if log is not None:
        log("Streaming: the force data do not fit the limit, so the "
            "training batches go to chunk files of about %s (about %d "
            "chunks) in %s, read at every evaluation; about %s of force "
            "data in memory at once." % (format_bytes(chunk_bytes),
                                         n_chunks, folder,
                                         format_bytes(held)))
    return TrainingPlan(True, total, limit, image_bytes, chunk_bytes, disk,
                        held, folder)


def check_rank_memory(descriptor, images, context, memory_limit=None,
                      log=None):
    """:func:`check_memory` for the ranks of an MPI job: each rank holds
    the derivatives of its own share only.

    Each rank estimates its share (:meth:`MPIContext.share`, which also
    checks that every rank has the same images); every rank learns every
    estimate, and when any rank's exceeds its limit every rank raises the
    same error, naming that rank and its figures.

    Parameters
    ----------
    descriptor : descriptor
    images : dict
        All the training images (the same on every rank).
    context : amp.parallel.mpi.MPIContext
    memory_limit : int, float or str, optional
        Per rank; by default the memory available now on the rank's node,
        divided by the ranks on that node.
    log : callable, optional

    Returns
    -------
    int
        This rank's estimate, in bytes.
    """
    share = context.share(images)
    resolved = descriptor.resolve(images)  # the elements of all images
    here = resolved.derivative_memory({key: images[key] for key in share}) \
        if share else 0
    if memory_limit is None:
        available = available_memory()
        ranks = context.ranks_on_my_node()
        limit = None if available is None else available // ranks
        source = "memory available now on the node, shared by its %d " \
            "ranks" % ranks if ranks > 1 else "memory available now"
    else:
        limit, source = parse_bytes(memory_limit), "memory_limit per rank"
    rows = context.allgather_rows([here, -1.0 if limit is None else limit])
    total, largest = int(rows[:, 0].sum()), int(rows[:, 0].argmax())
    count = "{:,}".format(len(images))
    line = ("Fingerprint derivatives for %s images: about %s on %d MPI "
            "ranks, at most %s per rank" % (count, format_bytes(total),
                                            context.size,
                                            format_bytes(rows[largest, 0])))
    line += "; limit %s per rank (%s)." % (format_bytes(limit), source) \
        if limit is not None else "."
    if log is not None:
        log(line)
    over = [rank for rank in range(context.size)
            if rows[rank, 1] >= 0 and rows[rank, 0] > rows[rank, 1]]
    if over:
        rank = over[0]
        raise TrainingMemoryError(
            "force training needs about %s per MPI rank for the fingerprint "
            "derivatives of its share of the %s images (rank %d: %s), more "
            "than the limit of %s per rank (%s); nothing has been computed. "
            "Options: more ranks (mpiexec -n / srun -n), or fewer ranks per "
            "node; train on fewer images; train energies only "
            "(LossFunction(force_coefficient=None)); or give a larger "
            "memory_limit= to Amp.train." % (
                format_bytes(rows[rank, 0]), count, rank,
                format_bytes(rows[rank, 0]), format_bytes(rows[rank, 1]),
                source))
    return here
