"""The n2p2 descriptor: every symmetry function of a potential, per image.

:class:`N2P2Descriptor` turns an ``ase.Atoms`` into each atom's
fingerprint in n2p2's order (unscaled values, the potential's length unit),
and, with :meth:`N2P2Descriptor.compute_contracted`, into ``dE / d r_e``
for every neighbour entry without building a derivative array: centre
atoms go in chunks of one element through the radial (:mod:`.radial`),
Gaussian angular (:mod:`.angular`) and compact angular (:mod:`.compact`)
kernels, the model turns the chunk's fingerprints into ``dE/dG``, and the
kernels contract their derivatives with it at once (:mod:`.chunk`).
"""

import numpy as np

from ..fingerprints import ImageFingerprints
from ..neighbors import atoms_neighbor_list
from .angular import AngularPlan
from .chunk import Slots
from .compact import CompactPlan
from .functions import (ANGULAR, COMPACT, RADIAL, element_order,
                        sort_key)
from .radial import RadialPlan

__all__ = ["N2P2Descriptor", "PAIRS_PER_CHUNK"]

# Neighbour pairs (sum over centres of n_neighbours^2) per chunk of
# centres: enough work per numpy call, small enough to stay in cache.
PAIRS_PER_CHUNK = 2 ** 17


class _ElementPlan:
    def __init__(self, functions, index, atomic_numbers, cutoff_type,
                 cutoff_alpha):
        self.functions = functions
        self.n_features = len(functions)
        numbered = list(enumerate(functions))
        self.radial = RadialPlan([(k, f) for k, f in numbered
                                  if f.type in RADIAL], index,
                                 atomic_numbers, cutoff_type, cutoff_alpha)
        self.angular = AngularPlan([(k, f) for k, f in numbered
                                    if f.type in ANGULAR
                                    and f.type not in COMPACT], index,
                                   atomic_numbers, cutoff_type, cutoff_alpha)
        self.compact = CompactPlan([(k, f) for k, f in numbered
                                    if f.type in ANGULAR
                                    and f.type in COMPACT], index,
                                   atomic_numbers)


