"""Per-element feed-forward neural networks (Amp's ``NeuralNetwork``).

Each element has its own network: fingerprints scaled to [-1, 1] by the
training range (``fprange``), hidden layers and one output node, all with
the same activation, and the output mapped to an atomic energy by the
element's ``slope`` and ``intercept``. The image energy is the sum of the
atomic energies. The maths (all atoms of an element in one matrix product)
lives in :mod:`amp.model._network`.
"""

from __future__ import annotations

import json
import numbers
from typing import Any, Callable

import numpy as np
from ase.calculators.calculator import Parameters

from ..utilities import Logger, hash_images
from . import LossFunction, Model, check_mode, fingerprint_values
from ._network import ACTIVATIONS, ElementNetwork, Raveler, n_inputs
from .batch import TrainingBatch
from .initialization import InitialParameters
from .nodeplot import NodePlot  # noqa: F401  (Amp's import path)

VERSIONS = ("2015.12",)

#: Amp's default network: two hidden layers of five nodes for every element.
DEFAULT_HIDDENLAYERS = (5, 5)


def _plain_layers(hiddenlayers):
    """A tuple of ints from a tuple/list/int of layer sizes."""
    if isinstance(hiddenlayers, numbers.Integral):
        hiddenlayers = (hiddenlayers,)
    layers = tuple(int(n) for n in hiddenlayers)
    if any(n < 1 for n in layers):
        raise ValueError("hidden layers need at least one node each, got %r"
                         % (hiddenlayers,))
    return layers


def _read_weights(weights):
    """``{element: {int layer: float array}}`` from any accepted layout."""
    out = {}
    for element, layers in weights.items():
        out[str(element)] = {int(k): np.array(w, dtype=float)
                             for k, w in layers.items()}
        keys = sorted(out[str(element)])
        if keys != list(range(1, len(keys) + 1)):
            raise ValueError("element %s: weight layers must be numbered "
                             "1..L+1, got %s" % (element, keys))
        shapes = [out[str(element)][k].shape for k in keys]
        for k, shape in enumerate(shapes):
            if len(shape) != 2:
                raise ValueError("element %s layer %i: weights must be a "
                                 "2-D array" % (element, k + 1))
            if k and shape[0] != shapes[k - 1][1] + 1:
                raise ValueError(
                    "element %s layer %i has %i input rows, expected %i "
                    "(nodes of layer %i plus the bias row)"
                    % (element, k + 1, shape[0], shapes[k - 1][1] + 1, k))
        if shapes[-1][1] != 1:
            raise ValueError("element %s: the last layer must have one "
                             "output node" % element)
    return out


def _read_scalings(scalings):
    return {str(e): {"intercept": float(s["intercept"]),
                     "slope": float(s["slope"])}
            for e, s in scalings.items()}


def _read_fprange(fprange):
    out = {}
    for element, pairs in fprange.items():
        array = np.array(pairs, dtype=float).reshape(-1, 2)
        out[str(element)] = array.tolist()
    return out


