"""Amp's loss function: energy and force residuals of the training images.

:class:`LossFunction` (importable from :mod:`amp.model` as in Amp 1.x)
evaluates the loss and its gradient on
:class:`~amp.model.batch.TrainingBatch` objects, serially or on workers
(:meth:`LossFunction.evaluator`), logs Amp's convergence table and stops
the optimizer when the criteria are met. The formulas are in
``docs/model.md``.
"""

import contextlib
import time

import numpy as np
from ase.calculators.calculator import Parameters

from ..utilities import (ConvergenceOccurred, Logger,
                         MaxIterationsReached, now)


def _table_time():
    """Local time as one token (``2016-12-01T05:23:05``), as Amp's table
    has it and its log readers split it."""
    return now().replace(" ", "T")


def combine_partials(partials):
    """Add the partial sums of several batches (see
    :meth:`~amp.model.batch.TrainingBatch.partial`).

    Sums of losses, gradients and image counts; maxima of the residuals.
    """
    total = {"energy_loss": 0.0, "force_loss": 0.0, "energy_maxresid": 0.0,
             "force_maxresid": 0.0, "n_images": 0.0, "gradient": None}
    for part in partials:
        for key in ("energy_loss", "force_loss", "n_images"):
            total[key] += part[key]
        for key in ("energy_maxresid", "force_maxresid"):
            total[key] = max(total[key], part[key])
        if part["gradient"] is not None:
            total["gradient"] = (part["gradient"].copy()
                                 if total["gradient"] is None
                                 else total["gradient"] + part["gradient"])
    return total


