"""What the Zernike and Bispectrum descriptors share: Amp's API around a
neighbour-density kernel.

Both describe atom ``i`` by the density of its neighbours inside the
cutoff sphere, each neighbour ``j`` weighted by a coefficient
``G[element of i][element of j]`` (Amp's ``Gs``; by default the atomic
number of ``j``) and by the cutoff function, expanded in a basis whose
rotation invariants are the fingerprint (:mod:`amp.descriptor.spherical`).
:class:`DensityDescriptor` holds those coefficients, Amp's keywords and
parameter dictionary, and turns an image into
:class:`~.fingerprints.ImageFingerprints` with the kernel of its
subclass; the stores, workers and Amp 1.x's views are those of every
descriptor (:class:`~amp.descriptor.base.Descriptor`).

Beyond Amp 1.0.1, which refuses both: the degree (``nmax``, ``jmax``) may
differ per element (a dict), and the cutoff may be a ``Polynomial``.
"""

import abc
import json
import numbers

import numpy as np
from ase.data import atomic_numbers

from .base import Descriptor
from .cutoffs import Cosine, dict2cutoff
from .fingerprints import ImageFingerprints
from .neighbors import atoms_neighbor_list

__all__ = ["DensityDescriptor", "generate_coefficients",
           "normalize_coefficients"]


def generate_coefficients(elements):
    """Amp's default density coefficients: every centre element weighs a
    neighbour by the neighbour's atomic number.

    Parameters
    ----------
    elements : list of str

    Returns
    -------
    dict
        ``{centre element: {neighbour element: atomic number}}``.
    """
    row = {element: atomic_numbers[element] for element in elements}
    return {element: dict(row) for element in elements}


def _is_number(value):
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and np.isfinite(value))


def normalize_coefficients(Gs, elements):
    """Check density coefficients and return them as plain dicts.

    Parameters
    ----------
    Gs : dict
        ``{centre element: {neighbour element: number}}``.
    elements : list of str
        Every element the descriptor covers: each needs a row, and each
        row a coefficient for each of them.

    Raises
    ------
    TypeError, ValueError
        Naming the element (pair) that is missing or not a finite number.
    """
    if not isinstance(Gs, dict):
        raise TypeError("Gs must be a dict {centre element: {neighbour "
                        "element: coefficient}}, got %s" % type(Gs).__name__)
    out = {}
    for element in elements:
        row = Gs.get(element)
        if not isinstance(row, dict):
            raise ValueError(
                "Gs has no coefficients for centre element %s; give "
                "Gs[%r] = {neighbour element: coefficient} for each of %s"
                % (element, element, ", ".join(elements)))
        clean = {}
        for other in elements:
            if other not in row:
                raise ValueError("Gs[%r] has no coefficient for neighbour "
                                 "element %s" % (element, other))
            if not _is_number(row[other]):
                raise ValueError("Gs[%r][%r] must be a finite number, got %r"
                                 % (element, other, row[other]))
            clean[str(other)] = row[other]
        out[str(element)] = clean
    return out


