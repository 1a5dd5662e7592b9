"""Loading sgdml files: one reader for the three kinds.

Every kind is read the same way: the bounded, pickle-free
:func:`~amp.gdml.io.safe.load_npz`, then the ``type`` key, then the kind's
validator. :data:`KINDS` is the table; :func:`load_kind` reads one kind,
:func:`load_any` whichever kind a file is, and sgdml's
:func:`load_dataset`, :func:`load_task` and :func:`load_model` are
:func:`load_kind` with the kind filled in.
"""

import os
from typing import Any, BinaryIO, Callable, NamedTuple, Union

from .datasets import validate_dataset
from .models import validate_model, validate_task
from .safe import load_npz, to_str

__all__ = ["KINDS", "load_kind", "load_dataset", "load_task", "load_model",
           "load_any"]

Source = Union[str, "os.PathLike[str]", BinaryIO]


class Kind(NamedTuple):
    """One kind of sgdml file: its name and its validator."""

    name: str
    validate: Callable[..., None]


#: A file's ``type`` key to its kind.
KINDS = {"d": Kind("dataset", validate_dataset),
         "t": Kind("task", validate_task),
         "m": Kind("model", validate_model)}


def check_type(data: dict[str, Any], kind: str, path: Source) -> None:
    """Raise ValueError unless the file's ``type`` key is `kind`.

    Parameters
    ----------
    data : dict
        The loaded file.
    kind : str
        Expected ``type``: a key of :data:`KINDS`.
    path : str, path-like or file object
        The file, for the message.
    """
    name = KINDS[kind].name
    if "type" not in data:
        raise ValueError("{} has no 'type' key; it is not an sgdml {} file"
                         .format(path, name))
    got = to_str(data["type"])
    if got != kind:
        raise ValueError("{} is an sgdml {} file, expected a {} file".format(
            path, KINDS[got].name if got in KINDS else repr(got), name))


def load_kind(path: Source, kind: str) -> dict[str, Any]:
    """Load and validate an sgdml file of one kind.

    Parameters
    ----------
    path : str, path-like or binary file object
        The ``.npz`` file.
    kind : str
        ``'d'`` (dataset), ``'t'`` (task) or ``'m'`` (model): the
        file's ``type`` key.

    Returns
    -------
    dict
        Key to array.

    Raises
    ------
    ValueError
        If `kind` is none of these, the file is of another kind, or its
        content fails the kind's validation (the message names the file).
    """
    if kind not in KINDS:
        raise ValueError("kind must be one of {} ({}), got {!r}".format(
            ", ".join(repr(k) for k in KINDS),
            ", ".join(k.name for k in KINDS.values()), kind))
    data = load_npz(path)
    check_type(data, kind, path)
    KINDS[kind].validate(data, str(path))
    return data


def load_dataset(path: Source) -> dict[str, Any]:
    """Load and validate an sgdml dataset file.

    Parameters
    ----------
    path : str, path-like or binary file object
        ``.npz`` file with ``type == 'd'``.

    Returns
    -------
    dict
        Key to array.
    """
    return load_kind(path, "d")


def load_task(path: Source) -> dict[str, Any]:
    """Load and validate an sgdml task file.

    Parameters
    ----------
    path : str, path-like or binary file object
        ``.npz`` file with ``type == 't'``.

    Returns
    -------
    dict
        Key to array.
    """
    return load_kind(path, "t")


def load_model(path: Source) -> dict[str, Any]:
    """Load and validate an sgdml model file.

    Parameters
    ----------
    path : str, path-like or binary file object
        ``.npz`` file with ``type == 'm'``.

    Returns
    -------
    dict
        Key to array.
    """
    return load_kind(path, "m")


def load_any(path: Source) -> tuple[str, dict[str, Any]]:
    """Load a dataset, task or model file, whichever it is.

    Parameters
    ----------
    path : str, path-like or binary file object
        An sgdml ``.npz`` file.

    Returns
    -------
    kind : str
        ``'d'``, ``'t'`` or ``'m'``.
    data : dict
        The validated content.

    Raises
    ------
    ValueError
        If the file is not an sgdml dataset, task or model.
    """
    data = load_npz(path)
    kind = to_str(data["type"]) if "type" in data else None
    if kind not in KINDS:
        raise ValueError(
            "'{}' is not an sgdml dataset, task or model file (its 'type' "
            "key is {})".format(path, "missing" if kind is None
                                else repr(kind)))
    KINDS[kind].validate(data, str(path))
    return kind, data
