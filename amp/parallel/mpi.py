"""Training across the ranks of an MPI job: Amp's ``cores='mpi'``.

The same script runs as ``python train.py`` (one process, serial) and as
``mpiexec -n N python train.py`` or ``srun python train.py`` (N ranks,
possibly on several nodes). Every rank runs the whole script;
:func:`parallel_context` gives each the same :class:`MPIContext`, which is
the value of the one parallel setting (see
:func:`amp.parallel.api.parallel_settings`) that the descriptor, the loss
function, :class:`~amp.stats.bootstrap.BootStrap` and
:class:`~amp.annealer.Annealer` recognise:

* the images are split into one contiguous share per rank, balanced by atom
  count (:meth:`MPIContext.share`), after a check that every rank was given
  the same images (:meth:`MPIContext.check_same`);
* each rank fingerprints its share and builds the training batch of its
  share only;
* every rank runs the same optimizer; for each parameter vector each rank
  computes the partial sums of its share and every rank gathers all of
  them (:meth:`MPIContext.allgather_rows`) and adds them in rank order, so
  every rank holds bitwise the same loss, gradient and next parameters;
* rank 0 alone writes files (:func:`rank_of`).

``mpi4py`` is imported only when ``cores='mpi'`` is given
(:func:`import_mpi`). Nothing here pickles: objects travel in the wire
format of :mod:`amp.parallel.wire` (:meth:`MPIContext.exchange`), numbers
as raw float64 buffers.

Faults: inside the block that owns the context (:meth:`MPIContext.guard`)
an exception on any rank is printed once, by that rank (a failing rank
other than 0 waits :data:`REPORT_DELAY` seconds first, so that an error
every rank meets is printed by rank 0 alone) and the job is ended with
``MPI_Abort``; a rank killed outright is noticed by the launcher, which
ends the others.
"""

import contextlib
import functools
import hashlib
import os
import sys
import time
import traceback

import numpy as np

from . import wire as _wire

__all__ = ["MPIContext", "RanksDisagree", "parallel_context", "is_mpi",
           "launched_ranks", "rank_of", "synchronize", "import_mpi",
           "share_bounds", "image_digests", "guarded"]

#: Environment variables through which MPI launchers tell each process how
#: many were started: Open MPI, MPICH/Intel MPI (and Slurm's PMI-2),
#: MVAPICH, and Slurm's ``srun`` (``SLURM_STEP_NUM_TASKS``, counted only
#: with the numeric ``SLURM_STEP_ID`` of a job step started by ``srun``,
#: so that a batch script itself, which runs Amp's ZMQ workers with
#: ``cores=None``, is not taken for one).
LAUNCHER_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE",
                      "MV2_COMM_WORLD_SIZE", "SLURM_STEP_NUM_TASKS")
#: Slurm's step ids from this one up are its batch and extern steps.
_SLURM_SPECIAL_STEPS = 0xFFFFFFF0

#: Seconds a failing rank other than 0 waits before printing its error and
#: ending the job: an error that every rank meets at once (the same input,
#: a check every rank makes) is then printed by rank 0 alone, whose abort
#: ends the others while they wait (1 s was once too short for the
#: launcher to end them on a loaded 2-core machine).
REPORT_DELAY = 3.0
#: Seconds the report gets to reach the launcher's output before the abort.
FORWARD_DELAY = 0.5

_INSTALL = ("cores='mpi' needs mpi4py and an MPI library: pip install "
            "'amp-mlip[mpi]' (mpi4py and the mpich wheel, which brings its "
            "own mpiexec), or on a cluster mpi4py built against the "
            "cluster's MPI (module load mpi; pip install --no-binary "
            "mpi4py mpi4py)")


class RanksDisagree(ValueError):
    """The ranks of an MPI job were given different inputs (images that
    differ, parameters that diverged); raised on every rank at once."""


def launched_ranks(environ=None) -> int:
    """How many processes the MPI launcher that started this one started
    (1 when none did), from the launchers' environment variables
    (:data:`LAUNCHER_VARIABLES`); imports nothing."""
    environ = os.environ if environ is None else environ
    for name in LAUNCHER_VARIABLES:
        value = environ.get(name, "").strip()
        if name.startswith("SLURM"):
            step = environ.get("SLURM_STEP_ID", "").strip()
            if not step.isdigit() or int(step) >= _SLURM_SPECIAL_STEPS:
                continue
        if value.isdigit():
            return max(1, int(value))
    return 1


