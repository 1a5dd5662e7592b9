"""Reading and writing ``.amp`` model files.

The format is JSON::

    {"format": "amp-mlip-model", "version": 1,
     "descriptor": {... Gaussian.todict() ...},
     "model": {... NeuralNetwork.todict() ...},
     "metadata": {... what training recorded, optional ...}}

Floats are written with Python's ``repr``, so parameters round-trip
exactly. Amp 1.x files (Python-literal text that Amp read with ``eval``)
are read through :mod:`amp.store.literal`, which accepts plain data only.
Loading never runs code.

A model file may come from someone else, so :func:`read` bounds what it
costs (the file's size, nesting depth and string length, all before
parsing; see :mod:`amp.store.limits`) and checks what it gives: every
number finite, and a neural network's weights, scalings and fingerprint
ranges of consistent shapes. Any failure is a :class:`ModelFileError`.
"""

from __future__ import annotations

import json
import math
from typing import IO, Any
import os
import re

import numpy as np

from . import limits
from .files import UnsafeFileError, atomic_file, read_capped, read_file
from .literal import UnsafeLiteralError, literal_eval

FORMAT = "amp-mlip-model"
VERSION = 1
NETWORK = ".model.neuralnetwork.NeuralNetwork"


class ModelFileError(ValueError):
    """A model file is truncated, corrupt, unsafe or of an unknown version."""


def dumps(descriptor_dict: dict[str, Any], model_dict: dict[str, Any],
          metadata: dict[str, Any] | None = None) -> str:
    """The text of a model file (``metadata``: plain data about how the
    model was made, e.g. its validation set; left out when empty)."""
    content = {"format": FORMAT, "version": VERSION,
               "descriptor": descriptor_dict, "model": model_dict}
    if metadata:
        content["metadata"] = metadata
    return json.dumps(content, indent=1, sort_keys=True)


def write(filename: str | os.PathLike, text: str,
          overwrite: bool = False) -> None:
    """Write ``text`` atomically and durably; refuse to replace a file
    unless asked.

    Through :func:`amp.store.files.atomic_file`: the data are flushed to
    disk before the file is renamed into place; without ``overwrite`` the
    file is published with ``os.link``, so of processes racing for one new
    name exactly one succeeds.

    Raises
    ------
    FileExistsError
        ``filename`` exists, or another writer created it meanwhile, and
        ``overwrite`` is False (it is untouched).
    """
    with atomic_file(filename, overwrite=overwrite) as handle:
        handle.write(text.encode())


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def _check_json_size(text, name):
    """Refuse JSON text nested too deeply or with too long a string, before
    the parser builds anything (it would recurse once per level)."""
    longest = max(map(len, _JSON_STRING.findall(text)), default=0) - 2
    if longest > limits.MAX_STRING_CHARS:
        raise ModelFileError(
            "refusing to load %s: a string of %d characters is longer than "
            "the cap of %d (amp.store.limits.MAX_STRING_CHARS)"
            % (name, longest, limits.MAX_STRING_CHARS))
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text)).encode()
    codes = np.frombuffer(brackets, dtype=np.uint8)
    depth = level = 0
    for start in range(0, len(codes), 2 ** 22):  # bounded temporaries
        chunk = codes[start:start + 2 ** 22]
        steps = np.where((chunk == ord("[")) | (chunk == ord("{")), 1, -1)
        running = np.cumsum(steps) + level
        depth, level = max(depth, int(running.max())), int(running[-1])
    if depth > limits.MAX_NESTING_DEPTH:
        raise ModelFileError(
            "refusing to load %s: nesting %d levels deep is more than the "
            "cap of %d (amp.store.limits.MAX_NESTING_DEPTH)"
            % (name, depth, limits.MAX_NESTING_DEPTH))


