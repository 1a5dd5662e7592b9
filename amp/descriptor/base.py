"""What every descriptor of this library shares: filling a fingerprint
store it is given, by itself or with workers, and Amp 1.x's views.

A descriptor class provides its parameters and its kernels:

``resolve(images)``
    The descriptor with every parameter that the images decide (elements,
    default features) filled in: itself when nothing is missing, otherwise
    a new one; it changes nothing.
``fingerprint_parameters()``
    The parameters the fingerprints depend on, as plain data: what a
    database records, and what a checkpoint or an ensemble member is
    compared by.
``compute(atoms, derivatives=False)``
    One image's :class:`~amp.descriptor.fingerprints.ImageFingerprints`.
``_adopt(resolved)``
    Take the parameters of ``resolved`` (Amp 1.x: a descriptor learns its
    elements from the images it first fingerprints).
``todict()`` / ``fromdict()``, ``importname``.

:class:`Descriptor` adds the rest. The store is an argument:
:meth:`Descriptor.calculate_fingerprints` fills the store it is given and
keeps nothing. Only when no store is given does it use Amp 1.x's view,
the store of the descriptor's own ``dblabel`` (:attr:`Descriptor.arrays`,
read by ``fingerprints``, ``fingerprintprimes`` and ``neighborlist``).
"""

from __future__ import annotations

import abc
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from ..utilities import Logger, hash_images
from .fingerprint_store import archive_store, open_store
from .fingerprints import ImageFingerprints

if TYPE_CHECKING:
    from ase import Atoms

__all__ = ["Descriptor", "ElementNotCoveredError"]


class ElementNotCoveredError(ValueError):
    """An image holds an element the descriptor has no features for (so a
    model trained with it cannot describe that image).

    Parameters
    ----------
    image : str or None
        How to name the image (None: the one image being calculated).
    found : list of str
        The image's elements that are not covered.
    covered : list of str
        The elements the descriptor covers.
    """

    def __init__(self, image: str | None, found: list[str],
                 covered: list[str]) -> None:
        self.image, self.found, self.covered = image, found, covered
        new, known = ", ".join(found), ", ".join(covered)
        if image is None:
            text = ("this model was trained for %s only; the image has %s "
                    "(the descriptor has no features for it)"
                    % (known, new))
        else:
            text = ("%s has %s, but the descriptor covers %s only: add %s "
                    "to the descriptor's elements, or leave such images "
                    "out" % (image, new, known, new))
        ValueError.__init__(self, text)


