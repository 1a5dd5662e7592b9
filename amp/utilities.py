"""Utilities Amp users know: image hashing, logging, file names, errors.

Everything here keeps the names and meanings of Amp 1.x's ``amp.utilities``;
the names implemented elsewhere (databases, parallel processing, the
``Annealer``, image helpers, ``importer``, ``string2dict``) are re-exported
at the end.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any, overload

import numpy as np

if TYPE_CHECKING:
    from ase import Atoms


class TrainingConvergenceError(Exception):
    """Training did not meet the convergence criteria.

    Raised by :meth:`amp.Amp.train` when ``maxiter`` is reached; also
    importable as ``amp.model.TrainingConvergenceError`` (the same class).
    """


class ConvergenceOccurred(Exception):
    """Raised by the loss function the moment every convergence criterion
    is met; stops the optimiser. Also importable as
    ``amp.model.ConvergenceOccurred`` (the same class)."""


class MaxIterationsReached(Exception):
    """Raised by the loss function when ``maxiter`` loss evaluations have
    been made without convergence; stops the optimiser. Also importable
    as ``amp.model.MaxIterationsReached`` (the same class)."""


class EarlyStoppingOccurred(Exception):
    """Raised by the loss function when the validation loss has not
    improved for ``patience`` loss evaluations; stops the optimiser, which
    then keeps the parameters of the lowest validation loss. Also
    importable as ``amp.model.EarlyStoppingOccurred``."""


class MetaDict(dict):
    """A dictionary with a ``metadata`` attribute (Amp's ``MetaDict``).

    ``hash_images`` returns one, with ``metadata['duplicates']`` mapping the
    hash of each repeated image to the number of times it was given.
    """

    metadata: dict[str, Any] = None  # type: ignore[assignment]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.metadata: dict[str, Any] = {}


def now(with_utc: bool = False) -> str:
    """Return the current local time as a readable string.

    Parameters
    ----------
    with_utc : bool
        Append the UTC time as well.
    """
    text = datetime.now().isoformat(sep=" ", timespec="seconds")
    if with_utc:
        utc = datetime.utcnow().isoformat(sep=" ", timespec="seconds")
        text += " (%s UTC)" % utc
    return text


@overload
def make_filename(label: str, base_filename: str | None) -> str: ...
@overload
def make_filename(label: None, base_filename: str | None) -> None: ...


def make_filename(label: str | None,
                  base_filename: str | None) -> str | None:
    """Build a file name from a label, as Amp 1.x does.

    Returns ``label + base_filename`` (callers pass ``'-log.txt'``,
    ``'.amp'``, ...), ``label`` when ``base_filename`` is None, and None
    when ``label`` is None (nothing is to be written).
    """
    if label is None:
        return None
    if base_filename is None:
        return label
    return label + base_filename


class Logger:
    """Append messages to a file, with tic/toc timing like Amp's ``Logger``;
    every message is also a :mod:`logging` record.

    The file keeps Amp's exact lines (its readers parse them); the record
    goes to the ``logging`` logger ``name`` at level INFO, or WARNING for a
    message that starts with "Warning", so
    ``logging.basicConfig(level=logging.INFO)`` shows a training run as it
    goes, and nothing is printed unless the application asks for it.

    Parameters
    ----------
    file : str, file-like or None
        A path (opened for appending), an open file, or ``None`` to write
        no file (the records are still made).
    name : str
        The ``logging`` logger of the records (``'amp.trainlog'`` for
        :meth:`amp.Amp.train`).

    Examples
    --------
    >>> log = Logger(None)
    >>> log('Fingerprinting...', tic='fp')
    >>> log('...done.', toc='fp')
    """

    def __init__(self, file: str | os.PathLike | IO[str] | None,
                 name: str = "amp") -> None:
        self._tics: dict[Any, float] = {}
        self._owns_file = False
        self.name = name
        self.file: IO[str] | None
        if file is None or not isinstance(file, (str, os.PathLike)):
            self.file = file
        else:
            self.file = open(file, "a")
            self._owns_file = True

    def tic(self, label: str | None = None) -> None:
        """Start a timer under ``label``."""
        self._tics[label] = time.time()

    def toc(self, label: str | None = None) -> float:
        """Return the seconds since ``tic(label)`` and forget that timer."""
        return time.time() - self._tics.pop(label)

    def __call__(self, message: str, toc: str | bool | None = None,
                 tic: str | bool | None = None) -> None:
        """Write ``message`` (and make its ``logging`` record).

        Parameters
        ----------
        message : str
            The line to write.
        toc : str or True, optional
            Append the time since the tic of that label (``True`` is the
            unlabelled timer).
        tic : str or True, optional
            Start the timer of that label after writing.
        """
        if toc is not None and toc is not False:
            label = None if toc is True else toc
            if label in self._tics:
                message += " %.1f sec." % self.toc(label)
        if self.file is not None:
            try:
                self.file.write(message + "\n")
                self.file.flush()
            except OSError as error:
                # A full disk must not end a training over its log.
                logging.getLogger("amp").warning(
                    "cannot write the log %s (%s); its later lines are "
                    "dropped", getattr(self.file, "name", "file"), error)
                with contextlib.suppress(OSError):
                    self.close()
                self.file = None
        logger = logging.getLogger(self.name)
        level = (logging.WARNING if message.lstrip()[:7].lower() == "warning"
                 else logging.INFO)
        if logger.isEnabledFor(level) and message.strip():
            logger.log(level, message.strip())
        if tic is not None and tic is not False:
            self.tic(None if tic is True else tic)

    def close(self) -> None:
        """Close the file if this logger opened it."""
        if self._owns_file and self.file is not None:
            self.file.close()
            self.file = None


def get_hash(atoms: Atoms) -> str:
    """Return Amp's md5 hash of an image.

    The hash covers the periodic boundary conditions, the cell, the atomic
    numbers and the positions, so two images hash alike only when they are
    the same structure.
    """
    parts = [str(np.asarray(atoms.pbc))]
    parts.extend("%.15f" % x for x in np.asarray(atoms.cell).ravel())
    parts.extend("%3d" % z for z in atoms.numbers)
    parts.extend("%.15f" % x for x in atoms.positions.ravel())
    return hashlib.md5("".join(parts).encode("utf-8")).hexdigest()


def _read_images(path):
    """Read every image of a ``.traj`` or ASE ``.db`` file."""
    import ase.io

    if not os.path.exists(path):
        raise ValueError("images path %r does not exist" % path)
    extension = os.path.splitext(path)[1].lower()
    try:
        if extension == ".db":
            import ase.db

            database = ase.db.connect(path)
            return [row.toatoms() for row in database.select()]
        return ase.io.read(path, index=":")
    except Exception as error:  # any reader failure is the user's file
        raise ValueError("cannot read images from %r: %s" % (path, error)) \
            from error


def check_image(atoms: Atoms, index: int | str | None = None) -> None:
    """Raise a ValueError when an image cannot be fingerprinted.

    Parameters
    ----------
    atoms : ase.Atoms
    index : int or str, optional
        How to name the image in the message.
    """
    name = "image" if index is None else "image %s" % index
    if not hasattr(atoms, "get_positions"):
        raise TypeError("%s is a %s, not an ase.Atoms"
                        % (name, type(atoms).__name__))
    if len(atoms) == 0:
        raise ValueError("%s has no atoms" % name)
    if not np.all(np.isfinite(atoms.positions)):
        raise ValueError("%s has NaN or infinite positions" % name)
    if not np.all(np.isfinite(np.asarray(atoms.cell))):
        raise ValueError("%s has a NaN or infinite cell" % name)


def hash_images(images: Atoms | list[Atoms] | dict[str, Atoms] | str,
                log: Logger | None = None, ordered: bool = False) -> MetaDict:
    """Return a dictionary of images keyed by their hash.

    Parameters
    ----------
    images : ase.Atoms, list of ase.Atoms, or str
        One image, a list of images, or the path of a ``.traj`` or ASE
        ``.db`` file.
    log : Logger, optional
        Duplicates are reported here.
    ordered : bool
        Kept for compatibility; the returned dict keeps the input order.

    Returns
    -------
    MetaDict
        ``{hash: atoms}``; ``metadata['duplicates']`` maps the hash of each
        image given more than once to how many times it was given.
    """
    if isinstance(images, (str, os.PathLike)):
        images = _read_images(os.fspath(images))
    elif hasattr(images, "get_positions"):
        images = [images]  # type: ignore[list-item]
    elif isinstance(images, dict):
        # Already hashed (Amp passes dictionaries around): keep the keys.
        if isinstance(images, MetaDict):
            return images
        hashed = MetaDict(images)
        hashed.metadata["duplicates"] = {}
        return hashed
    hashed = MetaDict()
    duplicates = hashed.metadata["duplicates"] = {}
    for index, image in enumerate(images):
        check_image(image, index)
        key = get_hash(image)
        if key in hashed:
            duplicates[key] = duplicates.get(key, 1) + 1
            if log is not None:
                log("Warning: duplicate image (identical hash %s)." % key)
        hashed[key] = image
    return hashed


# Amp's names for the databases and for parallel processing, implemented in
# amp.store and amp.parallel.
from amp.store.database import Data, FileDatabase  # noqa: E402,F401
from amp.parallel import (MessageDictionary, assign_cores,  # noqa: E402,F401
                          make_sublists, setup_parallel, start_workers)
# Amp's importer and literal reader, implemented in amp.importing and
# amp.store.amp1.
from amp.importing import importer  # noqa: E402,F401
from amp.store.amp1 import string2dict  # noqa: E402,F401

# Amp's names implemented in modules that themselves use this one: resolved
# on first use, so that importing amp.utilities imports nothing above it.
_LAZY = {"Annealer": "amp.annealer", "MissingDataError": "amp.images",
         "check_images": "amp.images", "randomize_images": "amp.images"}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError("module %r has no attribute %r"
                             % (__name__, name))
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
