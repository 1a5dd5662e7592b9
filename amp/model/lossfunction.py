"""Amp's loss function: energy, force (and stress) residuals of the
training images.

:class:`LossFunction` (importable from :mod:`amp.model` as in Amp 1.x)
evaluates the loss and its gradient on
:class:`~amp.model.batch.TrainingBatch` objects, serially or on workers
(:meth:`LossFunction.evaluator`, :mod:`amp.model.evaluation`), logs
Amp's convergence table (:mod:`amp.model.losstable`), scores
held-out images at every step (:mod:`amp.model.validation`) and stops the
optimizer when the criteria are met (or the held-out loss stopped
improving). The formulas are in ``docs/model.md``.
"""

from __future__ import annotations

import time
from typing import Any, Iterable, Optional

import numpy as np
from ase.calculators.calculator import Parameters

from ..utilities import (ConvergenceOccurred, EarlyStoppingOccurred,
                         Logger, MaxIterationsReached, now)
from .evaluation import Evaluation
from .losstable import ConvergenceTable
from .validation import HeldOut, errors


def _table_time():
    """Local time as one token (``2016-12-01T05:23:05``), as Amp's table
    has it and its log readers split it."""
    return now().replace(" ", "T")


def combine_partials(partials: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Add the partial sums of several batches (see
    :meth:`~amp.model.batch.TrainingBatch.partial`).

    Sums of losses, gradients and image counts; maxima of the residuals
    (every ``*_maxresid`` key); the other numbers (``*_loss``, ``n_*``)
    are summed, so terms a batch adds (the stress's) combine too.
    """
    total = {"energy_loss": 0.0, "force_loss": 0.0, "energy_maxresid": 0.0,
             "force_maxresid": 0.0, "n_images": 0.0, "gradient": None}
    for part in partials:
        for key, value in part.items():
            if key == "gradient":
                continue
            if key.endswith("maxresid"):
                total[key] = max(total.get(key, 0.0), value)
            else:
                total[key] = total.get(key, 0.0) + value
        if part["gradient"] is not None:
            total["gradient"] = (part["gradient"].copy()
                                 if total["gradient"] is None
                                 else total["gradient"] + part["gradient"])
    return total


class LossFunction(Evaluation, ConvergenceTable):
    """Amp's loss function: energies and forces against references.

    ``loss = energy_coefficient * energy_loss + force_coefficient *
    force_loss + overfit * sum(w ** 2)`` with ``energy_loss = sum_images
    (dE / N)^2``, ``force_loss = sum_images sum_components dF^2 / (3 N)``
    and the penalty over every network weight (biases and scalings
    excluded; Amp 1.x penalised the first layer only).

    Parameters
    ----------
    energy_coefficient : float
    force_coefficient : float or None
        None turns force training off (then no fingerprint derivatives are
        computed); any number, including the default, trains forces even
        when no force criterion is set.
    convergence : dict, optional
        ``energy_rmse`` (default 0.001), ``energy_maxresid``,
        ``force_rmse``, ``force_maxresid`` (default None); None criteria are
        ignored.
    parallel : dict or WorkerPool, optional
        Amp's ``{'cores': ..., 'envcommand': ...}``; by default the model's
        (what :meth:`Model.fit` was given). With more than one core, each
        worker holds a share of the training images for the whole fit and
        returns partial sums for every parameter vector.
    overfit : float
        Weight of the L2 penalty.
    raise_ConvergenceOccurred : bool
        Raise :class:`ConvergenceOccurred` when converged (and
        :class:`MaxIterationsReached` after ``maxiter`` evaluations); False
        for using :meth:`get_loss` outside an optimiser.
    log_losses : bool
        Write the convergence table.
    d : float, optional
        When given, the gradient is the central finite difference of the
        loss with step ``d`` (for checking the analytic one).
    weight_duplicates : bool
        Count an image given k times k times (``images.metadata
        ['duplicates']``); RMSEs are then over the weighted image count.
    maxiter : int, optional
        Largest number of loss evaluations.
    use_workers : bool or None
        With a pool of workers: None (default) measures at set-up whether
        they pay off (:func:`amp.model._shares.decide`) and evaluates
        serially when they do not; True always gives them their shares;
        False never does. The ranks of an MPI job always share the images.
    stress_coefficient : float, optional
        Adds ``stress_coefficient * sum_images sum_Voigt dsigma^2 / 6``
        (eV/A^3) over the images that carry a stress, from the forces'
        fingerprint derivatives (``force_coefficient`` must not be None);
        criteria ``stress_rmse``, ``stress_maxresid``. None: no term.

    Attributes
    ----------
    streaming : amp.model.streaming.Streaming or None
        When set, the batches are chunk files walked at every evaluation
        (memory flat in the number of images; :class:`amp.Amp` sets it
        when the force data do not fit ``memory_limit``); None keeps them
        in memory.
    """

    #: Amp's defaults of the parameters given as None (the convergence
    #: criteria); a ``convergence`` dict updates a copy of these.
    default_parameters = {"convergence": {"energy_rmse": 0.001,
                                          "energy_maxresid": None,
                                          "force_rmse": None,
                                          "force_maxresid": None}}

    def __init__(self, energy_coefficient: float = 1.0,
                 force_coefficient: float | None = 0.04,
                 convergence: dict[str, float | None] | None = None,
                 parallel: Any = None, overfit: float = 0.,
                 raise_ConvergenceOccurred: bool = True,
                 log_losses: bool = True, d: float | None = None,
                 weight_duplicates: bool = False, maxiter: int | None = 100000,
                 use_workers: bool | None = None,
                 stress_coefficient: float | None = None) -> None:
        criteria = dict(self.default_parameters["convergence"])
        criteria.update(stress_rmse=None, stress_maxresid=None)
        if stress_coefficient is not None and force_coefficient is None:
            raise ValueError(
                "stress_coefficient needs the fingerprint derivatives that "
                "force training computes: give a force_coefficient too "
                "(0.0 trains no forces)")
        if convergence is not None:
            unknown = set(convergence) - set(criteria) - {"max_steps"}
            if unknown:
                raise ValueError("unknown convergence criteria %s; known: %s"
                                 % (sorted(unknown), sorted(criteria)))
            criteria.update(convergence)
        if "max_steps" in criteria:  # later Amp versions' spelling
            maxiter = criteria.pop("max_steps")
        self.parameters = Parameters(
            importname=".model.LossFunction",
            energy_coefficient=energy_coefficient,
            force_coefficient=force_coefficient, convergence=criteria,
            overfit=overfit, weight_duplicates=weight_duplicates,
            maxiter=maxiter)
        if stress_coefficient is not None:
            self.parameters.stress_coefficient = float(stress_coefficient)
        self._parallel = parallel
        self.use_workers = use_workers
        self.raise_ConvergenceOccurred = raise_ConvergenceOccurred
        self.log_losses = log_losses
        self.d = d
        self._model: Any = None
        self._images: Any = None
        self._log: Logger | None = None
        self._n_batches = 1
        self._workers: Any = None
        #: Live progress line (amp.progress): None when stderr is a
        #: terminal, True/False forced; Amp sets it from its ``verbose``.
        self.verbose = None
        self._progress = None
        #: Held-out images (amp.model.validation.HeldOut) or None.
        self.validation: Any = None
        self.streaming = None
        self._batches = None
        self.reset()

    # Set-up --------------------------------------------------------------

    @property
    def train_forces(self) -> bool:
        """Whether the loss has a force term (fingerprint derivatives are
        then needed): ``force_coefficient`` is not None."""
        return self.parameters.force_coefficient is not None

    @property
    def train_stress(self) -> bool:
        """Whether the loss has a stress term."""
        return self.parameters.get("stress_coefficient") is not None

    @property
    def stopped_early(self) -> bool:
        """Whether the last fit stopped because the validation loss had
        not improved for ``patience`` evaluations."""
        return self.validation is not None and self.validation.stopped_early

    def reset(self) -> None:
        """Forget the step count, the best parameters and the batches
        (and stop using workers)."""
        self.close()
        self._step = 0
        self.drop_batches()
        self._stress_history: list[Any] = []
        if self.validation is not None:
            self.validation.reset()
        self._initialized = False
        self._best: tuple[float, Any] = (np.inf, None)
        self._start = time.time()

    def attach_model(self, model: Any, log: Logger | None = None,
                     images: dict[str, Any] | None = None,
                     fingerprints: Any = None,
                     fingerprintprimes: Any = None, validation: Any = None,
                     patience: int | None = None) -> None:
        """Attach the model whose parameters are trained.

        Parameters
        ----------
        model : Model
            Provides ``vector``, ``make_batch`` and ``trainingparameters``.
        log : Logger, optional
        images : dict, optional
            Training images ``{hash: atoms}``; otherwise the model's
            ``trainingparameters['images']``.
        fingerprints, fingerprintprimes : optional
            Accepted for Amp's signature; the fingerprints are read from the
            descriptor's arrays.
        validation : HeldOut or dict, optional
            Held-out images (fingerprints in the model's store) scored at
            every evaluation; a dict is made a
            :class:`~amp.model.validation.HeldOut` with ``patience``.
        patience : int, optional
            Early stopping (see :class:`~amp.model.validation.HeldOut`).
        """
        self._model = model
        if log is not None:
            self._log = log
        if images is not None:
            self._images = images
        if validation is None and patience is not None:
            raise ValueError("patience (early stopping) needs held-out "
                             "images: give validation too")
        if validation is not None and not isinstance(validation, HeldOut):
            validation = HeldOut(validation, patience)
        self.validation = validation
        self.reset()

    def split_images(self, n_batches: int) -> None:
        """Evaluate the images in ``n_batches`` subsets (the results do not
        depend on it; the parallel path sends each subset to a worker)."""
        self._n_batches = int(n_batches)
        self.drop_batches()

    @property
    def log(self) -> Logger:
        """The logger used for the convergence table."""
        if self._log is not None:
            return self._log
        if self._model is not None:
            return self._model.log
        return Logger(None)

    def _training_images(self):
        if self._images is not None:
            return self._images
        return self._model.trainingparameters["images"]

    def _image_weights(self, images):
        if not self.parameters.weight_duplicates:
            return None
        metadata = getattr(images, "metadata", None) or {}
        return dict(metadata.get("duplicates", {}))

    def drop_batches(self) -> None:
        """Forget the batches (streamed ones: their chunk files are removed
        unless kept); the next evaluation builds them again."""
        batches: Any = self._batches
        self._batches = None
        if hasattr(batches, "close"):
            batches.close()

    def batches(self) -> Any:
        """The :class:`TrainingBatch` objects, built on first use (with
        :attr:`streaming`, a :class:`~amp.model.streaming.StreamedBatches`
        giving them one chunk at a time)."""
        if self._batches is None:
            images = self._training_images()
            # Building takes seconds for thousands of images: say so, on
            # a line of its own whose clock moves meanwhile.
            line = self._new_progress_line(heartbeat=True)
            line.phase("building batches of %d images" % len(images))
            keys = list(images)
            weights = self._image_weights(images)
            groups = [g for g in np.array_split(np.arange(len(keys)),
                                                self._n_batches) if len(g)]
            try:
                if self.streaming is not None:
                    self._batches = self.streaming.batches(
                        images, self._model.trainingparameters["store"],
                        self.train_forces, weights, self.log)
                else:
                    self._batches = self._make_batches(images, groups,
                                                       weights)
            finally:
                line.close()
        return self._batches

    def _make_batches(self, images, groups, weights):
        """A batch of ``images`` per group of their positions."""
        keys = list(images)
        # Only asked of models when stress is trained (other models'
        # make_batch need not know the keyword).
        stress = {"train_stress": True} if self.train_stress else {}
        return [self._model.make_batch({keys[i]: images[keys[i]]
                                        for i in group},
                                       self.train_forces, weights, **stress)
                for group in groups]

    # Evaluation ----------------------------------------------------------

    def validation_errors(self, parametervector: np.ndarray
                          ) -> Optional[dict]:
        """The held-out images' errors for a parameter vector (see
        :meth:`amp.model.validation.HeldOut.evaluate`); None without
        held-out images."""
        if self.validation is None:
            return None
        return self.validation.evaluate(self, parametervector)

    @property
    def n_training_images(self) -> int:
        """Number of (unique) training images."""
        return len(self._training_images())

    def minibatch_loss(self, parametervector: "np.ndarray",
                       image_ids: "np.ndarray | list[int] | range",
                       lossprime: bool = True) -> dict:
        """Loss and gradient of a mini-batch (for mini-batch optimizers).

        The terms of the images ``image_ids`` (indices into the training
        images, in any order) scaled to the whole set, plus the penalty
        (:func:`amp.model.subsets.minibatch_loss`); the images are read
        from the batches in memory or from the chunk files. Nothing is
        logged and no convergence is checked.

        Returns
        -------
        dict
            ``loss``, ``dloss_dparameters``, ``energy_rmse``,
            ``force_rmse`` (over the mini-batch).
        """
        from .streaming import select_from_batches
        from .subsets import minibatch_loss

        if self._workers is not None:
            raise RuntimeError("mini-batches need every image in this "
                               "process; leave evaluator() first")
        ids = np.unique(np.asarray(image_ids, dtype=np.int64))
        batches = self.batches()
        batch = batches.select(ids) if hasattr(batches, "select") else \
            select_from_batches(batches, ids)
        vector = np.array(parametervector, dtype=float)
        model = self._model
        model.vector = vector
        return minibatch_loss(batch, model.element_networks(),
                              model.raveler, self.parameters, vector,
                              self.n_training_images, lossprime)

    def close(self) -> None:
        """Stop using workers (as leaving :meth:`evaluator` does): they drop
        their shares, and a pool started for this loss function is
        stopped. Evaluation is serial after."""
        self._close_progress()
        if self.validation is not None:
            self.validation.close()
        if self._workers is not None:
            workers, self._workers = self._workers, None
            workers.close()

    def _close_progress(self):
        if self._progress is not None:
            # Dropped once closed: no stream is held (deepcopy-safe).
            self._progress.close()
            self._progress = None

    def _totals(self, vector, lossprime):
        """Loss terms and analytic gradient summed over the batches."""
        model = self._model
        model.vector = vector
        p = self.parameters
        force_coefficient = p.force_coefficient if self.train_forces \
            else None
        raveler = model.raveler
        total = combine_partials(self._partials(vector, lossprime,
                                                force_coefficient))
        loss = p.energy_coefficient * total["energy_loss"]
        if force_coefficient is not None:
            loss += force_coefficient * total["force_loss"]
        if self.train_stress:
            loss += p.stress_coefficient * total.get("stress_loss", 0.0)
        if p.overfit:
            mask = raveler.weight_mask()
            vector = np.asarray(vector, dtype=float)
            loss += p.overfit * float(np.sum(vector[mask] ** 2))
            if lossprime:
                total["gradient"] = total["gradient"] + \
                    2.0 * p.overfit * np.where(mask, vector, 0.0)
        total["loss"] = loss
        return total

    def calculate_loss(self, parametervector: Any,
                       lossprime: bool = True) -> dict[str, Any]:
        """Loss, gradient and residuals, with no logging or convergence
        check.

        Returns
        -------
        dict
            As :meth:`get_loss`, plus ``energy_rmse``, ``force_rmse`` and,
            with a stress term, ``stress_loss``, ``stress_rmse`` and
            ``stress_maxresid``.
        """
        vector = np.array(parametervector, dtype=float)
        total = self._totals(vector, lossprime and self.d is None)
        if lossprime and self.d is not None:
            gradient = np.empty(len(vector))
            for k in range(len(vector)):
                shifted = vector.copy()
                shifted[k] += self.d
                plus = self._totals(shifted, False)["loss"]
                shifted[k] -= 2 * self.d
                minus = self._totals(shifted, False)["loss"]
                gradient[k] = (plus - minus) / (2 * self.d)
            self._model.vector = vector
            total["gradient"] = gradient
        result = {key: total[key] for key in (
            "loss", "energy_loss", "force_loss", "energy_maxresid",
            "force_maxresid")}
        result["dloss_dparameters"] = total["gradient"] if lossprime \
            else np.zeros(len(vector))
        found = errors(total, stress_coefficient=self.parameters.get(
            "stress_coefficient"))
        result.update(energy_rmse=found["energy_rmse"],
                      force_rmse=found["force_rmse"])
        if self.train_stress:
            result.update(stress_loss=total.get("stress_loss", 0.0),
                          stress_rmse=found["stress_rmse"],
                          stress_maxresid=found["stress_maxresid"])
        return result

    def get_loss(self, parametervector: Any,
                 lossprime: bool = True) -> dict[str, Any]:
        """Evaluate the loss for a parameter vector (one optimiser step).

        Logs a line of the convergence table and, when
        ``raise_ConvergenceOccurred``, raises :class:`ConvergenceOccurred`
        once every criterion is met or :class:`MaxIterationsReached` after
        ``maxiter`` evaluations.

        Returns
        -------
        dict
            ``loss``, ``dloss_dparameters`` (zeros without ``lossprime``),
            ``energy_loss``, ``force_loss``, ``energy_maxresid``,
            ``force_maxresid``.
        """
        self._initialize()
        self._step += 1
        result = self.calculate_loss(parametervector, lossprime)
        for key in ("loss", "energy_loss", "force_loss", "energy_maxresid",
                    "force_maxresid"):
            setattr(self, key, result[key])
        if lossprime:
            self.dloss_dparameters = result["dloss_dparameters"]
        if result["loss"] < self._best[0]:
            self._best = (result["loss"],
                          np.array(parametervector, dtype=float))
        converged = self.check_convergence(result)
        if self.train_stress:
            self._stress_history.append((self._step, result))
        held_out = self.validation_errors(parametervector)
        if self._progress is not None:
            self._progress.update(
                self._step, **self._progress_fields(result, held_out))
        maxiter = self.parameters.maxiter
        ending = self.raise_ConvergenceOccurred and (
            converged or maxiter is not None and self._step >= maxiter)
        if held_out is not None:  # may end the fit (patience)
            try:
                self.validation.record(
                    self._step, parametervector, held_out,
                    may_stop=self.raise_ConvergenceOccurred and not ending)
            except EarlyStoppingOccurred:
                self._close_progress()
                raise
        if ending:
            if converged:
                self._model.vector = parametervector
                self._close_progress()
                raise ConvergenceOccurred()
            self._close_progress()
            raise MaxIterationsReached(
                "no convergence after %i loss evaluations" % self._step)
        return {key: result[key] for key in
                ("loss", "dloss_dparameters", "energy_loss", "force_loss",
                 "energy_maxresid", "force_maxresid")}

    def check_convergence(self, result: dict[str, Any]) -> bool:
        """Whether every criterion that is not None is met; logs the
        table line.

        Parameters
        ----------
        result : dict
            From :meth:`calculate_loss`.
        """
        c = self.parameters.convergence
        flags = {}
        for key, value in (("energy_rmse", result["energy_rmse"]),
                           ("energy_maxresid", result["energy_maxresid"]),
                           ("force_rmse", result["force_rmse"]),
                           ("force_maxresid", result["force_maxresid"]),
                           ("stress_rmse", result.get("stress_rmse")),
                           ("stress_maxresid",
                            result.get("stress_maxresid"))):
            if key.startswith("force") and not self.train_forces or \
                    key.startswith("stress") and not self.train_stress:
                flags[key] = True
            else:
                flags[key] = c[key] is None or value <= c[key]
        if self.log_losses:
            mark = {k: "C" if v else "-" for k, v in flags.items()}
            if self.train_forces:
                self.log("%5i %19s %12.4e %10.4e %1s %10.4e %1s %10.4e %1s "
                         "%10.4e %1s" % (
                             self._step, _table_time(), result["loss"],
                             result["energy_rmse"], mark["energy_rmse"],
                             result["energy_maxresid"],
                             mark["energy_maxresid"], result["force_rmse"],
                             mark["force_rmse"], result["force_maxresid"],
                             mark["force_maxresid"]))
            else:
                self.log("%5i %19s %12.4e %10.4e %1s %10.4e %1s" % (
                    self._step, _table_time(), result["loss"],
                    result["energy_rmse"],
                    mark["energy_rmse"], result["energy_maxresid"],
                    mark["energy_maxresid"]))
        return all(flags.values())

    @property
    def best_vector(self) -> np.ndarray | None:
        """The parameters of the lowest loss evaluated so far (or None);
        with early stopping (held-out images and a ``patience``), those of
        the lowest validation loss."""
        if getattr(self.validation, "patience", None) is not None and \
                self.validation.best_vector is not None:
            return self.validation.best_vector
        return self._best[1]