class Descriptor(abc.ABC):
    """Base of the descriptors (see the module).

    Parameters
    ----------
    dblabel : str, optional
        Amp 1.x's view only: the databases that :attr:`arrays` (and the
        ``fingerprints`` views) read when no store is passed.

    Attributes
    ----------
    fingerprints : mapping
        ``fingerprints[hash]`` is Amp's ``[(symbol, [G, ...]), ...]``.
    fingerprintprimes : mapping
        ``fingerprintprimes[hash][(m, sym_m, n, sym_n, l)]`` is
        ``d G_n / d x_{m,l}``.
    neighborlist : mapping
        ``neighborlist[hash]`` is ``[(indices, offsets), ...]`` per atom.
    ephemeral : bool
        Amp 1.x's view: with no ``dblabel``, :attr:`arrays` keeps only
        the latest image.
    """

    importname: str | None = None
    mode = "atom-centered"

    #: Declared capability: ``compute_contracted`` gives forces without
    #: storing derivatives (see :func:`amp.potential.evaluate`).
    contracted_forces = False

    #: Serial seconds of fingerprint work from which running workers
    #: compute them (a message and the copies of one image's derivatives
    #: cost about a millisecond; starting to use the pool, a few more).
    WORKERS_FROM_SECONDS = 0.2
    #: Serial seconds of fingerprint work from which workers not running
    #: yet are started for it: starting 2 local workers takes 0.26 s on an
    #: idle 2-core machine and up to 0.7 s on a loaded one, so for about a
    #: second of work they gain nothing or lose (measured: 20 Cu cells of
    #: 108 atoms, 1.2 s serially, 2.4 s with 2 workers on a loaded
    #: machine).
    START_WORKERS_FROM_SECONDS = 2.0

    def __init__(self, dblabel: str | None = None) -> None:
        self.dblabel = dblabel
        self.ephemeral = False
        self._view_store: Any = None
        self.fingerprints = _View(self, "fingerprints")
        self.fingerprintprimes = _View(self, "primes")
        self.neighborlist = _View(self, "neighbors")

    # Amp 1.x's view ------------------------------------------------------

    @property
    def arrays(self) -> Any:
        """Amp 1.x's view: ``arrays[hash]`` is the
        :class:`ImageFingerprints` of an image in the store of
        :attr:`dblabel` (memory when None; only the latest image when
        :attr:`ephemeral`)."""
        store, key = self._view_store, (self.dblabel, self.ephemeral)
        if store is None or store[0] != key:
            store = (key, self.open_store(self.dblabel, self.ephemeral))
            self._view_store = store
        return store[1]

    def archive_databases(self, log: Logger | None = None) -> Any:
        """Compress the databases of :attr:`arrays` (Amp 1.x's view; a
        no-op in memory); see :func:`.fingerprint_store.archive_store`."""
        return archive_store(self.arrays, log)

    # What each descriptor class provides (see the module) ---------------

    @abc.abstractmethod
    def resolve(self, images: Any) -> Any:
        """This descriptor with the parameters the images decide."""

    @abc.abstractmethod
    def fingerprint_parameters(self) -> dict[str, Any]:
        """The parameters the fingerprints depend on, as plain data."""

    @abc.abstractmethod
    def _adopt(self, resolved: Any) -> None:
        """Take the parameters of ``resolved`` (see the module)."""

    # Stores --------------------------------------------------------------

    def open_store(self, dblabel: str | None = None, ephemeral: bool = False,
                   log: Logger | None = None,
                   images: dict[str, Atoms] | None = None,
                   keep_in_memory: bool = True) -> Any:
        """A fingerprint store for this descriptor's parameters.

        Parameters
        ----------
        dblabel : str or None
            Prefix of the ``.ampdb`` databases; None keeps the fingerprints
            in memory.
        ephemeral : bool
            In memory, keep only the latest image.
        log : callable, optional
            Receives reports about damaged database entries.
        images : dict, optional
            Hashed images: parameters not set yet are those
            :meth:`resolve` gives for them (nothing is changed here).
        keep_in_memory : bool
            Databases only: keep what is read or written in memory
            (False: memory stays flat however many images pass; see
            :class:`~.fingerprint_store.DatabaseStore`).

        Returns
        -------
        FingerprintStore
            To pass to :meth:`calculate_fingerprints` as ``store``.
        """
        described = self if images is None else self.resolve(images)
        return open_store(dblabel, described.fingerprint_parameters(),
                          ephemeral=ephemeral and dblabel is None, log=log,
                          keep_in_memory=keep_in_memory)

    # Fingerprinting ------------------------------------------------------

    def calculate_fingerprints(self, images: Any, parallel: Any = None,
                               log: Logger | None = None,
                               calculate_derivatives: bool = False,
                               store: Any = None,
                               verbose: bool | None = None) -> Any:
        """Compute the fingerprints of every image not yet in the store.

        Parameters
        ----------
        images : dict, list of ase.Atoms, ase.Atoms or str
            Images keyed by hash (as :func:`amp.utilities.hash_images`
            returns them), or anything ``hash_images`` accepts.
        parallel : WorkerPool, MPIContext, dict or None
            A pool of workers (used, left running), the ranks of an MPI
            job (each computes its share, see :mod:`.ranks`; afterwards
            every rank's store has every image's values and its own
            share's derivatives), Amp's ``{'cores': ..., 'envcommand':
            ...}`` (a pool for this call) or None (serial).
        log : Logger, optional
        calculate_derivatives : bool
            Also compute the fingerprint derivatives (for forces).
        store : FingerprintStore, optional
            Where to keep them (from :meth:`open_store`); nothing of it is
            kept here. Default: Amp 1.x's view, :attr:`arrays`.
        verbose : bool or None
            Live progress line on standard error (:mod:`amp.progress`):
            None when it is a terminal, True or False forced.

        Returns
        -------
        list of str
            The hashes that were computed (the others were already stored).
        """
        from ..parallel import is_mpi, pool_for
        from ..progress import Progress

        log = Logger(None) if log is None else log
        images = hash_images(images)
        self._adopt(self.resolve(images))
        store = self.arrays if store is None else store
        self._check_store(store)
        with pool_for(parallel, log) as pool:
            if is_mpi(pool):  # the ranks of an MPI job: .ranks
                from .ranks import fingerprints_on_ranks

                return fingerprints_on_ranks(self, images, pool, store,
                                             calculate_derivatives, log,
                                             verbose)
            needed = {key: atoms for key, atoms in images.items()
                      if key not in store or (
                          calculate_derivatives
                          and not store.has_derivatives(key))}
            log("Fingerprints%s: %i of %i images to calculate (%s)."
                % (" and derivatives" if calculate_derivatives else "",
                   len(needed), len(images), "%s-*.ampdb" % store.dblabel
                   if store.on_disk else "memory"), tic="fp")
            with Progress(len(needed), "fingerprints", enabled=verbose,
                          unit="images") as progress:
                for key, fingerprints in self._compute_many(
                        needed, calculate_derivatives, pool, store, log):
                    if fingerprints is not None:  # None: a worker stored it
                        store.put(key, fingerprints)
                    progress.update(progress.done + 1)
        log("...fingerprints ready.", toc="fp")
        return list(needed)

    def _check_store(self, store):
        recorded = getattr(store, "parameters", None)
        if recorded is not None and recorded != \
                self.fingerprint_parameters():
            raise ValueError(
                "the fingerprint store %s was opened for other descriptor "
                "parameters; open it with this descriptor's open_store()"
                % (store.dblabel,))

    def _compute_many(self, images, derivatives, pool, store, log):
        """Yield ``(key, ImageFingerprints)`` for each image, or
        ``(key, None)`` for one that a worker has stored itself.

        Each image is computed whole before it is yielded, so a failure
        leaves nothing half-stored. With a pool and more than one image,
        the first images are computed here and timed (the first one pays
        for cold caches too, so a second one is timed); when the others would
        take at least :attr:`WORKERS_FROM_SECONDS` here (workers running)
        or :attr:`START_WORKERS_FROM_SECONDS` (workers to be started),
        workers compute them (:func:`amp.parallel.fingerprint_job`) and
        their speed is recorded in the pool's ``efficiency`` (while the
        workers start, this process computes the next images itself, so
        their start costs it no waiting); otherwise
        they are computed here too, which is logged (starting workers,
        messages and copies would cost more than they save). Workers on
        this machine store the fingerprints in the store's databases
        themselves (nothing large crosses to the master).
        """
        from ..parallel import fingerprint_job, local_only

        keys = list(images)
        if len(keys) > 1 and pool is not None:
            timings = []

            def timed(key):
                start = time.perf_counter()
                fingerprints = self.compute(images[key], derivatives)
                timings.append(time.perf_counter() - start)
                return fingerprints

            todo = keys[1:]
            yield keys[0], timed(keys[0])
            if len(todo) > 1:  # the first image also pays for cold caches
                key = todo.pop(0)
                yield key, timed(key)
            rest = min(timings) * len(todo)
            threshold = self.WORKERS_FROM_SECONDS if pool.started else \
                self.START_WORKERS_FROM_SECONDS
            if rest >= threshold:
                # While the workers start, this process goes on alone.
                pool.launch()
                while todo and not pool.ready():
                    key = todo.pop(0)
                    yield key, timed(key)
                if not todo:
                    return
                dblabel = store.dblabel if store.on_disk and \
                    local_only(pool) else None
                job, setup = fingerprint_job(
                    self, derivatives, parts=("values", "neighbors",
                                              "derivatives"),
                    dblabel=dblabel)
                workers = len(pool.alive())
                start = time.perf_counter()
                for key, value in pool.map(
                        job, {k: images[k] for k in todo}, setup):
                    yield key, (None if dblabel is not None else
                                ImageFingerprints.fromdict(value, value))
                elapsed = time.perf_counter() - start
                per_image = float(np.median(timings[1:] or timings))
                pool.efficiency = min(1.0, per_image * len(todo)
                                      / (workers * elapsed))
                log("Fingerprints: %i images by %i workers in %.2f s, each "
                    "at %.2f of this process's speed."
                    % (len(todo), workers, elapsed, pool.efficiency))
                return
            log("Fingerprints: about %.2f s of work left; computed here "
                "(workers pay off from about %.1f s%s)."
                % (rest, threshold, "" if pool.started else
                   ", counting their start"))
            keys = todo
        for key in keys:
            yield key, self.compute(images[key], derivatives)


class _View:
    """Read-only mapping from image hash to one of Amp's views."""

    def __init__(self, descriptor, kind):
        self._descriptor = descriptor
        self._kind = kind

    def __getitem__(self, key):
        store = self._descriptor.arrays
        if self._kind == "neighbors":
            return store.neighbor_list(key)
        item = store[key]
        if self._kind == "fingerprints":
            return item.as_amp_fingerprints()
        return item.as_amp_primes()

    def __contains__(self, key):
        store = self._descriptor.arrays
        if self._kind == "primes":
            return store.has_derivatives(key)
        return key in store

    def keys(self):
        """Hashes of the images held."""
        return [k for k in self._descriptor.arrays.keys() if k in self]

    def __iter__(self):
        return iter(self.keys())

    def __len__(self):
        return len(self.keys())
