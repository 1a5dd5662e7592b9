"""Numpy arrays beside a JSON tree: what the entry and wire formats share.

The database entry format (:mod:`amp._entry`) and the worker wire format
(:mod:`amp._wire`) both write a value as a JSON tree in which each array is
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


def to_tree(value, leaf, keys_of):
    """Return the JSON tree of ``value``.

    Dicts (str keys only, ``$``-escaped) and lists are walked here; every
    other value is given to ``leaf(value, walk)``, which returns its node
    (``walk`` turns a nested value into its node) or raises TypeError.
    ``keys_of`` names the dict keys in the error for a non-str key.
    """
    def walk(value):
        if isinstance(value, dict):
            tree = {}
            for key, item in value.items():
                if not isinstance(key, str):
                    raise TypeError("%s must be str, not %r" % (keys_of, key))
                tree["$" + key if key.startswith("$") else key] = walk(item)
            return tree
        if isinstance(value, list):
            return [walk(item) for item in value]
        return leaf(value, walk)

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
