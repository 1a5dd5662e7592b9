"""How one image's fingerprints are written into the three databases.

A stored image is three entries, one per database (:data:`DATABASES`):

``neighbors``
    The neighbour list in its compact form (:func:`compact_neighbors`):
    ``nl/counts`` (entries per centre atom), ``nl/j`` and ``nl/offsets`` in
    the smallest integer types that hold them (about 38 kB instead of
    376 kB for a 108-atom cell); entries of the earlier form, with the
    centre of every entry in ``nl/i``, are still read.
``fingerprints``
    ``symbols`` and ``values/<element>`` (see
    :meth:`~amp.descriptor.fingerprints.ImageFingerprints.todict`).
``primes``
    The derivatives, ``entries/<element>`` and ``nl/vectors`` with every
    ``derivatives/<element>`` block stored without its exact zeros
    (:func:`pack_derivatives`: ``dcols/<e>/<x>``, ``dpack/<e>/<x>``,
    ``dwidth/<e>``): a G2 of one element does not move with a neighbour of
    another, a G4 only with neighbours of its pair's elements, so with
    three elements 55 % of the values are zeros. Full blocks (the earlier
    form) are still read.

:func:`encode` makes the three entries of an
:class:`~amp.descriptor.fingerprints.ImageFingerprints`, :func:`decode`
rebuilds it; nothing else knows these names.
"""

import numpy as np

from .fingerprints import STORAGE_VERSION, ImageFingerprints
from .neighbors import amp_view

#: The three databases: part name -> database name (``<dblabel>-<name>.ampdb``).
DATABASES = {"neighbors": "neighborlists",
             "fingerprints": "fingerprints",
             "primes": "fingerprint-primes"}

#: The neighbour-list names of the derivative part that the ``neighbors``
#: entry holds instead.
_NEIGHBOR_NAMES = ("nl/i", "nl/j", "nl/offsets")


def _smallest_int(low, high, signed):
    """The smallest integer dtype holding ``low..high``."""
    kinds = ((np.int8, np.int16, np.int32, np.int64) if signed else
             (np.uint8, np.uint16, np.uint32, np.uint64))
    for kind in kinds:
        info = np.iinfo(kind)
        if info.min <= low and high <= info.max:
            return kind
    return np.int64


def compact_neighbors(nl):
    """A neighbour list's database entry in its compact form.

    Parameters
    ----------
    nl : NeighborList
        Sorted by centre atom (as built).

    Returns
    -------
    dict
        ``nl/counts`` (entries per centre atom), ``nl/j`` and
        ``nl/offsets`` in the smallest integer types that hold them;
        ``nl/i`` (the earlier form) when the centres are not sorted.
    """
    i, j = np.asarray(nl.i), np.asarray(nl.j)
    offsets = np.asarray(nl.offsets)
    entry = {"version": STORAGE_VERSION}
    if len(i) and np.any(i[1:] < i[:-1]):
        entry.update({"nl/i": i, "nl/j": j, "nl/offsets": offsets})
        return entry
    counts = np.bincount(i, minlength=nl.n_atoms)
    low, high = (int(offsets.min()), int(offsets.max())) if offsets.size \
        else (0, 0)
    entry.update({
        "nl/counts": counts.astype(_smallest_int(0, int(counts.max(
            initial=0)), False)),
        "nl/j": j.astype(_smallest_int(0, max(nl.n_atoms - 1, 0), False)),
        "nl/offsets": offsets.astype(_smallest_int(low, high, True))})
    return entry


def _neighbor_codes(symbols, j, entries):
    """Per entry, the index of its neighbour's element in the sorted
    elements of ``symbols``."""
    elements, codes = np.unique(np.asarray(symbols), return_inverse=True)
    return list(elements), codes[np.asarray(j)[np.asarray(entries)]]


