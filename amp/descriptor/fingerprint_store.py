"""Where a descriptor keeps its fingerprints: memory or ``.ampdb`` files.

Three stores, as in Amp: neighbour lists, fingerprints and fingerprint
derivatives ("primes"). With a ``dblabel`` they are the databases
``<dblabel>-neighborlists.ampdb``, ``<dblabel>-fingerprints.ampdb`` and
``<dblabel>-fingerprint-primes.ampdb`` (shared by every calculator given
that label; each records the descriptor parameters it was built with and
refuses different ones). Without one they live in memory; the *ephemeral*
store keeps only the latest image, so inference over a long trajectory
uses constant memory and writes nothing.

Neighbour lists are stored compactly (:func:`compact_neighbors`): counts
per centre atom instead of the sorted centre indices, and the neighbour
indices and cell offsets in the smallest integer types that hold them
(about 38 kB instead of 376 kB for a 108-atom cell); entries in the
earlier form (``nl/i``) are still read. Derivative blocks are stored
without their exact zeros (:func:`pack_derivatives`): a G2 of one element
does not move with a neighbour of another, a G4 only with neighbours of
its pair's elements, so with three elements 55 % of the values are zeros;
full blocks (the earlier form) are still read. At the end of training the
databases are archived with a gzip level per database
(:data:`ARCHIVE_LEVELS`).
"""

import threading

import numpy as np

from ..store.database import FileDatabase, MemoryDatabase
from .fingerprints import STORAGE_VERSION, ImageFingerprints
from .neighbors import amp_view

DATABASE_NAMES = {"neighbors": "neighborlists",
                  "fingerprints": "fingerprints",
                  "primes": "fingerprint-primes"}

#: gzip level of each database's ``archive.tar.gz``. The float64
#: derivatives shrink by under 10 % at any level, at 25-30 MB/s (level 1
#: and 6 alike), so they are stored (level 0: a valid gzip stream at the
#: speed of a copy); index arrays and fingerprints compress well.
ARCHIVE_LEVELS = {"neighbors": 6, "fingerprints": 6, "primes": 0}


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