def _refuse_unasked(cores):
    """Raise the clear message when ``cores=None`` in a multi-rank job."""
    ranks = launched_ranks()
    if cores is None and ranks > 1:
        raise ValueError(
            "this process is one of %d started by an MPI launcher "
            "(mpiexec/srun), but cores=None: each would train alone on all "
            "images and write the same files. Give cores='mpi' to train "
            "across the ranks (the same script still runs serially as "
            "'python train.py'), or start a single process." % ranks)


def import_mpi():
    """``mpi4py.MPI``, or ImportError saying how to install it."""
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise ImportError(_INSTALL + " (%s)" % error) from error
    return MPI


_CONTEXT = []  # the process's MPIContext, made once


def parallel_context(cores="mpi", log=None):
    """The :class:`MPIContext` of this process when ``cores`` asks for MPI
    and more than one rank runs, else None.

    Parameters
    ----------
    cores : object
        Amp's ``cores``; only ``'mpi'`` asks for MPI. ``None`` while an MPI
        launcher started several processes is refused with a message
        saying to give ``'mpi'``.
    log : callable, optional
        Told how the ranks were found (once per call).

    Returns
    -------
    MPIContext or None
        None for one rank (``python train.py``: serial), and when mpi4py
        is missing but no launcher started this process.
    """
    _refuse_unasked(cores)
    if cores != "mpi":
        return None
    if not _CONTEXT:
        try:
            MPI = import_mpi()
        except ImportError:
            if launched_ranks() > 1:
                raise
            if log is not None:
                log("cores='mpi' without mpi4py and without an MPI "
                    "launcher: training serially.")
            return None
        _CONTEXT.append(MPIContext(MPI.COMM_WORLD))
    context = _CONTEXT[0]
    if context.size == 1:
        if log is not None:
            log("cores='mpi' with one MPI rank: training serially.")
        return None
    if log is not None:
        log("MPI: %d ranks on %d node(s); rank 0 writes the files."
            % (context.size, context.node_count()))
    return context


def is_mpi(parallel) -> bool:
    """Whether ``parallel`` is an MPI context (imports nothing)."""
    return isinstance(parallel, MPIContext)


def rank_of(cores) -> int:
    """This process's rank when ``cores`` asks for MPI (0 otherwise): only
    rank 0 writes files."""
    if cores != "mpi":
        return 0
    context = parallel_context(cores)
    return 0 if context is None else context.rank


def synchronize(cores):
    """Wait until every rank gets here when ``cores`` asks for MPI (so the
    files rank 0 has just written are there for the others to read)."""
    context = parallel_context(cores) if cores == "mpi" else None
    if context is not None:
        context.barrier()


def share_bounds(weights, n_shares):
    """Bounds of ``n_shares`` contiguous shares of items, balanced by
    ``weights`` (e.g. atoms per image).

    Returns
    -------
    ndarray of int, shape (n_shares + 1,)
        Share ``r`` is ``items[bounds[r]:bounds[r + 1]]``; each bound is
        the cut whose weight before it is nearest ``r / n_shares`` of the
        total (a share may be empty when there are fewer items than
        shares).
    """
    cumulative = np.concatenate([[0.0], np.cumsum(np.asarray(
        weights, dtype=float))])
    targets = cumulative[-1] * np.arange(n_shares + 1) / n_shares
    above = np.searchsorted(cumulative, targets).clip(1, len(cumulative) - 1)
    nearer_below = (targets - cumulative[above - 1]) <= \
        (cumulative[above] - targets)
    bounds = np.where(nearer_below, above - 1, above)
    bounds[0], bounds[-1] = 0, len(cumulative) - 1
    return np.maximum.accumulate(bounds)


def _results(atoms):
    """An image's stored energy and forces (never computed here)."""
    results = getattr(getattr(atoms, "calc", None), "results", None) or {}
    return results.get("energy"), results.get("forces")


def image_digests(images):
    """16 bytes per image: its hash, energy and forces, as an
    ``(n_images, 16)`` uint8 array (what :meth:`MPIContext.check_same`
    compares)."""
    out = np.empty((len(images), 16), dtype=np.uint8)
    for row, (key, atoms) in enumerate(images.items()):
        digest = hashlib.blake2b(str(key).encode(), digest_size=16)
        energy, forces = _results(atoms)
        if energy is not None:
            digest.update(np.float64(energy).tobytes())
        if forces is not None:
            digest.update(np.ascontiguousarray(forces, dtype=float)
                          .tobytes())
        out[row] = np.frombuffer(digest.digest(), dtype=np.uint8)
    return out


def _pack(frames):
    """One byte string of wire frames: count, lengths, then the frames."""
    frames = [bytes(frame) for frame in frames]
    head = np.array([len(frames)] + [len(f) for f in frames], dtype="<u8")
    return head.tobytes() + b"".join(frames)


