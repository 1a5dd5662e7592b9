"""KernelRidge on Amp's dictionary views of fingerprints.

Amp's models take ``fingerprints[hash]`` (``[(symbol, [G, ...]), ...]``)
and ``fingerprintprimes[hash]`` (``{(m, sym_m, n, sym_n, x): dG_n /
dx_{m,x}}``); the calculator uses the array form instead. This mixin gives
:class:`~amp.model.kernelridge.KernelRidge` the dictionary interface:
``calculate_energy`` and ``calculate_atomic_energy`` (through
:class:`amp.model.Model`) and ``calculate_forces``, and Amp's ``vector``
of the weights.
"""

import numpy as np

__all__ = ["AmpViews"]


class AmpViews:
    """``calculate_forces`` and the block evaluation behind
    ``calculate_energy`` for a model with ``_energies``/``_forces`` of
    model-ready features and ``_trained_references()``."""

    def _evaluate_block(self, symbol, block, gradient):
        """Energies of a block of atoms' fingerprints; there is no
        ``dE/dG``."""
        if gradient:
            raise NotImplementedError(
                "KernelRidge has no dE/dG: its forces come from a separate "
                "kernel model (use calculate_forces)")
        scaler = self._trained_references().get("energy_scaler")
        block = np.asarray(block, dtype=float)
        if scaler is not None:
            block = scaler.transform(block)
        return self._energies(symbol, block), None

    def calculate_forces(self, fingerprints: list,
                         fingerprintprimes: dict) -> np.ndarray:
        """Forces of an image from Amp's dictionary views.

        Parameters
        ----------
        fingerprints : list
            ``[(symbol, [G, ...]), ...]``.
        fingerprintprimes : dict
            ``{(m, sym_m, n, sym_n, x): [dG_n/dx_{m,x}, ...]}``.

        Returns
        -------
        ndarray, shape (n_atoms, 3)
        """
        references = self._trained_references()
        if not self.has_force_model:
            raise self._no_forces()
        n = len(fingerprints)
        keys = list(fingerprintprimes)
        moved = np.array([k[0] for k in keys], dtype=np.int64)
        direction = np.array([k[4] for k in keys], dtype=np.int64)
        primes = np.array([fingerprintprimes[k] for k in keys], dtype=float)
        summed = np.zeros((n, 3, primes.shape[1]))
        np.add.at(summed, (moved, direction), primes)  # Amp's sum rule
        scaler = references.get("force_scaler")
        if scaler is not None:
            counts = np.bincount(moved[direction == 0], minlength=n)
            summed = scaler.transform(summed, counts)
        symbols = np.array([symbol for symbol, _ in fingerprints])
        forces = np.empty((n, 3))
        for element in np.unique(symbols):
            index = np.flatnonzero(symbols == element)
            forces[index] = self._forces(str(element), summed[index])
        return forces

    @property
    def vector(self):
        """All weights as one flat vector (Amp's attribute; None before
        training): energy weights of each element (sorted), then force
        weights of each element (x, y, z rows)."""
        weights = self.parameters.weights
        if not weights or not isinstance(weights["energy"], dict):
            return None
        parts = [weights["energy"][e] for e in sorted(weights["energy"])]
        parts += [weights["forces"][e].ravel()
                  for e in sorted(weights.get("forces") or {})]
        return np.concatenate(parts) if parts else np.zeros(0)

    @vector.setter
    def vector(self, vector):
        # Nothing to resume from: a fit is one solve, which sets them.
        weights = self.parameters.weights
        if self.vector is None or len(vector) != len(self.vector):
            return
        start = 0
        for kind in ("energy", "forces"):
            for element in sorted(weights.get(kind) or {}):
                shape = weights[kind][element].shape
                size = int(np.prod(shape))
                weights[kind][element] = np.array(
                    vector[start:start + size], dtype=float).reshape(shape)
                start += size

    def calculate_force(self, *args, **kwargs):
        """Not provided: a KernelRidge force needs all of an atom's
        fingerprint primes at once (use :meth:`calculate_forces`)."""
        raise NotImplementedError("KernelRidge forces come from all of an "
                                  "atom's fingerprint primes at once; use "
                                  "calculate_forces")