class FingerprintStore:
    """Fingerprints of many images, by image hash.

    Parameters
    ----------
    dblabel : str or None
        Prefix of the three databases; None keeps everything in memory.
    parameters : dict
        The descriptor parameters the data depend on (cutoff, Gs); checked
        against the record of existing databases.
    ephemeral : bool
        With no ``dblabel``: keep only the most recent image.
    log : callable, optional
        Receives reports about damaged entries.
    """

    def __init__(self, dblabel=None, parameters=None, ephemeral=False,
                 log=None):
        self.dblabel = dblabel
        self.on_disk = dblabel is not None
        record = dict(parameters or {}, storage_version=STORAGE_VERSION)
        if self.on_disk:
            self.databases = {
                part: FileDatabase("%s-%s" % (dblabel, name), log=log)
                for part, name in DATABASE_NAMES.items()}
            for database in self.databases.values():
                database.check_parameters(record)
        else:
            # In memory the ImageFingerprints object itself is kept.
            self.memory = MemoryDatabase(max_entries=1 if ephemeral else None)

    def __contains__(self, key):
        if self.on_disk:
            return key in self.databases["fingerprints"]
        return key in self.memory

    def has_derivatives(self, key):
        """Whether the derivatives of image ``key`` are stored."""
        if self.on_disk:
            return (key in self.databases["primes"]
                    and key in self.databases["neighbors"])
        return key in self.memory and self.memory[key].has_derivatives

    def keys(self):
        """Hashes of the images whose fingerprints are stored."""
        if self.on_disk:
            return self.databases["fingerprints"].keys()
        return self.memory.keys()

    def __len__(self):
        return len(self.keys())

    def __iter__(self):
        return iter(self.keys())

    def get(self, key, default=None):
        """``self[key]``, or ``default`` when absent."""
        return self[key] if key in self else default

    def __getitem__(self, key):
        """The :class:`ImageFingerprints` of image ``key``."""
        if not self.on_disk:
            return self.memory[key]
        values = self.databases["fingerprints"][key]
        if not self.has_derivatives(key):
            return ImageFingerprints.fromdict(values)
        neighbors = expand_neighbors(self.databases["neighbors"][key])
        derivatives = unpack_derivatives(dict(self.databases["primes"][key]),
                                         values["symbols"], neighbors["nl/j"])
        derivatives.update(neighbors)
        return ImageFingerprints.fromdict(values, derivatives)

    def put(self, key, fingerprints):
        """Store one image's fingerprints (and derivatives when present)."""
        if not self.on_disk:
            self.memory[key] = fingerprints
            return
        self.databases["neighbors"][key] = compact_neighbors(
            fingerprints.neighbors)
        if fingerprints.has_derivatives:
            parts = fingerprints.todict(parts=("derivatives",))
            for name in ("nl/i", "nl/j", "nl/offsets"):
                del parts[name]
            self.databases["primes"][key] = pack_derivatives(
                parts, fingerprints.symbols, fingerprints.neighbors.j)
        self.databases["fingerprints"][key] = fingerprints.todict(
            parts=("values",))

    def neighbor_list(self, key):
        """Amp's view of the neighbour list: ``[(indices, offsets), ...]``."""
        if not self.on_disk:
            return self.memory[key].neighbors.as_amp()
        entry = expand_neighbors(self.databases["neighbors"][key])
        i, j, offsets = entry["nl/i"], entry["nl/j"], entry["nl/offsets"]
        n_atoms = len(self.databases["fingerprints"][key]["symbols"])
        return amp_view(i, j, offsets, n_atoms)

    def archive(self, levels=None):
        """Compress every database into its ``archive.tar.gz``.

        Parameters
        ----------
        levels : dict, optional
            gzip level per database (``neighbors``, ``fingerprints``,
            ``primes``); :data:`ARCHIVE_LEVELS` by default.

        Returns
        -------
        dict
            ``{database name: archive() report}``; empty in memory.
        """
        if not self.on_disk:
            return {}
        levels = dict(ARCHIVE_LEVELS, **(levels or {}))
        return {name: database.archive(compresslevel=levels[name])
                for name, database in self.databases.items()}

    def clear_memory(self):
        """Forget in-memory entries (files on disk stay)."""
        if not self.on_disk:
            self.memory.clear()


class BackgroundArchive:
    """Archive a descriptor's databases in a thread while training goes on.

    Once the training data are in memory (after the first loss
    evaluation) nothing reads the databases until training ends, so the
    archiving (mostly hashing, checksums and file writes, which release
    the interpreter lock) can overlap the optimisation instead of adding
    to its end. Its log lines are kept and written by :meth:`finish`, so
    they do not land inside the convergence table.

    Parameters
    ----------
    descriptor : object
        Has ``archive_databases(log=...)``.
    log : callable
    """

    def __init__(self, descriptor, log):
        self.descriptor, self.log = descriptor, log
        self._thread, self._error, self._lines = None, None, []

    def _run(self):
        try:
            self.descriptor.archive_databases(log=self._lines.append)
        except BaseException as error:  # re-raised by finish()
            self._error = error

    def start(self):
        """Start archiving in a thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="amp-archive", daemon=True)
            self._thread.start()

    def finish(self):
        """Wait for the thread (or archive now if it never started) and log
        its lines.

        Compressing is optional, so a failure (a full disk, a damaged
        entry) is logged, not raised: the databases stay as they were,
        loose entries and all, and are used as they are. Only an
        interruption (KeyboardInterrupt, SystemExit) propagates.
        """
        if self._thread is None:
            self._run()
        else:
            self._thread.join()
        for line in self._lines:
            self.log(line)
        error = self._error
        if error is not None and not isinstance(error, Exception):
            raise error
        if error is not None:
            self.log("Compressing the databases failed (%s: %s); they stay "
                     "as they were, uncompressed, and are used as they are."
                     % (type(error).__name__, error))
