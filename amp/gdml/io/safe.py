"""Reading ``.npz`` archives that may come from anyone, without running code.

sgdml files are NumPy ``.npz`` archives. A few model keys (``f_err``,
``e_err``, ``md5_test``) are 0-d *object* arrays, i.e. pickles, and
``np.load(..., allow_pickle=True)`` would run whatever a crafted file asks
for. :func:`load_npz` reads every member itself:

- only a regular file is opened (a FIFO, device or directory in its place is
  refused by name, without blocking), and its size is bounded before
  anything is read;
- each member's declared uncompressed size and each array's declared
  ``shape x itemsize`` are bounded before anything is allocated, and
  decompression stops at the declared size;
- plain arrays are read with ``allow_pickle=False``; object arrays go
  through :class:`SafeUnpickler`, which resolves only the handful of NumPy
  names a pickled array of plain data needs and refuses everything else,
  then the result is checked to hold plain data only.

The limits are module attributes (:data:`MAX_FILE_BYTES`,
:data:`MAX_MEMBER_BYTES`) so that a caller with larger files can raise them.
"""

from __future__ import annotations

import io as _io
import numbers
from typing import IO, Any
import os
import pickle
import zipfile

import numpy as np

from ...store.files import UnsafeFileError as StoreUnsafeFileError
from ...store.files import open_regular
from .fields import scalar

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_MEMBER_BYTES",
    "UnsafeFileError",
    "SafeUnpickler",
    "load_npz",
    "npz_to_dict",
    "open_regular_file",
    "to_str",
    "to_bytes",
]

#: Largest ``.npz`` file :func:`load_npz` opens [bytes].
MAX_FILE_BYTES = 8 * 2 ** 30
#: Largest uncompressed member (one array) of an archive [bytes].
MAX_MEMBER_BYTES = 4 * 2 ** 30


class UnsafeFileError(ValueError):
    """A file asks for something other than plain data, or is not a file."""


