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

Whether workers pay off is decided at set-up (:func:`decide`), from the
serial time of a few evaluations first. Workers not started yet (a lazy
pool, as :class:`amp.Amp` uses) are not started for a loss that takes
under :data:`START_WORKERS_FROM` seconds serially, nor when the time they
would save over the fit's evaluations (at most ``maxiter``; predicted
with :func:`predicted_with_workers`) is less than starting them costs
(:data:`START_COST`). Running workers whose speed on the fingerprints
(:attr:`amp.parallel.WorkerPool.efficiency`) predicts no gain are not
given shares. Otherwise the workers get their shares and a few
evaluations with them are timed against serial ones, interleaved; they
are kept only when they take at most :data:`WORKERS_MARGIN` of the serial
time. Evaluating serially, the shares become one batch for a loss under
:data:`MERGE_BELOW` seconds. Each choice is logged.
"""

import time

from ..parallel.launch import is_local
from ..importing import from_importname
from ..parallel.worker import register_job
from .batch import TrainingBatch


@register_job
class LossShare:
    """Persistent job: one share of the training images.

    ``setup``: ``{'model': model.todict(), 'energy_coefficient': float,
    'force_coefficient': float or None}`` and, when stress is trained,
    ``'stress_coefficient': float``; ``share``:
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
        stress = setup.get("stress_coefficient")
        self.stress = {} if stress is None else \
            {"stress_coefficient": float(stress)}
        self.batch = share if isinstance(share, TrainingBatch) else \
            TrainingBatch.fromdict(share)

    def partial(self, args):
        self.model.vector = args["vector"]
        return self.batch.partial(
            self.model.element_networks(), bool(args["lossprime"]),
            self.energy_coefficient, self.force_coefficient,
            self.model.raveler, **self.stress)


#: Workers not running yet are started only for a loss whose serial
#: evaluation takes at least this long, in seconds (with the master taking
#: one share, an evaluation saves less than half of it, and a round trip
#: costs about half a millisecond).
START_WORKERS_FROM = 0.002
#: Workers are kept only when an evaluation with them takes at most this
#: fraction of a serial one (below it the gain is within the noise of the
#: set-up measurement).
WORKERS_MARGIN = 0.9
#: Seconds an evaluation with workers costs besides its arithmetic (the
#: messages both ways and the waits between the processes: 0.3-0.7 ms
#: measured on an idle 2-core machine, milliseconds when other programs
#: load it); the overhead of :func:`predicted_with_workers`.
ROUND_TRIP = 0.0005
#: Seconds that starting workers for the loss costs: starting 2 local
#: workers takes 0.26 s on an idle 2-core machine and up to 0.7 s on a
#: loaded one, then the shares are sent and the set-up check runs. Workers
#: not running yet are started only when the predicted saving over the
#: fit's evaluations is at least this.
START_COST = 0.5
#: Evaluating serially, shares are merged into one batch for a loss faster
#: than this, in seconds (a share costs about 0.2 ms per evaluation; for a
#: slower loss the copy is not worth it: 0.6 s for 120 MB of force data,
#: against under 1 % per evaluation).
MERGE_BELOW = 0.02
#: Timed evaluations per way at set-up (after one warm-up each).
TIMED_EVALUATIONS = 3


def predicted_with_workers(serial_s, n_shares, efficiency=None):
    """Seconds per evaluation predicted with the workers: the slowest
    share, the master's (``serial_s / n_shares``) or a worker's at the
    speed the workers showed (``efficiency`` times the master's; 1 when
    not known), plus :data:`ROUND_TRIP`."""
    speed = 1.0 if efficiency is None else min(1.0, max(efficiency, 1e-3))
    return serial_s / (n_shares * speed) + ROUND_TRIP


