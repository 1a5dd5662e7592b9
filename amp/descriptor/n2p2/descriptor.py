"""The n2p2 descriptor: every symmetry function of a potential, per image.

:class:`N2P2Descriptor` turns an ``ase.Atoms`` into each atom's
fingerprint in n2p2's order (unscaled values, the potential's length unit),
and, with :meth:`N2P2Descriptor.compute_contracted`, into ``dE / d r_e``
for every neighbour entry without building a derivative array. Per
element: the centres' neighbours are laid out in slots once
(:class:`.chunk.Slots`), the radial terms of all centres are computed at
once (:mod:`.radial`), then chunks of centres go through the Gaussian
angular (:mod:`.angular`) and compact angular (:mod:`.compact`) kernels,
the model turns each chunk's fingerprints into ``dE/dG``, and the kernels
contract their derivatives with it at once; the radial gradient follows
for all centres.
"""

import threading
from collections.abc import Callable

import numpy as np

from ..base import Descriptor
from ..fingerprints import ImageFingerprints
from ..neighbors import atoms_neighbor_list
from .angular import AngularPlan
from .chunk import Scratch, Slots
from .compact import CompactPlan
from .functions import (ANGULAR, COMPACT, RADIAL, element_order,
                        sort_key)
from .radial import RadialPlan

__all__ = ["N2P2Descriptor", "PAIRS_PER_CHUNK"]

# Neighbour pairs (sum over centres of n_neighbours^2) per chunk of
# centres. On n2p2's water box (about 96 neighbours per atom, 25 centres per
# chunk, 20,000 to 45,000 triplets per block) 2^18 and 2^19 measured alike
# and fastest; 2^16 was 25 % and 2^15 60 % slower (the fixed cost of some
# 150 numpy calls per block).
PAIRS_PER_CHUNK = 2 ** 18


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


class N2P2Descriptor(Descriptor):
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

        Descriptor.__init__(self)
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
        self._scratch = Scratch()
        self._scratch_lock = threading.Lock()

    def __getstate__(self):
        # Copies and pickles get their own scratch memory.
        state = dict(self.__dict__)
        del state["_scratch"], state["_scratch_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._scratch = Scratch()
        self._scratch_lock = threading.Lock()

    def resolve(self, images):
        """This descriptor (an n2p2 potential decides every parameter);
        ValueError when an image holds an element it does not cover."""
        images = images.values() if isinstance(images, dict) else images
        found = {s for atoms in images for s in atoms.get_chemical_symbols()}
        unknown = found - set(self.elements)
        if unknown:
            raise ValueError(
                "the image contains %s, which this n2p2 potential does not "
                "cover (it was trained for %s only)"
                % (", ".join(sorted(unknown)), ", ".join(self.elements)))
        return self

    def _adopt(self, resolved):
        """Nothing to take: the parameters come from the potential."""

    def fingerprint_parameters(self):
        """What the fingerprints depend on, as plain data (what a database
        of them records)."""
        import dataclasses

        return {"n2p2": {e: [{k: v for k, v in dataclasses.asdict(f).items()
                              if k != "line"} for f in fs]
                         for e, fs in self.functions.items()},
                "cutoff_type": self.cutoff_type,
                "cutoff_alpha": float(self.cutoff_alpha),
                "length_unit": self.length_unit}

    def __repr__(self):
        return "N2P2Descriptor(elements=%s, features=%s)" % (
            self.elements, {e: len(f) for e, f in self.functions.items()})

    def feature_counts(self) -> dict[str, int]:
        """``{element: number of symmetry functions}``."""
        return {e: len(f) for e, f in self.functions.items()}

    def compute(self, atoms) -> ImageFingerprints:
        """Fingerprints of one image (no derivatives)."""
        fingerprints, _ = self._compute(atoms, None)
        return fingerprints

    def compute_contracted(self, atoms, evaluate: Callable) -> tuple[
            ImageFingerprints, np.ndarray]:
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
        first = nl.first_entry
        counts = np.diff(first)
        # The scratch buffers, or fresh ones when another thread (or a
        # re-entrant call) is using them.
        mine = self._scratch_lock.acquire(blocking=False)
        scratch = self._scratch if mine else Scratch()
        try:
            for element in self.elements:
                values[element] = self._element(
                    element, nl, first, codes, counts, scale, evaluate,
                    gradient, scratch)
        finally:
            if mine:
                self._scratch_lock.release()
        values = {e: v for e, v in values.items() if v is not None}
        return ImageFingerprints(symbols, values, nl), gradient

    def _element(self, element, nl, first, codes, counts, scale, evaluate,
                 gradient, scratch):
        """Fingerprints of the atoms of one element (None if there are
        none), adding their entries' gradients to ``gradient``."""
        atom_index = np.flatnonzero(codes == self.index[element])
        if len(atom_index) == 0:
            return None
        # Centres with similar numbers of neighbours share chunks, so that
        # the padded triplet rows (.chunk) waste little.
        atom_index = atom_index[np.argsort(counts[atom_index],
                                           kind="stable")]
        plan = self._plans[element]
        slots = Slots(nl, first, codes, atom_index, len(self.elements),
                      scale, scratch)
        g_af = np.zeros((len(atom_index), plan.n_features))
        radial = plan.radial.values(slots, g_af)
        angular = plan.angular.prepare(slots)
        compact = plan.compact.prepare(slots)
        want = evaluate is not None
        dE_dg_af = np.zeros_like(g_af) if want else None
        for rows in _chunks(counts[atom_index]):
            scratch.reset()
            g_rows = g_af[rows]
            angular_state = plan.angular.values(slots, angular, rows,
                                                g_rows, want)
            compact_state = plan.compact.values(slots, compact, rows,
                                                g_rows, want)
            if not want:
                continue
            dE_dg = np.asarray(evaluate(element, atom_index[rows], g_rows),
                               dtype=float)
            dE_dg_af[rows] = dE_dg
            plan.angular.gradient(angular_state, slots, dE_dg)
            plan.compact.gradient(compact_state, slots, dE_dg)
        if want:
            plan.radial.gradient(radial, slots, dE_dg_af)
            gradient[slots.entries] = slots.entry_gradients() * scale
        return g_af[np.argsort(atom_index)]


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
