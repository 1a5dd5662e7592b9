"""Where fingerprints are kept: in memory or in ``.ampdb`` databases.

A fingerprint store holds the :class:`~amp.descriptor.fingerprints.
ImageFingerprints` of many images, by image hash. There are two, behind
one protocol (:class:`FingerprintStore`):

:class:`DatabaseStore`
    The three databases of a ``dblabel``, as in Amp:
    ``<dblabel>-neighborlists.ampdb``, ``<dblabel>-fingerprints.ampdb`` and
    ``<dblabel>-fingerprint-primes.ampdb``, shared by every calculator and
    process given that label. Each records the descriptor parameters it was
    built with and refuses different ones. How an image becomes entries is
    :mod:`amp.descriptor.entries`. At the end of training the databases are
    archived with a gzip level per database (:data:`ARCHIVE_LEVELS`).
:class:`MemoryStore`
    The objects themselves, in memory; the *ephemeral* one keeps only the
    latest image, so inference over a long trajectory uses constant memory
    and writes nothing.

:func:`open_store` opens the one a ``dblabel`` asks for. A store is made
by its owner (the calculator, an ensemble, a user) and passed to whatever
fills or reads it; descriptors and models keep none.

Either store can also *hold* fingerprints that another process computed
(:meth:`FingerprintStore.hold`: the values of the images of other ranks
of an MPI job): they are read like the others but kept in memory only,
never written.
"""

import abc
import threading

from ..store.database import FileDatabase, MemoryDatabase
from . import entries
from .entries import DATABASES
from .fingerprints import STORAGE_VERSION

__all__ = ["FingerprintStore", "DatabaseStore", "MemoryStore", "open_store",
           "BackgroundArchive", "ARCHIVE_LEVELS"]

#: gzip level of each database's ``archive.tar.gz``. The float64
#: derivatives shrink by under 10 % at any level, at 25-30 MB/s (level 1
#: and 6 alike), so they are stored (level 0: a valid gzip stream at the
#: speed of a copy); index arrays and fingerprints compress well.
ARCHIVE_LEVELS = {"neighbors": 6, "fingerprints": 6, "primes": 0}


class FingerprintStore(abc.ABC):
    """The protocol of a fingerprint store (and what both share).

    Attributes
    ----------
    dblabel : str or None
        The databases' prefix; None in memory.
    parameters : dict or None
        The descriptor parameters it was opened for.
    on_disk : bool
        Whether the fingerprints are in files (which workers on this
        machine can write themselves).
    """

    dblabel = None
    parameters = None
    on_disk = False

    def __contains__(self, key):
        """Whether image ``key``'s fingerprints are stored (or held)."""
        return key in self.held or self._contains(key)

    def has_derivatives(self, key):
        """Whether the derivatives of image ``key`` are stored (or
        held)."""
        if key in self.held:
            return self.held[key].has_derivatives
        return self._has_derivatives(key)

    def keys(self):
        """Hashes of the images whose fingerprints are stored (or held)."""
        return list(dict.fromkeys(list(self._keys()) + list(self.held)))

    def __getitem__(self, key):
        """The :class:`ImageFingerprints` of image ``key``."""
        if key in self.held:
            return self.held[key]
        return self._getitem(key)

    @property
    def held(self):
        """``{hash: ImageFingerprints}`` held in memory (see :meth:`hold`)."""
        if "_held" not in self.__dict__:
            self._held = {}
        return self._held

    def hold(self, key, fingerprints):
        """Keep fingerprints that another process computed, in memory only:
        read like the stored ones, never written (the values of the images
        of the other ranks of an MPI job, which this rank's set-up reads)."""
        self.held[key] = fingerprints

    def fingerprint_values(self, key):
        """Image ``key``'s fingerprints without the derivatives (cheaper
        than ``store[key]`` from databases)."""
        return self[key]

    @abc.abstractmethod
    def _contains(self, key):
        """Whether image ``key``'s fingerprints are stored."""

    @abc.abstractmethod
    def _has_derivatives(self, key):
        """Whether the derivatives of image ``key`` are stored."""

    @abc.abstractmethod
    def _keys(self):
        """Hashes of the images whose fingerprints are stored."""

    @abc.abstractmethod
    def _getitem(self, key):
        """The stored :class:`ImageFingerprints` of image ``key``."""

    @abc.abstractmethod
    def put(self, key, fingerprints):
        """Store one image's fingerprints (and derivatives when present)."""

    @abc.abstractmethod
    def neighbor_list(self, key):
        """Amp's view of the neighbour list: ``[(indices, offsets), ...]``."""

    def archive(self, levels=None):
        """Compress what is on disk; ``{database name: report}``."""
        return {}

    def clear_memory(self):
        """Forget what is held in memory (files on disk stay)."""
        self.held.clear()

    def __len__(self):
        return len(self.keys())

    def __iter__(self):
        return iter(self.keys())

    def get(self, key, default=None):
        """``self[key]``, or ``default`` when absent."""
        return self[key] if key in self else default