def decide(serial_s, workers_s=None, started=False, n_shares=2,
           evaluations=None, efficiency=None):
    """Whether the loss is evaluated with workers, from measured times.

    Parameters
    ----------
    serial_s : float
        Seconds per evaluation in the master alone.
    workers_s : float, optional
        Seconds per evaluation with the workers; None before they have
        been tried.
    started : bool
        Whether the pool's workers are running already.
    n_shares : int
        Shares the images are split into (the master's included).
    evaluations : int, optional
        The most evaluations the fit will make (its ``maxiter``): workers
        not running yet are started only when they would save at least
        :data:`START_COST` over these.
    efficiency : float, optional
        The workers' speed relative to the master's, as measured on the
        fingerprints (:attr:`amp.parallel.WorkerPool.efficiency`).

    Returns
    -------
    bool
        Before the workers are tried: whether to try them (they run
        already, or the loss takes at least :data:`START_WORKERS_FROM` and
        they would save more than starting them costs), unless the speed
        they showed predicts more than :data:`WORKERS_MARGIN` of the
        serial time. After: whether to keep them (at most
        :data:`WORKERS_MARGIN` of the serial time).
    """
    if workers_s is not None:
        return workers_s <= WORKERS_MARGIN * serial_s
    if efficiency is not None and predicted_with_workers(
            serial_s, n_shares, efficiency) > WORKERS_MARGIN * serial_s:
        return False
    if started:
        return True
    if serial_s < START_WORKERS_FROM:
        return False
    if evaluations is not None:
        saving = serial_s - predicted_with_workers(serial_s, n_shares)
        return evaluations * saving >= START_COST
    return True


def worth_merging(serial_s):
    """Whether serial shares should become one batch (see
    :data:`MERGE_BELOW`); None (not measured) counts as fast."""
    return serial_s is None or serial_s < MERGE_BELOW


def _fastest(evaluate, repeats):
    """Seconds of the fastest of ``repeats`` calls (after one warm-up)."""
    evaluate()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        evaluate()
        best = min(best, time.perf_counter() - start)
    return best


def _share_peers(pool):
    """The live workers to give shares to: all but one local worker, whose
    place the master takes (all of them when none is local: the master's
    core is free then)."""
    alive = pool.alive()
    local = [peer for peer in alive if is_local(peer.host)]
    return [peer for peer in alive if peer is not local[-1]] \
        if local else alive


def share_count(pool):
    """How many shares the images are split into for ``pool``: one per
    worker that gets one, plus the master's (planned from the hosts when
    the workers are not running yet, without starting them)."""
    if pool.started:
        return len(_share_peers(pool)) + 1
    local = sum(count for host, count in pool.hosts.items()
                if is_local(host))
    return pool.n_pids - (1 if local else 0) + 1


