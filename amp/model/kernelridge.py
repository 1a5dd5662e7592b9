"""Kernel ridge regression (Amp's ``KernelRidge``).

Atom-centred: an atom's energy is ``sum_b k(G, G_b) w_b`` over the
training atoms ``b`` of its element (``G`` the fingerprints, ``k`` the
kernel of :mod:`amp.model._kernels`); the image energy is the sum over its
atoms. The weights come from one linear solve, not an optimiser (see
:mod:`amp.model._kernel_fit` for the equations).

Forces, as in Amp 1.x, are a *separate* kernel model, not ``-dE/dx``: the
force on atom ``a`` in direction ``x`` is ``sum_b k(f_ax, f_bx) w_bx``,
``f_ax = sum_n dG_n / dx_a`` the summed fingerprint derivatives
(:mod:`amp.model._kernel_features`), with weights fitted to the training
forces. They are therefore not exactly the gradient of the energy model,
a model trained on energies alone has no forces, and there is no stress.

A trained model keeps the features of its training atoms (it needs them to
predict) and writes them into this library's ``.amp`` files. Amp 1.x's
files hold only the weights and the name of the training-image file
(``trainingimages``, relative to the current folder); their training
features are computed from that file at the first prediction.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable

import numpy as np
from ase.calculators.calculator import Parameters, PropertyNotImplementedError

from ..utilities import Logger, hash_images
from . import Model, check_mode
from ._kernel_data import (collect, lamdas, partition_targets,
                           read_training_images, read_weights,
                           references_fromdict,
                           references_todict, sigma_table, sigma_todict,
                           training_references, weights_by_element)
from ._kernel_features import energy_blocks, force_features, key_counts
from ._kernel_views import AmpViews
from ._kernel_fit import (check_kernel_memory, energy_weights, fit_report,
                          force_weights, kernel_product, memory_needed,
                          partition_weights)
from ._kernels import KERNELS, KernelMatrixError

__all__ = ["KernelRidge", "PropertyNotTrainedError", "KernelMatrixError"]

VERSIONS = ("2015.12",)


class PropertyNotTrainedError(PropertyNotImplementedError):
    """The model cannot give this property: forces from a model trained on
    energies only, or stress from any KernelRidge model. An ASE
    ``PropertyNotImplementedError``."""


class KernelRidge(AmpViews, Model):
    """Amp's kernel ridge regression model.

    Parameters
    ----------
    sigma : float, list or dict
        Kernel width: one number; one per feature (a list: anisotropic);
        or per property and element, ``{'energy': {'Cu': s, ...},
        'forces': {'Cu': {0: s, 1: s, 2: s}, ...}}`` (each ``s`` a number
        or a list), or ``{'energy': s, 'forces': s}``.
    kernel : {'rbf', 'laplacian', 'exponential', 'linear'}
    lamda : float or dict
        Regularisation, or ``{'energy': l, 'forces': l}``.
    weights : dict, optional
        Trained weights (Amp's layout or :meth:`todict`'s); set by
        training.
    regressor : object, optional
        Accepted for Amp's signature; the fit is one linear solve.
    mode : str, optional
        Only ``'atom-centered'``.
    trainingimages : str, optional
        Path of the ``.traj`` file of the training images. Only needed to
        predict with Amp 1.x files, which keep no training features.
    version : str, optional
        ``'2015.12'``.
    fortran : bool
        Accepted for compatibility.
    checkpoints : int or None
        Accepted for compatibility (nothing iterates).
    lossfunction : object, optional
        Accepted for compatibility.
    cholesky : bool
        Solve Amp's equations with a Cholesky factorisation (the default);
        False minimises Amp's L2 loss by a least-squares solve, which also
        takes singular kernel matrices (see ``docs/model.md``).
    weights_independent : bool
        Separate force weights for x, y and z (default), or one set for
        all three.
    randomize_weights : bool
        Accepted for compatibility (nothing iterates from a start).
    forcetraining : bool
        Also fit the force model.
    preprocessing : bool
        Standardise the features over the training set (scikit-learn's
        ``StandardScaler``, as Amp).
    nnpartition : str, optional
        Path of an Amp neural-network ``.amp`` file (same descriptor):
        fit each atom's energy to that network's atomic energy instead of
        the image energies.
    sum_rule : bool
        Only True: the force features are the summed fingerprint
        derivatives.

    Attributes
    ----------
    parameters : ase.calculators.calculator.Parameters
        Amp's keys: importname, version, mode, kernel, sigma, lamda,
        weights, weights_independent, sum_rule, cholesky, nnpartition,
        trainingimages, preprocessing.
    """

    importname = ".model.kernelridge.KernelRidge"

    #: Declared capability: forces come from a model of their own, not from
    #: dE/dG (see :func:`amp.potential.evaluate`).
    separate_forces = True

    def __init__(self, sigma: Any = 1.0, kernel: str = "rbf",
                 lamda: Any = 1e-5, weights: Any = None, regressor: Any = None,
                 mode: str | None = None, trainingimages: Any = None,
                 version: str | None = None, fortran: bool = False,
                 checkpoints: int | None = None, lossfunction: Any = None,
                 cholesky: bool = True, weights_independent: bool = True,
                 randomize_weights: bool = False, forcetraining: bool = False,
                 preprocessing: bool = False, nnpartition: Any = None,
                 sum_rule: bool = True) -> None:
        if version is not None and version not in VERSIONS:
            raise ValueError("KernelRidge version %r is not supported "
                             "(supported: %s)" % (version,
                                                  ", ".join(VERSIONS)))
        if mode not in (None, "atom-centered"):
            raise ValueError("KernelRidge supports only mode='atom-centered' "
                             "(Amp 1.x has no image-centred KernelRidge "
                             "either), got %r" % (mode,))
        if kernel not in KERNELS:
            raise ValueError("unknown kernel %r; known: %s"
                             % (kernel, ", ".join(KERNELS)))
        if not sum_rule:
            raise ValueError(
                "sum_rule=False is not provided: the force features are the "
                "summed fingerprint derivatives (Amp 1.x cannot predict "
                "forces without the sum rule either)")
        if nnpartition is not None and not isinstance(
                nnpartition, (str, os.PathLike)):
            raise ValueError("nnpartition is the path of a neural-network "
                             ".amp file, got %r" % (nnpartition,))
        lamdas(lamda)  # checks it
        sigma_table(sigma, None, None, False)  # checks its form
        p = self.parameters = Parameters()
        p.importname = self.importname
        p.version = VERSIONS[-1]
        p.mode = "atom-centered"
        p.kernel = kernel
        p.sigma = self._sigma = sigma  # p.sigma: the full table after a fit
        p.lamda = lamda
        p.weights = read_weights(weights)
        p.weights_independent = bool(weights_independent)
        p.sum_rule = True
        p.cholesky = bool(cholesky)
        p.nnpartition = None if nnpartition is None else \
            os.fspath(nnpartition)
        p.trainingimages = trainingimages
        p.preprocessing = bool(preprocessing)
        self.regressor = regressor
        self.lossfunction = lossfunction
        self.fortran = fortran
        self.checkpoints = checkpoints
        self.randomize_weights = randomize_weights
        self._forcetraining = bool(forcetraining)
        self._references: Any = None
        self._training: Any = None
        self._memory_limit: Any = None

    # Amp's attribute names -------------------------------------------------

    kernel = property(lambda self: self.parameters.kernel)
    sigma = property(lambda self: self.parameters.sigma)
    lamda = property(lambda self: self.parameters.lamda)
    cholesky = property(lambda self: self.parameters.cholesky)
    trainingimages = property(lambda self: self.parameters.trainingimages)
    preprocessing = property(lambda self: self.parameters.preprocessing)
    nnpartition = property(lambda self: self.parameters.nnpartition)
    weights_independent = property(
        lambda self: self.parameters.weights_independent)

    @property
    def forcetraining(self) -> bool:
        """Whether training fits the force model (and so needs fingerprint
        derivatives)."""
        return self._forcetraining

    @property
    def has_force_model(self) -> bool:
        """Whether the model predicts forces (it has force weights)."""
        weights = self.parameters.weights
        return bool(weights) and weights.get("forces") is not None

    # The descriptor ----------------------------------------------------------

    @staticmethod
    def _training_fingerprints(images, store=None, descriptor=None,
                               derivatives=False):
        """``(hash, ImageFingerprints)`` of each image: the one place the
        model meets fingerprints. From the fingerprint ``store`` (training:
        the calculator has just filled it), or computed by ``descriptor``
        and not stored (a model read from an Amp 1.x file)."""
        for key, atoms in images.items():
            if store is not None:
                yield key, store[key]
            else:
                yield key, descriptor.compute(atoms, derivatives)

    # Memory ----------------------------------------------------------------

    def kernel_memory(self, images: dict | list) -> tuple:
        """Peak bytes of the kernel matrices a fit to ``images`` (only
        their atoms are counted) builds, and which matrices (see
        :func:`amp.model._kernel_fit.memory_needed`)."""
        images = hash_images(images)
        symbols = [s for atoms in images.values()
                   for s in atoms.get_chemical_symbols()]
        elements, counts = np.unique(symbols, return_counts=True)
        return memory_needed(
            {str(e): int(n) for e, n in zip(elements, counts)}, len(images),
            self.forcetraining, self.cholesky, self.weights_independent,
            self.nnpartition is not None)

    def check_memory(self, images: dict | list,
                     memory_limit: int | float | str | None = None,
                     log: Logger | None = None) -> int:
        """Log the bytes the fit's kernel matrices need (returned); raise
        :class:`amp.descriptor.budget.TrainingMemoryError` when more than
        ``memory_limit`` (bytes or ``'4 GB'``; default the memory available
        now). :class:`amp.Amp` calls this before computing anything."""
        self._memory_limit = memory_limit
        peak, matrices = self.kernel_memory(images)
        check_kernel_memory(peak, matrices, memory_limit, log)
        return peak

    # Training ----------------------------------------------------------------

    def fit(self, trainingimages: dict | list, descriptor: Any,
            log: Logger | None = None, parallel: Any = None,
            only_setup: bool = False,
            on_step: Callable[[int], Any] | None = None) -> bool | None:
        """:meth:`setup` then :meth:`regress` (Amp 1.x's entry point, on
        Amp 1.x's view of the descriptor, ``descriptor.arrays``): True when
        fitted, None with ``only_setup``."""
        check_mode(descriptor)
        self.setup(trainingimages, descriptor.arrays, log)
        if only_setup:
            return None
        return self.regress(log, parallel, on_step)

    def setup(self, trainingimages: dict | list, store: Any,
              log: Logger | None = None) -> None:
        """Collect the training atoms' features and targets.

        Parameters
        ----------
        trainingimages : dict or list
            The training images (hashed if not already), with energies
            (and forces when force training).
        store : FingerprintStore
            Holds the images' fingerprints (and derivatives when force
            training).
        log : Logger, optional

        Raises
        ------
        amp.descriptor.budget.TrainingMemoryError
            The kernel matrices would not fit (checked first).
        ValueError
            A sigma that does not fit the elements or features, or
            fingerprints of different lengths where forces need one.
        """
        log = Logger(None) if log is None else log
        self._log = log
        images = hash_images(trainingimages)
        log("Regression in atom-centered mode (KernelRidge, %s kernel, "
            "%s)." % (self.kernel, "Cholesky" if self.cholesky
                      else "least squares"))
        self.check_memory(images, self._memory_limit, log)
        training = collect(images, self._training_fingerprints(
            images, store=store), self.forcetraining, self.preprocessing)
        if self.nnpartition is not None:
            training["atomic_targets"] = partition_targets(
                self.nnpartition, training["raw_energy"])
        self._training = training
        self._references = training_references(training, self.preprocessing)
        self.parameters.sigma = self._sigma_table()

    def _sigma_table(self):
        """The normalised widths for the references' elements and
        features."""
        references = self._references
        n_features = {e: b.shape[1] for e, b in references["energy"].items()}
        return sigma_table(self._sigma, sorted(n_features), n_features,
                           "forces" in references)

    def regress(self, log: Logger | None = None, parallel: Any = None,
                on_step: Callable[[int], Any] | None = None) -> bool:
        """Solve for the weights (after :meth:`setup`).

        Parameters
        ----------
        log : Logger, optional
        parallel, on_step
            Accepted for the calculator's protocol; the fit is one linear
            solve in this process.

        Returns
        -------
        bool
            True.

        Raises
        ------
        KernelMatrixError
            A Cholesky factorisation failed (the matrix is not positive
            definite); the message says what to change.
        """
        if self._training is None:
            raise ValueError("call setup(images, descriptor) before "
                             "regress()")
        log = self.log if log is None else log
        training, references = self._training, self._references
        p = self.parameters
        sigma = p.sigma
        lamda = lamdas(p.lamda)
        energy = {e: sigma["energy"][e] for e in references["energy"]}
        log("Kernel parameters: lamda %s; sigma %s." % (p.lamda, sigma))
        log("Solving for the energy weights...", tic="energy")
        if p.nnpartition is not None:
            weights = {"energy": partition_weights(
                references["energy"], training["atomic_targets"],
                p.kernel, energy, lamda["energy"], p.cholesky)}
        else:
            weights = {"energy": energy_weights(
                references["energy"], training["image"],
                training["energies"], training["n_atoms"], p.kernel, energy,
                lamda["energy"], p.cholesky)}
        log("...energy weights solved.", toc="energy")
        if self.forcetraining:
            log("Solving for the force weights...", tic="forces")
            weights["forces"] = force_weights(
                references["forces"], training["force_targets"], p.kernel,
                sigma["forces"], lamda["forces"], p.cholesky,
                p.weights_independent)
            log("...force weights solved.", toc="forces")
        p.weights = weights
        self._log_fit(log)
        return True

    def _log_fit(self, log):
        """The fit's errors on its training images, as one row of Amp's
        convergence table (so ``read_trainlog`` and ``plot_convergence``
        read KernelRidge logs too)."""
        training = self._training
        n_images = len(training["energies"])
        predicted = np.zeros(n_images)
        for element, block in self._references["energy"].items():
            atomic = self._energies(element, block)
            predicted += np.bincount(training["image"][element], atomic,
                                     minlength=n_images)
        per_atom = (predicted - training["energies"]) / training["n_atoms"]
        energy_loss = float(per_atom @ per_atom)
        row = [np.sqrt(energy_loss / n_images), np.max(np.abs(per_atom))]
        loss = energy_loss
        forces = self.forcetraining
        if forces:
            force_loss, force_max = 0.0, 0.0
            for element, block in self._references["forces"].items():
                residual = self._forces(element, block) - \
                    training["force_targets"][element]
                weight = 1.0 / (3.0 * training["n_atoms"][
                    training["image"][element]])
                force_loss += float(weight @ (residual ** 2).sum(axis=1))
                force_max = max(force_max, float(np.abs(residual).max()))
            row += [np.sqrt(force_loss / n_images), force_max]
            loss += force_loss
        fit_report(log, loss, row)

    # Prediction --------------------------------------------------------------

    def prepare(self, descriptor: Any) -> None:
        """Make the training features if the model has none yet (a model
        from an Amp 1.x file): read ``trainingimages`` and fingerprint
        them with ``descriptor``. A no-op afterwards.

        Raises
        ------
        ValueError
            No weights; no training images to compute the features from;
            or images that do not fit the weights.
        """
        if self._references is not None:
            return
        p = self.parameters
        if not p.weights:
            raise ValueError("the KernelRidge model has no weights yet "
                             "(train it, or load a trained model)")
        if p.trainingimages is None:
            raise ValueError(
                "this KernelRidge model holds no training features and no "
                "trainingimages to compute them from; Amp 1.x models need "
                "the .traj file they were trained on")
        images = read_training_images(p.trainingimages)
        training = collect(images, self._training_fingerprints(
            images, descriptor=descriptor,
            derivatives=self.has_force_model),
            self.has_force_model, p.preprocessing, targets=False)
        references = training_references(training, p.preprocessing)
        p.weights = weights_by_element(p.weights, training, references,
                                        p.trainingimages)
        self._references = references
        self.parameters.sigma = self._sigma_table()

    def _trained_references(self):
        """The training features; ValueError when there are none yet."""
        if self._references is None:
            raise ValueError("the KernelRidge model has no training "
                             "features: train it, or call prepare(descriptor)"
                             " for a model read from an Amp 1.x file")
        return self._references

    def _energies(self, element, block):
        """Atomic energies of rows of (model-ready) energy features."""
        p = self.parameters
        if element not in self._references["energy"]:
            raise ValueError(
                "the KernelRidge model has no training atoms of element %s "
                "(it has: %s)" % (element,
                                  ", ".join(sorted(self._references[
                                      "energy"]))))
        return kernel_product(block, self._references["energy"][element],
                              p.weights["energy"][element], p.kernel,
                              p.sigma["energy"][element])

    def _forces(self, element, block):
        """Forces ``(n, 3)`` from rows of (model-ready) force features."""
        p = self.parameters
        references = self._references["forces"][element]
        weights = p.weights["forces"][element]
        return np.stack([kernel_product(
            block[:, x], references[:, x], weights[x], p.kernel,
            p.sigma["forces"][element][x]) for x in range(3)], axis=1)

    def predict(self, fingerprints: Any, forces: bool = True) -> tuple:
        """Atomic energies and (when the model has them) forces of one
        image.

        Parameters
        ----------
        fingerprints : ImageFingerprints
            With derivatives when forces are asked for.
        forces : bool

        Returns
        -------
        atomic_energies : ndarray, shape (n_atoms,)
        forces : ndarray, shape (n_atoms, 3), or None
        """
        references = self._trained_references()
        if forces and not self.has_force_model:
            raise self._no_forces()
        atomic = np.empty(fingerprints.n_atoms)
        scaler = references.get("energy_scaler")
        for element, block in energy_blocks(fingerprints).items():
            if scaler is not None:
                block = scaler.transform(block)
            atomic[fingerprints.atom_index[element]] = \
                self._energies(element, block)
        self.atomic_energies = atomic
        if not forces:
            return atomic, None
        features = force_features(fingerprints)
        scaler = references.get("force_scaler")
        if scaler is not None:
            features = scaler.transform(features, key_counts(fingerprints))
        predicted = np.empty((fingerprints.n_atoms, 3))
        for element, index in fingerprints.atom_index.items():
            predicted[index] = self._forces(element, features[index])
        return atomic, predicted

    def _no_forces(self):
        return PropertyNotTrainedError(
            "this KernelRidge model was trained on energies only and has no "
            "force model (its forces are a separate kernel model, not "
            "derivatives of the energy); train with "
            "KernelRidge(forcetraining=True) and images with forces")

    def check_properties(self, properties: list | None) -> None:
        """Raise :class:`PropertyNotTrainedError` for a property the model
        cannot give (forces without a force model; stress)."""
        properties = set(properties or ())
        if "forces" in properties and not self.has_force_model:
            raise self._no_forces()
        if "stress" in properties:
            raise PropertyNotTrainedError(
                "KernelRidge gives no stress: its forces are a separate "
                "kernel model, not derivatives of an energy, so there is no "
                "strain derivative to take")

    def feature_counts(self) -> dict:
        """``{element: number of features}`` of the training atoms (empty
        before there are any)."""
        if self._references is None:
            return {}
        return {e: b.shape[1] for e, b in self._references["energy"].items()}

    def check_features(self, features: dict, source: str = "the descriptor",
                       every_network: bool = True) -> None:
        """Raise ValueError unless ``features`` (``{element: count}``) fit
        the training features (the calculator's compatibility check)."""
        known = self.feature_counts()
        for element in sorted(set(features) & set(known)):
            if features[element] != known[element]:
                raise ValueError(
                    "descriptor and model disagree on feature counts: %s "
                    "gives %d features for %s but the model's training atoms "
                    "have %d" % (source, features[element], element,
                                 known[element]))

    # Serialisation ---------------------------------------------------------

    def todict(self) -> dict:
        """Plain JSON-serialisable form, training features included (see
        :meth:`fromdict`)."""
        p = self.parameters
        weights: Any = None
        if p.weights is not None:
            energy = p.weights["energy"]
            weights = {"energy": {e: w.tolist() for e, w in energy.items()}
                       if isinstance(energy, dict) else energy.tolist()}
            if p.weights.get("forces") is not None:
                weights["forces"] = {e: w.tolist() for e, w in
                                     p.weights["forces"].items()}
        trainingimages = p.trainingimages
        if not isinstance(trainingimages, (str, os.PathLike)):
            trainingimages = None
        return {
            "importname": self.importname, "version": p.version,
            "mode": p.mode, "kernel": p.kernel,
            "sigma": sigma_todict(p.sigma), "lamda": p.lamda,
            "weights": weights, "weights_independent": p.weights_independent,
            "sum_rule": True, "cholesky": p.cholesky,
            "nnpartition": p.nnpartition,
            "trainingimages": None if trainingimages is None
            else os.fspath(trainingimages),
            "preprocessing": p.preprocessing,
            "forcetraining": self.forcetraining,
            "checkpoints": self.checkpoints,
            "reference": references_todict(self._references)}

    @classmethod
    def fromdict(cls, d: dict) -> "KernelRidge":
        """Rebuild from :meth:`todict`'s form or Amp 1.x's parameters.

        Raises
        ------
        ValueError
            Not a KernelRidge model, or parameters of the wrong form.
        """
        importname = d.get("importname", cls.importname)
        if importname != cls.importname:
            raise ValueError("not a KernelRidge model (importname %r)"
                             % (importname,))
        weights = d.get("weights")
        model = cls(
            sigma=d.get("sigma", 1.0), kernel=d.get("kernel", "rbf"),
            lamda=d.get("lamda", 1e-5), weights=weights,
            mode=d.get("mode"), trainingimages=d.get("trainingimages"),
            version=d.get("version"), checkpoints=d.get("checkpoints"),
            cholesky=d.get("cholesky", True),
            weights_independent=d.get("weights_independent", True),
            # Amp 1.x does not write it: a model with force weights has
            # been trained on forces.
            forcetraining=d.get("forcetraining", bool(
                weights and weights.get("forces"))),
            preprocessing=d.get("preprocessing", False),
            nnpartition=d.get("nnpartition"),
            sum_rule=d.get("sum_rule", True))
        if d.get("reference") is not None:
            model._references = references_fromdict(d["reference"])
            if model.parameters.weights is not None:
                model.parameters.weights = weights_by_element(
                    model.parameters.weights, None, model._references, None)
            model.parameters.sigma = model._sigma_table()
        return model

    def tostring(self) -> str:
        """The parameters as a JSON string (without the training
        features)."""
        d = self.todict()
        d.pop("reference")
        return json.dumps(d, sort_keys=True)

    def __repr__(self):
        return "KernelRidge(kernel=%r, sigma=%r, lamda=%r)" % (
            self.kernel, self.sigma, self.lamda)

