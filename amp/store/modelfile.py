"""Reading and writing ``.amp`` model files.

The format is JSON::

    {"format": "amp-mlip-model", "version": 1,
     "descriptor": {... Gaussian.todict() ...},
     "model": {... NeuralNetwork.todict() ...}}

Floats are written with Python's ``repr``, so parameters round-trip
exactly. Amp 1.x files (Python-literal text that Amp read with ``eval``)
are read through :mod:`amp.store.literal`, which accepts plain data only.
Loading never runs code.
"""

import json
import os

from .files import atomic_file
from .literal import UnsafeLiteralError, literal_eval

FORMAT = "amp-mlip-model"
VERSION = 1


class ModelFileError(ValueError):
    """A model file is truncated, corrupt, unsafe or of an unknown version."""


def dumps(descriptor_dict, model_dict):
    """The text of a model file."""
    return json.dumps({"format": FORMAT, "version": VERSION,
                       "descriptor": descriptor_dict, "model": model_dict},
                      indent=1, sort_keys=True)


def write(filename, text, overwrite=False):
    """Write ``text`` atomically; refuse to replace a file unless asked.

    Raises
    ------
    FileExistsError
        ``filename`` exists and ``overwrite`` is False (it is untouched).
    """
    with atomic_file(filename, overwrite=overwrite) as handle:
        handle.write(text.encode())


def _legacy(text, name):
    """The descriptor and model dicts of an Amp 1.x file."""
    try:
        outer = literal_eval(text)
        if not isinstance(outer, dict) or not {"descriptor", "model"} <= \
                set(outer):
            raise ModelFileError("%s is not an Amp model file (no descriptor "
                                 "and model)" % name)
        parts = {}
        for key in ("descriptor", "model"):
            value = outer[key]
            parts[key] = literal_eval(value) if isinstance(value, str) \
                else value
    except UnsafeLiteralError as error:
        raise ModelFileError("refusing to load %s: %s (model files hold "
                             "data only)" % (name, error)) from error
    return parts["descriptor"], parts["model"]


def read(source):
    """Read a model file.

    Parameters
    ----------
    source : str, path or file object

    Returns
    -------
    descriptor : dict
    model : dict
        Plain data, to be given to ``Descriptor.fromdict`` and
        ``Model.fromdict``.

    Raises
    ------
    ModelFileError
        Truncated, corrupt, unsafe or unknown-version content.
    """
    if hasattr(source, "read"):
        text, name = source.read(), getattr(source, "name", "model file")
    else:
        name = os.fspath(source)
        with open(name) as f:
            text = f.read()
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    stripped = text.lstrip()
    if not stripped:
        raise ModelFileError("%s is empty" % name)
    if stripped.startswith("{"):
        try:
            content = json.loads(text)
        except json.JSONDecodeError as error:
            raise ModelFileError("%s is truncated or corrupt: %s"
                                 % (name, error)) from error
        if content.get("format") != FORMAT:
            raise ModelFileError("%s is not an amp-mlip model file" % name)
        if content.get("version") != VERSION:
            raise ModelFileError(
                "%s has format version %r; this version of amp reads "
                "version %d" % (name, content.get("version"), VERSION))
        if not isinstance(content.get("descriptor"), dict) or \
                not isinstance(content.get("model"), dict):
            raise ModelFileError("%s misses its descriptor or model" % name)
        return content["descriptor"], content["model"]
    return _legacy(text, name)
