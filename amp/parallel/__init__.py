"""Parallel fingerprinting and training: a master and its ZMQ workers.

Owns the master side (:mod:`amp.parallel.master`: the worker pool;
:mod:`amp.parallel.api`: :func:`parallel_settings`, the one place Amp's
``cores`` become a pool or None, :func:`pool_for`, Amp's
``setup_parallel`` and the other ways the library asks for workers), the worker process
(:mod:`amp.parallel.worker`, run as ``python -m amp.parallel worker ...``),
the wire format and handshake (:mod:`amp.parallel.wire`), the admission of
connections to the master (:mod:`amp.parallel.gate`), host discovery
(:mod:`amp.parallel.hosts`: ``assign_cores`` and the batch-system
parsers), launching on this host or over SSH (:mod:`amp.parallel.launch`)
the shares workers keep for a whole fit
(:mod:`amp.parallel.persistent`), and training across the ranks of an MPI
job (:mod:`amp.parallel.mpi`: :class:`MPIContext`, for ``cores='mpi'``;
mpi4py is imported only then).

Workers run registered jobs, never the calculator: this package may import
:mod:`amp.store` (array (de)serialisation) and :mod:`amp.importing`, and
must not import :mod:`amp.descriptor`,
:mod:`amp.model` or :class:`amp.Amp` at import time; a job names the class
it builds and the worker resolves it through the allow-list of
:mod:`amp.importing`. Amp's names
(``assign_cores``, ``setup_parallel``, ``start_workers``,
``MessageDictionary``, ``make_sublists``) are also importable from
:mod:`amp.utilities`.
"""

from .hosts import assign_cores, make_sublists
from .launch import WorkerError, start_workers
from .api import (MessageDictionary, compute_in_workers, fingerprint_job,
                  local_only, parallel_settings, pool_for, setup_parallel,
                  wants_parallel)
from .master import WorkerPool
from .mpi import MPIContext, is_mpi, parallel_context
from .persistent import PersistentJob
from .worker import Fingerprints, get_job, job_name, register_job

__all__ = ["assign_cores", "make_sublists", "WorkerError", "start_workers",
           "MessageDictionary", "WorkerPool", "compute_in_workers",
           "fingerprint_job", "parallel_settings", "pool_for",
           "setup_parallel", "wants_parallel",
           "MPIContext", "is_mpi", "parallel_context", "PersistentJob", "Fingerprints", "get_job", "job_name",
           "register_job", "local_only"]
