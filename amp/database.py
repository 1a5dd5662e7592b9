"""Fingerprint databases: ``FileDatabase``, ``MemoryDatabase`` and ``Data``.

An ``.ampdb`` folder holds ``loose/`` (one file per entry, named by its key),
optionally ``archive.tar.gz`` (members named by key), ``parameters.json`` (the
record of what the entries were built with) and ``lock`` (taken by
``archive()`` only). Entries are zip containers of ``.npy`` arrays plus a JSON
header (see :func:`encode_entry`); nothing is ever unpickled. See
``docs/databases.md`` for the layout and the safety guarantees.

Problems with stored entries are reported to the ``logging`` logger
``amp.database`` (warning level) and, when given, to the database's ``log``
(any callable taking one string, such as :class:`amp.utilities.Logger`).
"""

import contextlib
import gzip
import hashlib
import io
import json
import logging
import math
import os
import secrets
import tarfile
import tempfile
import time
import zipfile
import zlib
from collections import OrderedDict

import numpy as np

try:
    import fcntl
except ImportError:  # not POSIX: archive() refuses, everything else works
    fcntl = None

ENTRY_FORMAT = "amp-ampdb-entry"
ENTRY_VERSION = 1
PARAMETERS_FORMAT = "amp-ampdb-parameters"
PARAMETERS_VERSION = 1
MAX_KEY_BYTES = 200  # leaves room for temporary-name decorations (255 max)

_ZIP_MAGIC = b"PK\x03\x04"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed, so equal values give equal bytes
_STALE_SECONDS = 3600  # a writer's temporary file older than this is debris
_logger = logging.getLogger("amp.database")


class UnsupportedEntryError(ValueError):
    """A stored entry is intact but cannot be loaded safely or understood.

    Raised for entries in Amp 1.x's pickle format (unpickling can run
    arbitrary code) and for entries written by a newer format version.
    """


class CorruptEntryError(ValueError):
    """A stored entry is damaged (truncated, torn or not an entry)."""


def check_key(key):
    """Raise ValueError unless ``key`` can name a database entry.

    A key is a non-empty str of at most 200 UTF-8 bytes with no ``/``,
    ``\\`` or NUL, which is not ``.`` or ``..`` and does not start with
    ``.`` (names starting with a dot are reserved for temporary files).
    """
    if not isinstance(key, str) or not key:
        raise ValueError("database key %r is not a non-empty str" % (key,))
    if ("/" in key or "\\" in key or "\0" in key or key.startswith(".")
            or len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES):
        raise ValueError(
            "database key %r is not allowed: keys name files, so they may not "
            "contain '/', '\\' or NUL, start with '.', or exceed %d bytes"
            % (key, MAX_KEY_BYTES))


def _is_key(name):
    try:
        check_key(name)
    except ValueError:
        return False
    return True


# ----------------------------------------------------------------- entries

def _to_tree(value, arrays):
    """Return a JSON-able tree for ``value``, moving arrays to ``arrays``."""
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise TypeError("object arrays cannot be stored in a database")
        arrays.append(value)
        return {"$array": len(arrays) - 1}
    if isinstance(value, np.generic):  # before float: np.float64 is a float
        arrays.append(np.asarray(value))
        return {"$scalar": len(arrays) - 1}
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, dict):
        tree = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError("dict keys of a database entry must be str, "
                                "not %r" % (key,))
            # One '$' more on user keys starting with '$' keeps them apart
            # from the '$array'/'$scalar'/'$tuple' markers.
            tree["$" + key if key.startswith("$") else key] = \
                _to_tree(item, arrays)
        return tree
    if isinstance(value, tuple):
        return {"$tuple": [_to_tree(item, arrays) for item in value]}
    if isinstance(value, list):
        return [_to_tree(item, arrays) for item in value]
    raise TypeError("cannot store a %s in a database entry: use numpy arrays, "
                    "numbers, str, None, or lists, tuples and str-keyed dicts "
                    "of those" % type(value).__name__)


def _from_tree(node, arrays):
    if isinstance(node, list):
        return [_from_tree(item, arrays) for item in node]
    if isinstance(node, dict):
        if len(node) == 1:
            (marker, content), = node.items()
            if marker == "$array":
                return arrays[_index(content, arrays)]
            if marker == "$scalar":
                return arrays[_index(content, arrays)][()]
            if marker == "$tuple":
                return tuple(_from_tree(item, arrays) for item in content)
        return {key[1:] if key.startswith("$") else key:
                _from_tree(item, arrays) for key, item in node.items()}
    return node


