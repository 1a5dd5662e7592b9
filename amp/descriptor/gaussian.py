"""Gaussian (Behler–Parrinello) symmetry-function descriptor, Amp's API.

``Gaussian`` computes G2, G4 and G5 fingerprints (defined in
:mod:`amp.descriptor.symmetry` and ``docs/descriptor.md``) and their
derivatives for every atom of every image. The numbers are Amp 1.x's; the
work is vectorised (:mod:`.symmetry`) on a fast neighbour list
(:mod:`.neighbors`), and results are held as arrays
(:class:`.fingerprints.ImageFingerprints`), with Amp's dictionary views
built on demand.
"""

from __future__ import annotations

import functools
import json
import numbers
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ._rows import put_rows
from .base import Descriptor, ElementNotCoveredError
from .cutoffs import Cosine, dict2cutoff
from .fingerprints import ImageFingerprints
from .neighbors import atoms_neighbor_list
from .symmetry import ElementPlan, compute_element

if TYPE_CHECKING:
    from ase import Atoms

# Amp's default G2 etas, np.logspace(log10(0.05), log10(5), 4) as numpy 1.x
# computed it; numpy 2 rounds the first one differently (0.049999999999999996),
# so the values are written out to keep Amp's fingerprints bit for bit.
_DEFAULT_G2_ETAS = (0.04999999999999999, 0.23207944168063888,
                    1.0772173450159415, 5.0)

_REQUIRED = {"G2": ("element", "eta"),
             "G4": ("elements", "eta", "zeta", "gamma"),
             "G5": ("elements", "eta", "zeta", "gamma")}


def make_symmetry_functions(elements: list[str], type: str,
                            etas: list[float],
                            offsets: list[float] | None = None,
                            zetas: list[float] | None = None,
                            gammas: list[float] | None = None
                            ) -> list[dict[str, Any]]:
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


def make_default_symmetry_functions(elements: list[str]
                                    ) -> dict[str, list[dict[str, Any]]]:
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


def check_element(symbol: Any, where: str = "the descriptor") -> str:
    """Return ``symbol`` as a ``str`` when it is a chemical symbol.

    Raises
    ------
    ValueError
        Not one of the periodic table's symbols (case matters: ``'Cu'``,
        not ``'cu'``); the message names where it was given.
    """
    from ase.data import atomic_numbers

    if not isinstance(symbol, str) or symbol not in atomic_numbers or \
            symbol == "X":
        hint = ""
        if isinstance(symbol, str) and symbol != symbol.capitalize() and \
                symbol.capitalize() in atomic_numbers:
            hint = "; did you mean %r?" % symbol.capitalize()
        raise ValueError("%r is not a chemical symbol (in %s)%s" % (
            symbol, where, hint))
    return symbol


def normalize_Gs(Gs: dict[str, list[dict[str, Any]]] | list[dict[str, Any]],
                 elements: list[str] | None = None
                 ) -> dict[str, list[dict[str, Any]]]:
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
        if element != "*":
            check_element(element, "the keys of Gs")
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
                check_element(G["element"], "symmetry function %r of "
                              "element %s" % (G, element))
                g = {"type": "G2", "element": str(G["element"]),
                     "eta": _check_number(G, "eta", element),
                     "offset": (_check_number(G, "offset", element)
                                if "offset" in G else 0.0)}
            else:
                pair = G["elements"]
                if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                    raise ValueError("symmetry function %r of element %s: "
                                     "elements must be a pair" % (G, element))
                for other in pair:
                    check_element(other, "symmetry function %r of "
                                  "element %s" % (G, element))
                g = {"type": G["type"],
                     "elements": sorted(str(e) for e in pair),
                     "eta": _check_number(G, "eta", element),
                     "gamma": _check_number(G, "gamma", element),
                     "zeta": _check_number(G, "zeta", element)}
            clean.append(g)
        out[str(element)] = clean
    return out