class N2P2Descriptor:
    """The symmetry functions of an n2p2 potential.

    Parameters
    ----------
    functions : list of SymmetryFunction
        In any order; each element's are sorted as n2p2 sorts them.
    elements : list of str
        The potential's elements.
    cutoff_type : int
        n2p2's ``cutoff_type`` (0 to 8).
    cutoff_alpha : float
        Its inner-cutoff parameter.
    length_unit : float
        Length of the potential's unit in Angstrom (``ase.units.Bohr`` for
        a potential in bohr); positions are divided by it.
    conv_length : float
        The potential's ``conv_length`` (only for n2p2's ordering).

    Attributes
    ----------
    elements : list of str
        Sorted by atomic number.
    functions : dict
        ``{element: [SymmetryFunction, ...]}`` in n2p2's order.
    rc_max : float
        Largest cutoff radius, in the potential's unit.
    """

    #: Declared capability: :meth:`compute_contracted` gives forces
    #: without storing derivatives (see :func:`amp.potential.evaluate`).
    contracted_forces = True

    def __init__(self, functions, elements, cutoff_type, cutoff_alpha=0.0,
                 length_unit=1.0, conv_length=1.0):
        from ase.data import atomic_numbers

        self.elements = element_order(list(elements))
        self.index = {e: k for k, e in enumerate(self.elements)}
        self.cutoff_type, self.cutoff_alpha = cutoff_type, cutoff_alpha
        if not (length_unit > 0.0 and np.isfinite(length_unit)):
            raise ValueError("length_unit must be a positive number, got %r"
                             % (length_unit,))
        self.length_unit = float(length_unit)
        self.functions = {}
        for element in self.elements:
            own = [f for f in functions if f.element == element]
            if not own:
                raise ValueError("element %s has no symmetry functions"
                                 % element)
            self.functions[element] = sorted(
                own, key=lambda f: sort_key(f, self.index, cutoff_type,
                                            cutoff_alpha, conv_length))
        for f in functions:
            if f.element not in self.index or any(
                    e not in self.index for e in f.neighbors):
                raise ValueError("%s names an element that is not one of "
                                 "the potential's (%s)"
                                 % (f.describe(), " ".join(self.elements)))
        self.rc_max = max(f.rc for f in functions)
        z = [atomic_numbers[e] for e in self.elements]
        self._plans = {e: _ElementPlan(self.functions[e], self.index, z,
                                       cutoff_type, cutoff_alpha)
                       for e in self.elements}

    def __repr__(self):
        return "N2P2Descriptor(elements=%s, features=%s)" % (
            self.elements, {e: len(f) for e, f in self.functions.items()})

    def feature_counts(self):
        """``{element: number of symmetry functions}``."""
        return {e: len(f) for e, f in self.functions.items()}

    def compute(self, atoms):
        """Fingerprints of one image (no derivatives)."""
        fingerprints, _ = self._compute(atoms, None)
        return fingerprints

    def compute_contracted(self, atoms, evaluate):
        """Fingerprints and ``dE / d r_e`` of every neighbour entry.

        Parameters
        ----------
        atoms : ase.Atoms
        evaluate : callable
            ``evaluate(element, atom_indices, values) -> dE_dG``: called
            with the finished (unscaled) fingerprints of a chunk of atoms
            of one element; returns ``dE/dG`` for them.

        Returns
        -------
        fingerprints : ImageFingerprints
        entry_gradient : ndarray, shape (n_entries, 3)
            ``dE / d r_e`` in energy per Angstrom (entries of
            ``fingerprints.neighbors``).
        """
        return self._compute(atoms, evaluate)

    def _compute(self, atoms, evaluate):
        symbols = atoms.get_chemical_symbols()
        unknown = sorted(set(symbols) - set(self.index))
        if unknown:
            raise ValueError(
                "the image contains %s, which the potential does not know "
                "(its elements: %s)" % (", ".join(unknown),
                                        " ".join(self.elements)))
        nl = atoms_neighbor_list(atoms, self.rc_max * self.length_unit)
        codes = np.array([self.index[s] for s in symbols], dtype=np.int64)
        scale = 1.0 / self.length_unit
        gradient = None if evaluate is None else np.zeros((len(nl.i), 3))
        values = {}
        counts = np.diff(nl.first_entry)
        for element in self.elements:
            atom_index = np.flatnonzero(codes == self.index[element])
            if len(atom_index) == 0:
                continue
            plan = self._plans[element]
            g_af = np.zeros((len(atom_index), plan.n_features))
            for rows in _chunks(counts[atom_index]):
                centres = atom_index[rows]
                slots = Slots(nl, codes, centres, len(self.elements), scale)
                g_chunk = g_af[rows]
                want = evaluate is not None
                radial = plan.radial.values(slots, g_chunk)
                angular = plan.angular.values(slots, g_chunk, want)
                compact = plan.compact.values(slots, g_chunk, want)
                g_af[rows] = g_chunk
                if not want:
                    continue
                dE_dg_af = np.asarray(evaluate(element, centres, g_chunk),
                                      dtype=float)
                plan.radial.gradient(radial, slots, dE_dg_af)
                plan.angular.gradient(angular, slots, dE_dg_af)
                plan.compact.gradient(compact, slots, dE_dg_af)
                gradient[slots.entries] = slots.entry_gradients() * scale
            values[element] = g_af
        return ImageFingerprints(symbols, values, nl), gradient


def _chunks(counts):
    """Consecutive row slices whose ``sum(count^2)`` stays near
    :data:`PAIRS_PER_CHUNK`."""
    work = np.cumsum(counts.astype(np.int64) ** 2)
    start = 0
    while start < len(counts):
        done = work[start - 1] if start else 0
        stop = int(np.searchsorted(work, done + PAIRS_PER_CHUNK, "right"))
        stop = max(stop, start + 1)
        yield slice(start, stop)
        start = stop