def _index(content, arrays):
    if type(content) is not int or not 0 <= content < len(arrays):
        raise ValueError("bad array reference %r" % (content,))
    return content


def _zip_member(archive, name, data):
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.external_attr = 0o644 << 16
    archive.writestr(info, data, compress_type=zipfile.ZIP_STORED)


def _array_description(array):
    descr = np.lib.format.dtype_to_descr(array.dtype)
    return {"dtype": descr if isinstance(descr, str) else None,
            "shape": list(array.shape),
            "fortran": bool(array.flags.f_contiguous
                            and not array.flags.c_contiguous)}


def _read_npy(data, meta):
    """Return the array of one ``.npy`` member described by ``meta``.

    Plain dtypes are read straight from the bytes after the ``.npy`` header
    (numpy's reader parses that header with ``ast.literal_eval``, which
    dominated the time of reading an entry); others go through numpy's
    reader, with ``allow_pickle=False`` in both cases.
    """
    dtype = np.dtype(meta["dtype"]) if meta["dtype"] is not None else None
    if dtype is None or dtype.itemsize == 0:
        return np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
    if dtype.hasobject or data[:6] != b"\x93NUMPY" or data[6] not in (1, 2, 3):
        raise ValueError("array member is not a plain .npy array")
    if data[6] == 1:
        start = 10 + int.from_bytes(data[8:10], "little")
    else:
        start = 12 + int.from_bytes(data[8:12], "little")
    shape = tuple(meta["shape"])
    count = math.prod(shape)
    if len(data) - start != count * dtype.itemsize or \
            any(type(n) is not int or n < 0 for n in shape):
        raise ValueError("array data does not match its description")
    array = np.frombuffer(data, dtype, count, start)
    return array.reshape(shape, order="F" if meta["fortran"] else "C").copy(
        order="K")  # a writable array that owns its memory


def encode_entry(value):
    """Serialise one entry value to bytes (format ``amp-ampdb-entry`` v1).

    The bytes are an uncompressed zip (readable by ``numpy.load`` with
    ``allow_pickle=False``) with a member ``entry.json`` and one member
    ``a<N>.npy`` per array. ``entry.json`` holds ``format``, ``version``,
    ``kind`` (the value's type name), ``arrays`` (dtype, shape and order of
    each array, as its ``.npy`` header also says) and ``value``:
    the JSON tree of the value in which arrays are ``{"$array": N}``, numpy
    scalars ``{"$scalar": N}``, tuples ``{"$tuple": [...]}``, and dict keys
    starting with ``$`` carry one extra ``$``. Equal values give equal bytes.

    Parameters
    ----------
    value : numpy.ndarray, dict, list, tuple, int, float, bool, str or None
        Nested containers may hold any of these; dict keys must be str.

    Raises
    ------
    TypeError
        For anything else (objects, object arrays, non-str dict keys).
    """
    arrays = []
    tree = _to_tree(value, arrays)
    header = {"format": ENTRY_FORMAT, "version": ENTRY_VERSION,
              "kind": type(value).__name__,
              "arrays": [_array_description(array) for array in arrays],
              "value": tree}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        _zip_member(archive, "entry.json", json.dumps(header).encode("utf-8"))
        for number, array in enumerate(arrays):
            data = io.BytesIO()
            np.save(data, array, allow_pickle=False)
            _zip_member(archive, "a%d.npy" % number, data.getvalue())
    return buffer.getvalue()


def _looks_like_pickle(data):
    # Protocol 2+ starts with PROTO (0x80); protocols 0 and 1, which Amp
    # 1.x wrote, start with an opcode such as '(' or 'c' and end with STOP.
    return data[:1] == b"\x80" or (data[-1:] == b"."
                                   and data[:1] in b"(]}cdlIJKLFGSTUVNX")


