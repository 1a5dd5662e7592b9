"""ASE calculator for (s)GDML models.

Energies, forces and (for periodic models) stress are returned in ASE's
units (eV, eV/Å, eV/Å³). The model's units are read from its ``r_unit`` and
``e_unit`` labels; models without labels are assumed to use kcal/mol and Å,
like the sgdml package's own calculator, unless `E_to_eV` / `Ang_to_R` /
`F_to_eV_Ang` are given. :class:`SGDMLCalculator` is the same class under
the name sgdml users import.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
from ase import units
from ase.calculators.calculator import (Calculator,
                                         PropertyNotImplementedError,
                                         all_changes)
from ase.outputs import Properties, all_outputs

from ..extrapolation import RangeScale, Reporter, check_tolerance
from . import io as gdml_io
from .predict import GDMLPredict

__all__ = ["GDMLCalculator", "SGDMLCalculator", "energy_unit_to_eV",
           "length_unit_to_Ang"]

_ENERGY = {
    "ev": 1.0,
    "mev": 1e-3,
    "kcal/mol": units.kcal / units.mol,
    "kj/mol": units.kJ / units.mol,
    "hartree": units.Hartree,
    "ha": units.Hartree,
    "au": units.Hartree,
    "a.u.": units.Hartree,
    "ry": units.Rydberg,
}
_LENGTH = {
    "ang": 1.0,
    "angstrom": 1.0,
    "a": 1.0,
    "nm": 10.0,
    "bohr": units.Bohr,
    "au": units.Bohr,
    "a.u.": units.Bohr,
}


def _unit_factor(label, table, kind, keyword):
    """The factor of a unit label in ``table`` (case and blanks ignored);
    an unknown label raises ValueError naming ``kind`` and ``keyword``."""
    key = gdml_io.to_str(label).strip().lower()
    if key not in table:
        raise ValueError("unknown {} unit '{}'; known: {}; pass {} "
                         "explicitly".format(kind, key,
                                             ", ".join(sorted(table)),
                                             keyword))
    return float(table[key])


def energy_unit_to_eV(label: Any) -> float:
    """eV per one unit of an energy label.

    Parameters
    ----------
    label : str or bytes
        ``'eV'``, ``'kcal/mol'``, ``'kJ/mol'``, ``'Hartree'``, ...

    Returns
    -------
    float

    Raises
    ------
    ValueError
        For an unknown label.
    """
    return _unit_factor(label, _ENERGY, "energy", "E_to_eV")


def length_unit_to_Ang(label: Any) -> float:
    """Å per one unit of a length label.

    Parameters
    ----------
    label : str or bytes
        ``'Ang'``, ``'bohr'``, ``'nm'``, ...

    Returns
    -------
    float

    Raises
    ------
    ValueError
        For an unknown label.
    """
    return _unit_factor(label, _LENGTH, "length", "Ang_to_R")


class GDMLCalculator(Calculator):
    """ASE calculator evaluating an sGDML/GDML model.

    Parameters
    ----------
    model : str, dict or numpy.lib.npyio.NpzFile
        Path of an sgdml model file (read with the safe loader), a model
        dict, or ``np.load(path)``.
    E_to_eV : float, optional
        eV per model energy unit; default from the model's ``e_unit``.
    Ang_to_R : float, optional
        Model length units per Å; default from the model's ``r_unit``.
    F_to_eV_Ang : float, optional
        eV/Å per model force unit, as in sgdml's calculator; default
        ``E_to_eV * Ang_to_R``.
    use_torch : bool, optional
        Accepted for compatibility with sgdml's calculator (see
        :class:`~amp.gdml.predict.GDMLPredict`).
    on_extrapolation : {'warn', 'raise', 'ignore'}
        What a calculation does when the structure's descriptor (its
        inverse distances) lies outside the range of the training
        descriptors: every calculation records it in
        ``results['extrapolation']``; ``'warn'`` (default) also issues one
        :class:`~amp.extrapolation.ExtrapolationWarning` per calculator,
        ``'raise'`` raises :class:`~amp.extrapolation.ExtrapolationError`.
    extrapolation_tolerance : float
        How far beyond a component's training range, in units of its
        half-width, it may go before its pair of atoms counts (default
        0.1).
    **kwargs
        Passed to :class:`ase.calculators.calculator.Calculator`.

    Notes
    -----
    The Atoms must hold the model's species in the model's order
    (``model['z']``); a mismatch raises :class:`ValueError` naming the
    difference. For a model trained with a lattice, the Atoms must be
    periodic; their cell (not the training lattice) is used, and the
    calculator also provides ``stress``: the derivative of the energy with
    respect to strain, from the pairwise terms of the descriptor, divided
    by the volume.

    ``results['extrapolation']`` holds, after every calculation: ``count``
    (atoms in a pair whose inverse distance is outside the training range
    by more than the tolerance), ``worst`` (the largest component on the
    scale of its training range, :class:`amp.extrapolation.RangeScale`;
    <= 1 inside it), ``pair`` (where), ``tolerance``, and ``nearest``: the
    distance from the descriptor to the nearest training descriptor (any
    of its permutations) in units of the kernel length scale ``sig`` (0 on
    a training geometry; the kernel value there is
    ``(1 + sqrt(5) d + 5 d^2 / 3) exp(-sqrt(5) d)``).
    """

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, model: Any, E_to_eV: float | None = None,
                 Ang_to_R: float | None = None,
                 F_to_eV_Ang: float | None = None, use_torch: bool = False,
                 on_extrapolation: str = "warn",
                 extrapolation_tolerance: float = 0.1,
                 **kwargs: Any) -> None:
        self._report = Reporter(on_extrapolation)
        self.extrapolation_tolerance = check_tolerance(
            extrapolation_tolerance)
        Calculator.__init__(self, **kwargs)
        path = None
        if isinstance(model, (str, os.PathLike)):
            path = os.fspath(model)
            model = gdml_io.load_model(path)
        elif hasattr(model, "zip") and hasattr(model, "files"):
            model = gdml_io.npz_to_dict(model)  # np.load(path)
        self.model = model
        self.predictor = GDMLPredict(model, num_workers=0,
                                     use_torch=use_torch)
        # The range of every inverse distance over the training
        # descriptors and their permutations.
        train_kd = self.predictor._Xp
        self._range = RangeScale(np.column_stack([train_kd.min(axis=0),
                                                  train_kd.max(axis=0)]))
        self.periodic = self.predictor.lat_and_inv is not None
        if self.periodic:
            self.implemented_properties = (
                list(GDMLCalculator.implemented_properties) + ["stress"])
        self.z = np.asarray(model["z"]).astype(int)
        has_units = "e_unit" in model and "r_unit" in model
        if (E_to_eV is None or Ang_to_R is None) and not has_units:
            warnings.warn("the model has no unit labels; assuming kcal/mol "
                          "and Angstrom as sgdml does", UserWarning)
        if E_to_eV is None:
            E_to_eV = (energy_unit_to_eV(model["e_unit"]) if has_units
                       else units.kcal / units.mol)
        if Ang_to_R is None:
            Ang_to_R = (1.0 / length_unit_to_Ang(model["r_unit"])
                        if has_units else 1.0)
        self.E_to_eV = float(E_to_eV)
        self.Ang_to_R = float(Ang_to_R)
        self.F_to_eV_Ang = (self.E_to_eV * self.Ang_to_R if F_to_eV_Ang is None
                            else float(F_to_eV_Ang))
        for name in ("E_to_eV", "Ang_to_R", "F_to_eV_Ang"):
            if not (np.isfinite(getattr(self, name))
                    and getattr(self, name) > 0):
                raise ValueError("{} must be a positive number, got {}"
                                 .format(name, getattr(self, name)))
        self.parameters["model"] = path
        self.parameters["E_to_eV"] = self.E_to_eV
        self.parameters["Ang_to_R"] = self.Ang_to_R
        self.parameters["F_to_eV_Ang"] = self.F_to_eV_Ang

    def check_atoms(self, atoms: Any) -> None:
        """Raise unless the Atoms hold the model's species in its order.

        Parameters
        ----------
        atoms : ase.Atoms

        Raises
        ------
        ValueError
            Naming the count, species or order difference.
        """
        numbers = atoms.get_atomic_numbers()
        if len(numbers) != len(self.z):
            raise ValueError(
                "the Atoms have {} atoms but the model was trained for {} "
                "({})".format(len(numbers), len(self.z), _formula(self.z)))
        if not np.array_equal(numbers, self.z):
            if np.array_equal(np.sort(numbers), np.sort(self.z)):
                bad = np.flatnonzero(numbers != self.z)
                raise ValueError(
                    "the Atoms have the model's species in a different order: "
                    "atoms {} are {} but the model expects {}; reorder the "
                    "atoms as in model['z']".format(
                        bad.tolist(), _symbols(numbers[bad]),
                        _symbols(self.z[bad])))
            raise ValueError(
                "the Atoms ({}) hold other species than the model ({})"
                .format(_formula(numbers), _formula(self.z)))

    def calculate(self, atoms: Any = None, properties: Any = ("energy",),
                  system_changes: Any = all_changes) -> None:
        """Compute energy, forces and, for periodic models, stress.

        Parameters
        ----------
        atoms : ase.Atoms, optional
            The structure.
        properties : sequence of str, optional
            Requested properties.
        system_changes : list of str, optional
            What changed since the last call.
        """
        Calculator.calculate(self, atoms, properties, system_changes)
        self.check_atoms(self.atoms)
        if "stress" in properties and not self.periodic:
            raise PropertyNotImplementedError(
                "stress needs a periodic model (trained with a lattice); "
                "this model describes an isolated molecule")
        R = self.atoms.get_positions().ravel() * self.Ang_to_R
        if self.periodic:
            if not self.atoms.pbc.all() or self.atoms.cell.rank < 3:
                raise ValueError(
                    "the model is periodic (trained with a lattice) but the "
                    "Atoms are not periodic in three directions; set "
                    "atoms.cell and atoms.pbc = True")
            lattice = np.array(self.atoms.cell[:]).T * self.Ang_to_R
            E, F, W, X = self.predictor.predict(
                R[None, :], return_virial=True, lattice=lattice,
                return_descriptor=True)
        else:
            E, F, X = self.predictor.predict(R[None, :],
                                             return_descriptor=True)
        energy = float(E[0]) * self.E_to_eV
        forces = F[0].reshape(-1, 3) * self.F_to_eV_Ang
        results = {"energy": energy, "free_energy": energy,
                   "forces": forces, "extrapolation": self._extrapolation(
                       X[0])}
        if self.periodic:
            sigma = -W[0] * self.E_to_eV / self.atoms.get_volume()
            results["stress"] = sigma.ravel()[[0, 4, 8, 5, 2, 1]]
        self.results = {}
        found = results["extrapolation"]
        if found["count"]:
            a, b = found["pair"]
            self._report(
                "%d of %d atoms are in pairs whose inverse distance lies "
                "outside the training descriptors' range (largest scaled "
                "value %.3g at atoms %d-%d, where training spans [-1, 1]; "
                "tolerance %g; nearest training point %.3g sig away): the "
                "model is extrapolating and its energies and forces there "
                "cannot be trusted" % (found["count"], len(self.atoms),
                                       found["worst"], a, b,
                                       found["tolerance"], found["nearest"]))
        self.results = results

    def _extrapolation(self, x_d):
        """``results['extrapolation']`` of the descriptor ``x_d``."""
        scaled_d = self._range.scaled(x_d[None, :])[0]
        a_d, b_d = self.predictor.desc.tril_indices
        out_d = scaled_d > 1.0 + self.extrapolation_tolerance
        worst = int(np.argmax(scaled_d))
        predictor = self.predictor
        distance2 = (x_d @ x_d + predictor._xx
                     - 2.0 * (predictor._Xp @ x_d))
        return {"count": int(len(np.union1d(a_d[out_d], b_d[out_d]))),
                "worst": float(scaled_d[worst]),
                "pair": (int(a_d[worst]), int(b_d[worst])),
                "tolerance": self.extrapolation_tolerance,
                "nearest": float(np.sqrt(max(distance2.min(), 0.0))
                                 / predictor.sig)}

    @property
    def on_extrapolation(self) -> str:
        """``'warn'``, ``'raise'`` or ``'ignore'`` (see the class)."""
        return self._report.action

    def export_properties(self) -> Properties:
        """ASE's properties of the last calculation (what
        ``atoms.get_properties`` gives): the results without
        ``extrapolation``, which ASE's property table does not know."""
        return Properties({name: value for name, value in
                           self.results.items() if name in all_outputs})


class SGDMLCalculator(GDMLCalculator):
    """:class:`GDMLCalculator` under the name sgdml's ASE interface uses.

    ``SGDMLCalculator(model_path, E_to_eV=..., F_to_eV_Ang=...)`` works as
    with sgdml; see :class:`GDMLCalculator` for the parameters.
    """


def _symbols(numbers):
    from ase.data import chemical_symbols
    return [chemical_symbols[int(n)] for n in numbers]


def _formula(numbers):
    from ase.symbols import Symbols
    return str(Symbols(np.asarray(numbers, dtype=int)))
