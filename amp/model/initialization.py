"""Initial parameters of the neural networks: fingerprint range, hidden
layers, random weights and energy scalings, and Amp's ways to redraw them.

:class:`InitialParameters` is a mixin of
:class:`amp.model.neuralnetwork.NeuralNetwork`: it works on the network's
``parameters`` (``fprange``, ``hiddenlayers``, ``weights``, ``scalings``),
``randomseed`` and ``prescale``.

* Random weights of each layer are uniform in ``+-sqrt(6 / (n_in +
  n_out))`` (bias row included).
* Scalings come from the range of the training energies per atom (tanh:
  intercept ``(max + min) / 2``, slope ``(max - min) / 2``; sigmoid:
  intercept ``min``, slope ``max - min``; linear: as tanh with the slope
  times 1e-10).
"""

import numpy as np

from ..utilities import hash_images
from . import fingerprint_range


class InitialParameters:
    """Set up and redraw a network's parameters (see the module)."""

    def _setup(self, images, store, log):
        """Fill in fprange, hiddenlayers, weights and scalings (the range
        from the fingerprints in ``store``)."""
        p = self.parameters
        found = fingerprint_range(store, images)
        if p.fprange is None:
            log("Calculating new fingerprint range; this range is part of "
                "the model.")
            p.fprange = found
        else:
            for element in set(found) - set(p.fprange):
                log("Fingerprint range of %s from the training images."
                    % element)
                p.fprange[element] = found[element]
        elements = sorted(p.fprange)
        if not isinstance(p.hiddenlayers, dict):
            p.hiddenlayers = {e: p.hiddenlayers for e in elements}
        elif set(elements) - set(p.hiddenlayers):
            raise ValueError("hiddenlayers has no entry for %s" % ", ".join(
                sorted(set(elements) - set(p.hiddenlayers))))
        log("Hidden-layer structure:")
        for element in elements:
            log(" %2s: %s" % (element, p.hiddenlayers[element]))
        weights = dict(p.weights or {})
        missing = [e for e in elements if e not in weights]
        if missing:
            log("Initializing with random weights for %s (randomseed %s)."
                % (", ".join(missing), self.randomseed))
            weights.update(self.random_weights(
                {e: len(p.fprange[e]) for e in missing}))
        else:
            log("Initial weights already present.")
        p.weights = weights
        scalings = dict(p.scalings or {})
        missing = [e for e in elements if e not in scalings]
        if missing:
            log("Initializing scalings of %s from the training energies."
                % ", ".join(missing))
            initial = self.initial_scalings(images)
            scalings.update({e: initial[e] for e in missing})
        else:
            log("Initial scalings already present.")
        p.scalings = scalings
        self._check_shapes()

    def random_weights(self, n_features, rng=None):
        """Random initial weights, uniform in ``+-sqrt(6 / (n_in + n_out))``
        per layer (bias row included).

        Parameters
        ----------
        n_features : dict
            ``{element: number of fingerprint features}``.
        rng : numpy.random.Generator, optional
            Default: seeded with ``randomseed``.

        Returns
        -------
        dict
            ``{element: {layer: array}}``; reproducible with
            ``randomseed`` (elements drawn in sorted order).
        """
        if rng is None:
            rng = np.random.default_rng(self.randomseed)
        hidden = self.parameters.hiddenlayers
        weights = {}
        for element in sorted(n_features):
            layers = hidden[element] if isinstance(hidden, dict) else hidden
            sizes = [n_features[element]] + list(layers) + [1]
            weights[element] = {}
            for k in range(1, len(sizes)):
                bound = np.sqrt(6.0 / (sizes[k - 1] + sizes[k]))
                weights[element][k] = rng.uniform(
                    -bound, bound, (sizes[k - 1] + 1, sizes[k]))
        return weights

    def initial_scalings(self, images):
        """Scalings from the range of the training energies per atom.

        tanh: intercept ``(max + min) / 2``, slope ``(max - min) / 2``;
        sigmoid: intercept ``min``, slope ``max - min``; linear: intercept
        ``(max + min) / 2``, slope ``1e-10 (max - min) / 2``. With
        ``prescale`` the per-element intercepts come from a least-squares
        fit of the energies on the element counts and min/max are those of
        the remaining per-atom energies (around 0).

        Returns
        -------
        dict
            ``{element: {'intercept': float, 'slope': float}}``.
        """
        energies = np.array([a.get_potential_energy(apply_constraint=False)
                             for a in images.values()], dtype=float)
        if not np.all(np.isfinite(energies)):
            raise ValueError("a training image has no finite energy")
        n_atoms = np.array([len(a) for a in images.values()], dtype=float)
        elements = sorted(self.parameters.fprange)
        base = {e: 0.0 for e in elements}
        if self.prescale:
            counts = np.array([[a.get_chemical_symbols().count(e)
                                for e in elements]
                               for a in images.values()], dtype=float)
            reference = np.linalg.lstsq(counts, energies, rcond=None)[0]
            base = dict(zip(elements, reference.tolist()))
            energies = energies - counts @ reference
        per_atom = energies / n_atoms
        low, high = float(per_atom.min()), float(per_atom.max())
        activation = self.parameters.activation
        if activation == "tanh":
            intercept, slope = (high + low) / 2.0, (high - low) / 2.0
        elif activation == "sigmoid":
            intercept, slope = low, high - low
        else:
            intercept, slope = (high + low) / 2.0, 1e-10 * (high - low) / 2.0
        return {e: {"intercept": intercept + base[e], "slope": slope}
                for e in elements}

    def randomize(self, trainingimages=None, weights=True, scalings=True,
                  seed=None):
        """New random parameters, e.g. to retrain from a fresh start
        (Amp's method).

        Parameters
        ----------
        trainingimages : list, dict or str, optional
            Needed for ``scalings`` (set from their energies as
            :meth:`initial_scalings` does).
        weights, scalings : bool
            Which parameters to redraw.
        seed : int, optional
            Seed of the new weights; fresh randomness when None.
        """
        p = self.parameters
        if p.fprange is None:
            raise ValueError("randomize needs the fingerprint range (train "
                             "once, or give fprange)")
        if weights:
            p.weights = self.random_weights(
                {e: len(r) for e, r in p.fprange.items()},
                rng=np.random.default_rng(seed))
        if scalings:
            if trainingimages is None:
                raise ValueError("randomize(scalings=True) needs the "
                                 "training images (their energies set the "
                                 "scalings)")
            p.scalings = self.initial_scalings(hash_images(trainingimages))
        self._check_shapes()

    def prescale_intercepts(self, trainingimages):
        """Set each element's intercept to its fitted per-atom energy, and
        every slope to 1 (Amp's method).

        The intercepts minimise the root-mean-square error per atom of the
        model ``E = sum_elements count * intercept`` over the images
        (a weighted least-squares fit; Amp 1.x approached the same minimum
        with ``fmin``).
        """
        images = hash_images(trainingimages)
        if self.parameters.fprange is None:
            raise ValueError("prescale_intercepts needs the fingerprint "
                             "range (train once, or give fprange)")
        elements = list(self.parameters.fprange)
        energies = np.array([a.get_potential_energy(apply_constraint=False)
                             for a in images.values()], dtype=float)
        n_atoms = np.array([len(a) for a in images.values()], dtype=float)
        counts = np.array([[a.get_chemical_symbols().count(e)
                            for e in elements] for a in images.values()],
                          dtype=float)
        intercepts = np.linalg.lstsq(counts / n_atoms[:, None],
                                     energies / n_atoms, rcond=None)[0]
        self.parameters.scalings = {
            e: {"intercept": float(x), "slope": 1.0}
            for e, x in zip(elements, intercepts)}