def decode_entry(data):
    """Return the value stored in ``data`` (bytes from :func:`encode_entry`).

    Raises
    ------
    UnsupportedEntryError
        For a pickle (Amp 1.x's format) or a newer format version.
    CorruptEntryError
        For anything damaged: truncated, bit-flipped (zip CRC), not an entry.
    """
    if not data.startswith(_ZIP_MAGIC):
        if _looks_like_pickle(data):
            raise UnsupportedEntryError(
                "the entry is a pickle (the format of Amp 1.x), which is "
                "never loaded because unpickling can run arbitrary code")
        raise CorruptEntryError("not an amp-ampdb-entry (%d bytes)"
                                % len(data))
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if any(info.compress_type != zipfile.ZIP_STORED
                   for info in archive.infolist()):
                raise ValueError("compressed members are not allowed")
            header = json.loads(archive.read("entry.json"))  # CRC-checked
            if not isinstance(header, dict) or \
                    header.get("format") != ENTRY_FORMAT or \
                    type(header.get("version")) is not int:
                raise ValueError("entry.json is not an amp-ampdb-entry header")
            if header["version"] > ENTRY_VERSION:
                raise UnsupportedEntryError(
                    "the entry has format version %d; this version of amp "
                    "reads up to %d" % (header["version"], ENTRY_VERSION))
            arrays = [_read_npy(archive.read("a%d.npy" % number), meta)
                      for number, meta in enumerate(header["arrays"])]
            return _from_tree(header["value"], arrays)
    except UnsupportedEntryError:
        raise
    except Exception as error:  # any parse failure means a damaged entry
        raise CorruptEntryError("%s: %s" % (type(error).__name__, error)) \
            from error


def _write_atomically(folder, name, data, fsync):
    """Write ``data`` to ``folder/name`` through a temporary file."""
    temporary = os.path.join(folder, ".tmp-%s-%d-%s" % (
        name[:40], os.getpid(), secrets.token_hex(6)))
    try:
        with open(temporary, "xb") as handle:
            handle.write(data)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temporary, os.path.join(folder, name))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    if fsync:
        _fsync_folder(folder)


def _fsync_folder(folder):
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _read_file(path):
    with open(path, "rb") as handle:
        return handle.read()


def _folder_bytes(path):
    total = 0
    for root, _, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


# ------------------------------------------------------------ archive index

class _ArchiveIndex:
    """The members of one ``archive.tar.gz``, decompressed once.

    gzip cannot seek, so the archive is decompressed in a single pass into
    a spooled temporary file (memory up to ``SPOOL_BYTES``, then an unnamed
    file) and the tar headers are indexed; a read is then one seek.
    """

    SPOOL_BYTES = 16 * 2 ** 20

    def __init__(self, path, report, spill_folder):
        self.members = {}
        self.pid = os.getpid()  # a forked child must not share the offset
        self._spool = tempfile.SpooledTemporaryFile(self.SPOOL_BYTES,
                                                    dir=spill_folder)
        with open(path, "rb") as handle:
            status = os.fstat(handle.fileno())
            self.signature = (status.st_dev, status.st_ino,
                              status.st_mtime_ns, status.st_size)
            problem = self._decompress(handle)
            if problem:
                report("archive %s is damaged after %d bytes (%s); entries "
                       "beyond that point are treated as missing"
                       % (path, self._spool.tell(), problem))
        total = self._spool.tell()
        self._spool.seek(0)
        try:
            tar = tarfile.open(fileobj=self._spool, mode="r:")
        except (tarfile.TarError, OSError, EOFError) as error:
            report("archive %s has no readable members (%s)" % (path, error))
            return
        while True:
            try:
                info = tar.next()
            except (tarfile.TarError, OSError, EOFError, ValueError) as error:
                report("archive %s ends in a damaged member (%s); the members "
                       "before it are used" % (path, error))
                break
            if info is None:
                break
            if info.isreg() and _is_key(info.name) and \
                    info.offset_data + info.size <= total:
                self.members[info.name] = (info.offset_data, info.size)
        tar.members = []

    def _decompress(self, handle):
        """Inflate ``handle`` into the spool; return a problem or None.

        zlib is driven by hand, in small chunks, so that the data before a
        damaged or truncated spot is kept (``gzip.GzipFile`` drops it).
        """
        inflater, fed = zlib.decompressobj(wbits=31), False
        try:
            while True:
                chunk = handle.read(2 ** 16)
                if not chunk:
                    break
                while chunk:
                    fed = True
                    self._spool.write(inflater.decompress(chunk))
                    chunk = inflater.unused_data
                    if inflater.eof:  # another gzip member may follow
                        inflater, fed = zlib.decompressobj(wbits=31), False
        except zlib.error as error:
            return str(error)
        if fed:
            self._spool.write(inflater.flush())
            return "the file ends inside the gzip stream"
        return None

    def __contains__(self, key):
        return key in self.members

    def read(self, key):
        """Return the raw bytes of member ``key``."""
        offset, size = self.members[key]
        self._spool.seek(offset)
        return self._spool.read(size)

    def close(self):
        """Release the decompressed copy."""
        self._spool.close()


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


