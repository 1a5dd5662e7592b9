"""Energy, forces and stress of one image from a descriptor and a model.

This is what :meth:`amp.Amp.calculate` does, as one function of its inputs
(in the way ASE's ``lj.py`` keeps the physics apart from the calculator
protocol). With per-atom energies ``E_i = NN_{s(i)}(G_i)`` and fingerprints
``G_i`` that depend on the positions only through the neighbour-entry
vectors ``r_e`` (from atom ``i[e]`` to an image of atom ``j[e]``):

* ``E = sum_i E_i``;
* ``dE/dr_e = sum_i (dE_i/dG_i) . (dG_i/dr_e)``: the model's ``dE/dG``
  contracted with the descriptor's derivatives (a vector-Jacobian product,
  no Jacobian is built);
* ``F_a = sum_{e: i[e]=a} dE/dr_e - sum_{e: j[e]=a} dE/dr_e``
  (:func:`amp.descriptor.fingerprints.entry_forces`);
* the virial ``W = sum_e r_e (x) dE/dr_e`` and the stress ``W / V``
  (:func:`amp.descriptor.fingerprints.entry_virial`), for cells periodic
  in all three directions.

An image without atoms gets what ASE's own calculators (EMT, LJ) give:
energy 0, forces of shape ``(0, 3)`` and, in a 3-D periodic cell, zero
stress (:func:`results_without_atoms`); the neighbour search is never
asked about it.

Two paths give the same numbers (to round-off): the *fused* one, when the
descriptor declares ``contracted_forces`` and the model
``block_evaluation``, contracts the derivatives with ``dE/dG`` while they
are made and stores nothing; the *stored* one computes the fingerprints
and their derivatives (or reads them from a fingerprint store) first.

A model that declares ``separate_forces`` (Amp's ``KernelRidge``) predicts
forces with a model of their own rather than as ``-dE/dr``: it is given
the fingerprints (with derivatives when it has a force model) and returns
atomic energies and forces itself; it gives no stress.

Either way the fingerprints can be compared with the range the model was
trained on (:class:`FingerprintRange`): a network fed inputs beyond it
extrapolates, and nothing in its energies or forces says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np
from ase.stress import full_3x3_to_voigt_6_stress

from .descriptor.fingerprints import entry_forces, entry_virial
from .extrapolation import RangeScale, check_tolerance

__all__ = ["evaluate", "fused_path", "image_fingerprints",
           "FingerprintRange"]


class FingerprintRange:
    """How far fingerprints lie outside a model's training range.

    Each fingerprint component of an atom of element ``s`` is put on the
    scale the network sees (:class:`amp.extrapolation.RangeScale` of
    ``fprange[s]``: ``|x'|`` of the input scaling ``x' = -1 + 2 (x - min)
    / (max - min)``, ``<= 1`` inside the training range). An atom
    extrapolates when any of its components is beyond ``1 + tolerance``.

    Parameters
    ----------
    fprange : dict
        ``{element: [[min, max], ...]}`` (the model's ``fprange``).
    tolerance : float
        How far beyond the range, in units of the half-range, a component
        may go before its atom counts (default 0.1).
    """

    def __init__(self, fprange: dict, tolerance: float = 0.1) -> None:
        self.tolerance = check_tolerance(tolerance)
        self._scales = {element: RangeScale(pairs)
                        for element, pairs in fprange.items()}

    def check(self, fingerprints: Any,
              per_atom: bool = False) -> dict[str, Any]:
        """Count the atoms of an image outside the range.

        Parameters
        ----------
        fingerprints : ImageFingerprints
            Its ``values`` (per element) and ``atom_index``.
        per_atom : bool
            Also return each atom's largest scaled value.

        Returns
        -------
        dict
            ``count`` (atoms with a component beyond ``1 + tolerance``),
            ``worst`` (the largest scaled value of any component; <= 1
            inside the range), ``atom`` and ``element`` and ``feature``
            (where it is), ``tolerance``; with ``per_atom``, ``scaled``
            (each atom's largest value, shape (n_atoms,)) and ``atoms``
            (the flags, ``scaled > 1 + tolerance``). Elements the range
            does not know count as extrapolating (``worst`` inf).
        """
        scaled_a = np.zeros(fingerprints.n_atoms)
        worst: tuple[float, Any, Any] = (0.0, None, None)
        for element, block_af in fingerprints.values.items():
            index = fingerprints.atom_index[element]
            if len(index) == 0:
                continue
            scale = self._scales.get(element)
            if scale is None or scale.n_features != np.shape(block_af)[1]:
                scaled_a[index] = np.inf
                worst = max(worst, (np.inf, element, None),
                            key=lambda w: w[0])
                continue
            magnitude_af = scale.scaled(block_af)
            row, feature = np.unravel_index(np.argmax(magnitude_af),
                                            magnitude_af.shape)
            if magnitude_af[row, feature] > worst[0]:
                worst = (float(magnitude_af[row, feature]), element,
                         (int(index[row]), int(feature)))
            scaled_a[index] = magnitude_af.max(axis=1)
        flags_a = scaled_a > 1.0 + self.tolerance
        where = worst[2] or (None, None)
        result: dict[str, Any] = {
            "count": int(np.count_nonzero(flags_a)), "worst": worst[0],
            "atom": where[0], "element": worst[1], "feature": where[1],
            "tolerance": self.tolerance}
        if per_atom:
            result.update(scaled=scaled_a, atoms=flags_a)
        return result

if TYPE_CHECKING:
    from ase import Atoms


def fused_path(descriptor: Any, model: Any) -> bool:
    """Whether ``descriptor`` and ``model`` declare the fused force path."""
    return bool(getattr(type(descriptor), "contracted_forces", False)
                and getattr(type(model), "block_evaluation", False))


def separate_forces(model: Any) -> bool:
    """Whether ``model`` declares forces of their own (not ``-dE/dr``)."""
    return bool(getattr(type(model), "separate_forces", False))


def image_fingerprints(descriptor: Any, atoms: Atoms, store: Any = None,
                       derivatives: bool = True) -> Any:
    """Fingerprints (and derivatives) of ``atoms``, through ``store`` if
    given.

    Parameters
    ----------
    descriptor : descriptor
    atoms : ase.Atoms
    store : FingerprintStore, optional
        From ``descriptor.open_store(dblabel)``: the fingerprints are read
        from it, or computed and kept there.
    derivatives : bool
        Also the fingerprint derivatives.
    """
    if store is None:
        return descriptor.compute(atoms, derivatives)
    from .utilities import get_hash

    key = get_hash(atoms)
    descriptor.calculate_fingerprints({key: atoms}, store=store,
                                      calculate_derivatives=derivatives)
    return store[key]


def results_without_atoms(atoms: Atoms, members: int | None = None
                          ) -> dict[str, Any]:
    """ASE's results for an image with no atoms, as ASE's EMT gives them.

    Parameters
    ----------
    atoms : ase.Atoms
        Without atoms; its cell decides whether there is a stress.
    members : int, optional
        For a committee: every value gets a leading axis of this length
        (and ``stress`` is None outside a 3-D periodic cell).

    Returns
    -------
    dict
        ``energy`` 0, ``energies`` and ``forces`` of no atoms and, for a
        cell periodic in three directions, a zero ``stress``.
    """
    lead = () if members is None else (members,)
    periodic = atoms.cell.rank == 3 and all(atoms.pbc)
    results: dict[str, Any] = {"energies": np.zeros(lead + (0,)),
                               "forces": np.zeros(lead + (0, 3))}
    if members is None:
        results["energy"] = results["free_energy"] = 0.0
        if periodic:
            results["stress"] = np.zeros(6)
    else:
        results["energy"] = np.zeros(members)
        results["stress"] = np.zeros((members, 6)) if periodic else None
    return results


def _separate_forces_results(descriptor, model, atoms, store, properties,
                             extrapolation=None):
    """Results of a model with forces of their own (see the module
    docstring); it raises for a property it cannot give."""
    model.check_properties(properties)
    model.prepare(descriptor)
    forces = model.has_force_model
    fingerprints = image_fingerprints(descriptor, atoms, store, forces)
    atomic, predicted = model.predict(fingerprints, forces)
    energy = float(np.sum(atomic))
    results = {"energy": energy, "free_energy": energy,
               "energies": np.asarray(atomic, dtype=float)}
    if predicted is not None:
        results["forces"] = predicted
    if extrapolation is not None:
        results["extrapolation"] = extrapolation(fingerprints)
    return results


def evaluate(descriptor: Any, model: Any, atoms: Atoms, store: Any = None,
             properties: Optional[list] = None,
             extrapolation: Optional[Callable[[Any], dict]] = None
             ) -> dict[str, Any]:
    """Energy, per-atom energies, forces and stress of one image.

    Parameters
    ----------
    descriptor : descriptor
        e.g. :class:`amp.descriptor.gaussian.Gaussian`.
    model : model
        e.g. :class:`amp.model.neuralnetwork.NeuralNetwork`.
    atoms : ase.Atoms
    store : FingerprintStore, optional
        Keep the fingerprints there (a database with a ``dblabel``);
        without one nothing is stored or written.
    properties : list of str, optional
        What the caller asked for; a model with ``separate_forces`` raises
        a clear error for one it cannot give (the others compute
        everything whatever is asked).
    extrapolation : callable, optional
        ``extrapolation(fingerprints)`` (e.g. a
        :class:`FingerprintRange`'s ``check``); its answer goes to
        ``results['extrapolation']``.

    Returns
    -------
    dict
        ASE's results: ``energy``, ``free_energy``, ``energies``,
        ``forces`` and, for a cell periodic in three directions, ``stress``
        (Voigt order, eV/A^3); a model with ``separate_forces`` gives no
        stress, and no forces when it has no force model; with
        ``extrapolation``, its answer too.
    """
    if len(atoms) == 0:
        return results_without_atoms(atoms)
    if separate_forces(model):
        return _separate_forces_results(descriptor, model, atoms, store,
                                        properties, extrapolation)
    if store is None and fused_path(descriptor, model):
        atomic = np.empty(len(atoms))
        evaluate_block = model.block_evaluator()

        def evaluate_atoms(element, index, block):
            atomic[index], dE_dG = evaluate_block(element, block)
            return dE_dG

        fingerprints, gradient = descriptor.compute_contracted(
            atoms, evaluate_atoms)
    else:
        fingerprints = image_fingerprints(descriptor, atoms, store)
        atomic, dE_dG = model.evaluate(fingerprints, forces=True)
        gradient = fingerprints.entry_gradients(dE_dG)
    energy = float(np.sum(atomic))
    results = {"energy": energy, "free_energy": energy,
               "energies": np.asarray(atomic, dtype=float),
               "forces": entry_forces(fingerprints.neighbors, gradient)}
    if atoms.cell.rank == 3 and all(atoms.pbc):
        virial = entry_virial(fingerprints.neighbors, gradient)
        results["stress"] = full_3x3_to_voigt_6_stress(
            virial / atoms.get_volume())
    if extrapolation is not None:
        results["extrapolation"] = extrapolation(fingerprints)
    return results