class NeuralNetwork(InitialParameters, Model):
    """Amp's atom-centred feed-forward neural network.

    Parameters
    ----------
    hiddenlayers : tuple or dict
        Nodes of each hidden layer, the same for every element
        (``(5, 5)``) or per element (``{'Cu': (5, 5), 'Pt': (3,)}``).
    activation : {'tanh', 'sigmoid', 'linear'}
    weights : dict, optional
        ``{element: {layer: (n_in + 1, n_out) array}}``, layers numbered
        from 1, the last row of each matrix the bias. Random when None.
    scalings : dict, optional
        ``{element: {'intercept': float, 'slope': float}}``; set from the
        training energies when None.
    fprange : dict, optional
        ``{element: [[min, max], ...]}``; the training fingerprints' range
        when None.
    mode : str, optional
        Only ``'atom-centered'``.
    version : str, optional
        ``'2015.12'``.
    regressor : Regressor, optional
        Default :class:`amp.regression.Regressor`.
    lossfunction : LossFunction, optional
        Default :class:`amp.model.LossFunction`.
    fortran : bool
        Accepted for compatibility (one vectorised implementation).
    checkpoints : int or None
        :class:`amp.Amp` saves ``<label>-checkpoint.amp`` every this many
        optimiser steps during training; None or 0 disables.
    randomseed : int, optional
        Seed of the random initial weights (reproducible when given).
    prescale : bool
        Initial intercepts from a least-squares fit of the image energies
        on the element counts (per-element reference energies), slopes from
        the spread of the remaining per-atom energies, instead of the
        per-atom energy range of every element alike.

    Attributes
    ----------
    parameters : ase.calculators.calculator.Parameters
        Amp's keys: importname, mode, version, hiddenlayers, activation,
        weights, scalings, fprange.
    vector : ndarray
        All weights and scalings as one flat vector (see
        :class:`amp.model.Raveler` for the order).
    """

    importname = ".model.neuralnetwork.NeuralNetwork"

    #: Declared capability: :meth:`block_evaluator` gives energies and
    #: dE/dG a few atoms at a time, for the descriptor's fused force path
    #: (see :func:`amp.potential.evaluate`).
    block_evaluation = True

    def __init__(self, hiddenlayers: Any = DEFAULT_HIDDENLAYERS,
                 activation: str = "tanh", weights: Any = None,
                 scalings: Any = None, fprange: Any = None,
                 mode: str | None = None, version: str | None = None,
                 regressor: Any = None,
                 lossfunction: LossFunction | None = None,
                 fortran: bool = True, checkpoints: int | None = 100,
                 randomseed: int | None = None,
                 prescale: bool = False) -> None:
        if version is not None and version not in VERSIONS:
            raise ValueError("NeuralNetwork version %r is not supported "
                             "(supported: %s)"
                             % (version, ", ".join(VERSIONS)))
        if mode not in (None, "atom-centered"):
            raise ValueError("NeuralNetwork supports only mode="
                             "'atom-centered', got %r" % (mode,))
        if activation not in ACTIVATIONS:
            raise ValueError("unknown activation %r; known: %s"
                             % (activation, ", ".join(ACTIVATIONS)))
        if hasattr(hiddenlayers, "keys"):
            hiddenlayers = {str(e): _plain_layers(h)
                            for e, h in hiddenlayers.items()}
        else:
            hiddenlayers = _plain_layers(hiddenlayers)
        p = self.parameters = Parameters()
        p.importname = self.importname
        p.mode = "atom-centered"
        p.version = VERSIONS[-1]
        p.hiddenlayers = hiddenlayers
        p.activation = activation
        p.weights = None if weights is None else _read_weights(weights)
        p.scalings = None if scalings is None else _read_scalings(scalings)
        p.fprange = None if fprange is None else _read_fprange(fprange)
        self._check_shapes()
        self.regressor = regressor
        self.lossfunction = lossfunction if lossfunction is not None \
            else LossFunction()
        self.fortran = fortran
        self.checkpoints = checkpoints
        self._on_step: Callable[[int], Any] | None = None
        self.randomseed = randomseed
        self.prescale = prescale
        self.trainingparameters: Any = None

    def _check_shapes(self):
        """Raise ValueError when hiddenlayers, weights and fprange
        disagree."""
        p = self.parameters
        if p.weights is None:
            return
        for element, layers in p.weights.items():
            hidden = tuple(layers[k].shape[1] for k in sorted(layers))[:-1]
            wanted = p.hiddenlayers.get(element) \
                if isinstance(p.hiddenlayers, dict) else p.hiddenlayers
            if wanted is not None and tuple(wanted) != hidden:
                raise ValueError("element %s: weights have hidden layers %s "
                                 "but hiddenlayers says %s"
                                 % (element, hidden, tuple(wanted)))
            inputs = n_inputs(layers[min(layers)])
            if p.fprange is not None and element in p.fprange and \
                    len(p.fprange[element]) != inputs:
                raise ValueError(
                    "element %s: fprange has %i features but the network "
                    "takes %i" % (element, len(p.fprange[element]), inputs))

    def feature_counts(self) -> dict[str, int]:
        """``{element: number of features its network takes}`` (empty
        before the weights exist)."""
        return {element: n_inputs(layers[min(layers, key=int)])
                for element, layers in (self.parameters.weights or {}).items()}

    def check_features(self, features: dict[str, int],
                       source: str = "the descriptor",
                       every_network: bool = True) -> None:
        """Raise ValueError unless ``features`` fit the networks.

        The one compatibility check between a descriptor and this model
        (used by :class:`amp.Amp` and :meth:`fit`).

        Parameters
        ----------
        features : dict
            ``{element: number of features}`` the descriptor gives.
        source : str
            Names the descriptor side in the message (e.g. an image).
        every_network : bool
            Also require features for every element that has a network.
        """
        inputs = self.feature_counts()
        if not inputs:
            return
        no_network = sorted(set(features) - set(inputs))
        if no_network:
            raise ValueError(
                "descriptor and model disagree on elements: %s gives %d "
                "features for %s but the model has no network for it "
                "(networks for: %s)" % (source, features[no_network[0]],
                                        no_network[0],
                                        ", ".join(sorted(inputs))))
        no_features = sorted(set(inputs) - set(features))
        if every_network and no_features:
            raise ValueError(
                "descriptor and model disagree on elements: the model has a "
                "network for %s but %s has no symmetry functions for it "
                "(descriptor elements: %s)"
                % (no_features[0], source, ", ".join(sorted(features))))
        for element in sorted(features):
            if features[element] != inputs[element]:
                raise ValueError(
                    "descriptor and model disagree on feature counts: %s "
                    "gives %d features for %s but the model's network takes "
                    "%d" % (source, features[element], element,
                            inputs[element]))

    # The lossfunction keeps a reference back to its model (Amp's way).
    @property
    def lossfunction(self) -> LossFunction:
        """The :class:`LossFunction` used by :meth:`fit`."""
        return self._lossfunction

    @lossfunction.setter
    def lossfunction(self, lossfunction: LossFunction) -> None:
        if hasattr(lossfunction, "attach_model"):
            lossfunction.attach_model(self)
        self._lossfunction = lossfunction

    @property
    def forcetraining(self) -> bool:
        """Whether training uses forces (and so fingerprint
        derivatives)."""
        return bool(self.lossfunction.train_forces)

    # Parameter vector ----------------------------------------------------

    @property
    def raveler(self) -> Raveler:
        """The :class:`Raveler` of the current weights and scalings."""
        p = self.parameters
        if p.weights is None or p.scalings is None:
            raise ValueError("the model has no weights and scalings yet "
                             "(train it or give them)")
        return Raveler(p.weights, p.scalings)

    @property
    def vector(self) -> np.ndarray | None:
        """All parameters as one flat float64 vector (None before they
        exist). Order: every element's weight matrices (elements sorted,
        layers ascending, row-major), then every element's intercept and
        slope."""
        p = self.parameters
        if p.weights is None or p.scalings is None:
            return None
        return self.raveler.to_vector(p.weights, p.scalings)

    @vector.setter
    def vector(self, vector: Any) -> None:
        weights, scalings = self.raveler.to_dicts(vector)
        self.parameters.weights = weights
        self.parameters.scalings = scalings

    def element_networks(self) -> dict[str, ElementNetwork]:
        """``{element: ElementNetwork}`` of the current parameters."""
        p = self.parameters
        if p.weights is None or p.scalings is None:
            raise ValueError("the model has no weights and scalings yet "
                             "(train it or give them)")
        fprange = p.fprange or {}
        return {e: ElementNetwork([w[k] for k in sorted(w)],
                                  p.scalings[e]["slope"],
                                  p.scalings[e]["intercept"],
                                  fprange.get(e), p.activation)
                for e, w in p.weights.items() if e in p.scalings}

    # Evaluation ----------------------------------------------------------

    def evaluate(self, image_fingerprints: Any, forces: bool = True
                 ) -> tuple[np.ndarray, Any]:
        """Atomic energies and ``dE/dG`` of one image, vectorised.

        Parameters
        ----------
        image_fingerprints : ImageFingerprints
        forces : bool
            Also return ``dE/dG`` (forces are then
            ``image_fingerprints.forces(dE_dG)``).

        Returns
        -------
        atomic_energies : ndarray, shape (n_atoms,)
        dE_dG : dict or None
            ``{element: (n_element, n_features) array}``.

        Raises
        ------
        ValueError
            When an element has no network or the feature counts differ.
        """
        evaluate = self.block_evaluator(forces)
        atomic = np.empty(image_fingerprints.n_atoms)
        dE_dG: dict[str, Any] | None = {} if forces else None
        for element, block in image_fingerprints.values.items():
            energies, gradient = evaluate(element, block)
            atomic[image_fingerprints.atom_index[element]] = energies
            if dE_dG is not None:
                dE_dG[element] = gradient
        self.atomic_energies = atomic
        return atomic, dE_dG

    def block_evaluator(self, gradient: bool = True
                        ) -> Callable[[str, np.ndarray], Any]:
        """A function of blocks of atoms, with the networks built once.

        Returns
        -------
        callable
            ``f(element, block) -> (energies, dE_dG)`` for a ``(n,
            n_features)`` block of fingerprints of atoms of ``element``
            (``dE_dG`` None without ``gradient``). The descriptor's fused
            force path (:meth:`Gaussian.compute_contracted`) calls it a few
            atoms at a time.
        """
        networks = self.element_networks()

        def evaluate(element, block):
            net = self._network(networks, element, block)
            outputs = net.forward(block)
            return (net.energies(outputs),
                    net.input_gradient(outputs) if gradient else None)
        return evaluate

    def _network(self, networks, element, block):
        if element not in networks:
            raise ValueError(
                "the model has no network for element %s (it has: %s)"
                % (element, ", ".join(sorted(networks)) or "none"))
        net = networks[element]
        if np.shape(block)[1] != net.n_features:
            raise ValueError(
                "element %s: the fingerprints have %i features but the "
                "network takes %i (descriptor and model disagree)"
                % (element, np.shape(block)[1], net.n_features))
        return net

    def _evaluate_block(self, symbol, block, gradient):
        """Energies (and ``dE/dG``) of a block of atoms of one element."""
        return self.block_evaluator(gradient)(symbol, block)

    # Training ------------------------------------------------------------

    def make_batch(self, images: dict[str, Any], train_forces: bool,
                   weights: dict[str, float] | None = None,
                   train_stress: bool = False) -> TrainingBatch:
        """A :class:`TrainingBatch` of ``images`` (fingerprints from the
        fingerprint store the model was set up with)."""
        store = self.trainingparameters["store"]
        return TrainingBatch(images, store, train_forces, weights,
                             train_stress=train_stress)

    def fit(self, trainingimages: dict[str, Any], descriptor: Any,
            log: Logger | None = None, parallel: Any = None,
            only_setup: bool = False,
            on_step: Callable[[int], Any] | None = None) -> bool | None:
        """Fit the parameters to the training images (Amp 1.x's entry
        point, reading the fingerprints from Amp 1.x's view of the
        descriptor, ``descriptor.arrays``).

        :meth:`setup` followed by :meth:`regress`; :class:`amp.Amp` calls
        those two with the store it owns.

        Parameters
        ----------
        trainingimages : dict
            ``{hash: atoms}`` with reference energies (and forces when
            force training); fingerprints already in
            ``descriptor.arrays``.
        descriptor : descriptor
        log : Logger, optional
        parallel : WorkerPool, dict or None
            A pool of workers, or Amp's ``{'cores': ..., 'envcommand':
            ...}``; with more than one core the loss function is evaluated
            by workers, each holding a share of the images.
        only_setup : bool
            Set up and return None without optimising.
        on_step : callable, optional
            ``on_step(step)`` after every loss evaluation (see
            :meth:`regress`).

        Returns
        -------
        bool
            True when the convergence criteria were met.
        """
        check_mode(descriptor)
        self.setup(trainingimages, descriptor.arrays, log)
        if only_setup:
            return None
        return self.regress(log, parallel, on_step)

    def setup(self, trainingimages: Any, store: Any,
              log: Logger | None = None, validation: Any = None,
              patience: int | None = None) -> None:
        """Prepare training: fingerprint range, hidden layers, weights and
        scalings where missing, checked against the fingerprints, and the
        loss function attached to the images.

        Parameters
        ----------
        trainingimages : dict or list
            The training images (hashed if not already).
        store : FingerprintStore
            Holds the images' fingerprints (and derivatives when training
            forces), e.g. from ``descriptor.open_store(...)`` filled by
            ``descriptor.calculate_fingerprints(images, store=store)``.
        log : Logger, optional
        validation : dict or HeldOut, optional
            Held-out images (their fingerprints in ``store`` too), scored
            at every loss evaluation; they take no part in the
            fingerprint range or the initial scalings.
        patience : int, optional
            Early stopping on the held-out images' loss (see
            :class:`amp.model.validation.HeldOut`).
        """
        from ..regression import Regressor

        log = Logger(None) if log is None else log
        self._log = log
        if self.regressor is None:
            self.regressor = Regressor()
        images = hash_images(trainingimages)
        self.trainingparameters = {"images": images, "store": store}
        log("Regression in atom-centered mode.")
        self._setup(images, store, log)
        self._check_fingerprints(images, store)
        held_out = getattr(validation, "images", validation)
        if held_out is not None:
            self._check_fingerprints(held_out, store, "held-out image %s")
        self.lossfunction.attach_model(self, log=log, images=images,
                                       validation=validation,
                                       patience=patience)

    def regress(self, log: Logger | None = None, parallel: Any = None,
                on_step: Callable[[int], Any] | None = None) -> bool:
        """Minimise the loss from the current parameters (after
        :meth:`setup`).

        Parameters
        ----------
        log : Logger, optional
        parallel : dict or WorkerPool, optional
            Workers evaluate the loss while the regressor runs; they are
            stopped when it returns, however it returns.
        on_step : callable, optional
            ``on_step(step)`` after every loss evaluation, e.g. to save a
            checkpoint (:class:`amp.Amp` saves ``<label>-checkpoint.amp``
            every :attr:`checkpoints` steps this way).

        Returns
        -------
        bool
            True when the convergence criteria were met.
        """
        log = self.log if log is None else log
        self._on_step = on_step
        lossfunction = self.lossfunction
        try:
            if getattr(self.regressor, "minibatch", False):
                # Every mini-batch step needs its images in this process;
                # the result is then the same with any number of workers.
                try:
                    return self.regressor.regress(model=self, log=log)
                finally:
                    lossfunction.close()
            with lossfunction.evaluator(parallel):
                return self.regressor.regress(model=self, log=log)
        finally:
            self._on_step = None
            # After the optimiser's last line, where Amp's readers stop.
            write = getattr(self.lossfunction, "write_supplement", None)
            if write is not None:
                write(log)
            if getattr(lossfunction, "streaming", None) is not None:
                lossfunction.drop_batches()  # chunk files removed

    def _check_fingerprints(self, images, store, name="image %s"):
        """Every element of the images has a network of the right size."""
        for key in images:
            blocks = fingerprint_values(store, key).values
            self.check_features({e: b.shape[1] for e, b in blocks.items()},
                                name % key, every_network=False)

    def get_loss(self, vector: Any, lossprime: bool = True) -> Any:
        """The optimiser's objective: ``(loss, gradient)`` when
        ``lossprime`` else the loss; then the ``on_step`` callback of
        :meth:`regress`."""
        result = self.lossfunction.get_loss(vector, lossprime=lossprime)
        on_step = getattr(self, "_on_step", None)
        if on_step is not None:
            on_step(self.lossfunction._step)
        if lossprime:
            return result["loss"], result["dloss_dparameters"]
        return result["loss"]

    # Serialisation -------------------------------------------------------

    def todict(self) -> dict[str, Any]:
        """Plain JSON-serialisable form of everything that defines the
        model (see :meth:`fromdict`)."""
        p = self.parameters
        hidden = p.hiddenlayers
        hidden = ({e: list(h) for e, h in hidden.items()}
                  if isinstance(hidden, dict) else list(hidden))
        return {
            "importname": self.importname, "mode": p.mode,
            "version": p.version, "hiddenlayers": hidden,
            "activation": p.activation,
            "weights": None if p.weights is None else {
                e: {str(k): np.asarray(w).tolist() for k, w in layers.items()}
                for e, layers in p.weights.items()},
            "scalings": None if p.scalings is None else {
                e: dict(s) for e, s in p.scalings.items()},
            "fprange": None if p.fprange is None else {
                e: [list(map(float, pair)) for pair in r]
                for e, r in p.fprange.items()},
            "checkpoints": self.checkpoints, "randomseed": self.randomseed,
            "prescale": self.prescale}

    @classmethod
    def fromdict(cls, d: dict[str, Any]) -> NeuralNetwork:
        """Rebuild from :meth:`todict`'s form or Amp's parameter layout
        (integer or string layer keys, nested lists or arrays).

        Extra keys (``importname``, ``mode``) are checked or ignored.
        """
        importname = d.get("importname", cls.importname)
        if importname != cls.importname:
            raise ValueError("not a NeuralNetwork model (importname %r)"
                             % (importname,))
        hiddenlayers = d.get("hiddenlayers")
        if hiddenlayers is None:
            # Derive it from the weights when only those were stored.
            hiddenlayers = DEFAULT_HIDDENLAYERS if not d.get("weights") else {
                e: tuple(np.shape(w[k])[1] for k in sorted(w, key=int))[:-1]
                for e, w in d["weights"].items()}
        return cls(hiddenlayers=hiddenlayers,
                   activation=d.get("activation", "tanh"),
                   weights=d.get("weights"), scalings=d.get("scalings"),
                   fprange=d.get("fprange"), mode=d.get("mode"),
                   version=d.get("version"),
                   checkpoints=d.get("checkpoints", 100),
                   randomseed=d.get("randomseed"),
                   prescale=d.get("prescale", False))

    def tostring(self) -> str:
        """The :meth:`todict` form as a JSON string."""
        return json.dumps(self.todict(), sort_keys=True)

    def __repr__(self):
        return "NeuralNetwork(hiddenlayers=%r, activation=%r)" % (
            self.parameters.hiddenlayers, self.parameters.activation)
