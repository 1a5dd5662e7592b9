"""The installation check: Amp 1.x's files mixed into this ``amp``.

Amp 1.x (the ``amp-atomistics`` distribution) and this package
(``amp-mlip``) both install the top-level package ``amp``. Installed into
the same environment, the second overwrites the first's files where their
names agree and leaves the others, so ``import amp`` gives a mixture that
works as neither. :func:`check_installation` looks for a few files Amp 1.x
ships and this package does not (a handful of ``os.path.exists`` calls),
and raises :class:`MixedInstallationError` saying what to do. ``import
amp`` and the console commands run it first.

On the bottom floor: it imports nothing of the package.
"""

import os

__all__ = ["MixedInstallationError", "AMP1_ONLY_FILES", "check_installation"]

#: Files of Amp 1.x (relative to the ``amp`` folder) that this package
#: never ships: its Fortran sources and modules only it has.
AMP1_ONLY_FILES = ("convert.py", "model.f90", "model/tflow.py",
                   "descriptor/gaussian.f90", "model/neuralnetwork.f90")


class MixedInstallationError(ImportError):
    """Amp 1.x's files are mixed into this package's ``amp`` folder."""


def check_installation(folder: "str | None" = None) -> None:
    """Raise :class:`MixedInstallationError` when the ``amp`` folder holds
    files of Amp 1.x.

    Parameters
    ----------
    folder : str, optional
        The ``amp`` package folder (default: the one this module is in).
    """
    folder = os.path.dirname(os.path.abspath(__file__)) if folder is None \
        else folder
    found = [name for name in AMP1_ONLY_FILES
             if os.path.exists(os.path.join(folder, *name.split("/")))]
    if found:
        raise MixedInstallationError(
            "the package folder %s holds files of Amp 1.x (amp-atomistics: "
            "%s) beside amp-mlip's: both install the package 'amp', and "
            "installed together neither works. Remove both and install one: "
            "pip uninstall -y amp-atomistics amp-mlip, then pip install "
            "amp-mlip (or pip install . in a clone); keep Amp 1.x in a "
            "virtual environment of its own (python -m venv) if you need it "
            "too." % (folder, ", ".join(found)))
