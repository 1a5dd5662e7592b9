"""Reading the data files of ``amp-train`` and ``amp-eval`` and splitting
off a validation set.

Any file :func:`ase.io.read` reads is accepted (extended XYZ, ASE ``.traj``,
ASE ``.db``, ...); each frame keeps the energy, forces and stress stored
with it. Every error names the file.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ase import Atoms

__all__ = ["DataFileError", "read_images", "split_validation",
           "reference"]


class DataFileError(ValueError):
    """A data file that cannot be read or holds no usable frames; the
    message names the file."""


def read_images(path: str | os.PathLike, index: str = ":") -> list[Atoms]:
    """Every frame of ``path`` selected by ``index``.

    Parameters
    ----------
    path : str or path-like
        Any file ASE reads; the format follows the extension (``.xyz`` and
        ``.extxyz`` are read as extended XYZ, ``.db`` as an ASE database).
    index : str
        ASE's index syntax (``':'`` every frame, ``'::10'``, ``'-100:'``).

    Returns
    -------
    list of ase.Atoms

    Raises
    ------
    DataFileError
        No such file, a folder, a file ASE cannot read, or no frames.
    """
    import ase.io

    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataFileError("data file %s does not exist" % path)
    if not os.path.isfile(path):
        raise DataFileError("data file %s is not a regular file" % path)
    try:
        images = ase.io.read(path, index=index)
    except Exception as error:  # any reader failure is the user's file
        raise DataFileError(
            "cannot read %s with ase.io.read (%s: %s); give a file ASE "
            "reads (extended XYZ, .traj, ASE .db) with energies and forces"
            % (path, type(error).__name__, error)) from None
    if not isinstance(images, list):
        images = [images]
    if not images:
        raise DataFileError("%s holds no frames (index %r)" % (path, index))
    return images


def split_validation(images: list[Atoms], validation: Any,
                     seed: int | None = 0
                     ) -> tuple[list[Atoms], list[Atoms]]:
    """Split off the validation images at random.

    Parameters
    ----------
    images : list of ase.Atoms
    validation : float, int, str or None
        A fraction (``0 <= v < 1``) or a count (``>= 1``) of the images
        held out; a path reads the validation images from that file
        instead (all of ``images`` are then trained on); None or 0 holds
        out nothing.
    seed : int or None
        Seed of the split (the same seed gives the same split).

    Returns
    -------
    train, valid : list of ase.Atoms
        Both in the images' original order.

    Raises
    ------
    ValueError
        A fraction or count that leaves no training image.
    """
    if validation is None or validation is False:
        return list(images), []
    if isinstance(validation, (str, os.PathLike)):
        return list(images), read_images(validation)
    if isinstance(validation, bool) or not isinstance(
            validation, (int, float)) or validation < 0:
        raise ValueError("validation must be a fraction (0 <= v < 1), a "
                         "count of images or a file, got %r" % (validation,))
    n = len(images)
    count = (int(round(validation * n)) if validation < 1
             else int(validation))
    if 0 < validation < 1 and n > 1:
        count = max(count, 1)  # a positive fraction holds out one at least
    if count >= n:
        raise ValueError("validation=%r would hold out %d of %d images and "
                         "leave none to train on" % (validation, count, n))
    held = set(np.random.default_rng(seed).permutation(n)[:count].tolist())
    return ([a for i, a in enumerate(images) if i not in held],
            [a for i, a in enumerate(images) if i in held])


def reference(atoms: Atoms, name: str) -> Any:
    """The reference value ``name`` (``'energy'``, ``'forces'`` or
    ``'stress'``) stored with a frame, or None when it has none."""
    calc = atoms.calc
    if calc is None:
        return None
    results = getattr(calc, "results", None)
    if results is not None and name in results:
        return results[name]
    try:
        if name == "energy":
            return atoms.get_potential_energy(apply_constraint=False)
        if name == "forces":
            return atoms.get_forces(apply_constraint=False)
        return atoms.get_stress()
    except Exception:  # a calculator that cannot give it
        return None
