"""Getting workers the way Amp's code asks for them.

Amp's names (:class:`MessageDictionary`, :func:`setup_parallel`) and the
library's own entry points: :func:`wants_parallel` (does a ``parallel``
setting ask for workers?), :func:`pool_for` (a running pool for the
length of a ``with`` block, or None), :func:`compute_in_workers` (a map
job from a ``parallel`` dict), :func:`fingerprint_job` and
:func:`local_only`. The pool itself is :class:`amp.parallel.master.WorkerPool`.
"""

import contextlib

from .hosts import assign_cores
from .launch import is_local
from .master import WorkerPool
from .worker import Fingerprints


class MessageDictionary:
    """Standard form of a message from process ``process_id`` (Amp's).

    Calling it with a subject (and optional data) gives
    ``{'id': process_id, 'subject': subject, 'data': data}``.
    """

    def __init__(self, process_id):
        self.process_id = process_id

    def __call__(self, subject, data=None):
        return {"id": self.process_id, "subject": subject, "data": data}


def wants_parallel(parallel):
    """True when ``parallel`` asks for workers (a pool, or >1 core)."""
    if isinstance(parallel, WorkerPool):
        return True
    if not parallel:
        return False
    cores = parallel.get("cores", 1)
    if cores is None:
        cores = assign_cores(None)
    if isinstance(cores, dict):
        return sum(cores.values()) > 1 or not all(map(is_local, cores))
    return int(cores) > 1


def setup_parallel(parallel, workercommand=None, log=None, **options):
    """Start the workers Amp's ``parallel`` dict asks for (Amp's function).

    Parameters
    ----------
    parallel : dict
        ``{'cores': int, dict or None, 'envcommand': str or None}``, plus
        any :class:`WorkerPool` option (``timeout``, ``reassign``, ...).
    workercommand : str or list, optional
        How to run ``python -m amp.parallel`` on the workers' hosts.
    log : callable, optional

    Returns
    -------
    WorkerPool
        Unpacks as Amp's ``server, connections, n_pids``; use it as a
        context manager, or call ``close()``, to stop the workers.
    """
    settings = {key: value for key, value in (parallel or {}).items()
                if key not in ("cores", "envcommand")}
    settings.update(options)
    return WorkerPool(cores=(parallel or {}).get("cores"),
                      envcommand=(parallel or {}).get("envcommand"),
                      log=log, workercommand=workercommand, **settings)


@contextlib.contextmanager
def pool_for(parallel, log=None):
    """Context: a running :class:`WorkerPool` for ``parallel``, or None.

    Parameters
    ----------
    parallel : WorkerPool, dict or None
        A pool is yielded as it is and left running; Amp's ``parallel``
        dict asking for more than one core gives a pool whose workers
        start when first needed (``lazy=True``: work found too small for
        workers never starts them) and are stopped when the block ends,
        however it ends; otherwise None (serial).
    log : callable, optional
    """
    if isinstance(parallel, WorkerPool):
        yield parallel
    elif wants_parallel(parallel):
        with setup_parallel(parallel, log=log, lazy=True) as pool:
            yield pool
    else:
        yield None


def compute_in_workers(parallel, job, items, setup=None, log=None):
    """Yield ``(key, value)`` for every item, computed by workers.

    Parameters
    ----------
    parallel : WorkerPool or dict
        A running pool (kept running), or Amp's ``parallel`` dict: a pool
        is started for this call and stopped when the generator finishes,
        fails or is closed.
    job, items, setup
        As :meth:`WorkerPool.map`.
    log : callable, optional
    """
    if isinstance(parallel, WorkerPool):
        yield from parallel.map(job, items, setup)
        return
    with setup_parallel(parallel, log=log) as pool:
        yield from pool.map(job, items, setup)


def fingerprint_job(descriptor, derivatives=False,
                    parts=("values", "derivatives"), dblabel=None):
    """Return ``(job, setup)`` computing ``descriptor``'s fingerprints.

    Each worker rebuilds the descriptor from ``descriptor.todict()`` and
    returns ``descriptor.compute(atoms, derivatives).todict(parts)`` per
    image; rebuild with ``ImageFingerprints.fromdict(value, value)``.
    With ``dblabel`` (only for workers on this machine, see
    :func:`local_only`) each worker stores them in those databases itself
    and returns ``{'stored': True}``.
    """
    return Fingerprints, {"descriptor": descriptor.todict(),
                          "derivatives": bool(derivatives),
                          "parts": list(parts), "dblabel": dblabel}


def local_only(parallel):
    """True when every worker ``parallel`` has (or would start) runs on
    this machine (so it shares the master's files)."""
    if isinstance(parallel, WorkerPool):
        if parallel.started:
            return all(is_local(peer.host) for peer in parallel.alive())
        return all(map(is_local, parallel.hosts))
    cores = (parallel or {}).get("cores", 1)
    if isinstance(cores, dict):
        return all(map(is_local, cores))
    return True