class FileDatabase:
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

    def __init__(self, filename, log=None, fsync=False):
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
        self._memdict = {}
        self._bad = set()
        self._index = None

    @classmethod
    def open(cls, filename, flag=None):
        """Return ``cls(filename)``; ``flag`` is accepted for Amp's sake."""
        return cls(filename)

    def close(self):
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

    def _archive_index(self):
        """Return the index of the current archive, or None without one."""
        try:
            status = os.stat(self.tarpath)
        except FileNotFoundError:
            status = None
        index = self._index
        if index is not None and (status is None or index.pid != os.getpid()
                                  or index.signature != (
                                      status.st_dev, status.st_ino,
                                      status.st_mtime_ns, status.st_size)):
            index.close()
            index = self._index = None
        if index is None and status is not None:
            spill = self.path if os.access(self.path, os.W_OK) else None
            try:
                index = self._index = _ArchiveIndex(self.tarpath, self._report,
                                                    spill)
            except FileNotFoundError:  # replaced between stat and open
                return self._archive_index()
        return index

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
            data = _read_file(os.path.join(self.loosepath, key))
        except FileNotFoundError:
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

    def __contains__(self, key):
        # True only when the entry can be read: a damaged one is missing.
        try:
            self[key]
        except KeyError:
            return False
        return True

    def keys(self):
        """Return the keys in memory, in ``loose/`` and in the archive.

        Keys of entries found damaged are left out.
        """
        keys = dict.fromkeys(self._memdict)
        try:
            names = os.listdir(self.loosepath)
        except (FileNotFoundError, NotADirectoryError):
            names = []
        keys.update(dict.fromkeys(name for name in names if _is_key(name)))
        index = self._archive_index()  # after listing loose/: see archive()
        if index is not None:
            keys.update(dict.fromkeys(index.members))
        return [key for key in keys if key not in self._bad
                or key in self._memdict]

    def __iter__(self):
        return iter(self.keys())

    def __len__(self):
        return len(self.keys())

    def values(self):
        """Return every readable value (each kept in memory)."""
        return [value for _, value in self.items()]

    def items(self):
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
            existing = _read_file(os.path.join(self.loosepath, key))
        except OSError:
            existing = None
            index = self._archive_index()
            if index is not None and key in index and index.read(key) == data:
                return
        if existing == data:
            return  # unchanged: no rewrite
        os.makedirs(self.loosepath, exist_ok=True)
        _write_atomically(self.loosepath, key, data, self.fsync)

    def update(self, newitems):
        """Set every item of a mapping or an iterable of ``(key, value)``."""
        items = newitems.items() if hasattr(newitems, "items") else newitems
        for key, value in items:
            self[key] = value

    @contextlib.contextmanager
    def _lock(self):
        if fcntl is None:
            raise OSError("archive() needs fcntl.flock, which this system "
                          "lacks")
        os.makedirs(self.path, exist_ok=True)
        descriptor = os.open(os.path.join(self.path, "lock"),
                             os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)  # releases the lock

    def _recover(self):
        """Clear what a crashed writer or archiver left (lock held)."""
        for name in os.listdir(self.path):
            if name.startswith(".tmp-archive-") or (
                    name.startswith(".tmp-") and self._stale(self.path, name)):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.path, name))
        for name in os.listdir(self.loosepath):
            if name.startswith(".archiving-"):  # only archivers make these
                key = name[len(".archiving-"):].rsplit("-", 2)[0]
                self._put_back(os.path.join(self.loosepath, name), key)
            elif name.startswith(".tmp-") and self._stale(self.loosepath,
                                                          name):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.loosepath, name))

    @staticmethod
    def _stale(folder, name):
        with contextlib.suppress(OSError):
            age = time.time() - os.lstat(os.path.join(folder, name)).st_mtime
            return age > _STALE_SECONDS
        return False

    def _put_back(self, aside, key):
        """Return ``aside`` to ``loose/key`` unless a newer file is there."""
        if _is_key(key):
            target = os.path.join(self.loosepath, key)
            try:
                os.link(aside, target)  # never clobbers
            except FileExistsError:
                pass
            except OSError:  # no hard links here: near-enough fallback
                if not os.path.exists(target):
                    os.replace(aside, target)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(aside)

    def archive(self):
        """Move every loose entry into ``archive.tar.gz``.

        Under an exclusive lock (so archivers never race; writers need no
        lock): each valid loose entry is merged with the existing archive
        (loose wins), the new archive is written under a temporary name,
        fsynced and ``os.replace``\\ d, and then each loose file is removed
        only if it still holds the bytes that were archived. Damaged loose
        entries are dropped and reported. Running it again is harmless.

        Returns
        -------
        dict
            ``moved`` (loose entries archived), ``dropped`` (damaged loose
            entries removed), ``entries`` (members of the archive),
            ``bytes_before`` and ``bytes_after`` (size of the folder).

        Raises
        ------
        UnsupportedEntryError
            When a loose entry is a pickle; nothing is changed then.
        """
        if not os.path.isdir(self.path):
            return {"moved": 0, "dropped": 0, "entries": 0,
                    "bytes_before": 0, "bytes_after": 0}
        bytes_before = _folder_bytes(self.path)
        with self._lock():
            os.makedirs(self.loosepath, exist_ok=True)
            self._recover()
            names = sorted(name for name in os.listdir(self.loosepath)
                           if _is_key(name))
            index = self._archive_index()
            entries = len(index.members) if index is not None else 0
            digests, damaged = {}, {}
            if names:
                entries = self._write_archive(names, index, digests, damaged)
            for key, digest in list(digests.items()) + list(damaged.items()):
                self._remove_if_unchanged(key, digest)
        return {"moved": len(digests), "dropped": len(damaged),
                "entries": entries, "bytes_before": bytes_before,
                "bytes_after": _folder_bytes(self.path)}

    def _write_archive(self, names, index, digests, damaged):
        """Write the merged archive; fill ``digests`` of what went in."""
        temporary = os.path.join(self.path, ".tmp-archive-%d-%s.tar.gz"
                                 % (os.getpid(), secrets.token_hex(6)))
        stamp = int(time.time())

        def add(tar, key, data):
            info = tarfile.TarInfo(key)
            info.size, info.mtime, info.mode = len(data), stamp, 0o644
            tar.addfile(info, io.BytesIO(data))

        try:
            with open(temporary, "xb") as raw:
                with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6,
                                   mtime=0) as stream, \
                        tarfile.open(fileobj=stream, mode="w",
                                     format=tarfile.PAX_FORMAT) as tar:
                    for key in names:  # streamed: memory stays small
                        try:
                            data = _read_file(os.path.join(self.loosepath,
                                                           key))
                        except FileNotFoundError:
                            continue
                        digest = hashlib.blake2b(data).digest()
                        try:
                            decode_entry(data)
                        except UnsupportedEntryError as error:
                            raise self._unsupported(error, key, "loose/") \
                                from None
                        except CorruptEntryError as error:
                            damaged[key] = digest
                            self._report("loose entry %r of %s is damaged "
                                         "(%s); dropped" % (key, self.path,
                                                            error))
                            continue
                        add(tar, key, data)
                        digests[key] = digest
                    kept = [key for key in (index.members if index else ())
                            if key not in digests]
                    for key in kept:
                        add(tar, key, index.read(key))
                raw.flush()
                os.fsync(raw.fileno())
            os.replace(temporary, self.tarpath)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        _fsync_folder(self.path)
        return len(digests) + len(kept)

    def _remove_if_unchanged(self, key, digest):
        """Remove ``loose/key`` if it still holds the bytes with ``digest``."""
        path = os.path.join(self.loosepath, key)
        aside = os.path.join(self.loosepath, ".archiving-%s-%d-%s" % (
            key, os.getpid(), secrets.token_hex(6)))
        try:
            os.rename(path, aside)  # atomic: a writer now creates a new file
        except FileNotFoundError:
            return
        if hashlib.blake2b(_read_file(aside)).digest() == digest:
            os.unlink(aside)
        else:  # rewritten since it was archived: it must stay loose
            self._put_back(aside, key)

    def read_parameters(self):
        """Return the parameter record (a dict), or None without one.

        Raises
        ------
        ValueError
            When the record exists but cannot be read.
        """
        try:
            record = json.loads(_read_file(self.parameterspath))
            if record.get("format") != PARAMETERS_FORMAT or \
                    not isinstance(record.get("parameters"), dict):
                raise ValueError("not an %s record" % PARAMETERS_FORMAT)
        except FileNotFoundError:
            return None
        except (ValueError, AttributeError, OSError) as error:
            raise ValueError("the parameter record %s is unreadable (%s); "
                             "delete %s to rebuild the database"
                             % (self.parameterspath, error, self.path)) \
                from None
        return record["parameters"]

    def check_parameters(self, parameters):
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
            temporary = os.path.join(self.path, ".tmp-parameters-%d-%s" % (
                os.getpid(), secrets.token_hex(6)))
            with open(temporary, "x") as handle:
                json.dump(record, handle, indent=1, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(temporary, self.parameterspath)
            except FileExistsError:
                pass  # another process recorded first: compare with theirs
            except OSError:  # no hard links on this file system
                if not os.path.exists(self.parameterspath):
                    os.replace(temporary, self.parameterspath)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temporary)
            _fsync_folder(self.path)
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

    def __init__(self, filename=None, max_entries=None):
        if max_entries is not None and max_entries < 1:
            raise ValueError("max_entries must be at least 1, not %r"
                             % (max_entries,))
        self.filename = filename
        self.max_entries = max_entries
        self.log = None
        self.parameters = None
        self._memdict = OrderedDict()

    @classmethod
    def open(cls, filename=None, flag=None):
        """Return a new, empty ``cls()``."""
        return cls(filename)

    def close(self):
        """Do nothing: the entries stay until :meth:`clear` or eviction."""

    def clear(self):
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

    def keys(self):
        """Return the keys, oldest first."""
        return list(self._memdict)

    def __iter__(self):
        return iter(self.keys())

    def __len__(self):
        return len(self._memdict)

    def values(self):
        """Return the values, oldest first."""
        return list(self._memdict.values())

    def items(self):
        """Return the ``(key, value)`` pairs, oldest first."""
        return list(self._memdict.items())

    def update(self, newitems):
        """Set every item of a mapping or an iterable of ``(key, value)``."""
        items = newitems.items() if hasattr(newitems, "items") else newitems
        for key, value in items:
            self[key] = value

    def archive(self):
        """Do nothing (no disk); return zero counts as ``FileDatabase``."""
        return {"moved": 0, "dropped": 0, "entries": 0, "bytes_before": 0,
                "bytes_after": 0}

    def check_parameters(self, parameters):
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

    def __init__(self, filename, db=FileDatabase, calculator=None):
        self.filename = filename
        self.calc = calculator
        self.d = None
        self._images = {}
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

    def open(self, mode="r"):
        """Open the database (if not open) and return it."""
        if self.d is None:
            self.d = self._store if self._store is not None \
                else self.db.open(self.filename, mode)
        return self.d

    def close(self):
        """Close the database; a store given or kept in memory is kept."""
        if self.d is not None and self.d is not self._store:
            self.d.close()
        self.d = None

    def calculate_items(self, images, parallel=None, log=None):
        """Compute and store the value of each image not yet in the database.

        Parameters
        ----------
        images : dict
            ``{key: ase.Atoms}``, e.g. from ``amp.utilities.hash_images``.
        parallel : dict or None
            e.g. ``{'cores': 1}``; the serial path ignores it.
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
        """Compute and store ``keys``, in workers when ``parallel`` asks.

        Workers are used when ``parallel`` is an ``amp.parallel.WorkerPool``
        or asks for more than one core, and the calculator has
        ``parallel_job()`` returning ``(job, setup)`` for
        :func:`amp.parallel.compute_in_workers` (e.g.
        :func:`amp.parallel.fingerprint_job`); each worker's value is
        stored as it arrives, through ``calc.parallel_decode(key, value)``
        when the calculator has one.
        """
        parallel_job = getattr(self.calc, "parallel_job", None)
        if parallel_job is not None:
            from amp.parallel import compute_in_workers, wants_parallel

            if wants_parallel(parallel):
                job, setup = parallel_job()
                decode = getattr(self.calc, "parallel_decode", None)
                for key, value in compute_in_workers(
                        parallel, job, {key: images[key] for key in keys},
                        setup, log):
                    self.d[key] = value if decode is None \
                        else decode(key, value)
                return
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