def _check_finite(tree, name):
    """Raise ModelFileError naming the first NaN or infinite number."""
    stack = [(tree, "")]
    while stack:
        node, where = stack.pop()
        if isinstance(node, dict):
            stack.extend((value, "%s/%s" % (where, key))
                         for key, value in node.items())
        elif isinstance(node, (list, tuple)):
            stack.extend((value, where) for value in node)
        elif isinstance(node, float) and not math.isfinite(node) or \
                isinstance(node, np.ndarray) and node.dtype.kind in "fc" \
                and not np.all(np.isfinite(node)):
            raise ModelFileError("%s holds a NaN or infinite number in %s; "
                                 "a model's parameters must be finite"
                                 % (name, where.lstrip("/") or "its value"))


def _matrix(value, name, where):
    try:
        matrix = np.array(value, dtype=float)
    except (TypeError, ValueError) as error:
        raise ModelFileError("%s: %s is not an array of numbers (%s)"
                             % (name, where, error)) from None
    return matrix


def _check_network(model, name):
    """Weights, scalings and fingerprint ranges of a neural network: of the
    shapes that fit together, as far as the file gives them. (Another
    model's parameters, e.g. a KernelRidge's, are its ``fromdict``'s to
    check.)"""
    if model.get("importname", NETWORK) != NETWORK:
        return
    weights = model.get("weights")
    inputs = {}
    if weights is not None:
        if not isinstance(weights, dict):
            raise ModelFileError("%s: model weights are not a dict by "
                                 "element" % name)
        for element, layers in weights.items():
            where = "model weights of %s" % (element,)
            if not isinstance(layers, dict) or not layers:
                raise ModelFileError("%s: %s are not a dict by layer"
                                     % (name, where))
            try:
                numbered = sorted((int(k), k) for k in layers)
            except (TypeError, ValueError):
                raise ModelFileError("%s: %s have layer names %r, not "
                                     "numbers" % (name, where, list(layers))) \
                    from None
            if [n for n, _ in numbered] != list(range(1, len(numbered) + 1)):
                raise ModelFileError("%s: %s are not numbered 1..L"
                                     % (name, where))
            shapes = []
            for number, key in numbered:
                matrix = _matrix(layers[key], name, "%s layer %d"
                                 % (where, number))
                if matrix.ndim != 2 or (shapes and matrix.shape[0]
                                        != shapes[-1][1] + 1):
                    raise ModelFileError(
                        "%s: %s layer %d has shape %s, which does not fit "
                        "the layer before (its nodes plus the bias row)"
                        % (name, where, number, matrix.shape))
                shapes.append(matrix.shape)
            if shapes[-1][1] != 1:
                raise ModelFileError("%s: %s end in %d output nodes, not 1"
                                     % (name, where, shapes[-1][1]))
            inputs[element] = shapes[0][0] - 1
    scalings = model.get("scalings")
    if scalings is not None:
        if not isinstance(scalings, dict) or not all(
                isinstance(s, dict) and all(
                    isinstance(s.get(k), (int, float))
                    and not isinstance(s.get(k), bool)
                    for k in ("intercept", "slope"))
                for s in scalings.values()):
            raise ModelFileError("%s: model scalings are not a number "
                                 "intercept and slope by element" % name)
    fprange = model.get("fprange")
    if fprange is not None:
        if not isinstance(fprange, dict):
            raise ModelFileError("%s: model fprange is not a dict by element"
                                 % name)
        for element, pairs in fprange.items():
            matrix = _matrix(pairs, name, "model fprange of %s" % (element,))
            if matrix.size and (matrix.ndim != 2 or matrix.shape[1] != 2):
                raise ModelFileError(
                    "%s: model fprange of %s has shape %s, not (features, 2)"
                    % (name, element, matrix.shape))
            if element in inputs and len(matrix) != inputs[element]:
                raise ModelFileError(
                    "%s: model fprange of %s has %d features but its network "
                    "takes %d" % (name, element, len(matrix), inputs[element]))


def _checked(descriptor, model, name, metadata=None):
    _check_finite({"descriptor": descriptor, "model": model}, name)
    _check_network(model, name)
    if metadata is not None and not isinstance(metadata, dict):
        raise ModelFileError("%s: its metadata is not a dict" % name)
    return descriptor, model, metadata or {}


