"""Numpy arrays beside a JSON tree: what the entry and wire formats share.

The database entry format (:mod:`amp.store.entry`) and the worker wire format
(:mod:`amp.parallel.wire`) both write a value as a JSON tree in which each array is
a one-key dict such as ``{"$array": N}`` that refers to the N-th array,
stored apart (a ``.npy`` member, a ZMQ frame), and in which dict keys that
start with ``$`` carry one extra ``$`` so they never look like such a
marker. Each format chooses its markers, leaves and header layout; this
module walks the trees both ways and rebuilds arrays from raw bytes only
after checking them against their description, so a file or a peer can
make the reader build nothing but arrays of plain numbers, strings, lists
and dicts.
"""

import math

import numpy as np


def plain_dtype(dtype, kinds=None):
    """True when ``dtype`` holds no Python objects (and, given ``kinds``, a
    str of ``numpy.dtype.kind`` letters, when its kind is one of them)."""
    return not dtype.hasobject and (kinds is None or dtype.kind in kinds)


def is_shape(shape):
    """True when ``shape`` is a list or tuple of non-negative ints."""
    return isinstance(shape, (list, tuple)) and \
        all(type(n) is int and n >= 0 for n in shape)


def from_bytes(buffer, dtype, shape, offset=0, fortran=False):
    """Return a writable copy of the array stored in ``buffer[offset:]``.

    Parameters
    ----------
    buffer : bytes-like
        Holds exactly the array's data from ``offset`` to its end.
    dtype : numpy.dtype
        Checked by the caller (see :func:`plain_dtype`).
    shape : list or tuple
        As described in the header.
    fortran : bool
        The data is in Fortran order; the copy keeps that order.

    Raises
    ------
    ValueError
        When ``shape`` is not a shape or the byte count does not match it.
    """
    if not is_shape(shape):
        raise ValueError("array data does not match its description")
    count = math.prod(shape)
    if len(memoryview(buffer).cast("B")) - offset != count * dtype.itemsize:
        raise ValueError("array data does not match its description")
    array = np.frombuffer(buffer, dtype, count, offset)
    return array.reshape(shape, order="F" if fortran else "C").copy(
        order="K")  # the buffer may be read-only or owned by someone else


def to_tree(value, arrays, array_marker, kinds, where, special=None):
    """Return the JSON tree of ``value``, moving its arrays to ``arrays``.

    Dicts (str keys only, ``$``-escaped) and lists are walked; an array of
    a plain dtype whose kind is in ``kinds`` becomes
    ``{array_marker: index}`` and is appended to ``arrays``; None, bool,
    str, int and float stay as they are. Any other value is given to
    ``special(value, walk)`` first (``walk`` turns a nested value into its
    node), which returns its node or ``NotImplemented``. ``where`` names
    the format in error messages (e.g. ``"a database entry"``).

    Raises
    ------
    TypeError
        For a value the format cannot hold, naming it and ``where``.
    """
    def walk(value):
        if isinstance(value, dict):
            tree = {}
            for key, item in value.items():
                if not isinstance(key, str):
                    raise TypeError("dict keys in %s must be str, not %r"
                                    % (where, key))
                tree["$" + key if key.startswith("$") else key] = walk(item)
            return tree
        if isinstance(value, list):
            return [walk(item) for item in value]
        if isinstance(value, np.ndarray):
            if not plain_dtype(value.dtype, kinds):
                raise TypeError("cannot put an array of dtype %s in %s"
                                % (value.dtype, where))
            arrays.append(value)
            return {array_marker: len(arrays) - 1}
        if special is not None:
            node = special(value, walk)
            if node is not NotImplemented:
                return node
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, (int, float)):
            return int(value) if isinstance(value, int) else float(value)
        raise TypeError("cannot put a %s in %s: use numpy arrays, numbers, "
                        "str, None, or lists and str-keyed dicts of those"
                        % (type(value).__name__, where))

    return walk(value)


def from_tree(node, markers):
    """Return the value of a tree made by :func:`to_tree`.

    A one-key dict whose key is in ``markers`` becomes
    ``markers[key](content, walk)``; other dicts lose the escaping ``$``.
    """
    def walk(node):
        if isinstance(node, list):
            return [walk(item) for item in node]
        if isinstance(node, dict):
            if len(node) == 1:
                (marker, content), = node.items()
                build = markers.get(marker)
                if build is not None:
                    return build(content, walk)
            return {key[1:] if key.startswith("$") else key: walk(item)
                    for key, item in node.items()}
        return node

    return walk(node)


def reference(content, arrays, error=ValueError):
    """Return ``arrays[content]``; raise ``error`` unless ``content`` is an
    int index into ``arrays``."""
    if type(content) is not int or not 0 <= content < len(arrays):
        raise error("bad array reference %r" % (content,))
    return arrays[content]
