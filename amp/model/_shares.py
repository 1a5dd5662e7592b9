"""The loss function's images held by workers for a whole fit.

The master builds one :class:`~amp.model._network.TrainingBatch` per worker
and sends it once, as arrays; each worker then answers every parameter
vector with the partial sums of its batch (:class:`LossShare`), which the
master adds with :func:`amp.model.combine_partials` in share order. The
batches are the ones the serial path would evaluate one after the other,
so the result is the serial one up to the order of a few additions.
"""

from ..parallel.worker import from_importname, register_job
from ._network import TrainingBatch


@register_job
class LossShare:
    """Persistent job: one share of the training images.

    ``setup``: ``{'model': model.todict(), 'energy_coefficient': float,
    'force_coefficient': float or None}``; ``share``:
    :meth:`TrainingBatch.todict`. ``partial({'vector': array, 'lossprime':
    bool})`` returns :meth:`TrainingBatch.partial`'s dict.
    """

    methods = ("partial",)

    def __init__(self, setup, share):
        self.model = from_importname(setup["model"])
        self.energy_coefficient = float(setup["energy_coefficient"])
        force = setup["force_coefficient"]
        self.force_coefficient = None if force is None else float(force)
        self.batch = TrainingBatch.fromdict(share)

    def partial(self, args):
        self.model.vector = args["vector"]
        return self.batch.partial(
            self.model.element_networks(), bool(args["lossprime"]),
            self.energy_coefficient, self.force_coefficient,
            self.model.raveler)


class WorkerBatches:
    """Master side: the batches shipped to a pool's workers.

    Parameters
    ----------
    parallel : WorkerPool or dict
        A running pool (left running by :meth:`close`) or Amp's
        ``parallel`` dict (a pool is started, and stopped by
        :meth:`close`).
    make_batches : callable
        ``make_batches(n)`` returns the batches for ``n`` live workers, one
        per share; share ``i`` goes to worker ``i % n``.
    setup : dict
        :class:`LossShare`'s setup.
    log : callable, optional
    """

    def __init__(self, parallel, make_batches, setup, log=None):
        from ..parallel import WorkerPool, setup_parallel

        self.job = None
        self._own_pool = not isinstance(parallel, WorkerPool)
        self.pool = (setup_parallel(parallel, log=log) if self._own_pool
                     else parallel)
        try:
            batches = make_batches(len(self.pool.alive()))
            self.n_shares = len(batches)
            self.job = self.pool.persistent(
                LossShare, [batch.todict() for batch in batches], setup)
        except BaseException:
            self.close()
            raise

    def partials(self, vector, lossprime):
        """Partial sums of every share, in share order."""
        return self.job.call("partial", {"vector": vector,
                                         "lossprime": bool(lossprime)})

    def close(self):
        """Let the workers drop their shares; stop a pool started here."""
        if self.job is not None:
            self.job.close()
            self.job = None
        if self._own_pool and self.pool is not None:
            self.pool.close()
            self.pool = None
