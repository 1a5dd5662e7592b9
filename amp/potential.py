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

Two paths give the same numbers (to round-off): the *fused* one, when the
descriptor declares ``contracted_forces`` and the model
``block_evaluation``, contracts the derivatives with ``dE/dG`` while they
are made and stores nothing; the *stored* one computes the fingerprints
and their derivatives (or reads them from a fingerprint store) first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from ase.stress import full_3x3_to_voigt_6_stress

from .descriptor.fingerprints import entry_forces, entry_virial

if TYPE_CHECKING:
    from ase import Atoms


def fused_path(descriptor: Any, model: Any) -> bool:
    """Whether ``descriptor`` and ``model`` declare the fused force path."""
    return bool(getattr(type(descriptor), "contracted_forces", False)
                and getattr(type(model), "block_evaluation", False))


def image_fingerprints(descriptor: Any, atoms: Atoms,
                       store: Any = None) -> Any:
    """Fingerprints and derivatives of ``atoms``, through ``store`` if given.

    Parameters
    ----------
    descriptor : descriptor
    atoms : ase.Atoms
    store : FingerprintStore, optional
        From ``descriptor.open_store(dblabel)``: the fingerprints are read
        from it, or computed and kept there.
    """
    if store is None:
        return descriptor.compute(atoms, True)
    from .utilities import get_hash

    key = get_hash(atoms)
    descriptor.calculate_fingerprints({key: atoms}, store=store,
                                      calculate_derivatives=True)
    return store[key]


def evaluate(descriptor: Any, model: Any, atoms: Atoms,
             store: Any = None) -> dict[str, Any]:
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

    Returns
    -------
    dict
        ASE's results: ``energy``, ``free_energy``, ``energies``,
        ``forces`` and, for a cell periodic in three directions, ``stress``
        (Voigt order, eV/A^3).
    """
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
    return results