class WorkerBatches:
    """Master side: the shares of a pool's workers and the master's own.

    Parameters
    ----------
    pool : WorkerPool
        Left running by :meth:`close`.
    batches : list of TrainingBatch
        One per share (:func:`share_count` of them), the first the
        master's; or the serial batch alone (then :attr:`wants_shares`
        says whether the shares are wanted, see :meth:`give_shares`).
    setup : dict
        :class:`LossShare`'s setup.
    log : callable, optional
    use_workers : bool or None
        None: measured at set-up (:func:`decide`); True: the workers
        compute their shares whatever the measurement; False: serial.
    evaluations : int, optional
        The most evaluations the fit will make (see :func:`decide`).
    n_shares : int, optional
        The number of shares (:func:`share_count`); by default
        ``len(batches)``.

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

    def __init__(self, pool, batches, setup, log=None, use_workers=None,
                 evaluations=None, n_shares=None):
        self.pool, self.job, self.timings = pool, None, {}
        self.evaluations = evaluations
        self.log = log if log is not None else (lambda *a, **k: None)
        self.n_shares = len(batches) if n_shares is None else n_shares
        self._setup, self._use_workers = setup, use_workers
        self.local = [LossShare(setup, batch) for batch in batches]
        #: True when the workers are to start but only the serial batch
        #: was given: the owner builds the shares and calls give_shares.
        self.wants_shares = False
        try:
            wanted = self._choose_workers(use_workers)
            if wanted and len(batches) < self.n_shares:
                self.wants_shares = True
                return
            self._engage(wanted)
        except BaseException:
            self.close()
            raise

    def give_shares(self, batches):
        """The batches of every share, after :attr:`wants_shares`: the
        workers get theirs (or, when they do not pay off, the master keeps
        everything)."""
        self.wants_shares = False
        self.local = [LossShare(self._setup, batch) for batch in batches]
        try:
            self._engage(True)
        except BaseException:
            self.close()
            raise

    def _engage(self, wanted):
        """Give the workers their shares when ``wanted`` (and, measured,
        keep them only when they pay off); otherwise serial."""
        peers = _share_peers(self.pool) if wanted else []
        if peers:
            batches = [share.batch for share in self.local]
            self.job = self.pool.persistent(
                LossShare, [batch.todict() for batch in batches[1:]],
                self._setup, peers=peers)
            if self._use_workers is None and not self._keep_workers():
                self.job.close()
                self.job = None
        if self.job is None:
            self._merge()
        else:  # the workers hold their shares; the master its own
            del self.local[1:]

    def _choose_workers(self, use_workers):
        """Whether to give the workers their shares (starting them if
        need be); logs a serial choice."""
        if use_workers is not None or self.n_shares < 2:
            return bool(use_workers) and self.n_shares > 1
        vector = self.local[0].model.vector
        # Workers not running: a coarse choice (what a start would save),
        # from fewer evaluations.
        serial = _fastest(lambda: self._serial(vector, True),
                          TIMED_EVALUATIONS if self.pool.started else 1)
        self.timings["serial"] = serial
        efficiency = getattr(self.pool, "efficiency", None)
        started = self.pool.started
        if decide(serial, started=started, n_shares=self.n_shares,
                  evaluations=self.evaluations, efficiency=efficiency):
            return True
        predicted = predicted_with_workers(serial, self.n_shares, efficiency)
        if efficiency is not None and \
                predicted > WORKERS_MARGIN * serial:
            self.log("Loss function: %.2f ms per evaluation serially; the "
                     "workers computed the fingerprints at %.2f of this "
                     "process's speed, which predicts %.2f ms with them; "
                     "evaluating serially." % (1e3 * serial, efficiency,
                                                1e3 * predicted))
        elif serial < START_WORKERS_FROM:
            self.log("Loss function: %.2f ms per evaluation serially, too "
                     "little for workers (from %.1f ms); evaluating "
                     "serially." % (1e3 * serial, 1e3 * START_WORKERS_FROM))
        else:
            self.log("Loss function: %.2f ms per evaluation serially, about "
                     "%.2f ms with %d workers: at most %d evaluations would "
                     "save %.2f s, less than starting workers costs (about "
                     "%.1f s); evaluating serially." % (
                         1e3 * serial, 1e3 * predicted, self.n_shares - 1,
                         self.evaluations, self.evaluations * (
                             serial - predicted), START_COST))
        return False

    def _keep_workers(self):
        """Time evaluations with the workers against serial ones and
        :func:`decide`; logs the choice."""
        # Interleaved, so that both ways see the same load on the host;
        # the fastest of each (the least disturbed).
        vector = self.local[0].model.vector
        self._parallel(vector, True)  # warm-up
        serial, workers = [self.timings["serial"]], []
        for _ in range(TIMED_EVALUATIONS):
            for way, times in ((self._parallel, workers),
                               (self._serial, serial)):
                start = time.perf_counter()
                way(vector, True)
                times.append(time.perf_counter() - start)
        self.timings.update(serial=min(serial), workers=min(workers))
        keep = decide(self.timings["serial"], self.timings["workers"])
        if keep:
            self.log("Loss function: %.2f ms per evaluation with %d workers"
                     " and the master, %.2f ms serially."
                     % (1e3 * self.timings["workers"], self.n_shares - 1,
                        1e3 * self.timings["serial"]))
        else:
            self.log("Loss function: workers do not pay off (%.2f ms per "
                     "evaluation with %d workers, %.2f ms serially); "
                     "evaluating serially."
                     % (1e3 * self.timings["workers"], self.n_shares - 1,
                        1e3 * self.timings["serial"]))
        return keep

    def _merge(self):
        """Serial from now on; the shares become one batch (the serial
        path's own) when :func:`worth_merging`."""
        if len(self.local) > 1 and worth_merging(self.timings.get("serial")):
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
        """Let the workers drop their shares (the pool keeps running)."""
        if self.job is not None:
            self.job.close()
            self.job = None