def _unpack(blob):
    """The frames of :func:`_pack` (checked against the blob's length)."""
    view = memoryview(blob)
    if len(view) < 8:
        raise _wire.ProtocolError("empty MPI message")
    count = int(np.frombuffer(view[:8], dtype="<u8")[0])
    if count < 1 or 8 * (count + 1) > len(view):
        raise _wire.ProtocolError("malformed MPI message")
    lengths = np.frombuffer(view[8:8 * (count + 1)], dtype="<u8")
    ends = 8 * (count + 1) + np.cumsum(lengths.astype(np.int64))
    if ends[-1] != len(view):
        raise _wire.ProtocolError("MPI message length does not match")
    starts = np.concatenate([[8 * (count + 1)], ends[:-1]])
    return [view[s:e] for s, e in zip(starts, ends)]


class MPIContext:
    """The ranks of an MPI job training together (``cores='mpi'``).

    Made once per process by :func:`parallel_context`; the library's
    collectives run on a duplicate of ``comm`` (made at the first
    collective, which every rank reaches at the same point of the script),
    so they never match a message of the script's own.

    Attributes
    ----------
    rank, size : int
        This process's rank and the number of ranks.
    """

    def __init__(self, comm):
        self.world = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self._comm = None
        self._nodes = None

    def __repr__(self):
        return "MPIContext(rank %d of %d)" % (self.rank, self.size)

    @property
    def is_root(self) -> bool:
        """Whether this is rank 0 (the one that writes files)."""
        return self.rank == 0

    @property
    def comm(self):
        """The library's own communicator (a duplicate of the world)."""
        if self._comm is None:
            self._comm = self.world.Dup()
        return self._comm

    # Collectives ---------------------------------------------------------

    def barrier(self):
        """Wait for every rank."""
        self.comm.Barrier()

    def allgather_rows(self, row, out=None):
        """Every rank's ``row`` (float64, the same length on every rank) as
        the rows of an ``(size, len(row))`` array, in rank order."""
        row = np.ascontiguousarray(row, dtype=np.float64)
        if out is None:
            out = np.empty((self.size, len(row)))
        self.comm.Allgather(row, out)
        return out

    def allgather_bytes(self, data):
        """Every rank's ``data`` (bytes), as a list in rank order."""
        MPI = import_mpi()
        mine = np.frombuffer(bytes(data), dtype=np.uint8)
        sizes = np.empty(self.size, dtype=np.int64)
        self.comm.Allgather(np.array([len(mine)], dtype=np.int64), sizes)
        received = np.empty(int(sizes.sum()), dtype=np.uint8)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self.comm.Allgatherv(mine, [received, sizes, starts, MPI.BYTE])
        return [received[s:s + n].tobytes() for s, n in zip(starts, sizes)]

    def exchange(self, value):
        """Every rank's ``value`` (anything :mod:`amp.parallel.wire`
        carries: numbers, str, arrays, lists, dicts, ase.Atoms), as a list
        in rank order."""
        blobs = self.allgather_bytes(_pack(_wire.encode({"subject": "mpi"},
                                                        value)))
        return [_wire.decode(_unpack(blob))[1] for blob in blobs]

    def broadcast(self, value, root=0):
        """Rank ``root``'s ``value`` on every rank (as :meth:`exchange`)."""
        return self.exchange(value if self.rank == root else None)[root]

    def broadcast_array(self, array, root=0):
        """Rank ``root``'s float64 ``array`` (of the same shape on every
        rank), as a new array on every rank."""
        out = np.array(array, dtype=np.float64, order="C")
        self.comm.Bcast(out, root=root)
        return out

    def total(self, value):
        """The sum of every rank's number, added in rank order (the same
        float on every rank)."""
        return float(sum(self.allgather_rows([float(value)])[:, 0]))

    def node_count(self):
        """How many nodes the ranks run on (from their host names)."""
        return len(set(self._node_names()))

    def ranks_on_my_node(self):
        """How many ranks run on this rank's node (itself included)."""
        names = self._node_names()
        return names.count(names[self.rank])

    def _node_names(self):
        if self._nodes is None:
            MPI = import_mpi()
            self._nodes = [str(name) for name in self.exchange(
                MPI.Get_processor_name())]
        return self._nodes

    # Images --------------------------------------------------------------

    def check_same(self, images, what="training images"):
        """Check that every rank was given the same images (hashes, order,
        energies and forces), before any work; raises
        :class:`RanksDisagree` on every rank, naming the first image that
        differs."""
        digests = image_digests(images)
        whole = np.frombuffer(hashlib.blake2b(
            digests.tobytes(), digest_size=8).digest(), dtype=np.float64)
        gathered = self.allgather_rows(np.concatenate([[len(images)],
                                                       whole]))
        if (gathered.view(np.uint64) == gathered[0].view(np.uint64)).all():
            return
        rows = self.exchange(digests)
        for rank, theirs in enumerate(rows):
            if theirs.shape == rows[0].shape and np.array_equal(theirs,
                                                                rows[0]):
                continue
            common = min(len(theirs), len(rows[0]))
            differ = np.flatnonzero(np.any(theirs[:common] != rows[0][:common],
                                           axis=1))
            where = ("image %d (hash, energy or forces)" % differ[0]
                     if len(differ) else "the number of images (%d on rank "
                     "0, %d on rank %d)" % (len(rows[0]), len(theirs), rank))
            raise RanksDisagree(
                "the MPI ranks were given different %s: rank %d differs from "
                "rank 0 in %s. Every rank must read the same images (a file "
                "that changed while the job started, or a random choice "
                "without a fixed seed?); nothing has been computed."
                % (what, rank, where))

    def share(self, images, what="training images"):
        """The keys of this rank's share of ``images`` (a dict in the same
        order on every rank): contiguous, balanced by atom count
        (:func:`share_bounds`); checked with :meth:`check_same` first."""
        self.check_same(images, what)
        keys = list(images)
        bounds = share_bounds([len(images[key]) for key in keys], self.size)
        return keys[bounds[self.rank]:bounds[self.rank + 1]]

    def shares(self, images):
        """The keys of every rank's share (no check), by rank."""
        keys = list(images)
        bounds = share_bounds([len(images[key]) for key in keys], self.size)
        return [keys[bounds[r]:bounds[r + 1]] for r in range(self.size)]

    # Faults --------------------------------------------------------------

    @contextlib.contextmanager
    def guard(self, log=None, passing=()):
        """Context: an exception on this rank ends the whole job (after
        printing it once, see the module docstring), since the other
        ranks would otherwise wait for it forever.

        Parameters
        ----------
        log : callable, optional
            Also receives the report (rank 0's log file).
        passing : tuple of exception classes
            Raised as usual: exceptions every rank raises at the same
            point (e.g. a training that did not converge), which the
            script may catch.
        """
        try:
            yield self
        except passing:
            raise
        except BaseException as error:  # noqa: B036 (KeyboardInterrupt too)
            self.fail(error, log)

    def fail(self, error, log=None):
        """Print ``error`` once and end the job with ``MPI_Abort``; does
        not return.

        A failed MPI call (another rank has ended) is reported in one
        line, anything else with its traceback.
        """
        if self.rank:
            time.sleep(REPORT_DELAY + 0.1 * min(self.rank, 20))
        if isinstance(error, KeyboardInterrupt):
            text = "interrupted (KeyboardInterrupt)"
        elif type(error).__module__.startswith("mpi4py"):
            text = "an MPI call failed (has another rank ended?): %s" \
                % str(error).strip().splitlines()[0]
        else:
            text = "".join(traceback.format_exception(
                type(error), error, error.__traceback__)).rstrip()
        message = ("amp: MPI rank %d of %d stopped the job: %s"
                   % (self.rank, self.size, text))
        try:
            if log is not None:
                log(message)
            sys.stderr.write(message + "\n")
            sys.stderr.flush()
            # The launcher forwards the report before the abort kills the
            # job (without the pause it was once lost on a loaded machine).
            time.sleep(FORWARD_DELAY)
        finally:
            try:
                self.world.Abort(1)
            finally:  # MPI_Abort may return once the job is ending
                os._exit(1)


def guarded(*passing):
    """Decorator of a method of an object with ``cores``: ``cores=None``
    in a multi-rank job is refused at once (the clear message); with
    ``cores='mpi'`` and several ranks, the whole call runs inside
    :meth:`MPIContext.guard` (exceptions of the classes ``passing``
    excepted), so an error on any rank, also one met before the ranks
    first communicate, ends the job instead of leaving the others
    waiting."""
    def decorate(method):
        @functools.wraps(method)
        def wrapper(self, *args, **kwargs):
            cores = getattr(self, "cores", None)
            _refuse_unasked(cores)  # before anything is written
            context = parallel_context(cores) if cores == "mpi" else None
            if context is None:
                return method(self, *args, **kwargs)
            with context.guard(passing=passing):
                return method(self, *args, **kwargs)
        return wrapper
    return decorate
