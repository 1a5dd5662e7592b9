"""This library's classes by name: an allow-list, never a free import.

Amp 1.x rebuilt objects from the ``importname`` stored in model files
(``'.model.neuralnetwork.NeuralNetwork'``) through ``amp.importhelper``,
a hand-written list so that a file cannot name arbitrary code. The same
list serves :func:`importhelper`, :func:`importer` and the reader of
``BootStrap`` calculator templates (:mod:`amp.stats.calctext`): a name that
is not listed here is refused, whatever module it points to. Modules are
imported only when a name is resolved.
"""

from __future__ import annotations

import importlib
from typing import Any

# Public class (or data-building function) name -> "module:attribute".
LIBRARY_NAMES = {
    "Amp": "amp:Amp",
    "Gaussian": "amp.descriptor.gaussian:Gaussian",
    "Zernike": "amp.descriptor.zernike:Zernike",
    "Bispectrum": "amp.descriptor.bispectrum:Bispectrum",
    "make_symmetry_functions":
        "amp.descriptor.gaussian:make_symmetry_functions",
    "Cosine": "amp.descriptor.cutoffs:Cosine",
    "Polynomial": "amp.descriptor.cutoffs:Polynomial",
    "NeuralNetwork": "amp.model.neuralnetwork:NeuralNetwork",
    "KernelRidge": "amp.model.kernelridge:KernelRidge",
    "LossFunction": "amp.model:LossFunction",
    "Regressor": "amp.regression:Regressor",
    "BootStrap": "amp.stats.bootstrap:BootStrap",
}

# Amp's importnames (relative to the package) -> public name.
IMPORTNAMES = {
    ".descriptor.gaussian.Gaussian": "Gaussian",
    ".descriptor.zernike.Zernike": "Zernike",
    ".descriptor.bispectrum.Bispectrum": "Bispectrum",
    ".descriptor.cutoffs.Cosine": "Cosine",
    ".descriptor.cutoffs.Polynomial": "Polynomial",
    ".model.neuralnetwork.NeuralNetwork": "NeuralNetwork",
    ".model.kernelridge.KernelRidge": "KernelRidge",
    ".model.LossFunction": "LossFunction",
    ".regression.Regressor": "Regressor",
}


def library_name(name: str) -> Any:
    """Return this library's class (or function) called ``name``.

    Parameters
    ----------
    name : str
        A key of :data:`LIBRARY_NAMES` (``'Gaussian'``, ``'Amp'``, ...).

    Raises
    ------
    ImportError
        ``name`` is not one of this library's listed names.
    """
    if name not in LIBRARY_NAMES:
        raise ImportError("%r is not one of amp's classes (known: %s); "
                          "nothing was imported"
                          % (name, ", ".join(sorted(LIBRARY_NAMES))))
    module, _, attribute = LIBRARY_NAMES[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


def importhelper(importname: str) -> Any:
    """Return the class an Amp ``importname`` stands for (Amp's function).

    Parameters
    ----------
    importname : str
        e.g. ``'.descriptor.gaussian.Gaussian'`` or
        ``'.model.neuralnetwork.NeuralNetwork'`` (a leading ``amp`` is
        accepted).

    Raises
    ------
    NotImplementedError
        The name is not one of this library's classes (Amp's error type);
        nothing is imported.
    """
    key = importname
    if isinstance(key, str) and key.startswith("amp."):
        key = key[3:]
    if key not in IMPORTNAMES:
        raise NotImplementedError(
            "refusing to import %r: only amp's own classes can be named "
            "(%s)" % (importname, ", ".join(sorted(IMPORTNAMES))))
    return library_name(IMPORTNAMES[key])


def importer(name: str) -> Any:
    """Return the object Amp's ``importer(name)`` returned.

    ``'pxssh'`` (pexpect's SSH session module) and ``'NeighborList'``
    (ASE's) as in Amp 1.x, or one of this library's classes by name
    (``'Gaussian'``, ``'NeuralNetwork'``, ...).

    Raises
    ------
    ImportError
        Any other name; nothing is imported.
    """
    if name == "pxssh":
        from pexpect import pxssh

        return pxssh
    if name == "NeighborList":
        from ase.neighborlist import NeighborList

        return NeighborList
    return library_name(name)


def from_importname(parameters: dict[str, Any]) -> Any:
    """Rebuild one of this library's objects from its ``todict()`` form.

    ``parameters['importname']`` (e.g. ``'.descriptor.gaussian.Gaussian'``)
    is resolved by :func:`importhelper` (the allow-list); the class's
    ``fromdict`` is called with ``parameters``.

    Raises
    ------
    ValueError
        ``importname`` is missing or not a string.
    ImportError
        It names nothing on the allow-list.
    """
    importname = parameters.get("importname") if isinstance(
        parameters, dict) else None
    if not isinstance(importname, str):
        raise ValueError("importname must name one of amp's classes, got %r"
                         % (importname,))
    return importhelper(importname).fromdict(parameters)
