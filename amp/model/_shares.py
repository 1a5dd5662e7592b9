"""The loss function's images shared between the master and its workers.

The master builds one :class:`~amp.model.batch.TrainingBatch` per share
and computes share 0 itself; each other share goes to a worker once, as
arrays, and the worker then answers every parameter vector with the
partial sums of its batch (:class:`LossShare`). The master sends the
vector, computes its own share while the workers compute theirs, and adds
the partial sums with :func:`amp.model.combine_partials` in share order.
The batches are the ones the serial path would evaluate one after the
other, all shares run the same code (:class:`LossShare`), so the result is
the serial one up to the order of a few additions.

The master takes the place of one local worker (which then holds nothing
and waits): on a machine with ``cores`` cores, ``cores`` processes
compute, the master's share needs no message, and the images are held
once, not once by the master and again by the workers.

Whether workers pay off is measured at set-up
(:attr:`WorkerBatches.payoff_check`): a few evaluations of every share in
the master against a few with the workers. When the workers are not
faster by :attr:`WorkerBatches.margin`, they drop their shares and the
master evaluates everything, which is logged. Workers not started yet (a
lazy pool, as :class:`amp.Amp` uses) are not started at all for a loss
that takes under :attr:`WorkerBatches.start_from_seconds` serially.
"""

import time

from ..parallel.launch import is_local
from ..parallel.worker import from_importname, register_job
from .batch import TrainingBatch


@register_job
class LossShare:
    """Persistent job: one share of the training images.

    ``setup``: ``{'model': model.todict(), 'energy_coefficient': float,
    'force_coefficient': float or None}``; ``share``:
    :meth:`TrainingBatch.todict` (or, in the master, the batch itself).
    ``partial({'vector': array, 'lossprime': bool})`` returns
    :meth:`TrainingBatch.partial`'s dict.
    """

    methods = ("partial",)

    def __init__(self, setup, share):
        self.model = from_importname(setup["model"])
        self.energy_coefficient = float(setup["energy_coefficient"])
        force = setup["force_coefficient"]
        self.force_coefficient = None if force is None else float(force)
        self.batch = share if isinstance(share, TrainingBatch) else \
            TrainingBatch.fromdict(share)

    def partial(self, args):
        self.model.vector = args["vector"]
        return self.batch.partial(
            self.model.element_networks(), bool(args["lossprime"]),
            self.energy_coefficient, self.force_coefficient,
            self.model.raveler)


def _fastest(evaluate, repeats):
    """Seconds of the fastest of ``repeats`` calls (after one warm-up)."""
    evaluate()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        evaluate()
        best = min(best, time.perf_counter() - start)
    return best


