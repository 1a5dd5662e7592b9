"""Getting workers the way Amp's code asks for them.

:func:`parallel_settings` is the one place where Amp's ``cores`` and
``envcommand`` become workers: a :class:`~amp.parallel.master.WorkerPool`
whose workers start when first needed, the ranks of an MPI job
(:class:`~amp.parallel.mpi.MPIContext`, for ``cores='mpi'``), or None
(serial). From there down only that value travels. :func:`pool_for` gives the same for code
that also accepts Amp's ``parallel`` dict; :func:`compute_in_workers`,
:func:`fingerprint_job` and :func:`local_only` use a pool; Amp's names
:class:`MessageDictionary` and :func:`setup_parallel` are kept.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterable, Iterator

from .hosts import assign_cores
from .launch import is_local
from .master import WorkerPool
from .mpi import is_mpi, parallel_context
from .worker import Fingerprints


class MessageDictionary:
    """Standard form of a message from process ``process_id`` (Amp's).

    Calling it with a subject (and optional data) gives
    ``{'id': process_id, 'subject': subject, 'data': data}``.
    """

    def __init__(self, process_id: Any) -> None:
        self.process_id = process_id

    def __call__(self, subject: str, data: Any = None) -> dict[str, Any]:
        return {"id": self.process_id, "subject": subject, "data": data}


def _asks_for_workers(hosts):
    """True when ``{host: count}`` asks for more than this process: more
    than one core, or any other host."""
    return sum(hosts.values()) > 1 or not all(map(is_local, hosts))


def parallel_settings(cores: int | str | dict[str, int] | None = None,
                      envcommand: str | None = None,
                      log: Callable[..., Any] | None = None,
                      **options: Any) -> Any:
    """Amp's ``cores`` and ``envcommand`` as a pool of workers, the ranks
    of an MPI job, or None.

    The one place they are resolved (:func:`assign_cores`: None reads the
    batch system or this machine's CPUs; ``'mpi'``:
    :func:`amp.parallel.mpi.parallel_context`).

    Parameters
    ----------
    cores : int, dict, 'mpi' or None
        As :class:`amp.Amp`'s ``cores``. None in a process started by an
        MPI launcher with more than one rank is refused (give ``'mpi'``).
    envcommand : str, optional
        Run in each remote session before its workers start.
    log : callable, optional
    **options
        :class:`WorkerPool` options (``timeout``, ``reassign``, ...).

    Returns
    -------
    WorkerPool, MPIContext or None
        A pool whose workers start when first needed (work found too
        small for them never starts them); the caller closes it. The MPI
        context for ``'mpi'`` with more than one rank. None when the
        settings ask for one core on this machine (or one MPI rank).
    """
    context = parallel_context(cores, log)  # refuses None in an MPI job
    if cores == "mpi":
        return context
    if isinstance(cores, str):
        raise ValueError("cores=%r: give a number of workers, a dict "
                         "{host: count}, None, or 'mpi'" % (cores,))
    hosts = assign_cores(cores, log)
    if not _asks_for_workers(hosts):
        return None
    return WorkerPool(cores=hosts, envcommand=envcommand, log=log, lazy=True,
                      **options)


def wants_parallel(parallel: Any) -> bool:
    """True when ``parallel`` asks for workers (a pool, an MPI context, or
    Amp's dict with more than one core or another host)."""
    if isinstance(parallel, WorkerPool) or is_mpi(parallel):
        return True
    if not parallel:
        return False
    if parallel.get("cores", 1) == "mpi":
        return parallel_context("mpi") is not None
    return _asks_for_workers(assign_cores(parallel.get("cores", 1)))


def setup_parallel(parallel: dict[str, Any] | None,
                   workercommand: str | None = None,
                   log: Callable[..., Any] | None = None,
                   **options: Any) -> WorkerPool:
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
def pool_for(parallel: Any, log: Callable[..., Any] | None = None
             ) -> Iterator[WorkerPool | None]:
    """Context: a pool of workers for ``parallel``, or None.

    Parameters
    ----------
    parallel : WorkerPool, MPIContext, dict or None
        A pool or MPI context is yielded as it is (a pool is left
        running); None yields None; Amp's ``{'cores': ...,
        'envcommand': ...}`` gives :func:`parallel_settings`' value: a
        pool is stopped when the block ends, however it ends; an MPI
        context guards the block: an exception on any rank is printed
        once and ends the job (:meth:`MPIContext.guard`), since the other
        ranks would wait for it forever.
    log : callable, optional
    """
    if parallel is None or isinstance(parallel, WorkerPool) or \
            is_mpi(parallel):
        yield parallel
        return
    pool = parallel_settings(parallel.get("cores", 1),
                             parallel.get("envcommand"), log)
    if is_mpi(pool):
        with pool.guard(log):
            yield pool
        return
    try:
        yield pool
    finally:
        if pool is not None:
            pool.close()


def compute_in_workers(parallel: Any, job: Any, items: Iterable[Any],
                       setup: Any = None,
                       log: Callable[..., Any] | None = None
                       ) -> Iterator[Any]:
    """Yield ``(key, value)`` for every item, computed by workers.

    Parameters
    ----------
    parallel : WorkerPool or dict
        A running pool (kept running), or Amp's ``parallel`` dict: a pool
        is started for this call and stopped when the generator finishes,
        fails or is closed (one core: computed by one worker).
    job, items, setup
        As :meth:`WorkerPool.map`.
    log : callable, optional
    """
    if isinstance(parallel, WorkerPool):
        yield from parallel.map(job, items, setup)
        return
    with setup_parallel(parallel, log=log) as pool:
        yield from pool.map(job, items, setup)


def fingerprint_job(descriptor: Any, derivatives: bool = False,
                    parts: tuple[str, ...] = ("values", "derivatives"),
                    dblabel: str | None = None) -> tuple[Any, dict[str, Any]]:
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


def local_only(parallel: Any) -> bool:
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
