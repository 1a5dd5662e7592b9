"""Shares of a job that workers keep for many calls (training).

A :class:`PersistentJob` (made by :meth:`amp.parallel.WorkerPool.persistent`,
re-exported from :mod:`amp.parallel`) gives each share to one worker once;
each call then sends only the method and its arguments, and results come
back by share so that sums do not depend on the workers. A failed worker's
shares move to the least loaded survivors.
"""

import collections
import secrets

from . import wire as _wire
from .launch import WorkerError
from .worker import job_name


class PersistentJob:
    """Shares of a job kept by workers for many calls (see
    :meth:`amp.parallel.WorkerPool.persistent`).

    Attributes
    ----------
    owner : dict
        ``{share index: _Peer}``; changes when a worker fails.
    """

    def __init__(self, pool, job, shares, setup=None, peers=None):
        self.pool, self.name = pool, job_name(job)
        self.shares, self.setup = list(shares), setup
        self.job_id = secrets.token_hex(8)
        alive = pool.alive() if peers is None else \
            [peer for peer in peers if peer.alive]
        if not alive:
            raise WorkerError("no worker left: %s" % "; ".join(pool.failures))
        self.owner = {index: alive[index % len(alive)]
                      for index in range(len(self.shares))}
        self._pending = None
        self._run(self._send([self._init(index) for index in self.owner]))

    def _init(self, index):
        return (self.owner[index], {
            "subject": "init", "job": self.name, "job_id": self.job_id,
            "share": index}, {"setup": self.setup,
                              "share": self.shares[index]}, ("init", [index]))

    def _move(self, indices):
        """Give shares of a failed worker to the least loaded survivors."""
        for index in indices:
            load = collections.Counter(self.owner[i] for i in self.owner
                                       if self.owner[i].alive)
            self.owner[index] = min(self.pool.alive(),
                                    key=lambda peer: (load[peer], peer.id))

    def _send(self, requests):
        pending = {}
        for peer, head, data, context in requests:
            self.pool._request(peer, pending, head, data, context)
        return pending

    def _run(self, pending):
        pool, results = self.pool, {}
        while pending:
            for (kind, _), data in pool._answers(pending):
                if kind == "call":
                    results.update({int(k): v for k, v in data.items()})
            for _, (kind, indices), _ in pool._check_failures(pending):
                self._move(indices)
                retry = [self._init(index) for index in indices]
                if kind == "call":
                    retry += self._calls(indices)
                for peer, head, data, context in retry:
                    pool._request(peer, pending, head, data, context)
        return results

    def _calls(self, indices):
        by_peer = collections.defaultdict(list)
        for index in indices:
            by_peer[self.owner[index]].append(index)
        return [(peer, {"subject": "call", "job_id": self.job_id,
                        "method": self._method, "shares": owned},
                 self._args, ("call", owned))
                for peer, owned in by_peer.items()]

    def call(self, method, args=None):
        """Call ``method(args)`` on every share; return results by share.

        Returns
        -------
        list
            ``results[i]`` from share ``i``, whichever worker holds it, so
            sums taken in this order do not depend on the workers.
        """
        self.submit(method, args)
        return self.collect()

    def submit(self, method, args=None):
        """Send ``method(args)`` to every share and return at once; the
        caller may compute meanwhile, then :meth:`collect` the results."""
        if self._pending is not None:
            raise RuntimeError("collect() the previous call first")
        self._method, self._args = method, args
        self._pending = self._send(self._calls(range(len(self.shares))))

    def collect(self):
        """The results of the last :meth:`submit`, by share (as
        :meth:`call`)."""
        pending, self._pending = self._pending, None
        if pending is None:
            raise RuntimeError("nothing submitted")
        results = self._run(pending)
        return [results[index] for index in range(len(self.shares))]

    def close(self):
        """Let the workers forget this job's shares."""
        for peer in set(self.owner.values()):
            if peer.alive and not self.pool._closed:
                self.pool._send(peer, _wire.encode(
                    {"subject": "drop", "job_id": self.job_id}))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