# (module, name) pairs a pickled object array of plain data refers to.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that resolves only NumPy array/dtype/scalar constructors.

    Plain containers (dict, list, tuple), numbers, strings, bytes and None
    need no global lookups; the allowed globals are
    ``numpy.core.multiarray._reconstruct`` (and its ``numpy._core`` twin),
    ``numpy.core.multiarray.scalar``, ``numpy.ndarray`` and ``numpy.dtype``.
    Any other global (``os.system``, ``builtins.eval``, ...) raises
    :class:`UnsafeFileError` before anything is called.
    """

    def find_class(self, module: str, name: str) -> Any:
        """Resolve an allowed global or refuse.

        Parameters
        ----------
        module, name : str
            The global the pickle asks for.

        Returns
        -------
        object
            The NumPy function or class.

        Raises
        ------
        UnsafeFileError
            For any name outside the allow-list.
        """
        if (module, name) in _ALLOWED_GLOBALS:
            if module.startswith("numpy._core") or module.startswith(
                    "numpy.core"):
                try:
                    from numpy._core import multiarray as ma
                except ImportError:  # NumPy < 2
                    from numpy.core import (  # type: ignore[no-redef]
                        multiarray as ma)
                return getattr(ma, name)
            return getattr(np, name)
        raise UnsafeFileError(
            "refusing to load pickled object '{}.{}': only plain data "
            "(dicts, lists, numbers, strings, NumPy arrays) is accepted"
            .format(module, name))

    def persistent_load(self, pid: Any) -> Any:
        """Refuse persistent ids.

        Parameters
        ----------
        pid : object
            Persistent id.

        Raises
        ------
        UnsafeFileError
            Always.
        """
        raise UnsafeFileError("refusing pickled persistent id")


def _check_plain(obj, depth=0):
    """Raise UnsafeFileError unless obj is plain data."""
    if depth > 50:
        raise UnsafeFileError("pickled object nested too deeply")
    if obj is None or isinstance(obj, (bool, numbers.Number, str, bytes)):
        return
    if isinstance(obj, np.generic):
        return
    if isinstance(obj, np.ndarray):
        if type(obj) is not np.ndarray:
            raise UnsafeFileError("array subclass {!r} refused".format(
                type(obj).__name__))
        if obj.dtype.hasobject:
            for item in obj.ravel():
                _check_plain(item, depth + 1)
        return
    if type(obj) in (list, tuple):
        for item in obj:
            _check_plain(item, depth + 1)
        return
    if type(obj) is dict:
        for k, v in obj.items():
            _check_plain(k, depth + 1)
            _check_plain(v, depth + 1)
        return
    raise UnsafeFileError("pickled object of type {!r} refused".format(
        type(obj).__name__))


def open_regular_file(path: Any, max_bytes: int | None = None
                      ) -> IO[bytes]:
    """Open a regular file for binary reading, refusing anything else.

    The file is opened non-blocking (so a FIFO cannot hang the caller),
    checked with ``fstat`` and only then read.

    Parameters
    ----------
    path : str or path-like
        The file.
    max_bytes : int, optional
        Largest accepted size; default :data:`MAX_FILE_BYTES`.

    Returns
    -------
    file
        Binary file object (the caller closes it).

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    UnsafeFileError
        If the path is a FIFO, device, socket or directory, or larger than
        `max_bytes`.
    """
    limit = MAX_FILE_BYTES if max_bytes is None else int(max_bytes)
    path = os.fspath(path)
    # The path is the user's own choice (a dataset, task or model), so a
    # symbolic link to it is followed; everything else is refused.
    try:
        fd, size = open_regular(path, None, "'%s'" % path, follow_links=True)
    except FileNotFoundError:
        raise FileNotFoundError("no such file: '{}'".format(path)) from None
    except StoreUnsafeFileError as error:
        raise UnsafeFileError(str(error)) from None
    if size > limit:
        os.close(fd)
        raise UnsafeFileError(
            "'{}' is {} bytes, more than the limit of {} bytes "
            "(amp.gdml.io.safe.MAX_FILE_BYTES)".format(path, size, limit))
    return os.fdopen(fd, "rb")


def _read_member(zf, info, where):
    """One ``.npy`` member of an open archive as an array, safely."""
    key = info.filename[:-4]
    if info.file_size > MAX_MEMBER_BYTES:
        raise UnsafeFileError(
            "{}: member '{}' declares {} bytes, more than the limit of {} "
            "bytes".format(where, key, info.file_size, MAX_MEMBER_BYTES))
    with zf.open(info) as fp:
        try:
            version = np.lib.format.read_magic(fp)
            if version == (1, 0):
                shape, fortran, dtype = \
                    np.lib.format.read_array_header_1_0(fp)
            elif version == (2, 0):
                shape, fortran, dtype = \
                    np.lib.format.read_array_header_2_0(fp)
            else:
                raise ValueError("unsupported .npy version {}".format(
                    version))
        except (ValueError, EOFError, OSError, zipfile.BadZipFile,
                SyntaxError) as err:
            raise ValueError("{}: member '{}' is not a valid .npy array: {}"
                             .format(where, key, err)) from None
        if dtype.hasobject:
            payload = fp.read(MAX_MEMBER_BYTES + 1)
            try:
                arr = SafeUnpickler(_io.BytesIO(payload)).load()
            except UnsafeFileError:
                raise
            except Exception as err:  # any malformed pickle
                raise ValueError("{}: member '{}' holds a malformed pickle: "
                                 "{}".format(where, key, err)) from None
            if not isinstance(arr, np.ndarray) or type(arr) is not np.ndarray:
                raise UnsafeFileError(
                    "{}: member '{}': pickled payload is not an array"
                    .format(where, key))
            _check_plain(arr)
            if arr.shape != tuple(shape):
                raise ValueError("{}: member '{}': pickled array has shape "
                                 "{}, header says {}".format(
                                     where, key, arr.shape, shape))
            return key, arr
        n_bytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
        if n_bytes > info.file_size:
            raise ValueError(
                "{}: member '{}' declares an array of {} bytes (shape {}) "
                "but holds only {} bytes".format(where, key, n_bytes, shape,
                                                 info.file_size))
    with zf.open(info) as fp:
        try:
            arr = np.lib.format.read_array(fp, allow_pickle=False)
        except (ValueError, EOFError, OSError, zipfile.BadZipFile) as err:
            raise ValueError("{}: member '{}' could not be read: {}".format(
                where, key, err)) from None
    return key, arr


def _read_archive(zf, where):
    out = {}
    for info in zf.infolist():
        if not info.filename.endswith(".npy"):
            continue
        key, arr = _read_member(zf, info, where)
        out[key] = arr
    return out


def load_npz(path: Any) -> dict[str, Any]:
    """Load an ``.npz`` archive without general unpickling, within bounds.

    Parameters
    ----------
    path : str, path-like or binary file object
        The archive.

    Returns
    -------
    dict
        Key to :class:`numpy.ndarray`, as ``dict(np.load(path))`` would give;
        object arrays hold only plain data (dicts, lists, numbers, strings,
        bytes, None, arrays).

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    UnsafeFileError
        If the path is not a regular file, a size limit is exceeded, or an
        object array asks for anything but plain data.
    ValueError
        If the file is not a readable ``.npz`` archive.
    """
    if hasattr(path, "read"):
        handle, where, close = path, "<file object>", False
    else:
        handle = open_regular_file(path)
        where, close = "'{}'".format(os.fspath(path)), True
    try:
        try:
            zf = zipfile.ZipFile(handle)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
            raise ValueError("{} is not a readable .npz file: {}".format(
                where, err)) from None
        with zf:
            try:
                return _read_archive(zf, where)
            except (zipfile.BadZipFile, EOFError, NotImplementedError,
                    RuntimeError) as err:
                raise ValueError("{} is not a readable .npz file: {}".format(
                    where, err)) from None
    finally:
        if close:
            handle.close()


def npz_to_dict(npz: Any) -> dict[str, Any]:
    """Read an open :class:`numpy.lib.npyio.NpzFile` like :func:`load_npz`.

    ``np.load('model.npz')`` opens sgdml models without unpickling, and
    reading their object keys from it then fails; this reads every member
    of the archive the way :func:`load_npz` does (object arrays through
    :class:`SafeUnpickler`), whatever ``allow_pickle`` the archive was
    opened with.

    Parameters
    ----------
    npz : numpy.lib.npyio.NpzFile
        The open archive.

    Returns
    -------
    dict
        Key to array.
    """
    zf = getattr(npz, "zip", None)
    if zf is None:
        raise ValueError("the NpzFile has been closed; load the file again")
    return _read_archive(zf, "the NpzFile")


def to_str(value: Any) -> str:
    """Text field (bytes or unicode scalar/array) as a Python ``str``.

    Parameters
    ----------
    value : object
        Bytes, str or 0-d NumPy array.

    Returns
    -------
    str
    """
    if isinstance(value, np.ndarray):
        value = scalar(value) if value.ndim == 0 else value.tolist()
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def to_bytes(value: Any) -> np.ndarray:
    """Text field as a NumPy bytes scalar array (sgdml's byte fields).

    Parameters
    ----------
    value : object
        Bytes, str or 0-d array.

    Returns
    -------
    numpy.ndarray
        0-d ``|S`` array.
    """
    return np.array(to_str(value).encode("utf-8"))
