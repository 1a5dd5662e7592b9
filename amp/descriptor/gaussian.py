"""Gaussian (Behler–Parrinello) symmetry-function descriptor, Amp's API.

``Gaussian`` computes G2, G4 and G5 fingerprints (defined in
:mod:`amp.descriptor.symmetry` and ``docs/descriptor.md``) and their
derivatives for every atom of every image. The numbers are Amp 1.x's; the
work is vectorised (:mod:`.symmetry`) on a fast neighbour list
(:mod:`.neighbors`), and results are held as arrays
(:class:`.fingerprints.ImageFingerprints`), with Amp's dictionary views
built on demand.
"""

import functools
import json
import numbers
import time

import numpy as np

from ._rows import put_rows
from ..utilities import Logger, hash_images
from .cutoffs import Cosine, dict2cutoff
from .fingerprints import ImageFingerprints
from .neighbors import atoms_neighbor_list
from .fingerprint_store import FingerprintStore
from .symmetry import ElementPlan, compute_element

# Amp's default G2 etas, np.logspace(log10(0.05), log10(5), 4) as numpy 1.x
# computed it; numpy 2 rounds the first one differently (0.049999999999999996),
# so the values are written out to keep Amp's fingerprints bit for bit.
_DEFAULT_G2_ETAS = (0.04999999999999999, 0.23207944168063888,
                    1.0772173450159415, 5.0)

_REQUIRED = {"G2": ("element", "eta"),
             "G4": ("elements", "eta", "zeta", "gamma"),
             "G5": ("elements", "eta", "zeta", "gamma")}


def make_symmetry_functions(elements, type, etas, offsets=None, zetas=None,
                            gammas=None):
    """Make a list of symmetry-function dicts, in Amp's order.

    Parameters
    ----------
    elements : list of str
        Neighbour elements to make functions for.
    type : {'G2', 'G4', 'G5'}
    etas : list of float
    offsets : list of float, optional
        G2 only; ``[0.]`` by default.
    zetas, gammas : list of float
        G4 and G5 only.

    Returns
    -------
    list of dict
        G2 loops ``for eta: for element: for offset``; G4/G5 loop
        ``for eta: for zeta: for gamma: for each unordered element pair``.
    """
    if type == "G2":
        offsets = [0.0] if offsets is None else offsets
        return [{"type": "G2", "element": element, "eta": eta,
                 "offset": offset}
                for eta in etas for element in elements
                for offset in offsets]
    if type in ("G4", "G5"):
        if zetas is None or gammas is None:
            raise ValueError("%s symmetry functions need zetas and gammas"
                             % type)
        Gs = []
        for eta in etas:
            for zeta in zetas:
                for gamma in gammas:
                    for i1, el1 in enumerate(elements):
                        for el2 in elements[i1:]:
                            Gs.append({"type": type,
                                       "elements": sorted([el1, el2]),
                                       "eta": eta, "gamma": gamma,
                                       "zeta": zeta})
        return Gs
    raise ValueError("unknown symmetry function type %r; known: G2, G4, G5"
                     % (type,))


def make_default_symmetry_functions(elements):
    """Amp's default set: the same functions for every element.

    Four G2 (etas log-spaced from 0.05 to 5) per element, then G4 with
    eta 0.005, zeta 1 and 4, gamma +1 and -1 for every element pair.

    Returns
    -------
    dict
        ``{element: [G dict, ...]}``.
    """
    elements = list(elements)
    G = make_symmetry_functions(elements, "G2", etas=list(_DEFAULT_G2_ETAS))
    G += make_symmetry_functions(elements, "G4", etas=[0.005],
                                 zetas=[1.0, 4.0], gammas=[1.0, -1.0])
    return {element: [dict(g) for g in G] for element in elements}


def _check_number(G, key, element):
    value = G[key]
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not np.isfinite(value):
        raise ValueError("symmetry function %r of element %s: %s must be a "
                         "finite number" % (G, element, key))
    return float(value)