class DensityDescriptor(Descriptor):
    """Base of :class:`~amp.descriptor.zernike.Zernike` and
    :class:`~amp.descriptor.bispectrum.Bispectrum`.

    Subclasses set :attr:`importname`, :attr:`degree_name` (``'nmax'`` or
    ``'jmax'``), :attr:`tables` (the kernel's tables of a degree) and
    :attr:`kernel` (a function with the signature of
    :func:`amp.descriptor.spherical.zernike.zernike_element`), and
    implement :meth:`check_degree`.

    Parameters
    ----------
    cutoff : Cosine, Polynomial, dict or float
        A number means ``Cosine`` of that radius.
    Gs : dict, optional
        ``{centre element: {neighbour element: coefficient}}``; None gives
        :func:`generate_coefficients` of the elements.
    degree : int, float or dict
        ``nmax`` or ``jmax``, one for every element or ``{element:
        value}``.
    dblabel : str, optional
        Amp 1.x's view (see :class:`~amp.descriptor.base.Descriptor`).
    elements : list of str, optional
        Elements the descriptor covers; from ``Gs`` or the images when
        None.
    version : str, optional
        Amp's descriptor version (only :attr:`version_name`).
    mode : str
        Only ``'atom-centered'``.
    """

    importname = None
    degree_name = None
    version_name = "2016.02"
    tables = None
    kernel = None

    def __init__(self, cutoff=Cosine(6.5), Gs=None, degree=None,
                 dblabel=None, elements=None, version=None,
                 mode="atom-centered"):
        Descriptor.__init__(self, dblabel)
        name = type(self).__name__
        if mode != "atom-centered":
            raise ValueError("%s supports only mode='atom-centered', got %r"
                             % (name, mode))
        if version not in (None, self.version_name):
            raise ValueError("unknown %s descriptor version %r (known: %s)"
                             % (name, version, self.version_name))
        self.cutoff = dict2cutoff(cutoff)
        if isinstance(degree, dict):
            degree = {str(e): self.check_degree(v, e)
                      for e, v in degree.items()}
        else:
            degree = self.check_degree(degree)
        self.degree = degree
        if elements is None and isinstance(Gs, dict):
            elements = list(Gs)
        if elements is None and isinstance(degree, dict):
            elements = list(degree)
        if elements is not None:
            elements = list(elements)
            unknown = [e for e in elements if not isinstance(e, str)
                       or e not in atomic_numbers]
            if unknown:
                raise ValueError("elements must be chemical symbols, got %s"
                                 % ", ".join(map(repr, unknown)))
        self.elements = sorted(elements) if elements is not None else None
        self.coefficients = None
        if Gs is not None:
            if self.elements is None:
                raise ValueError("Gs must be a dict {centre element: "
                                 "{neighbour element: coefficient}}")
            self.coefficients = normalize_coefficients(Gs, self.elements)
        if isinstance(degree, dict) and self.elements is not None:
            self._check_degree_covers(self.elements)
        self.version = self.version_name
        self.mode = mode
        self._kernels = None

    # To be given by subclasses -------------------------------------------

    @abc.abstractmethod
    def check_degree(self, value, element=None):
        """Validate ``nmax``/``jmax`` (for ``element``) and return it."""

    # Parameters ----------------------------------------------------------

    def _check_degree_covers(self, elements):
        missing = sorted(set(elements) - set(self.degree))
        if missing:
            raise ValueError("%s is given per element but not for %s"
                             % (self.degree_name, ", ".join(missing)))

    def degree_of(self, element):
        """``nmax``/``jmax`` of ``element``."""
        if isinstance(self.degree, dict):
            return self.degree[element]
        return self.degree

    @property
    def parameters(self):
        """The descriptor's parameters as a plain dict (Amp's keys)."""
        return {"importname": self.importname, "mode": self.mode,
                "version": self.version, "cutoff": self.cutoff.todict(),
                "Gs": self.coefficients, self.degree_name: self.degree,
                "elements": self.elements}

    def todict(self):
        """Plain-data form, for model files (see :meth:`fromdict`)."""
        return json.loads(json.dumps(self.parameters))

    @classmethod
    def fromdict(cls, parameters):
        """Rebuild from :meth:`todict`'s form (extra keys are ignored)."""
        importname = parameters.get("importname", cls.importname)
        if importname != cls.importname:
            raise ValueError("not a %s descriptor (importname %r)"
                             % (cls.__name__, importname))
        keywords = {cls.degree_name: parameters[cls.degree_name]}
        return cls(cutoff=parameters["cutoff"], Gs=parameters.get("Gs"),
                   elements=parameters.get("elements"),
                   version=parameters.get("version"),
                   mode=parameters.get("mode", "atom-centered"), **keywords)

    def tostring(self):
        """The parameters as a JSON string."""
        return json.dumps(self.parameters, sort_keys=True)

    def __repr__(self):
        return "%s(cutoff=%r, %s=%r)" % (type(self).__name__, self.cutoff,
                                         self.degree_name, self.degree)

    def fingerprint_lengths(self):
        """``{element: number of features}`` (elements must be known)."""
        if self.elements is None:
            raise ValueError("the descriptor's elements are not known yet; "
                             "calculate fingerprints first")
        return {element: self.tables(self.degree_of(element)).n_features
                for element in self.elements}

    def fingerprint_parameters(self):
        """What the fingerprints depend on, as plain data: the class, the
        cutoff, the coefficients and the degree. The databases record it;
        a checkpoint, an ensemble member and a database are compared by
        it.

        Raises
        ------
        ValueError
            The coefficients are not known yet (see :meth:`resolve`).
        """
        if self.coefficients is None:
            raise ValueError("the descriptor has no coefficients yet; "
                             "resolve it for images first (resolve(images) "
                             "or calculate_fingerprints)")
        return json.loads(json.dumps({
            "importname": self.importname, "cutoff": self.cutoff.todict(),
            "Gs": self.coefficients, self.degree_name: self.degree}))

    # Fingerprinting ------------------------------------------------------

    def resolve(self, images):
        """This descriptor with the parameters the images decide.

        Elements not given are those of the images; coefficients not
        given are :func:`generate_coefficients` of the elements. Nothing
        is changed: a new descriptor is returned when something was
        missing, otherwise this one.

        Parameters
        ----------
        images : dict or list of ase.Atoms

        Raises
        ------
        ValueError
            An image holds an element the descriptor does not cover, or
            the degree is given per element and misses one.
        """
        names = list(images) if isinstance(images, dict) else None
        images = images.values() if isinstance(images, dict) else images
        symbols = [set(atoms.get_chemical_symbols()) for atoms in images]
        resolved = self
        if self.coefficients is None:
            elements = self.elements if self.elements is not None else \
                sorted(set().union(*symbols))
            resolved = type(self)(cutoff=self.cutoff,
                                  Gs=generate_coefficients(elements),
                                  dblabel=self.dblabel, elements=elements,
                                  **{self.degree_name: self.degree})
        covered = set(resolved.elements)
        for index, image in enumerate(symbols):
            if image - covered:
                raise ValueError(
                    "the image%s contains %s, which this descriptor does not "
                    "cover (its elements: %s); give elements= (and Gs=) with "
                    "every element of the images" % (
                        "" if len(symbols) == 1 else " %s" % (
                            names[index] if names else index),
                        ", ".join(sorted(image - covered)),
                        ", ".join(sorted(covered))))
        return resolved

    def _adopt(self, resolved):
        if resolved is not self:
            self.elements = resolved.elements
            self.coefficients = resolved.coefficients
            self._kernels = None

    def _element_kernels(self):
        """Each element's tables and neighbour weights, and the element
        codes (built once, for a resolved descriptor)."""
        if self._kernels is None:
            codes = {element: k for k, element in enumerate(self.elements)}
            self._kernels = (
                {element: self.tables(self.degree_of(element))
                 for element in self.elements},
                {element: np.array([float(self.coefficients[element][x])
                                    for x in self.elements])
                 for element in self.elements}, codes)
        return self._kernels

    def compute(self, atoms, derivatives=False):
        """Fingerprints of one image as :class:`ImageFingerprints`.

        Nothing is stored; :meth:`calculate_fingerprints` fills a store.
        """
        tables, weights, codes_of = self.resolve([atoms])._element_kernels()
        symbols = atoms.get_chemical_symbols()
        nl = atoms_neighbor_list(atoms, self.cutoff.Rc)
        codes = np.array([codes_of[s] for s in symbols], dtype=np.int64)
        symbol_array = np.array(symbols)
        values, entries, blocks = {}, {}, {}
        for element in sorted(set(symbols)):
            index = np.flatnonzero(symbol_array == element)
            values[element], entries[element], blocks[element] = \
                self.kernel(tables[element], self.cutoff, nl, codes,
                            weights[element], index, derivatives)
        if derivatives:
            return ImageFingerprints(symbols, values, nl, entries, blocks)
        return ImageFingerprints(symbols, values, nl)

    def derivative_memory(self, images):
        """Bytes that force training will hold for the derivatives of the
        hashed ``images``: every feature of an atom moves with each of
        its neighbours (periodic images of one atom count once) and with
        the atom itself, 3 directions each, 12 bytes per value (see
        :mod:`amp.descriptor.budget`). Nothing is changed."""
        from .budget import _ROW_BYTES, _VALUE_BYTES

        lengths = self.resolve(images).fingerprint_lengths()
        values, rows = 0, 0
        for atoms in images.values():
            n = len(atoms)
            width = np.array([lengths[s] for s in
                              atoms.get_chemical_symbols()], dtype=np.int64)
            nl = atoms_neighbor_list(atoms, self.cutoff.Rc)
            pairs = np.unique(nl.i * n + nl.j)
            centre, other = pairs // n, pairs % n
            values += 3 * int(width[centre[centre != other]].sum())
            values += 3 * int(width.sum())
            rows += 3 * n
        return values * _VALUE_BYTES + (rows + 1) * _ROW_BYTES