class WorkerBatches:
    """Master side: the shares of a pool's workers and the master's own.

    Parameters
    ----------
    parallel : WorkerPool or dict
        A running pool (left running by :meth:`close`) or Amp's
        ``parallel`` dict (a pool is started, and stopped by
        :meth:`close`).
    make_batches : callable
        ``make_batches(n)`` returns the batches of ``n`` shares.
    setup : dict
        :class:`LossShare`'s setup.
    log : callable, optional

    Attributes
    ----------
    n_shares : int
        Shares the images were split into.
    job : PersistentJob or None
        The workers' shares (None when evaluating serially).
    timings : dict
        ``serial`` and ``workers``: seconds per evaluation measured at
        set-up (empty when not measured).
    """

    #: Measure at set-up whether the workers are faster than the master
    #: alone, and evaluate serially when they are not.
    payoff_check = True
    #: Workers are kept only when an evaluation with them takes at most
    #: this fraction of a serial one.
    margin = 0.9
    #: Timed evaluations per way (after one warm-up each; with the
    #: workers, interleaved with as many serial ones).
    repeats = 3
    #: Workers that are not running yet are started only for a loss whose
    #: serial evaluation takes at least this long (with the master taking
    #: one share, an evaluation saves less than half of it, and a round
    #: trip costs about half a millisecond).
    start_from_seconds = 0.002
    #: Evaluating serially, shares are merged into one batch only for a
    #: loss faster than this (see :meth:`_merge`).
    merge_below_seconds = 0.02

    def __init__(self, parallel, make_batches, setup, log=None):
        from ..parallel import WorkerPool, setup_parallel

        self.job, self.timings = None, {}
        self.log = log if log is not None else (lambda *a, **k: None)
        self._own_pool = not isinstance(parallel, WorkerPool)
        self.pool = (setup_parallel(parallel, log=log) if self._own_pool
                     else parallel)
        try:
            self._start(make_batches, setup)
        except BaseException:
            self.close()
            raise

    def _workers(self):
        """The live workers to give shares to: all but one local worker,
        whose place the master takes (all of them when none is local: the
        master's core is free then)."""
        alive = self.pool.alive()
        local = [peer for peer in alive if is_local(peer.host)]
        return [peer for peer in alive if peer is not local[-1]] \
            if local else alive

    def _start(self, make_batches, setup):
        pool = self.pool
        if pool.started:
            n_workers = len(self._workers())
        else:  # planned from the hosts, without starting the workers
            local = sum(count for host, count in pool.hosts.items()
                        if is_local(host))
            n_workers = pool.n_pids - (1 if local else 0)
        batches = make_batches(n_workers + 1)
        self.n_shares = len(batches)
        self.local = [LossShare(setup, batch) for batch in batches]
        vector = self.local[0].model.vector
        if self.payoff_check:
            self.timings["serial"] = _fastest(
                lambda: self._serial(vector, True), self.repeats)
            if not pool.started and \
                    self.timings["serial"] < self.start_from_seconds:
                self.log("Loss function: %.2f ms per evaluation serially, "
                         "too little for workers (from %.1f ms); evaluating"
                         " serially." % (1e3 * self.timings["serial"],
                                         1e3 * self.start_from_seconds))
                self._merge()
                return
        workers = self._workers() if n_workers else []
        if len(batches) > 1 and workers:
            self.job = self.pool.persistent(
                LossShare, [batch.todict() for batch in batches[1:]], setup,
                peers=workers)
        if self.job is None:
            self._merge()
            return
        if self.payoff_check:
            # Interleaved, so that both ways see the same load on the
            # host; the fastest of each (the least disturbed).
            self._parallel(vector, True)  # warm-up
            serial, workers_time = [self.timings["serial"]], []
            for _ in range(self.repeats):
                for way, times in ((self._parallel, workers_time),
                                   (self._serial, serial)):
                    start = time.perf_counter()
                    way(vector, True)
                    times.append(time.perf_counter() - start)
            self.timings["serial"] = min(serial)
            self.timings["workers"] = min(workers_time)
            if self.timings["workers"] > self.margin * \
                    self.timings["serial"]:
                self.log("Loss function: workers do not pay off (%.2f ms "
                         "per evaluation with %d workers, %.2f ms serially);"
                         " evaluating serially."
                         % (1e3 * self.timings["workers"], len(workers),
                            1e3 * self.timings["serial"]))
                self.job.close()
                self.job = None
                self._merge()
                return
            self.log("Loss function: %.2f ms per evaluation with %d workers"
                     " and the master, %.2f ms serially."
                     % (1e3 * self.timings["workers"], len(workers),
                        1e3 * self.timings["serial"]))
        # The workers hold their shares now; the master keeps only its own.
        del self.local[1:]

    def _merge(self):
        """Serial from now on. When a share's fixed cost (about 0.2 ms)
        matters, the shares become one batch (the serial path's own);
        for a slower loss the copy is not worth it (0.6 s for 120 MB of
        force data, against under 1 % per evaluation)."""
        if len(self.local) > 1 and \
                self.timings.get("serial", 0.0) < self.merge_below_seconds:
            merged = TrainingBatch.concatenate([share.batch
                                                for share in self.local])
            self.local[0].batch = merged
            del self.local[1:]

    def _serial(self, vector, lossprime):
        args = {"vector": vector, "lossprime": bool(lossprime)}
        return [share.partial(args) for share in self.local]

    def _parallel(self, vector, lossprime):
        args = {"vector": vector, "lossprime": bool(lossprime)}
        self.job.submit("partial", args)
        try:
            mine = self.local[0].partial(args)
        finally:
            theirs = self.job.collect()
        return [mine] + theirs

    def partials(self, vector, lossprime):
        """Partial sums of every share, in share order."""
        if self.job is None:
            return self._serial(vector, lossprime)
        return self._parallel(vector, lossprime)

    def close(self):
        """Let the workers drop their shares; stop a pool started here."""
        if self.job is not None:
            self.job.close()
            self.job = None
        if self._own_pool and self.pool is not None:
            self.pool.close()
            self.pool = None