def normalize_Gs(Gs, elements=None):
    """Validate symmetry functions and return them as a dict per element.

    Parameters
    ----------
    Gs : dict or list or None
        ``{element: [G, ...]}``, one list used for every element, or None.
    elements : list of str, optional
        Needed when ``Gs`` is a list.

    Returns
    -------
    dict
        ``{element: [G, ...]}`` with plain floats, sorted G4/G5 element
        pairs and an explicit G2 offset.

    Raises
    ------
    ValueError
        An element without functions, an unknown type, a missing or
        non-numeric parameter.
    """
    if isinstance(Gs, (list, tuple)):
        if elements is None:
            raise ValueError("a single list of symmetry functions needs the "
                             "elements it applies to")
        Gs = {element: list(Gs) for element in elements}
    if not isinstance(Gs, dict):
        raise TypeError("Gs must be a dict {element: [G, ...]} or a list, "
                        "got %s" % type(Gs).__name__)
    out = {}
    for element, functions in Gs.items():
        if not functions:
            raise ValueError("element %s has no symmetry functions" % element)
        clean = []
        for G in functions:
            if not isinstance(G, dict) or G.get("type") not in _REQUIRED:
                raise ValueError(
                    "unknown symmetry function type in %r (element %s); "
                    "known: G2, G4, G5" % (G, element))
            missing = [k for k in _REQUIRED[G["type"]] if k not in G]
            if missing:
                raise ValueError("symmetry function %r of element %s misses "
                                 "%s" % (G, element, ", ".join(missing)))
            if G["type"] == "G2":
                g = {"type": "G2", "element": str(G["element"]),
                     "eta": _check_number(G, "eta", element),
                     "offset": (_check_number(G, "offset", element)
                                if "offset" in G else 0.0)}
            else:
                pair = G["elements"]
                if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                    raise ValueError("symmetry function %r of element %s: "
                                     "elements must be a pair" % (G, element))
                g = {"type": G["type"],
                     "elements": sorted(str(e) for e in pair),
                     "eta": _check_number(G, "eta", element),
                     "gamma": _check_number(G, "gamma", element),
                     "zeta": _check_number(G, "zeta", element)}
            clean.append(g)
        out[str(element)] = clean
    return out


