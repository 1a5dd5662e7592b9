"""The format of one ``.ampdb`` entry, and the names entries may have.

An entry is an uncompressed zip of ``.npy`` arrays plus a JSON header (see
:func:`encode_entry`); decoding never unpickles, refuses Amp 1.x's pickles
with :class:`UnsupportedEntryError` and reports anything damaged as
:class:`CorruptEntryError`. :mod:`amp.store.database` stores these bytes under
keys checked by :func:`check_key`; every name here is importable from
there as well.
"""

import io
import json
import math
import zipfile

import numpy as np

from .arrays import (from_bytes, from_tree, plain_dtype, reference,
                      to_tree)

ENTRY_FORMAT = "amp-ampdb-entry"
ENTRY_VERSION = 1
MAX_KEY_BYTES = 200  # leaves room for temporary-name decorations (255 max)

_ZIP_MAGIC = b"PK\x03\x04"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed, so equal values give equal bytes


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


def is_key(name):
    """True when :func:`check_key` accepts ``name``."""
    try:
        check_key(name)
    except ValueError:
        return False
    return True


# ----------------------------------------------------------------- entries

def _to_tree(value, arrays):
    """Return a JSON-able tree for ``value``, moving arrays to ``arrays``."""
    def special(value, walk):
        if isinstance(value, np.generic):  # before float: np.float64 is one
            arrays.append(np.asarray(value))
            return {"$scalar": len(arrays) - 1}
        if isinstance(value, tuple):
            return {"$tuple": [walk(item) for item in value]}
        return NotImplemented

    return to_tree(value, arrays, "$array", None, "a database entry",
                   special)


def _from_tree(node, arrays):
    return from_tree(node, {
        "$array": lambda content, walk: reference(content, arrays),
        "$scalar": lambda content, walk: reference(content, arrays)[()],
        "$tuple": lambda content, walk: tuple(walk(item)
                                              for item in content)})


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
        # numpy's reader reserves the declared shape before reading: check
        # the declaration against the bytes there are first.
        stream = io.BytesIO(data)
        version = np.lib.format.read_magic(stream)
        read_header = np.lib.format.read_array_header_1_0 \
            if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, declared = read_header(stream)
        if declared.hasobject or math.prod(shape) * declared.itemsize != \
                len(data) - stream.tell():
            raise ValueError("array member does not match its .npy header")
        stream.seek(0)
        return np.lib.format.read_array(stream, allow_pickle=False)
    if not plain_dtype(dtype) or data[:6] != b"\x93NUMPY" or \
            data[6] not in (1, 2, 3):
        raise ValueError("array member is not a plain .npy array")
    if data[6] == 1:
        start = 10 + int.from_bytes(data[8:10], "little")
    else:
        start = 12 + int.from_bytes(data[8:12], "little")
    return from_bytes(data, dtype, tuple(meta["shape"]), start,
                      meta["fortran"])


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