def _legacy(text, name):
    """The descriptor and model dicts of an Amp 1.x file."""
    try:
        outer = literal_eval(text)  # caps depth, strings and arrays
        if not isinstance(outer, dict) or not {"descriptor", "model"} <= \
                set(outer):
            raise ModelFileError("%s is not an Amp model file (no descriptor "
                                 "and model)" % name)
        parts = {}
        for key in ("descriptor", "model"):
            value = outer[key]
            parts[key] = literal_eval(value) if isinstance(value, str) \
                else value
            if not isinstance(parts[key], dict):
                raise ModelFileError("%s: its %s is not a dict" % (name, key))
    except UnsafeLiteralError as error:
        raise ModelFileError("refusing to load %s: %s (model files hold "
                             "data only)" % (name, error)) from error
    return parts["descriptor"], parts["model"]


def read(source: str | os.PathLike | IO[bytes] | IO[str],
         metadata: bool = False) -> Any:
    """Read a model file.

    Parameters
    ----------
    source : str, path or file object
    metadata : bool
        Also return the file's metadata.

    Returns
    -------
    descriptor : dict
    model : dict
        Plain data, to be given to ``Descriptor.fromdict`` and
        ``Model.fromdict``.
    metadata : dict
        Only when asked for: what training recorded (empty for files
        without, e.g. Amp 1.x's).

    Raises
    ------
    ModelFileError
        Whatever the cause: not a regular file (a link, FIFO, device),
        above a cap of :mod:`amp.store.limits`, binary, truncated, corrupt,
        unsafe, of an unknown version, or with parameters that are not
        finite or do not fit together.
    """
    name = _name(source)  # a wrong type is the caller's TypeError
    try:
        parts = _read(source, name)
        return parts if metadata else parts[:2]
    except ModelFileError:
        raise
    except (RecursionError, MemoryError, ValueError, TypeError,
            AttributeError, KeyError, IndexError, OverflowError) as error:
        # A cause not named above: still the one error of a bad file.
        raise ModelFileError("cannot read model file %s: %s: %s"
                             % (name, type(error).__name__,
                                str(error)[:200])) from None


def _name(source):
    if hasattr(source, "read"):
        return getattr(source, "name", "the file object")
    try:
        return os.fspath(source)
    except TypeError:
        raise TypeError("a model file is a path or a file object, not %s"
                        % type(source).__name__) from None


def _read(source, name):
    cap = limits.MAX_MODEL_FILE_BYTES
    try:
        text = read_capped(source, cap, name) if hasattr(source, "read") \
            else read_file(name, cap, "model file %s" % name)
    except UnsafeFileError as error:
        raise ModelFileError("refusing to load: %s" % error) from None
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ModelFileError(
                "%s is not a model file: it is binary, not text (byte %d is "
                "not UTF-8)" % (name, error.start)) from None
    if "\0" in text:
        raise ModelFileError("%s is not a model file: it is binary, not text "
                             "(it holds NUL characters)" % name)
    stripped = text.lstrip()
    if not stripped:
        raise ModelFileError("%s is empty" % name)
    if stripped.startswith("{"):
        _check_json_size(text, name)
        try:
            content = json.loads(text)
        except (ValueError, RecursionError) as error:
            raise ModelFileError("%s is truncated or corrupt: %s"
                                 % (name, error)) from None
        if content.get("format") != FORMAT:
            raise ModelFileError("%s is not an amp-mlip model file" % name)
        if content.get("version") != VERSION:
            raise ModelFileError(
                "%s has format version %r; this version of amp reads "
                "version %d" % (name, content.get("version"), VERSION))
        if not isinstance(content.get("descriptor"), dict) or \
                not isinstance(content.get("model"), dict):
            raise ModelFileError("%s misses its descriptor or model" % name)
        return _checked(content["descriptor"], content["model"], name,
                        content.get("metadata"))
    return _checked(*_legacy(text, name), name)