class LossFunction:
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
    """

    #: Amp's defaults of the parameters given as None (the convergence
    #: criteria); a ``convergence`` dict updates a copy of these.
    default_parameters = {"convergence": {"energy_rmse": 0.001,
                                          "energy_maxresid": None,
                                          "force_rmse": None,
                                          "force_maxresid": None}}

    def __init__(self, energy_coefficient=1.0, force_coefficient=0.04,
                 convergence=None, parallel=None, overfit=0.,
                 raise_ConvergenceOccurred=True, log_losses=True, d=None,
                 weight_duplicates=False, maxiter=100000, use_workers=None):
        criteria = dict(self.default_parameters["convergence"])
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
        self._parallel = parallel
        self.use_workers = use_workers
        self.raise_ConvergenceOccurred = raise_ConvergenceOccurred
        self.log_losses = log_losses
        self.d = d
        self._model = None
        self._images = None
        self._log = None
        self._n_batches = 1
        self._workers = None
        #: Live progress line (amp.progress): None when stderr is a
        #: terminal, True/False forced; Amp sets it from its ``verbose``.
        self.verbose = None
        self._progress = None
        self.reset()

    # Set-up --------------------------------------------------------------

    @property
    def train_forces(self):
        """Whether the loss has a force term (fingerprint derivatives are
        then needed): ``force_coefficient`` is not None."""
        return self.parameters.force_coefficient is not None

    def reset(self):
        """Forget the step count, the best parameters and the batches
        (and stop using workers)."""
        self.close()
        self._step = 0
        self._batches = None
        self._initialized = False
        self._best = (np.inf, None)
        self._start = time.time()

    def attach_model(self, model, log=None, images=None, fingerprints=None,
                     fingerprintprimes=None):
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
        """
        self._model = model
        if log is not None:
            self._log = log
        if images is not None:
            self._images = images
        self.reset()

    def split_images(self, n_batches):
        """Evaluate the images in ``n_batches`` subsets (the results do not
        depend on it; the parallel path sends each subset to a worker)."""
        self._n_batches = int(n_batches)
        self._batches = None

    @property
    def log(self):
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

    def batches(self):
        """The :class:`TrainingBatch` objects, built on first use."""
        if self._batches is None:
            images = self._training_images()
            keys = list(images)
            weights = self._image_weights(images)
            groups = [g for g in np.array_split(np.arange(len(keys)),
                                                self._n_batches) if len(g)]
            self._batches = [
                self._model.make_batch({keys[i]: images[keys[i]]
                                        for i in group},
                                       self.train_forces, weights)
                for group in groups]
        return self._batches

    def _initialize(self):
        if self._initialized:
            return
        self._initialized = True
        self._start = time.time()
        from ..progress import Progress

        self._progress = Progress(None, "training", enabled=self.verbose,
                                  unit="step")
        if not self.log_losses:
            return
        p, c, log = self.parameters, self.parameters.convergence, self.log
        log(" Loss function convergence criteria:")
        for key in ("energy_rmse", "energy_maxresid", "force_rmse",
                    "force_maxresid"):
            value = c[key]
            if key.startswith("force") and not self.train_forces:
                value = None  # forces not trained: no force criterion
            elif value is None and key.endswith("rmse"):
                # Trained but unbounded; log readers (Amp's too) take the
                # table's columns from whether this is a number.
                value = float("inf")
            log("  %s: %s" % (key, value))
        log("  maxiter: %s" % p.maxiter)
        log(" Loss function set-up:")
        log("  energy_coefficient: %s" % p.energy_coefficient)
        log("  force_coefficient: %s" % p.force_coefficient)
        log("  overfit: %s" % p.overfit)
        log("  weight_duplicates: %s" % p.weight_duplicates)
        log("")
        if self.train_forces:
            header = "%5s %19s %12s %12s %12s %12s %12s"
            log(header % ("", "", "", "", "Energy", "", "Force"))
            log(header % ("Step", "Time", "Loss (SSD)", "EnergyRMSE",
                          "MaxResid", "ForceRMSE", "MaxResid"))
            log(header % ("=" * 5, "=" * 19, "=" * 12, "=" * 12, "=" * 12,
                          "=" * 12, "=" * 12))
        else:
            header = "%5s %19s %12s %12s %12s"
            log(header % ("", "", "", "", "Energy"))
            log(header % ("Step", "Time", "Loss (SSD)", "EnergyRMSE",
                          "MaxResid"))
            log(header % ("=" * 5, "=" * 19, "=" * 12, "=" * 12, "=" * 12))

    # Evaluation ----------------------------------------------------------

    @contextlib.contextmanager
    def evaluator(self, parallel=None):
        """Evaluate the loss in workers for the duration of a ``with`` block.

        With a pool of workers (or Amp's ``{'cores': ...}`` dict asking
        for more than one core; default the ``parallel`` given to the
        constructor), the training images are split into shares
        (:func:`amp.model._shares.share_count`), each worker receives its
        share once, and every evaluation inside the block sends it only
        the parameters; the workers drop their shares (and a pool started
        here for a dict is stopped) when the block ends, however it ends.
        Whether the workers pay off is measured first (see
        :attr:`use_workers`). Otherwise evaluation is serial. With the
        ranks of an MPI job (``cores='mpi'``), each rank holds its own
        share and every rank gets every rank's partial sums
        (:mod:`amp.model._ranks`). The results do not depend on the number
        of workers or ranks.

        Examples
        --------
        >>> with model.lossfunction.evaluator({'cores': 2}):  # doctest: +SKIP
        ...     model.regressor.regress(model=model, log=log)
        """
        from ..parallel import is_mpi, pool_for
        from ._shares import WorkerBatches

        parallel = self._parallel if parallel is None else parallel
        with pool_for(parallel, self.log) as pool:
            if is_mpi(pool) and self._workers is None:
                # The ranks of an MPI job: each holds its share, always
                # (amp.model._ranks).
                self._workers = self._rank_batches(pool)
                try:
                    yield self
                finally:
                    self.close()
                return
            if self._workers is not None or pool is None or \
                    self.use_workers is False:
                try:
                    yield self
                finally:
                    self._close_progress()
                return
            def batches_of(n_shares):
                # Built here, before the workers are asked for; the
                # master keeps only its own share after.
                self.split_images(n_shares)
                batches, self._batches = self.batches(), None
                return batches

            self._workers = WorkerBatches.build(
                pool, batches_of, self._share_setup(), log=self.log,
                use_workers=self.use_workers,
                evaluations=self.parameters.maxiter)
            if self._workers.job is not None:  # else serial, logged there
                self.log("Loss function: %i images in %i shares held by "
                         "workers (one by the master)."
                         % (len(self._training_images()),
                            self._workers.n_shares))
            try:
                yield self
            finally:
                self.close()

    def _share_setup(self):
        """What a share's :class:`~amp.model._shares.LossShare` is built
        from (besides its batch)."""
        p = self.parameters
        return {"model": self._model.todict(),
                "energy_coefficient": p.energy_coefficient,
                "force_coefficient": p.force_coefficient
                if self.train_forces else None}

    def _rank_batches(self, context):
        """This MPI rank's share (:class:`amp.model._ranks.RankBatches`);
        every rank starts from rank 0's parameters."""
        from ._ranks import RankBatches

        images = self._training_images()
        keys = context.share(images)
        self._model.vector = context.broadcast_array(self._model.vector)
        batch = self._model.make_batch(
            {key: images[key] for key in keys}, self.train_forces,
            self._image_weights(images)) if keys else None
        atoms = [sum(len(images[k]) for k in share)
                 for share in context.shares(images)]
        self.log("Loss function: %i images in %i shares held by MPI ranks "
                 "(%i to %i atoms per rank)." % (len(images), context.size,
                                                  min(atoms), max(atoms)))
        return RankBatches(context, batch, self._share_setup(),
                           len(self._model.vector))

    def _partials(self, vector, lossprime, force_coefficient):
        """Partial sums of every batch, from the workers inside
        :meth:`evaluator`."""
        if self._workers is not None:
            return self._workers.partials(vector, lossprime)
        model, p = self._model, self.parameters
        networks, raveler = model.element_networks(), model.raveler
        return [batch.partial(networks, lossprime, p.energy_coefficient,
                              force_coefficient, raveler)
                for batch in self.batches()]

    def close(self):
        """Stop using workers (as leaving :meth:`evaluator` does): they drop
        their shares, and a pool started for this loss function is
        stopped. Evaluation is serial after."""
        self._close_progress()
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
        if p.overfit:
            mask = raveler.weight_mask()
            vector = np.asarray(vector, dtype=float)
            loss += p.overfit * float(np.sum(vector[mask] ** 2))
            if lossprime:
                total["gradient"] = total["gradient"] + \
                    2.0 * p.overfit * np.where(mask, vector, 0.0)
        total["loss"] = loss
        return total

    def calculate_loss(self, parametervector, lossprime=True):
        """Loss, gradient and residuals, with no logging or convergence
        check.

        Returns
        -------
        dict
            As :meth:`get_loss`, plus ``energy_rmse``, ``force_rmse``.
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
        n = max(total["n_images"], 1e-300)
        return {"loss": total["loss"],
                "dloss_dparameters": (total["gradient"] if lossprime
                                      else np.zeros(len(vector))),
                "energy_loss": total["energy_loss"],
                "force_loss": total["force_loss"],
                "energy_maxresid": total["energy_maxresid"],
                "force_maxresid": total["force_maxresid"],
                "energy_rmse": float(np.sqrt(total["energy_loss"] / n)),
                "force_rmse": float(np.sqrt(total["force_loss"] / n))}

    def get_loss(self, parametervector, lossprime=True):
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
        if self._progress is not None:
            self._progress.update(self._step, loss=result["loss"],
                                  energy_rmse=result["energy_rmse"],
                                  **({"force_rmse": result["force_rmse"]}
                                     if self.train_forces else {}))
        if self.raise_ConvergenceOccurred:
            if converged:
                self._model.vector = parametervector
                self._close_progress()
                raise ConvergenceOccurred()
            maxiter = self.parameters.maxiter
            if maxiter is not None and self._step >= maxiter:
                self._close_progress()
                raise MaxIterationsReached(
                    "no convergence after %i loss evaluations" % self._step)
        return {key: result[key] for key in
                ("loss", "dloss_dparameters", "energy_loss", "force_loss",
                 "energy_maxresid", "force_maxresid")}

    def check_convergence(self, result):
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
                           ("force_maxresid", result["force_maxresid"])):
            if key.startswith("force") and not self.train_forces:
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
    def best_vector(self):
        """The parameters of the lowest loss evaluated so far (or None)."""
        return self._best[1]