def pack_derivatives(parts, symbols, j):
    """Replace each ``derivatives/<element>`` block by its non-zero columns
    per neighbour element.

    Parameters
    ----------
    parts : dict
        A ``todict(parts=('derivatives',))`` form (changed in place).
    symbols : list of str
    j : ndarray
        Neighbour atom of every neighbour-list entry.

    Returns
    -------
    dict
        ``parts`` with ``dcols/<e>/<x>`` (the columns of element ``e``'s
        block that are not all zero over the entries whose neighbour is of
        element ``x``) and ``dpack/<e>/<x>`` (those columns of those
        entries, in entry order) instead of ``derivatives/<e>``; a block
        without such zero columns (one element) is kept as it is.
    """
    for name in [n for n in parts if n.startswith("derivatives/")]:
        element = name[len("derivatives/"):]
        block = np.asarray(parts[name])
        elements, codes = _neighbor_codes(symbols, j,
                                          parts["entries/" + element])
        n_features = block.shape[2]
        present = np.unique(codes)
        # Non-zero columns of each neighbour element's rows, in one pass.
        nonzero = np.zeros((len(elements), n_features), dtype=bool)
        np.logical_or.at(nonzero, codes, np.any(block != 0, axis=1))
        if nonzero[present].all():
            continue  # nothing to drop: stored as it is
        for code in present:
            rows = block[codes == code]
            columns = np.flatnonzero(nonzero[code])
            tag = "%s/%s" % (element, elements[code])
            parts["dcols/" + tag] = columns.astype(
                _smallest_int(0, max(n_features - 1, 0), False))
            parts["dpack/" + tag] = np.ascontiguousarray(rows[:, :, columns])
        parts["dwidth/" + element] = n_features
        del parts[name]
    return parts


def unpack_derivatives(parts, symbols, j):
    """The inverse of :func:`pack_derivatives` (entries without packed
    blocks are returned as they are)."""
    widths = {n[len("dwidth/"):]: int(v) for n, v in parts.items()
              if n.startswith("dwidth/")}
    if not widths:
        return parts
    out = {n: v for n, v in parts.items()
           if not n.startswith(("dcols/", "dpack/", "dwidth/"))}
    for element, width in widths.items():
        entries = np.asarray(parts["entries/" + element])
        elements, codes = _neighbor_codes(symbols, j, entries)
        block = np.zeros((len(entries), 3, width))
        for code, other in enumerate(elements):
            tag = "%s/%s" % (element, other)
            if "dpack/" + tag not in parts:
                continue
            columns = np.asarray(parts["dcols/" + tag], dtype=np.intp)
            rows = np.zeros((int(np.count_nonzero(codes == code)), 3, width))
            rows[:, :, columns] = parts["dpack/" + tag]
            block[codes == code] = rows
        out["derivatives/" + element] = block
    return out


def expand_neighbors(entry):
    """``{'nl/i', 'nl/j', 'nl/offsets'}`` as int64 arrays from a stored
    neighbour-list entry (compact or earlier form)."""
    j = np.asarray(entry["nl/j"], dtype=np.int64)
    if "nl/counts" in entry:
        counts = np.asarray(entry["nl/counts"], dtype=np.int64)
        i = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    else:
        i = np.asarray(entry["nl/i"], dtype=np.int64)
    offsets = np.asarray(entry["nl/offsets"], dtype=np.int64)
    return {"version": entry.get("version"), "nl/i": i, "nl/j": j,
            "nl/offsets": offsets.reshape(len(j), 3)}


def encode(fingerprints):
    """The database entries of one image.

    Parameters
    ----------
    fingerprints : ImageFingerprints

    Returns
    -------
    dict
        ``{'neighbors': entry, 'fingerprints': entry}`` and, when the
        image has derivatives, ``'primes': entry``.
    """
    out = {"neighbors": compact_neighbors(fingerprints.neighbors),
           "fingerprints": fingerprints.todict(parts=("values",))}
    if fingerprints.has_derivatives:
        parts = fingerprints.todict(parts=("derivatives",))
        for name in _NEIGHBOR_NAMES:
            del parts[name]
        out["primes"] = pack_derivatives(parts, fingerprints.symbols,
                                         fingerprints.neighbors.j)
    return out


def decode(values, neighbors=None, primes=None):
    """An :class:`ImageFingerprints` from its entries (see :func:`encode`):
    the values alone, or with the neighbour and derivative entries."""
    if primes is None:
        return ImageFingerprints.fromdict(values)
    expanded = expand_neighbors(neighbors)
    derivatives = unpack_derivatives(dict(primes), values["symbols"],
                                     expanded["nl/j"])
    derivatives.update(expanded)
    return ImageFingerprints.fromdict(values, derivatives)


def neighbor_view(neighbors, n_atoms):
    """Amp's ``[(indices, offsets), ...]`` from a ``neighbors`` entry."""
    entry = expand_neighbors(neighbors)
    return amp_view(entry["nl/i"], entry["nl/j"], entry["nl/offsets"],
                    n_atoms)