class Gaussian(Descriptor):
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
        Amp 1.x's view: the databases :attr:`arrays` reads when no store
        is passed (see :class:`amp.descriptor.base.Descriptor`).
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
    fingerprints, fingerprintprimes, neighborlist, arrays : mapping
        Amp 1.x's views (see :class:`amp.descriptor.base.Descriptor`).
    """

    importname = ".descriptor.gaussian.Gaussian"

    #: Declared capability: :meth:`compute_contracted` gives forces
    #: without storing derivatives (see :func:`amp.potential.evaluate`).
    contracted_forces = True

    def __init__(self, cutoff: Any = Cosine(6.5),
                 Gs: dict[str, list[dict[str, Any]]] | list[dict[str, Any]]
                 | None = None,
                 dblabel: str | None = None, elements: list[str] | None = None,
                 version: str | None = None, fortran: bool = True,
                 mode: str = "atom-centered") -> None:
        if mode != "atom-centered":
            raise ValueError("Gaussian supports only mode='atom-centered', "
                             "got %r" % (mode,))
        if version not in (None, "2015.12"):
            raise ValueError("unknown Gaussian descriptor version %r"
                             % (version,))
        Descriptor.__init__(self, dblabel)
        self.cutoff = dict2cutoff(cutoff)
        if isinstance(elements, str):
            raise TypeError("elements must be a list of chemical symbols, "
                            "e.g. [%r], not a string" % elements)
        self.elements = (sorted(check_element(e, "Gaussian's elements")
                                for e in elements)
                         if elements is not None else None)
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
            missing = set(self.elements or ()) - set(Gs)
            if missing:
                raise ValueError("element %s has no symmetry functions"
                                 % ", ".join(sorted(missing)))
        self.Gs = Gs
        self.version = "2015.12"
        self.mode = mode
        self.fortran = fortran
        self._plans = None

    # Parameters ----------------------------------------------------------

    @property
    def parameters(self) -> dict[str, Any]:
        """The descriptor's parameters as a plain dict (Amp's keys)."""
        return {"importname": self.importname, "mode": self.mode,
                "version": self.version, "cutoff": self.cutoff.todict(),
                "Gs": (self.Gs if self.Gs is not None
                       else self._Gs_for_every_element),
                "elements": self.elements}

    def fingerprint_parameters(self) -> dict[str, Any]:
        """What the fingerprints depend on: ``{'cutoff': ..., 'Gs': ...}``
        as plain data. The databases record it; a checkpoint, an ensemble
        member and a database are compared by it.

        Raises
        ------
        ValueError
            The symmetry functions are not known yet (see :meth:`resolve`).
        """
        if self.Gs is None:
            raise ValueError("the descriptor has no symmetry functions yet; "
                             "resolve it for images first (resolve(images) "
                             "or calculate_fingerprints)")
        return json.loads(json.dumps({"cutoff": self.cutoff.todict(),
                                      "Gs": self.Gs}))

    def fingerprint_lengths(self) -> dict[str, int]:
        """``{element: number of features}``; ValueError before the
        symmetry functions are known (see :meth:`resolve`)."""
        if self.Gs is None:
            raise ValueError("the descriptor has no symmetry functions yet")
        return {element: len(G) for element, G in self.Gs.items()}

    def todict(self) -> dict[str, Any]:
        """Plain-data form, for model files (see :meth:`fromdict`)."""
        return json.loads(json.dumps(self.parameters))

    @classmethod
    def fromdict(cls, parameters: dict[str, Any]) -> Gaussian:
        """Rebuild from :meth:`todict`'s form (extra keys are ignored)."""
        return cls(cutoff=parameters["cutoff"], Gs=parameters.get("Gs"),
                   elements=parameters.get("elements"),
                   version=parameters.get("version"),
                   mode=parameters.get("mode", "atom-centered"))

    def tostring(self) -> str:
        """The parameters as a JSON string."""
        return json.dumps(self.parameters, sort_keys=True)

    def __repr__(self):
        n = {e: len(g) for e, g in (self.Gs or {}).items()}
        return "Gaussian(cutoff=%r, features per element=%s)" % (
            self.cutoff, n or "default")

    def resolve(self, images: dict[str, Atoms] | list[Atoms]) -> Gaussian:
        """This descriptor with the parameters the images decide.

        Elements not given are those of the images; symmetry functions not
        given are Amp's defaults for them (or the one list given for every
        element). Nothing is changed: a new descriptor is returned when
        something was missing, otherwise this one.

        Parameters
        ----------
        images : dict or list of ase.Atoms
            The images (hashed or not).

        Returns
        -------
        Gaussian

        Raises
        ------
        ElementNotCoveredError
            An image holds an element that the descriptor does not cover
            (a ValueError).
        """
        names = list(images) if isinstance(images, dict) else None
        frames = list(images.values()) if isinstance(images, dict) \
            else images
        symbols = [set(atoms.get_chemical_symbols()) for atoms in frames]
        found = sorted(set().union(*symbols))
        resolved = self
        if self.Gs is None:
            elements = self.elements if self.elements is not None else found
            Gs = (normalize_Gs(self._Gs_for_every_element, elements)
                  if self._Gs_for_every_element is not None
                  else make_default_symmetry_functions(elements))
            resolved = type(self)(cutoff=self.cutoff, Gs=Gs,
                                  dblabel=self.dblabel, elements=elements,
                                  fortran=self.fortran)
        covered = set(resolved.Gs or ())
        for index, image in enumerate(symbols):
            if image - covered:
                raise ElementNotCoveredError(
                    None if len(symbols) == 1 and names is None else
                    "image %d" % index if names is None else
                    "image %d (hash %s)" % (index, names[index]),
                    sorted(image - covered), sorted(covered))
        return resolved

    def _adopt(self, resolved):
        if resolved is not self:
            self.elements, self.Gs = resolved.elements, resolved.Gs
            self._plans = None

    def _element_plans(self):
        """The kernels' plans of each element (built once)."""
        if self._plans is None:
            elements = sorted(set(self.elements) | set(self.Gs))
            self._plans = ({element: ElementPlan(Gs, elements)
                            for element, Gs in self.Gs.items()},
                           {element: k for k, element in enumerate(elements)})
        return self._plans

    # Fingerprinting ------------------------------------------------------

    def compute(self, atoms: Atoms,
                derivatives: bool = False) -> ImageFingerprints:
        """Fingerprints of one image as :class:`ImageFingerprints`.

        Nothing is stored; :meth:`calculate_fingerprints` fills a store.
        """
        fingerprints, _ = self._compute(atoms, derivatives, None)
        return fingerprints

    def compute_contracted(self, atoms: Atoms,
                           evaluate: Callable[[str, np.ndarray, np.ndarray],
                                              np.ndarray]
                           ) -> tuple[ImageFingerprints, np.ndarray]:
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
        described = self.resolve([atoms])
        plans, codes_of = described._element_plans()
        symbols = atoms.get_chemical_symbols()
        nl = atoms_neighbor_list(atoms, self.cutoff.Rc)
        codes = np.array([codes_of[s] for s in symbols], dtype=np.int64)
        values, entries, blocks = {}, {}, {}
        gradient = None if evaluate is None else np.zeros((len(nl.i), 3))
        symbol_array = np.array(symbols)
        for element in sorted(set(symbols)):
            index = np.flatnonzero(symbol_array == element)
            element_evaluate = None if evaluate is None else \
                functools.partial(_evaluate_rows, evaluate, element, index)
            values[element], entries[element], blocks[element] = \
                compute_element(plans[element], self.cutoff, nl, codes,
                                index, derivatives, element_evaluate)
            if evaluate is not None:
                put_rows(gradient, entries[element], blocks[element])
        if derivatives:
            return ImageFingerprints(symbols, values, nl, entries,
                                     blocks), gradient
        return ImageFingerprints(symbols, values, nl), gradient

    def derivative_memory(self, images: dict[str, Atoms]) -> int:
        """Bytes that force training will hold for the derivatives of the
        hashed ``images`` (estimated from their neighbour lists; see
        :mod:`amp.descriptor.budget`). The calculator checks it against
        the memory available before anything is computed. Nothing is
        changed."""
        from .budget import derivative_memory

        return derivative_memory(self, images)


def _evaluate_rows(evaluate, element, index, rows, values):
    """Adapt ``evaluate(element, atom_indices, values)`` to the kernel's
    ``(rows, values)`` call for the atoms ``index`` of ``element``."""
    return evaluate(element, index[rows], values)
