"""Fingerprint databases: ``FileDatabase``, ``MemoryDatabase`` and ``Data``.

An ``.ampdb`` folder holds ``loose/`` (one file per entry, named by its key),
optionally ``archive.tar.gz`` (members named by key), ``parameters.json`` (the
record of what the entries were built with) and ``lock`` (taken by
``archive()`` only). Entries are zip containers of ``.npy`` arrays plus a JSON
header (see :func:`encode_entry`); nothing is ever unpickled. See
``docs/databases.md`` for the layout and the safety guarantees.

The entry format lives in :mod:`amp.store.entry` and the archive (reading
``archive.tar.gz``, and ``archive()``) in :mod:`amp.store.archive`; their public
names are importable from here as before.

Problems with stored entries are reported to the ``logging`` logger
``amp.store.database`` (warning level) and, when given, to the database's ``log``
(any callable taking one string, such as :class:`amp.utilities.Logger`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from typing import Any, Callable, Iterable
from collections import OrderedDict

import numpy as np

# Re-exported: the entry format's names, and _ArchiveIndex for the tests.
from .archive import ArchiveIndex as _ArchiveIndex, Archiving  # noqa: F401
from . import limits
from .files import UnsafeFileError, atomic_file, read_file, write_atomically
from .entry import (ENTRY_FORMAT, ENTRY_VERSION, MAX_KEY_BYTES,  # noqa: F401
                     CorruptEntryError, UnsupportedEntryError, check_key,
                     decode_entry, encode_entry, is_key)

PARAMETERS_FORMAT = "amp-ampdb-parameters"
PARAMETERS_VERSION = 1

_logger = logging.getLogger("amp.store.database")


# --------------------------------------------------------------- databases

def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError("parameter value %r is not JSON-able" % (value,))


def _normalise_parameters(parameters):
    if not isinstance(parameters, dict):
        raise TypeError("parameters must be a dict, not %s"
                        % type(parameters).__name__)
    return json.loads(json.dumps(parameters, default=_jsonable))


def _compare_parameters(stored, requested, name):
    """Raise ValueError naming each parameter that differs."""
    if stored == requested:
        return
    absent = "(absent)"
    lines = ["  %s: the database has %s; this request has %s"
             % (key, json.dumps(stored.get(key, absent)),
                json.dumps(requested.get(key, absent)))
             for key in sorted(set(stored) | set(requested))
             if stored.get(key, absent) != requested.get(key, absent)]
    raise ValueError(
        "database %s was built with different parameters, and entries are "
        "never mixed:\n%s\nUse another dblabel, or delete %s to rebuild it."
        % (name, "\n".join(lines), name))


class FileDatabase(Archiving):
    """A dict-like store of entries in an ``.ampdb`` folder (Amp's interface).

    Reading looks in memory, then ``loose/``, then ``archive.tar.gz`` (so a
    loose entry wins over an archived one); items read are kept in memory.
    Writes are atomic (temporary file, then ``os.replace``) and need no
    lock, so several processes may share one database; ``archive()`` may run
    meanwhile. A damaged entry is reported and treated as missing, so the
    caller recomputes it. Nothing is created on disk before the first write.
    One object must not be used from several threads at once.

    Parameters
    ----------
    filename : str or path-like
        The folder; ``.ampdb`` is appended when missing.
    log : callable, optional
        Also receives the problem reports (e.g. an ``amp.utilities.Logger``).
    fsync : bool
        fsync each loose entry. Off by default: a crash can then at worst
        leave an empty or truncated entry, which is detected and recomputed.
        The archive and the parameter record are always fsynced.
    """

    def __init__(self, filename: str, log: Callable[..., Any] | None = None,
                 fsync: bool = False) -> None:
        filename = os.fspath(filename)
        if not filename.endswith(".ampdb"):
            filename += ".ampdb"
        if os.path.exists(filename) and not os.path.isdir(filename):
            raise ValueError("%s exists and is not an .ampdb folder"
                             % filename)
        self.path = self.filename = filename
        self.loosepath = os.path.join(filename, "loose")
        self.tarpath = os.path.join(filename, "archive.tar.gz")
        self.parameterspath = os.path.join(filename, "parameters.json")
        self.log = log
        self.fsync = fsync
        self._memdict: dict[str, Any] = {}
        self._bad: set[str] = set()
        self._index = None

    @classmethod
    def open(cls, filename: str, flag: str | None = None) -> FileDatabase:
        """Return ``cls(filename)``; ``flag`` is accepted for Amp's sake."""
        return cls(filename)

    def close(self) -> None:
        """Forget the items kept in memory and the archive index."""
        self._memdict.clear()
        if self._index is not None:
            self._index.close()
            self._index = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        return "%s(%r)" % (type(self).__name__, self.path)

    def _report(self, message):
        _logger.warning(message)
        if self.log is not None:
            self.log(message)

    def _decode(self, data, key, where):
        try:
            value = decode_entry(data)
        except UnsupportedEntryError as error:
            raise self._unsupported(error, key, where) from None
        except CorruptEntryError as error:
            self._bad.add(key)
            self._report("entry %r in %s of %s is damaged (%s); it is treated "
                         "as missing and will be recomputed"
                         % (key, where, self.path, error))
            return _MISSING
        self._bad.discard(key)
        return value

    def _unsupported(self, error, key, where):
        return UnsupportedEntryError(
            "entry %r in %s of %s cannot be loaded: %s. Rebuild the database: "
            "delete %s (or move it away) and the entries will be recomputed."
            % (key, where, self.path, error, self.path))

    def _load(self, key):
        try:
            data = self._read_loose(key)
        except FileNotFoundError:
            data = None
        except UnsafeFileError as error:
            self._bad.add(key)
            self._report("%s; it is skipped" % error)
            data = None
        except OSError as error:
            self._report("cannot read entry %r of %s: %s" % (key, self.path,
                                                              error))
            data = None
        if data is not None:
            value = self._decode(data, key, "loose/")
            if value is not _MISSING:
                return value
        index = self._archive_index()
        if index is not None and key in index:
            value = self._decode(index.read(key), key, "archive.tar.gz")
            if value is not _MISSING:
                return value
        raise KeyError(key)

    def __getitem__(self, key):
        check_key(key)
        if key in self._memdict:
            return self._memdict[key]
        value = self._memdict[key] = self._load(key)
        return value

    def forget(self, key: str) -> None:
        """Drop ``key``'s value from memory (the entry on disk stays): a
        reader walking more entries than fit in memory calls this after
        each."""
        self._memdict.pop(key, None)

    def __contains__(self, key):
        # True only when the entry can be read: a damaged one is missing.
        try:
            self[key]
        except KeyError:
            return False
        return True

    def keys(self) -> list[str]:
        """Return the keys in memory, in ``loose/`` and in the archive.

        Keys of entries found damaged, and names in ``loose/`` that are not
        regular files, are left out.
        """
        keys = dict.fromkeys(self._memdict)
        try:
            # Regular files only (the type comes with the listing): a link,
            # FIFO or device in loose/ is never an entry.
            with os.scandir(self.loosepath) as listing:
                names = [item.name for item in listing
                         if item.is_file(follow_symlinks=False)]
        except (FileNotFoundError, NotADirectoryError):
            names = []
        keys.update(dict.fromkeys(name for name in names if is_key(name)))
        index = self._archive_index()  # after listing loose/: see archive()
        if index is not None:
            keys.update(dict.fromkeys(index.members))
        return [key for key in keys if key not in self._bad
                or key in self._memdict]

    def __iter__(self):
        return iter(self.keys())

    def __len__(self):
        return len(self.keys())

    def values(self) -> list[Any]:
        """Return every readable value (each kept in memory)."""
        return [value for _, value in self.items()]

    def items(self) -> list[tuple[str, Any]]:
        """Return ``(key, value)`` for every readable entry."""
        pairs = []
        for key in self.keys():
            with contextlib.suppress(KeyError):
                pairs.append((key, self[key]))
        return pairs

    def __setitem__(self, key, value):
        check_key(key)
        data = encode_entry(value)
        self._memdict[key] = value
        self._bad.discard(key)
        try:
            existing = self._read_loose(key)
        except OSError:  # also a link or FIFO there: replaced by the entry
            existing = None
            index = self._archive_index()
            if index is not None and key in index and index.read(key) == data:
                return
        if existing == data:
            return  # unchanged: no rewrite
        os.makedirs(self.loosepath, exist_ok=True)
        write_atomically(self.loosepath, key, data, self.fsync)

    def update(self, newitems: Any) -> None:
        """Set every item of a mapping or an iterable of ``(key, value)``."""
        items = newitems.items() if hasattr(newitems, "items") else newitems
        for key, value in items:
            self[key] = value

    def read_parameters(self) -> dict[str, Any] | None:
        """Return the parameter record (a dict), or None without one.

        Raises
        ------
        ValueError
            When the record exists but cannot be read.
        """
        try:
            record = json.loads(read_file(self.parameterspath,
                                          limits.MAX_MODEL_FILE_BYTES))
            if record.get("format") != PARAMETERS_FORMAT or \
                    not isinstance(record.get("parameters"), dict):
                raise ValueError("not an %s record" % PARAMETERS_FORMAT)
        except FileNotFoundError:
            return None
        except (ValueError, AttributeError, RecursionError, OSError) as error:
            raise ValueError("the parameter record %s is unreadable (%s); "
                             "delete %s to rebuild the database"
                             % (self.parameterspath, error, self.path)) \
                from None
        return record["parameters"]

    def check_parameters(self, parameters: dict[str, Any]) -> Any:
        """Record ``parameters`` on first use; afterwards refuse others.

        The first caller writes ``parameters.json`` atomically (a hard link
        that fails if the file exists, so concurrent first writers cannot
        clobber each other); every caller then compares with the record.

        Parameters
        ----------
        parameters : dict
            JSON-able (numpy arrays and scalars are converted), e.g. the
            descriptor's cutoff and symmetry functions.

        Returns
        -------
        dict
            The record, as JSON gives it back.

        Raises
        ------
        ValueError
            Naming each parameter that differs from the record.
        """
        requested = _normalise_parameters(parameters)
        stored = self.read_parameters()
        if stored is None:
            os.makedirs(self.path, exist_ok=True)
            record = {"format": PARAMETERS_FORMAT,
                      "version": PARAMETERS_VERSION, "parameters": requested}
            text = json.dumps(record, indent=1, sort_keys=True)
            # The first writer wins; another process's record is compared.
            with contextlib.suppress(FileExistsError):
                with atomic_file(self.parameterspath, fsync=True,
                                 replace=False) as handle:
                    handle.write(text.encode())
            stored = self.read_parameters()
        _compare_parameters(stored, requested, self.path)
        return stored


_MISSING = object()


class MemoryDatabase:
    """The in-memory counterpart of :class:`FileDatabase`: no file at all.

    Values are kept by reference (nothing is copied or serialised), so the
    ephemeral inference mode costs nothing per image.

    Parameters
    ----------
    filename : ignored
        Accepted so that ``MemoryDatabase.open(filename)`` works like
        ``FileDatabase.open``.
    max_entries : int, optional
        Keep at most this many entries, evicting the oldest written first
        (``max_entries=1``: each new image evicts the previous one).
    """

    def __init__(self, filename: str | None = None,
                 max_entries: int | None = None) -> None:
        if max_entries is not None and max_entries < 1:
            raise ValueError("max_entries must be at least 1, not %r"
                             % (max_entries,))
        self.filename = filename
        self.max_entries = max_entries
        self.log = None
        self.parameters: Any = None
        self._memdict: OrderedDict[str, Any] = OrderedDict()

    @classmethod
    def open(cls, filename: str | None = None,
             flag: str | None = None) -> MemoryDatabase:
        """Return a new, empty ``cls()``."""
        return cls(filename)

    def close(self) -> None:
        """Do nothing: the entries stay until :meth:`clear` or eviction."""

    def clear(self) -> None:
        """Forget every entry."""
        self._memdict.clear()

    def __getitem__(self, key):
        check_key(key)
        return self._memdict[key]

    def __setitem__(self, key, value):
        check_key(key)
        self._memdict[key] = value
        self._memdict.move_to_end(key)
        if self.max_entries is not None:
            while len(self._memdict) > self.max_entries:
                self._memdict.popitem(last=False)

    def __contains__(self, key):
        check_key(key)
        return key in self._memdict

    def keys(self) -> list[str]:
        """Return the keys, oldest first."""
        return list(self._memdict)

    def __iter__(self):
        return iter(self.keys())

    def __len__(self):
        return len(self._memdict)

    def values(self) -> list[Any]:
        """Return the values, oldest first."""
        return list(self._memdict.values())

    def items(self) -> list[tuple[str, Any]]:
        """Return the ``(key, value)`` pairs, oldest first."""
        return list(self._memdict.items())

    def update(self, newitems: Any) -> None:
        """Set every item of a mapping or an iterable of ``(key, value)``."""
        items = newitems.items() if hasattr(newitems, "items") else newitems
        for key, value in items:
            self[key] = value

    def archive(self) -> dict[str, int]:
        """Do nothing (no disk); return zero counts as ``FileDatabase``."""
        return {"moved": 0, "dropped": 0, "entries": 0, "bytes_before": 0,
                "bytes_after": 0}

    def check_parameters(self, parameters: dict[str, Any]) -> Any:
        """As :meth:`FileDatabase.check_parameters`, kept in memory."""
        requested = _normalise_parameters(parameters)
        if self.parameters is None:
            self.parameters = requested
        _compare_parameters(self.parameters, requested, "in memory")
        return self.parameters


# -------------------------------------------------------------------- Data

class Data:
    """Computes values for images once and keeps them in a database (Amp's).

    Parameters
    ----------
    filename : str or None
        The database path (``.ampdb`` is appended by :class:`FileDatabase`);
        ``None`` keeps everything in a :class:`MemoryDatabase`.
    db : class or instance
        A database class with ``open(filename, flag)`` (default
        :class:`FileDatabase`), or a database object to use as it is
        (e.g. ``MemoryDatabase(max_entries=1)``).
    calculator : object
        Has ``calculate(image, key)`` returning the value for one image.

    Attributes
    ----------
    d : database or None
        The open database.
    """

    def __init__(self, filename: str, db: Any = FileDatabase,
                 calculator: Any = None) -> None:
        self.filename = filename
        self.calc = calculator
        self.d: Any = None
        self._images: dict[str, Any] = {}
        self.db: Any
        if isinstance(db, type):
            if filename is None and not issubclass(db, MemoryDatabase):
                db = MemoryDatabase
            self.db = db
            # One store for the life of this object, so close() keeps it.
            self._store = db(filename) if issubclass(db, MemoryDatabase) \
                else None
        else:
            self.db = type(db)
            self._store = db

    def open(self, mode: str = "r") -> Any:
        """Open the database (if not open) and return it."""
        if self.d is None:
            self.d = self._store if self._store is not None \
                else self.db.open(self.filename, mode)
        return self.d

    def close(self) -> None:
        """Close the database; a store given or kept in memory is kept."""
        if self.d is not None and self.d is not self._store:
            self.d.close()
        self.d = None

    def calculate_items(self, images: dict[str, Any], parallel: Any = None,
                        log: Callable[..., Any] | None = None) -> list[str]:
        """Compute and store the value of each image not yet in the database.

        Parameters
        ----------
        images : dict
            ``{key: ase.Atoms}``, e.g. from ``amp.utilities.hash_images``.
        parallel : dict or None
            e.g. ``{'cores': 1}``; accepted for Amp's signature (values are
            computed in this process).
        log : callable, optional
            Receives progress lines (e.g. an ``amp.utilities.Logger``).

        Returns
        -------
        list of str
            The keys that were computed.
        """
        database = self.open("c")
        if log is not None and getattr(database, "log", None) is None:
            database.log = log
        self._images = images
        missing = [key for key in images if key not in database]
        if log is not None:
            log(" Data in %s: %d of %d images present, %d to calculate."
                % (self.filename if self.filename is not None else "memory",
                   len(images) - len(missing), len(images), len(missing)))
        if missing:
            self._calculate_missing(missing, images, parallel, log)
        return missing

    def _calculate_missing(self, keys, images, parallel, log):
        """Compute and store ``keys`` with the calculator, one by one.

        ``parallel`` is accepted for Amp's signature: the descriptors of
        this library compute their fingerprints in workers themselves
        (:meth:`amp.descriptor.gaussian.Gaussian.calculate_fingerprints`).
        """
        for key in keys:
            self.d[key] = self.calc.calculate(images[key], key)

    def __getitem__(self, key):
        database = self.open()
        try:
            return database[key]
        except KeyError:
            # Damaged on disk since calculate_items (or never computed):
            # recompute when the image is known.
            if key not in self._images or self.calc is None:
                raise
        value = database[key] = self.calc.calculate(self._images[key], key)
        return value