class MemoryStore(FingerprintStore):
    """Fingerprints kept as objects in memory.

    Parameters
    ----------
    ephemeral : bool
        Keep only the most recent image.
    parameters : dict, optional
        The descriptor parameters of the fingerprints it holds.
    """

    def __init__(self, ephemeral=False, parameters=None):
        self.parameters = parameters
        self.memory = MemoryDatabase(max_entries=1 if ephemeral else None)

    def _contains(self, key):
        return key in self.memory

    def _has_derivatives(self, key):
        return key in self.memory and self.memory[key].has_derivatives

    def _keys(self):
        return self.memory.keys()

    def _getitem(self, key):
        return self.memory[key]

    def put(self, key, fingerprints):
        self.memory[key] = fingerprints

    def neighbor_list(self, key):
        return self.memory[key].neighbors.as_amp()

    def clear_memory(self):
        self.memory.clear()
        self.held.clear()


class DatabaseStore(FingerprintStore):
    """Fingerprints in the three ``.ampdb`` databases of ``dblabel``.

    Parameters
    ----------
    dblabel : str
        Prefix of the three databases.
    parameters : dict
        The descriptor parameters the data depend on
        (``descriptor.fingerprint_parameters()``); checked against the
        record of existing databases.
    log : callable, optional
        Receives reports about damaged entries.
    keep_in_memory : bool
        Keep what is read or written in memory (the default: training
        reads every image more than once); False reads from disk every
        time, so memory stays flat however many images pass (streamed
        training, workers that only write).
    """

    on_disk = True

    def __init__(self, dblabel, parameters, log=None, keep_in_memory=True):
        self.dblabel, self.parameters = dblabel, parameters
        self.keep_in_memory = keep_in_memory
        record = dict(parameters or {}, storage_version=STORAGE_VERSION)
        self.databases = {
            part: FileDatabase("%s-%s" % (dblabel, name), log=log)
            for part, name in DATABASES.items()}
        for database in self.databases.values():
            database.check_parameters(record)

    def _forget(self, key):
        if not self.keep_in_memory:
            for database in self.databases.values():
                database.forget(key)

    def _contains(self, key):
        try:
            return key in self.databases["fingerprints"]
        finally:
            self._forget(key)

    def _has_derivatives(self, key):
        try:
            return (key in self.databases["primes"]
                    and key in self.databases["neighbors"])
        finally:
            self._forget(key)

    def _keys(self):
        return self.databases["fingerprints"].keys()

    def _getitem(self, key):
        try:
            values = self.databases["fingerprints"][key]
            if not (key in self.databases["primes"]
                    and key in self.databases["neighbors"]):
                return entries.decode(values)
            return entries.decode(values, self.databases["neighbors"][key],
                                  self.databases["primes"][key])
        finally:
            self._forget(key)

    def fingerprint_values(self, key):
        if key in self.held:
            return self.held[key]
        try:
            return entries.decode(self.databases["fingerprints"][key])
        finally:
            self._forget(key)

    def put(self, key, fingerprints):
        # The values last: an image counts as stored once they are there.
        parts = entries.encode(fingerprints)
        try:
            for part in ("neighbors", "primes", "fingerprints"):
                if part in parts:
                    self.databases[part][key] = parts[part]
        finally:
            self._forget(key)

    def clear_memory(self):
        for database in self.databases.values():
            database.close()
        self.held.clear()

    def neighbor_list(self, key):
        n_atoms = len(self.databases["fingerprints"][key]["symbols"])
        return entries.neighbor_view(self.databases["neighbors"][key],
                                     n_atoms)

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
            ``{database name: FileDatabase.archive() report}``.
        """
        levels = dict(ARCHIVE_LEVELS, **(levels or {}))
        return {name: database.archive(compresslevel=levels[name])
                for name, database in self.databases.items()}


def open_store(dblabel=None, parameters=None, ephemeral=False, log=None,
               keep_in_memory=True):
    """The store a ``dblabel`` asks for.

    Parameters
    ----------
    dblabel : str or None
        Prefix of the databases; None keeps the fingerprints in memory.
    parameters : dict
        The descriptor's ``fingerprint_parameters()`` (databases only).
    ephemeral : bool
        In memory, keep only the latest image.
    log : callable, optional
    keep_in_memory : bool
        Databases only: see :class:`DatabaseStore`.

    Returns
    -------
    FingerprintStore
    """
    if dblabel is None:
        return MemoryStore(ephemeral=ephemeral, parameters=parameters)
    return DatabaseStore(dblabel, parameters, log=log,
                         keep_in_memory=keep_in_memory)


def archive_store(store, log=None):
    """Compress ``store``'s databases (nothing in memory), logging one line
    per database; returns the reports."""
    reports = store.archive()
    if log is not None:
        for name, report in reports.items():
            log("Compressed %s: %i entries moved, %i -> %i bytes."
                % (name, report["moved"], report["bytes_before"],
                   report["bytes_after"]))
    return reports


class BackgroundArchive:
    """Archive a store's databases in a thread while training goes on.

    Once the training data are in memory (after the first loss
    evaluation) nothing reads the databases until training ends, so the
    archiving (mostly hashing, checksums and file writes, which release
    the interpreter lock) can overlap the optimisation instead of adding
    to its end. Its log lines are kept and written by :meth:`finish`, so
    they do not land inside the convergence table.

    Parameters
    ----------
    store : FingerprintStore
    log : callable
    """

    def __init__(self, store, log):
        self.store, self.log = store, log
        self._thread, self._error, self._lines = None, None, []

    def _run(self):
        try:
            archive_store(self.store, log=self._lines.append)
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
