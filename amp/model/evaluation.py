"""Where the loss function evaluates its batches: in this process, by ZMQ
workers each holding a share of the images (:mod:`amp.model._shares`), or
by the ranks of an MPI job (:mod:`amp.model._ranks`), and the held-out
images alike.

:class:`Evaluation` is a mixin of :class:`amp.model.LossFunction`; the
partial sums every way gives are added by :func:`combine_partials` in
share order, so the result does not depend on the way.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    from .lossfunction import LossFunction


class Evaluation:
    """Mixin of :class:`LossFunction` (see the module)."""

    @contextlib.contextmanager
    def evaluator(self, parallel: Any = None) -> Iterator[LossFunction]:
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
        from ._shares import WorkerBatches, share_count

        parallel = self._parallel if parallel is None else parallel
        with pool_for(parallel, self.log) as pool:
            if is_mpi(pool) and self._workers is None:
                # The ranks of an MPI job: each holds its share, always
                # (amp.model._ranks), of the held-out images too.
                self._workers = self._rank_batches(pool)
                if self.validation is not None:
                    self.validation.workers = self._rank_batches(
                        pool, self.validation.images)
                try:
                    yield self
                finally:
                    self.close()
                return
            if pool is not None and self.streaming is not None:
                self.log("Loss function: streamed chunks are evaluated in "
                         "this process (workers not used).")
            if self._workers is not None or pool is None or \
                    self.use_workers is False or self.streaming is not None:
                try:
                    yield self
                finally:
                    self._close_progress()
                return
            setup = self._share_setup()
            # The shares' batches are built here, before the workers are
            # asked for; with workers not running yet, the serial batch
            # alone first, and the shares only if the workers are to start
            # (a fit that stays serial then costs no split and merge).
            n_shares = share_count(pool)
            serial_first = not (pool.started or n_shares < 2
                                or self.use_workers is not None)
            self.split_images(1 if serial_first else n_shares)
            batches, self._batches = self.batches(), None
            self._workers = WorkerBatches(
                pool, batches, setup, log=self.log,
                use_workers=self.use_workers,
                evaluations=self.parameters.maxiter, n_shares=n_shares)
            if self._workers.wants_shares:
                self.split_images(n_shares)
                batches, self._batches = self.batches(), None
                self._workers.give_shares(batches)
            if self._workers.job is not None:  # else serial, logged there
                self.log("Loss function: %i images in %i shares held by "
                         "workers (one by the master)."
                         % (len(self._training_images()),
                            self._workers.n_shares))
            if self.validation is not None:
                # Spread as the training images are: on the workers when
                # they hold training shares, else in the master.
                self.validation.workers = WorkerBatches(
                    pool, self.validation.make_batches(
                        self, share_count(pool)),
                    setup, use_workers=self._workers.job is not None)
            try:
                yield self
            finally:
                self.close()

    def _share_setup(self):
        """What a share's :class:`~amp.model._shares.LossShare` is built
        from (besides its batch)."""
        p = self.parameters
        setup = {"model": self._model.todict(),
                 "energy_coefficient": p.energy_coefficient,
                 "force_coefficient": p.force_coefficient
                 if self.train_forces else None}
        if self.train_stress:
            setup["stress_coefficient"] = p.stress_coefficient
        return setup

    def _rank_batches(self, context, images=None):
        """This MPI rank's share (:class:`amp.model._ranks.RankBatches`) of
        the training images (or of ``images``, the held-out ones); every
        rank starts from rank 0's parameters."""
        from ._ranks import RankBatches

        which = "images" if images is None else "held-out images"
        images = self._training_images() if images is None else images
        keys = context.share(images)
        self._model.vector = context.broadcast_array(self._model.vector)
        position = {key: index for index, key in enumerate(images)}
        batch = self._make_batches(
            images, [[position[key] for key in keys]],
            self._image_weights(images))[0] if keys else None
        atoms = [sum(len(images[k]) for k in share)
                 for share in context.shares(images)]
        self.log("Loss function: %i %s in %i shares held by MPI ranks "
                 "(%i to %i atoms per rank)." % (len(images), which,
                                                  context.size, min(atoms),
                                                  max(atoms)))
        return RankBatches(context, batch, self._share_setup(),
                           len(self._model.vector))

    def _partials(self, vector, lossprime, force_coefficient):
        """Partial sums of every batch, from the workers inside
        :meth:`evaluator`."""
        if self._workers is not None:
            return self._workers.partials(vector, lossprime)
        return self._serial_partials(self.batches(), lossprime,
                                     force_coefficient)

    def _serial_partials(self, batches, lossprime, force_coefficient):
        model, p = self._model, self.parameters
        networks, raveler = model.element_networks(), model.raveler
        stress = {"stress_coefficient": p.stress_coefficient} \
            if self.train_stress else {}
        return [batch.partial(networks, lossprime, p.energy_coefficient,
                              force_coefficient, raveler, **stress)
                for batch in batches]
