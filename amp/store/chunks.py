"""Chunk files: arrays written once and read many times, memory-mapped.

A *chunk set* is a folder of ``.npy`` files, one per array per chunk
(``c00000-<name>.npy``), and a ``manifest.json`` written last that lists
every chunk's arrays (dtype and shape) and the caller's JSON data. The
set is built in a private temporary folder beside its target and
published with one ``os.rename``, so a reader sees a whole set or none;
a set whose manifest key differs from the one asked for is never opened
(the key is whatever identifies the content, chosen by the caller).

Reading treats the files as someone else's: each is opened with
:func:`amp.store.files.open_regular` (no symbolic link, no FIFO), its
``.npy`` header is parsed with numpy's own reader (never a pickle: object
dtypes are refused), and dtype, shape and file size must be those the
manifest gives before the data are mapped read-only (``numpy.memmap``,
what ``numpy.load(path, mmap_mode='r')`` gives). :meth:`ChunkSet.read_rows`
copies a range of rows with ``pread`` instead, for a reader that needs a
few rows of many chunks and must not keep their pages mapped.

:func:`check_free_space` compares the bytes a set will take with the free
space of its file system (and the process's file-size limit) before
anything is written, and raises :class:`DiskSpaceError` naming the
figures.

This module knows arrays and files only; what the arrays mean is the
caller's (:mod:`amp.model.streaming`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import mmap
import os
import secrets
import shutil
from typing import Any, Callable, Iterable

import numpy as np

from . import limits
from .files import TEMPORARY_PREFIX, atomic_file, open_regular, read_file

__all__ = ["ChunkSet", "ChunkSetWriter", "ChunkSetError", "DiskSpaceError",
           "check_free_space", "free_space", "npy_bytes", "MANIFEST",
           "FORMAT", "VERSION"]

FORMAT = "amp-chunk-set"
VERSION = 1
MANIFEST = "manifest.json"

#: Array types a chunk may hold (little-endian numbers only).
DTYPES = ("<f8", "<f4", "<i8", "<i4", "|u1", "|b1")

_HEADER_BYTES = 2 ** 16  # an .npy header of a plain array is ~128 bytes

#: Files from this size on are mapped with ``MADV_HUGEPAGE``. Measured
#: (Linux 6.18, ext4, Cu108 chunks of 64 MB): pages read back into the
#: page cache through an ordinary map come as 4 kB pages, and a loss
#: evaluation over them then took 0.42-0.45 ms per image instead of the
#: 0.24 ms over the large pages the writes left; with the advice, the
#: pages read back are large again (0.24 ms).
HUGE_BYTES = 4 * 2 ** 20


def _advise_huge(mapped):
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    if advice is not None and hasattr(mapped, "madvise"):
        try:
            mapped.madvise(advice)
        except OSError:  # not supported here: ordinary pages
            pass


class ChunkSetError(ValueError):
    """A chunk set is incomplete, damaged or not the one asked for."""


class DiskSpaceError(OSError):
    """The files to be written would not fit on their file system (or
    exceed the process's file-size limit); raised before writing."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.ENOSPC, message)

    def __str__(self) -> str:
        return self.args[1]


def npy_bytes(shape: Iterable[int], dtype: Any) -> int:
    """Bytes of an ``.npy`` file of an array of ``shape`` and ``dtype``
    (header included)."""
    count = int(np.prod(list(shape), dtype=np.int64))
    return 128 + count * np.dtype(dtype).itemsize


def _existing_ancestor(path):
    path = os.path.abspath(os.fspath(path))
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def free_space(path: str | os.PathLike) -> int:
    """Bytes free for an unprivileged writer on the file system that holds
    ``path`` (or, when it does not exist yet, its nearest existing
    ancestor)."""
    return shutil.disk_usage(_existing_ancestor(path)).free


def check_free_space(path: str | os.PathLike, needed: int,
                     largest_file: int = 0, what: str = "chunk files",
                     log: Callable[[str], Any] | None = None) -> int:
    """Refuse to write ``needed`` bytes below ``path`` when they do not fit.

    Parameters
    ----------
    path : str
        Where the files will go (need not exist yet).
    needed : int
        Bytes of all the files.
    largest_file : int
        Bytes of the largest single file (checked against the soft
        ``RLIMIT_FSIZE`` of the process, when there is one).
    what : str
        Names the files in the message.
    log : callable, optional
        Receives one line with the figures.

    Returns
    -------
    int
        The free bytes found.

    Raises
    ------
    DiskSpaceError
        Not enough free space, or a file above the file-size limit.
    """
    free = free_space(path)
    where = _existing_ancestor(path)
    if log is not None:
        log("Disk for %s: %s needed, %s free on the file system of %s."
            % (what, _format(needed), _format(free), where))
    if needed > free:
        raise DiskSpaceError(
            "the %s need about %s but only %s is free on the file system "
            "of %s; nothing has been written. Free some space, or give the "
            "training databases a dblabel= on a larger disk."
            % (what, _format(needed), _format(free), where))
    limit = _file_size_limit()
    if limit is not None and largest_file > limit:
        raise DiskSpaceError(
            "one of the %s would have about %s, more than this process's "
            "file-size limit of %s (ulimit -f); nothing has been written. "
            "Raise the limit, or give a smaller memory_limit= (smaller "
            "chunks)." % (what, _format(largest_file), _format(limit)))
    return free


def _file_size_limit():
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY else soft


def _format(size):
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            value = size / scale
            return ("%.1f %s" if value < 10 else "%.0f %s") % (value, unit)
    return "%d bytes" % size


def _file_name(index, name):
    return "c%05d-%s.npy" % (index, name)


def _check_name(name):
    if not isinstance(name, str) or not name or len(name) > 100 or \
            not all(c.isalnum() or c in "._-" for c in name) or \
            name.startswith("."):
        raise ValueError("chunk array name %r: letters, digits, '.', '_' "
                         "and '-' only" % (name,))


class ChunkSetWriter:
    """Build a chunk set in a private folder and publish it whole.

    Use as a context manager: the temporary folder is removed if the block
    fails or :meth:`commit` was not called.

    Parameters
    ----------
    folder : str
        Where the set will be (its parent is created if need be).
    key : str
        What the set holds (a digest): :meth:`ChunkSet.open` refuses a set
        of another key.
    meta : dict, optional
        JSON data kept in the manifest.
    """

    def __init__(self, folder: str | os.PathLike, key: str,
                 meta: dict | None = None) -> None:
        self.folder = os.path.abspath(os.fspath(folder))
        self.key, self.meta = str(key), dict(meta or {})
        parent = os.path.dirname(self.folder)
        os.makedirs(parent, exist_ok=True)
        temporary = os.path.join(parent, "%s%s-%d-%s" % (
            TEMPORARY_PREFIX, os.path.basename(self.folder)[:40],
            os.getpid(), secrets.token_hex(6)))
        os.mkdir(temporary)
        self.temporary: str | None = temporary
        self.chunks: list[dict] = []
        self.nbytes = 0

    def add(self, arrays: dict[str, np.ndarray],
            info: dict | None = None) -> None:
        """Write one chunk: ``arrays`` ``{name: ndarray}`` (one ``.npy``
        each, C order) and ``info``, JSON data kept in the manifest."""
        index = len(self.chunks)
        spec = {}
        for name, array in arrays.items():
            _check_name(name)
            array = np.ascontiguousarray(array)
            dtype = array.dtype.newbyteorder("<") if \
                array.dtype.byteorder == ">" else array.dtype
            array = array.astype(dtype, copy=False)
            if dtype.str not in DTYPES:
                raise TypeError("chunk array %s has dtype %s; allowed: %s"
                                % (name, dtype.str, ", ".join(DTYPES)))
            path = os.path.join(str(self.temporary), _file_name(index,
                                                                name))
            with open(path, "xb") as handle:
                np.lib.format.write_array(handle, array, allow_pickle=False)
                self.nbytes += handle.tell()
            spec[name] = {"dtype": dtype.str, "shape": list(array.shape)}
        self.chunks.append({"arrays": spec, "info": dict(info or {})})

    def commit(self) -> ChunkSet:
        """Write the manifest and publish the set; returns it opened.

        If a set of the same key was published meanwhile (another process
        built the same data), that one is kept and this one dropped.
        """
        manifest = {"format": FORMAT, "version": VERSION, "key": self.key,
                    "meta": self.meta, "chunks": self.chunks}
        temporary = str(self.temporary)
        with atomic_file(os.path.join(temporary, MANIFEST)) as handle:
            handle.write(json.dumps(manifest, sort_keys=True).encode())
        try:
            os.rename(temporary, self.folder)
        except OSError as error:
            if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            self.abort()
            try:
                return ChunkSet.open(self.folder, self.key)
            except (ChunkSetError, FileNotFoundError):
                raise ChunkSetError(
                    "%s exists and is not a chunk set of key %s; delete it"
                    % (self.folder, self.key)) from None
        self.temporary = None
        return ChunkSet.open(self.folder, self.key)

    def abort(self) -> None:
        """Remove the temporary folder (nothing was published)."""
        if self.temporary is not None:
            shutil.rmtree(self.temporary, ignore_errors=True)
            self.temporary = None

    def __enter__(self) -> ChunkSetWriter:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.abort()


class ChunkSet:
    """A published chunk set, read-only (see :meth:`open`).

    Attributes
    ----------
    folder : str
    key : str
    meta : dict
        The writer's JSON data.
    chunks : list of dict
        Per chunk: ``arrays`` (``{name: {'dtype', 'shape'}}``) and
        ``info`` (the writer's JSON data).
    nbytes : int
        Bytes of the array files.
    """

    def __init__(self, folder: str, manifest: dict) -> None:
        self.folder = folder
        self.key = manifest["key"]
        self.meta = manifest["meta"]
        self.chunks = manifest["chunks"]
        self.nbytes = sum(npy_bytes(a["shape"], a["dtype"])
                          for chunk in self.chunks
                          for a in chunk["arrays"].values())
        # Data offset of each file whose header was parsed, with the size
        # it had: a file of another size is parsed (and checked) again.
        self._offsets: dict[tuple[int, str], tuple[int, int]] = {}

    @classmethod
    def open(cls, folder: str | os.PathLike,
             key: str | None = None) -> ChunkSet:
        """Open the set in ``folder``, checking its manifest.

        Parameters
        ----------
        folder : str
        key : str, optional
            The key the set must have.

        Raises
        ------
        FileNotFoundError
            No manifest: no set, or an unfinished one.
        ChunkSetError
            A malformed manifest, or another key.
        """
        folder = os.path.abspath(os.fspath(folder))
        path = os.path.join(folder, MANIFEST)
        text = read_file(path, limits.MAX_MODEL_FILE_BYTES)
        try:
            manifest = json.loads(text)
            _check_manifest(manifest)
        except (ValueError, TypeError, KeyError, AttributeError,
                RecursionError) as error:
            raise ChunkSetError("%s is not a valid chunk-set manifest (%s)"
                                % (path, error)) from None
        if key is not None and manifest["key"] != key:
            raise ChunkSetError("chunk set %s holds other data (key %s, "
                                "not %s)" % (folder, manifest["key"], key))
        return cls(folder, manifest)

    def __len__(self) -> int:
        return len(self.chunks)

    def _open(self, index, name):
        """An open descriptor of the array file, its header checked;
        returns ``(fd, offset, dtype, shape)``."""
        spec = self.chunks[index]["arrays"][name]
        dtype, shape = np.dtype(spec["dtype"]), tuple(spec["shape"])
        path = os.path.join(self.folder, _file_name(index, name))
        expected = npy_bytes(shape, dtype) - 128
        fd, size = open_regular(path, expected + _HEADER_BYTES,
                                "chunk file %s" % path)
        known = self._offsets.get((index, name))
        if known is not None and known[1] == size:
            return fd, known[0], dtype, shape
        try:
            header = os.pread(fd, min(size, _HEADER_BYTES), 0)
            offset, header_dtype, header_shape, fortran = _parse_header(
                header, path)
            if header_dtype != dtype or header_shape != shape or fortran \
                    or size != offset + expected:
                raise ChunkSetError(
                    "chunk file %s does not hold the array its manifest "
                    "gives (%s %s, %d bytes)" % (path, dtype.str,
                                                 list(shape), size))
        except BaseException:
            os.close(fd)
            raise
        self._offsets[(index, name)] = (offset, size)
        return fd, offset, dtype, shape

    def arrays(self, index: int, names: Iterable[str] | None = None
               ) -> dict[str, np.ndarray]:
        """The arrays of chunk ``index``, memory-mapped read-only.

        Parameters
        ----------
        index : int
        names : iterable of str, optional
            Only these arrays.

        Returns
        -------
        dict
            ``{name: ndarray}`` over read-only maps of the files (what
            ``numpy.load(path, mmap_mode='r')`` gives; empty arrays as
            plain arrays).
        """
        out = {}
        for name in (self.chunks[index]["arrays"] if names is None
                     else names):
            fd, offset, dtype, shape = self._open(index, name)
            try:
                if int(np.prod(shape)) == 0:
                    out[name] = np.empty(shape, dtype)
                    continue
                size = offset + dtype.itemsize * int(np.prod(shape))
                mapped = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
            finally:
                os.close(fd)
            if size >= HUGE_BYTES:
                _advise_huge(mapped)
            out[name] = np.ndarray(shape, dtype, buffer=mapped,
                                   offset=offset)
        return out

    def read_rows(self, index: int, name: str, start: int,
                  stop: int) -> np.ndarray:
        """Rows ``start:stop`` (first axis) of one array, copied with
        ``pread`` (nothing stays mapped)."""
        fd, offset, dtype, shape = self._open(index, name)
        try:
            if not 0 <= start <= stop <= (shape[0] if shape else 0):
                raise IndexError("rows %d:%d of an array of %d"
                                 % (start, stop, shape[0]))
            row = dtype.itemsize * int(np.prod(shape[1:], dtype=np.int64))
            data = os.pread(fd, (stop - start) * row, offset + start * row)
        finally:
            os.close(fd)
        return np.frombuffer(bytearray(data), dtype=dtype).reshape(
            (stop - start,) + tuple(shape[1:]))

    def paths(self, index: int) -> list[str]:
        """The array files of chunk ``index``."""
        return [os.path.join(self.folder, _file_name(index, name))
                for name in self.chunks[index]["arrays"]]

    def remove(self) -> None:
        """Delete the set's folder."""
        remove_set(self.folder)


def remove_set(folder: str | os.PathLike) -> None:
    """Delete a chunk set's folder (its manifest first, so a reader that
    opens it meanwhile finds no set rather than half of one)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(folder, MANIFEST))
    shutil.rmtree(folder, ignore_errors=True)


def _parse_header(header, path):
    """``(data offset, dtype, shape, fortran_order)`` of an ``.npy``
    header, parsed by numpy's reader (a literal dict, no pickle)."""
    import io

    handle = io.BytesIO(header)
    try:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(
                handle)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(
                handle)
        else:
            raise ValueError("unsupported .npy version %s" % (version,))
    except (ValueError, SyntaxError, EOFError) as error:
        raise ChunkSetError("chunk file %s has a bad header (%s)"
                            % (path, error)) from None
    if dtype.hasobject:
        raise ChunkSetError("chunk file %s holds Python objects; refused"
                            % path)
    return handle.tell(), dtype, tuple(shape), bool(fortran)


def _check_manifest(manifest):
    if manifest.get("format") != FORMAT:
        raise ValueError("not an %s manifest" % FORMAT)
    if manifest.get("version") != VERSION:
        raise ValueError("version %r; this library reads version %d"
                         % (manifest.get("version"), VERSION))
    if not isinstance(manifest.get("key"), str) or \
            not isinstance(manifest.get("meta"), dict) or \
            not isinstance(manifest.get("chunks"), list):
        raise ValueError("missing key, meta or chunks")
    for chunk in manifest["chunks"]:
        if not isinstance(chunk.get("info"), dict) or \
                not isinstance(chunk.get("arrays"), dict):
            raise ValueError("a chunk without arrays or info")
        for name, spec in chunk["arrays"].items():
            _check_name(name)
            if spec.get("dtype") not in DTYPES:
                raise ValueError("array %s: dtype %r not allowed"
                                 % (name, spec.get("dtype")))
            shape = spec.get("shape")
            if not isinstance(shape, list) or len(shape) > 4 or \
                    not all(isinstance(n, int) and 0 <= n < 2 ** 40
                            for n in shape):
                raise ValueError("array %s: bad shape %r" % (name, shape))
