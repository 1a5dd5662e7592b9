"""Models, the loss function they are trained on, and shared helpers.

Amp's names and meanings: :class:`Model` (methods on Amp's dictionary views
of fingerprints), :class:`LossFunction`, :func:`calculate_fingerprints_range`,
:class:`ConvergenceOccurred` and :class:`TrainingConvergenceError`. The loss
is evaluated on :class:`~amp.model.batch.TrainingBatch` objects (stacked
arrays of a subset of the training images); each returns partial sums that
:func:`combine_partials` adds, so the images can be split over workers
without changing the result.

The model knows fingerprints as arrays in the fingerprint store it is set
up with (``store[hash]``), not how they are made: it must not import the
descriptor's kernels, the calculator (:mod:`amp`), :mod:`amp.potential`
or :mod:`amp.stats`; the optimizer (:mod:`amp.regression`, a floor below)
is imported where a fit starts.
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np

# TrainingConvergenceError is defined in amp.utilities (as in Amp 1.x) and
# exported here too: both import paths give the same class.
from ..utilities import (ConvergenceOccurred, Logger,  # noqa: F401
                         EarlyStoppingOccurred, TrainingConvergenceError,
                         now)
from ._network import Raveler  # noqa: F401  (Amp's name, exported here)

__all__ = ["Model", "LossFunction", "calculate_fingerprints_range",
           "fingerprint_range", "fingerprint_values", "check_mode",
           "ConvergenceOccurred", "TrainingConvergenceError",
           "MaxIterationsReached", "EarlyStoppingOccurred", "Raveler",
           "combine_partials"]


def check_mode(descriptor: Any) -> None:
    """Raise ValueError unless ``descriptor`` is atom-centred (the only
    mode the models here train on)."""
    mode = getattr(descriptor, "mode", "atom-centered")
    if mode != "atom-centered":
        raise ValueError("the models need an atom-centered descriptor, got "
                         "mode %r" % (mode,))


def fingerprint_range(store: Any, images: dict[str, Any]
                      ) -> dict[str, list[list[float]]]:
    """Per-element ``[[min, max], ...]`` of every fingerprint component.

    Parameters
    ----------
    store : FingerprintStore or mapping
        ``store[hash]`` is the image's
        :class:`~amp.descriptor.fingerprints.ImageFingerprints`.
    images : dict
        ``{hash: atoms}`` of the images to take the range over.

    Returns
    -------
    dict
        ``{element: [[min, max], ...]}`` as plain floats.
    """
    return _range(fingerprint_values(store, key).values.items()
                  for key in images)


def fingerprint_values(store: Any, key: str) -> Any:
    """Image ``key``'s fingerprints from ``store`` without decoding its
    derivatives when the store can (a set-up that reads only values, on an
    MPI rank, then never loads the other ranks' derivatives)."""
    values = getattr(store, "fingerprint_values", None)
    return values(key) if values is not None else store[key]


def calculate_fingerprints_range(fp: Any, images: dict[str, Any]
                                 ) -> dict[str, list[list[float]]]:
    """Amp's name: :func:`fingerprint_range` over a descriptor's
    fingerprints (Amp 1.x's view: its ``arrays``, or failing that its
    ``fingerprints[hash]`` lists).

    Parameters
    ----------
    fp : descriptor
    images : dict
        ``{hash: atoms}``.

    Returns
    -------
    dict
        ``{element: [[min, max], ...]}`` as plain floats.
    """
    arrays = getattr(fp, "arrays", None)
    if arrays is not None:
        return fingerprint_range(arrays, images)

    def grouped(key):
        lists = {}
        for element, afp in fp.fingerprints[key]:
            lists.setdefault(element, []).append(afp)
        return ((e, np.array(v, dtype=float)) for e, v in lists.items())
    return _range(grouped(key) for key in images)


def _range(images_blocks):
    low, high = {}, {}
    for blocks in images_blocks:
        for element, block in blocks:
            block = np.asarray(block, dtype=float)
            if len(block) == 0:
                continue
            if element in low and low[element].shape[0] != block.shape[1]:
                raise ValueError("element %s has fingerprints of different "
                                 "lengths across images" % element)
            lo, hi = block.min(axis=0), block.max(axis=0)
            low[element] = np.minimum(low.get(element, lo), lo)
            high[element] = np.maximum(high.get(element, hi), hi)
    return {e: np.column_stack([low[e], high[e]]).tolist()
            for e in sorted(low)}


class Model(abc.ABC):
    """Methods common to the models, on Amp's dictionary views.

    Subclasses provide :meth:`evaluate` (the vectorised path) and
    ``_networks``-style access; these methods reproduce Amp's interface on
    ``fingerprints[hash]`` (``[(symbol, [G, ...]), ...]``) and
    ``fingerprintprimes[hash]`` (``{(m, sym_m, n, sym_n, l): [...]}``).
    """

    @property
    def log(self) -> Logger:
        """The logger given to :meth:`fit` (an
        :class:`amp.utilities.Logger`; a silent one before)."""
        if getattr(self, "_log", None) is not None:
            return self._log
        return Logger(None)

    @log.setter
    def log(self, log: Logger) -> None:
        self._log = log

    @abc.abstractmethod
    def _evaluate_block(self, symbol: Any, block: np.ndarray,
                        gradient: bool) -> Any:
        """Energies (and ``dE/dG``) of a block of atoms of one element
        (provided by each model)."""

    @staticmethod
    def _group(fingerprints):
        """``{symbol: (atom indices, (n, F) array)}`` from Amp's list."""
        index = {}
        for atom, (symbol, _) in enumerate(fingerprints):
            index.setdefault(symbol, []).append(atom)
        return {s: (np.array(i), np.array([fingerprints[k][1] for k in i],
                                           dtype=float))
                for s, i in index.items()}

    def calculate_energy(self, fingerprints: list[Any]) -> float:
        """Energy of an image from Amp's fingerprint list.

        Also sets ``self.atomic_energies`` (a list, atom order).

        Parameters
        ----------
        fingerprints : list
            ``[(symbol, [G, ...]), ...]``, one entry per atom.

        Returns
        -------
        float
        """
        atomic = np.empty(len(fingerprints))
        for symbol, (atoms, block) in self._group(fingerprints).items():
            atomic[atoms], _ = self._evaluate_block(symbol, block, False)
        self.atomic_energies = atomic.tolist()
        return float(atomic.sum())

    def calculate_atomic_energy(self, afp: Any, index: int,
                                symbol: str) -> float:
        """Energy of one atom from its fingerprint ``afp`` (``index`` is
        unused, kept for Amp's signature)."""
        energy, _ = self._evaluate_block(
            symbol, np.asarray(afp, dtype=float)[None, :], False)
        return float(energy[0])

    def calculate_force(self, afp: Any, derafp: Any, direction: int,
                        nindex: int | None = None,
                        nsymbol: str | None = None) -> float:
        """Amp's force contribution ``-dE_n/dG_n . derafp`` of one
        fingerprint-prime entry (``direction`` and ``nindex`` unused)."""
        _, grad = self._evaluate_block(
            nsymbol, np.asarray(afp, dtype=float)[None, :], True)
        return -float(grad[0] @ np.asarray(derafp, dtype=float))

    def calculate_forces(self, fingerprints: list[Any],
                         fingerprintprimes: dict[Any, Any]) -> np.ndarray:
        """Forces of an image from Amp's dictionary views.

        Parameters
        ----------
        fingerprints : list
            ``[(symbol, [G, ...]), ...]``.
        fingerprintprimes : dict
            ``{(m, sym_m, n, sym_n, l): [dG_n/dx_{m,l}, ...]}``.

        Returns
        -------
        ndarray, shape (n_atoms, 3)
        """
        n_atoms = len(fingerprints)
        gradient = [None] * n_atoms
        for symbol, (atoms, block) in self._group(fingerprints).items():
            _, grad = self._evaluate_block(symbol, block, True)
            for row, atom in enumerate(atoms):
                gradient[atom] = grad[row]
        # One contraction per neighbour element (feature counts differ).
        by_symbol: dict[str, list[Any]] = {}
        for key, prime in fingerprintprimes.items():
            by_symbol.setdefault(key[3], []).append((key, prime))
        forces = np.zeros((n_atoms, 3))
        for items in by_symbol.values():
            keys = np.array([k[:1] + k[2:3] + k[4:5] for k, _ in items])
            primes = np.array([p for _, p in items], dtype=float)
            grads = np.array([gradient[n] for n in keys[:, 1]])
            np.add.at(forces, (keys[:, 0], keys[:, 2]),
                      -np.einsum("kf,kf->k", grads, primes))
        return forces


# The loss function and its helpers live in amp.model.lossfunction; Amp's
# import path is this package.
from .lossfunction import (LossFunction, MaxIterationsReached,  # noqa: E402
                           combine_partials)
