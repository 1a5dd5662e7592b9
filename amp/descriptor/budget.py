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
available or a limit the user gave.
"""

import os
import re

import numpy as np

from .neighbors import atoms_neighbor_list

__all__ = ["derivative_memory", "available_memory", "parse_bytes",
           "check_memory", "check_rank_memory", "local_share",
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
    descriptor = descriptor.resolve(images)
    elements = sorted(set(descriptor.Gs) | {s for atoms in images.values()
                                             for s in atoms.symbols})
    code_of = {element: k for k, element in enumerate(elements)}
    needs = {element: _needs(Gs, elements)
             for element, Gs in descriptor.Gs.items()}
    cutoff = descriptor.cutoff.Rc
    values, rows = 0, 0
    for atoms in images.values():
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
        values += 3 * int(involved[centre[distinct],
                                   code[other[distinct]]].sum())
        values += 3 * int(own.sum())
        rows += 3 * n
    return values * _VALUE_BYTES + (rows + 1) * _ROW_BYTES


def available_memory():
    """Bytes of memory available now (``MemAvailable`` on Linux), or None
    when the system does not say."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


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
        Bytes (or ``'4 GB'``); by default the memory available now.
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
    share = local_share(cores)
    here = int(total * share)
    if memory_limit is None:
        limit, source = available_memory(), "memory available now"
    else:
        limit, source = parse_bytes(memory_limit), "memory_limit"
    count = "{:,}".format(len(images))
    line = "Fingerprint derivatives for %s images: about %s" % (
        count, format_bytes(total))
    if share < 1.0:
        line += " (%s on this machine)" % format_bytes(here)
    if limit is not None:
        line += "; limit %s (%s)." % (format_bytes(limit), source)
    if log is not None:
        log(line)
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
