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

import re

import numpy as np

from ..store.memory import available_memory
from .neighbors import atoms_neighbor_list

__all__ = ["derivative_memory", "available_memory", "parse_bytes",
           "check_memory", "local_share", "TrainingMemoryError",
           "format_bytes"]

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
        Bytes (or ``'4 GB'``); by default the memory available now
        (:func:`amp.store.memory.available_memory`: the system's, under
        ``RLIMIT_AS`` and under the process's cgroup limits).
    log : callable, optional
    cores : int or dict, optional
        Amp's ``cores``: with workers on other hosts this machine holds
        only its workers' share of the derivatives.

    Returns
    -------
    int
        The estimate for this machine, in bytes.

    Raises
    ------
    TrainingMemoryError
        The estimate exceeds the limit; nothing has been computed.
    """
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