class Gaussian:
    """Gaussian symmetry-function descriptor (Amp's ``Gaussian``).

    Parameters
    ----------
    cutoff : Cosine, Polynomial, dict or float
        Cutoff function; a number means ``Cosine`` of that radius.
    Gs : dict or list, optional
        ``{element: [G, ...]}`` or one list for every element (without
        ``elements``, as in Amp 1.x, the elements are taken from the images
        when fingerprints are first calculated); None gives
        :func:`make_default_symmetry_functions` of the elements found.
    dblabel : str, optional
        Label of the fingerprint databases (used in training).
    elements : list of str, optional
        Elements the descriptor covers; found from ``Gs`` or the images
        when None.
    version : str, optional
        Amp's descriptor version, ``'2015.12'``.
    fortran : bool
        Accepted for compatibility; there is one (vectorised)
        implementation.
    mode : str
        Only ``'atom-centered'``.

    Attributes
    ----------
    fingerprints : mapping
        ``fingerprints[hash]`` is Amp's ``[(symbol, [G, ...]), ...]``.
    fingerprintprimes : mapping
        ``fingerprintprimes[hash][(m, sym_m, n, sym_n, l)]`` is
        ``d G_n / d x_{m,l}``.
    neighborlist : mapping
        ``neighborlist[hash]`` is ``[(indices, offsets), ...]`` per atom.
    arrays : dict
        ``arrays[hash]`` is the :class:`ImageFingerprints` array form.
    """

    importname = ".descriptor.gaussian.Gaussian"

    #: Declared capability: :meth:`compute_contracted` gives forces
    #: without storing derivatives (see :func:`amp.potential.evaluate`).
    contracted_forces = True

    #: Serial seconds of fingerprint work from which workers compute them
    #: (a message and the copies of one image's derivatives cost about a
    #: millisecond; starting to use the pool, a few more).
    WORKERS_FROM_SECONDS = 0.2

    def __init__(self, cutoff=Cosine(6.5), Gs=None, dblabel=None,
                 elements=None, version=None, fortran=True,
                 mode="atom-centered"):
        if mode != "atom-centered":
            raise ValueError("Gaussian supports only mode='atom-centered', "
                             "got %r" % (mode,))
        if version not in (None, "2015.12"):
            raise ValueError("unknown Gaussian descriptor version %r"
                             % (version,))
        self.cutoff = dict2cutoff(cutoff)
        self.elements = sorted(elements) if elements is not None else None
        self._Gs_for_every_element = None
        if isinstance(Gs, (list, tuple)) and self.elements is None:
            # Amp 1.x: one list for every element, the elements taken from
            # the images when fingerprints are first calculated.
            self._Gs_for_every_element = normalize_Gs(Gs, ["*"])["*"]
            Gs = None
        if Gs is not None:
            if self.elements is None and isinstance(Gs, dict):
                self.elements = sorted(Gs)
            Gs = normalize_Gs(Gs, self.elements)
            missing = set(self.elements) - set(Gs)
            if missing:
                raise ValueError("element %s has no symmetry functions"
                                 % ", ".join(sorted(missing)))
        self.Gs = Gs
        self.version = "2015.12"
        self.mode = mode
        self.dblabel = dblabel
        self.fortran = fortran
        self.ephemeral = False
        self._store = None
        self.fingerprints = _View(self, "fingerprints")
        self.fingerprintprimes = _View(self, "primes")
        self.neighborlist = _View(self, "neighbors")
        self._plans = None

    @property
    def arrays(self):
        """``arrays[hash]``: the :class:`ImageFingerprints` of an image.

        Backed by the databases of :attr:`dblabel`, by memory when there is
        none, or (:attr:`ephemeral`) by memory holding only the latest image.
        """
        if self._store is None or self._store.dblabel != self.dblabel:
            self._store = self.open_store(self.dblabel, self.ephemeral)
        return self._store

    # Parameters ----------------------------------------------------------

    @property
    def parameters(self):
        """The descriptor's parameters as a plain dict (Amp's keys)."""
        return {"importname": self.importname, "mode": self.mode,
                "version": self.version, "cutoff": self.cutoff.todict(),
                "Gs": (self.Gs if self.Gs is not None
                       else self._Gs_for_every_element),
                "elements": self.elements}

    def todict(self):
        """Plain-data form, for model files (see :meth:`fromdict`)."""
        return json.loads(json.dumps(self.parameters))

    @classmethod
    def fromdict(cls, parameters):
        """Rebuild from :meth:`todict`'s form (extra keys are ignored)."""
        return cls(cutoff=parameters["cutoff"], Gs=parameters.get("Gs"),
                   elements=parameters.get("elements"),
                   version=parameters.get("version"),
                   mode=parameters.get("mode", "atom-centered"))

    def tostring(self):
        """The parameters as a JSON string."""
        return json.dumps(self.parameters, sort_keys=True)

    def __repr__(self):
        n = {e: len(g) for e, g in (self.Gs or {}).items()}
        return "Gaussian(cutoff=%r, features per element=%s)" % (
            self.cutoff, n or "default")

    # Fingerprinting ------------------------------------------------------

    def _ensure_parameters(self, images):
        """Fill in elements and default Gs from the images, and check."""
        found = sorted({s for atoms in images.values()
                        for s in atoms.get_chemical_symbols()})
        if self.elements is None:
            self.elements = found
        if self.Gs is None and self._Gs_for_every_element is not None:
            self.Gs = normalize_Gs(self._Gs_for_every_element, self.elements)
        if self.Gs is None:
            self.Gs = make_default_symmetry_functions(self.elements)
        for key, atoms in images.items():
            unknown = set(atoms.get_chemical_symbols()) - set(self.Gs)
            if unknown:
                raise ValueError(
                    "image %s contains %s, which has no symmetry functions "
                    "(the descriptor covers %s)"
                    % (key, ", ".join(sorted(unknown)), ", ".join(self.Gs)))
        if self._plans is None:
            elements = sorted(set(self.elements) | set(self.Gs))
            self._plans = {element: ElementPlan(Gs, elements)
                           for element, Gs in self.Gs.items()}
            self._codes = {element: k for k, element in enumerate(elements)}

    def compute(self, atoms, derivatives=False):
        """Fingerprints of one image as :class:`ImageFingerprints`.

        Nothing is stored; :meth:`calculate_fingerprints` keeps results.
        """
        fingerprints, _ = self._compute(atoms, derivatives, None)
        return fingerprints

    def compute_contracted(self, atoms, evaluate):
        """Fingerprints of one image and ``dE / d r_e`` of every neighbour
        entry, the derivatives contracted with ``dE/dG`` as they are made.

        The fast path for forces at inference: no derivative array is
        built, about half the work of ``compute(atoms, True)`` followed by
        :meth:`ImageFingerprints.entry_gradients`.

        Parameters
        ----------
        atoms : ase.Atoms
        evaluate : callable
            ``evaluate(element, atom_indices, values) -> dE_dG``, called with
            the finished fingerprints of a few atoms of one element at a
            time; returns ``dE/dG`` for them (same shape).

        Returns
        -------
        fingerprints : ImageFingerprints
            Values and neighbour list (no derivatives).
        entry_gradient : ndarray, shape (n_entries, 3)
            ``dE / d r_e`` for every entry of ``fingerprints.neighbors``;
            see :func:`.fingerprints.entry_forces`.
        """
        return self._compute(atoms, False, evaluate)

    def _compute(self, atoms, derivatives, evaluate):
        if self._plans is None:
            self._ensure_parameters({"image": atoms})
        symbols = atoms.get_chemical_symbols()
        unknown = set(symbols) - set(self._plans)
        if unknown:
            raise ValueError("the image contains %s, which has no symmetry "
                             "functions" % ", ".join(sorted(unknown)))
        nl = atoms_neighbor_list(atoms, self.cutoff.Rc)
        codes = np.array([self._codes[s] for s in symbols], dtype=np.int64)
        values, entries, blocks = {}, {}, {}
        gradient = None if evaluate is None else np.zeros((len(nl.i), 3))
        symbol_array = np.array(symbols)
        for element in sorted(set(symbols)):
            index = np.flatnonzero(symbol_array == element)
            element_evaluate = None if evaluate is None else \
                functools.partial(_evaluate_rows, evaluate, element, index)
            values[element], entries[element], blocks[element] = \
                compute_element(self._plans[element], self.cutoff, nl, codes,
                                index, derivatives, element_evaluate)
            if evaluate is not None:
                put_rows(gradient, entries[element], blocks[element])
        if derivatives:
            return ImageFingerprints(symbols, values, nl, entries,
                                     blocks), gradient
        return ImageFingerprints(symbols, values, nl), gradient

    def derivative_memory(self, images):
        """Bytes that force training will hold for the derivatives of the
        hashed ``images`` (estimated from their neighbour lists; see
        :mod:`amp.descriptor.budget`). The calculator checks it against
        the memory available before anything is computed."""
        from .budget import derivative_memory

        return derivative_memory(self, images)

    def open_store(self, dblabel=None, ephemeral=False, log=None,
                   images=None):
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
            Hashed images: elements and default symmetry functions not set
            yet are taken from them (as :meth:`calculate_fingerprints`
            does).

        Returns
        -------
        FingerprintStore
            To pass to :meth:`calculate_fingerprints` as ``store``.
        """
        if images is not None:
            self._ensure_parameters(images)
        if self.Gs is None:
            raise ValueError("the descriptor has no symmetry functions yet; "
                             "calculate fingerprints first")
        return FingerprintStore(
            dblabel, {"cutoff": self.cutoff.todict(), "Gs": self.Gs},
            ephemeral=ephemeral and dblabel is None, log=log)

    def calculate_fingerprints(self, images, parallel=None, log=None,
                               calculate_derivatives=False, store=None,
                               verbose=None):
        """Compute the fingerprints of every image not yet computed.

        Parameters
        ----------
        images : dict, list of ase.Atoms, ase.Atoms or str
            Images keyed by hash (as :func:`amp.utilities.hash_images`
            returns them), or anything ``hash_images`` accepts.
        parallel : dict, optional
            Amp's ``{'cores': ...}``.
        log : Logger, optional
        calculate_derivatives : bool
            Also compute the fingerprint derivatives (for forces).
        store : FingerprintStore, optional
            Where to keep them (from :meth:`open_store`, e.g. a calculator's
            databases); it becomes this descriptor's :attr:`arrays` and
            its label :attr:`dblabel`. Default: the store of
            :attr:`dblabel`.
        verbose : bool or None
            Live progress line on standard error (:mod:`amp.progress`):
            None when it is a terminal, True or False forced.

        Returns
        -------
        list of str
            The hashes that were computed (the others were already stored).
        """
        log = Logger(None) if log is None else log
        images = hash_images(images)
        self._ensure_parameters(images)
        if store is not None:
            self._store, self.dblabel = store, store.dblabel
        store = self.arrays
        needed = {key: atoms for key, atoms in images.items()
                  if key not in store or (calculate_derivatives
                                          and not store.has_derivatives(key))}
        log("Fingerprints%s: %i of %i images to calculate (%s)."
            % (" and derivatives" if calculate_derivatives else "",
               len(needed), len(images),
               "memory" if self.dblabel is None
               else "%s-*.ampdb" % self.dblabel), tic="fp")
        from ..progress import Progress

        with Progress(len(needed), "fingerprints", enabled=verbose,
                      unit="images") as progress:
            for key, fingerprints in self._compute_many(
                    needed, calculate_derivatives, parallel, log):
                if fingerprints is not None:  # None: a worker stored it
                    store.put(key, fingerprints)
                progress.update(progress.done + 1)
        log("...fingerprints ready.", toc="fp")
        return list(needed)

    def _compute_many(self, images, derivatives, parallel, log):
        """Yield ``(key, ImageFingerprints)`` for each image, or
        ``(key, None)`` for one that a worker has stored itself.

        Each image is computed whole before it is yielded, so a failure
        leaves nothing half-stored. With ``parallel`` asking for more than
        one core (or a running pool) and more than one image, the first
        image is computed here and timed; when the others would take at
        least :attr:`WORKERS_FROM_SECONDS` here, workers compute them
        (:func:`amp.parallel.fingerprint_job`), otherwise they are computed
        here too, which is logged (messages and copies would cost more
        than they save). Workers on this machine store the fingerprints in
        the databases themselves (nothing large crosses to the master).
        """
        from ..parallel import (compute_in_workers, fingerprint_job,
                                wants_parallel)
        from ..parallel import local_only

        keys = list(images)
        if len(keys) > 1 and wants_parallel(parallel):
            start = time.perf_counter()
            yield keys[0], self.compute(images[keys[0]], derivatives)
            rest = (time.perf_counter() - start) * (len(keys) - 1)
            if rest >= self.WORKERS_FROM_SECONDS:
                dblabel = self.dblabel if local_only(parallel) else None
                job, setup = fingerprint_job(
                    self, derivatives, parts=("values", "neighbors",
                                              "derivatives"),
                    dblabel=dblabel)
                for key, value in compute_in_workers(
                        parallel, job, {k: images[k] for k in keys[1:]},
                        setup, log=log):
                    yield key, (None if dblabel is not None else
                                ImageFingerprints.fromdict(value, value))
                return
            if log is not None:
                log("Fingerprints: about %.2f s of work left; computed "
                    "here (workers pay off from about %.1f s)."
                    % (rest, self.WORKERS_FROM_SECONDS))
            keys = keys[1:]
        for key in keys:
            yield key, self.compute(images[key], derivatives)

    def archive_databases(self, log=None):
        """Compress the three databases (no-op in memory); see
        :meth:`amp.store.database.FileDatabase.archive`."""
        reports = self.arrays.archive()
        if log is not None:
            for name, report in reports.items():
                log("Compressed %s: %i entries moved, %i -> %i bytes."
                    % (name, report["moved"], report["bytes_before"],
                       report["bytes_after"]))
        return reports


def _evaluate_rows(evaluate, element, index, rows, values):
    """Adapt ``evaluate(element, atom_indices, values)`` to the kernel's
    ``(rows, values)`` call for the atoms ``index`` of ``element``."""
    return evaluate(element, index[rows], values)


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
