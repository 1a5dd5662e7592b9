"""amp.gdml.calculator: ASE calculator, units, species checks, MD."""
import json
import os

import numpy as np
import pytest
from ase import Atoms, units

from amp.gdml import io
from amp.gdml.calculator import GDMLCalculator
from conftest import GDML_REFERENCE, cu_bulk, rattled_with_emt

MODEL = os.path.join(GDML_REFERENCE, "benzene_sgdml_model.npz")


@pytest.fixture(scope="module")
def ds():
    return io.load_dataset(os.path.join(GDML_REFERENCE,
                                        "benzene_dataset.npz"))


def test_energy_forces_match_reference(ds):
    pred = np.load(os.path.join(GDML_REFERENCE, "benzene_sgdml_pred.npz"))
    calc = GDMLCalculator(MODEL)
    for k in (0, 5):
        atoms = Atoms(numbers=ds["z"], positions=ds["R"][pred["idx"][k]])
        atoms.calc = calc
        e = atoms.get_potential_energy()
        assert isinstance(e, float)
        assert e == pytest.approx(pred["E"][k], rel=1e-10)
        np.testing.assert_allclose(atoms.get_forces(), pred["F"][k],
                                   atol=1e-9)
        assert set(calc.results) == {"energy", "free_energy", "forces",
                                     "extrapolation"}
        assert set(atoms.get_properties(["energy", "forces"])) == \
            {"energy", "free_energy", "forces", "natoms"}
        assert calc.results["free_energy"] == calc.results["energy"]
    json.dumps(calc.parameters)


def test_unit_conversion(ds):
    model = io.load_model(MODEL)
    kcal = dict(model, e_unit=np.array(b"kcal/mol"), r_unit=np.array(b"Ang"))
    ev = GDMLCalculator(model)
    kc = GDMLCalculator(kcal)
    atoms = Atoms(numbers=ds["z"], positions=ds["R"][3])
    ev.calculate(atoms.copy(), ["energy", "forces"])
    kc.calculate(atoms.copy(), ["energy", "forces"])
    f = units.kcal / units.mol
    assert kc.results["energy"] == pytest.approx(ev.results["energy"] * f,
                                                 rel=1e-12)
    np.testing.assert_allclose(kc.results["forces"], ev.results["forces"] * f,
                               rtol=1e-12)
    # a model in bohr: positions are converted before predicting
    bohr = dict(model, r_unit=np.array(b"bohr"))
    calc = GDMLCalculator(bohr)
    assert calc.Ang_to_R == pytest.approx(1 / units.Bohr)
    unlabelled = {k: v for k, v in model.items()
                  if k not in ("e_unit", "r_unit")}
    with pytest.warns(UserWarning, match="kcal/mol"):
        GDMLCalculator(unlabelled)
    with pytest.raises(ValueError, match="unknown energy unit"):
        GDMLCalculator(dict(model, e_unit=np.array(b"furlong")))
    with pytest.raises(ValueError, match="unknown length unit 'furlong'.*"
                       "pass Ang_to_R"):
        GDMLCalculator(dict(model, r_unit=np.array(b"furlong")))


def test_species_checks(ds):
    calc = GDMLCalculator(MODEL)
    wrong_order = Atoms(numbers=ds["z"][::-1], positions=ds["R"][0])
    wrong_order.calc = calc
    with pytest.raises(ValueError, match="different order"):
        wrong_order.get_potential_energy()
    fewer = Atoms(numbers=ds["z"][:11], positions=ds["R"][0][:11])
    fewer.calc = calc
    with pytest.raises(ValueError, match="11 atoms.*12"):
        fewer.get_potential_energy()
    other = Atoms(numbers=[8] * 12, positions=ds["R"][0])
    other.calc = calc
    with pytest.raises(ValueError, match="other species"):
        other.get_potential_energy()


def test_md_conserves_energy(ds):
    from ase.md.verlet import VelocityVerlet
    try:  # ASE 3.29 and later
        from ase.md.velocitydistribution import thermalize_momenta
    except ImportError:  # older ASE
        from ase.md.velocitydistribution import (
            MaxwellBoltzmannDistribution as thermalize_momenta)
    atoms = Atoms(numbers=ds["z"], positions=ds["R"][10])
    atoms.calc = GDMLCalculator(MODEL)
    thermalize_momenta(atoms, temperature_K=300,
                       rng=np.random.default_rng(0))
    dyn = VelocityVerlet(atoms, timestep=0.25 * units.fs)
    e0 = atoms.get_total_energy()
    dyn.run(100)
    assert abs(atoms.get_total_energy() - e0) < 2e-3


def test_F_to_eV_Ang_is_honoured_as_in_sgdml(ds):
    atoms = Atoms(numbers=ds["z"], positions=ds["R"][3])
    atoms.calc = GDMLCalculator(MODEL)
    F = atoms.get_forces()
    atoms.calc = GDMLCalculator(MODEL, F_to_eV_Ang=2.5)
    np.testing.assert_allclose(atoms.get_forces(), 2.5 * F, rtol=1e-12)
    atoms.calc = GDMLCalculator(MODEL, E_to_eV=2.0)
    assert atoms.get_potential_energy() == pytest.approx(
        2.0 * GDMLCalculator(MODEL).get_potential_energy(atoms), rel=1e-12)
    with pytest.raises(ValueError, match="F_to_eV_Ang must be a positive"):
        GDMLCalculator(MODEL, F_to_eV_Ang=-1.0)


def test_sgdml_calculator_name_is_importable():
    from amp.gdml import SGDMLCalculator as A
    from amp.gdml.calculator import SGDMLCalculator as B
    assert A is B and issubclass(B, GDMLCalculator)
    calc = B(MODEL, E_to_eV=1.0, F_to_eV_Ang=1.0)
    assert calc.F_to_eV_Ang == 1.0


def _periodic_model():
    from amp.gdml.train import GDMLTrain
    frames = rattled_with_emt(lambda k: cu_bulk(3.6, cubic=True), 24, 0.1,
                              seeds=range(24))
    data = io.dataset_from_atoms(frames, name="cu4")
    np.random.seed(0)
    trainer = GDMLTrain(max_processes=1)
    task = trainer.create_task(data, 16, data, 4, sig=2, use_sym=False)
    unused = [i for i in range(24) if i not in set(task["idxs_train"])]
    return trainer.train(task), frames[unused[0]]


def test_stress_is_the_strain_derivative_of_the_energy():
    from checks import assert_stress_is_strain_derivative, energy_of
    model, atoms = _periodic_model()
    calc = GDMLCalculator(model)
    assert "stress" in calc.implemented_properties
    atoms = atoms.copy()
    atoms.calc = calc
    stress = atoms.get_stress()
    # h = 1e-4: central differences accurate to ~1e-8 relative, well above
    # the ~1e-11 eV round-off of the energy sums
    assert_stress_is_strain_derivative(energy_of(calc), atoms, stress,
                                       h=1e-4,
                                       atol=1e-6 * np.abs(stress).max())
    full = atoms.get_stress(voigt=False)
    assert np.abs(full - full.T).max() < 1e-12
    # the cell of the Atoms is used: a strained cell changes the energy
    strained = atoms.copy()
    strained.calc = calc
    strained.set_cell(atoms.cell[:] * 1.01, scale_atoms=True)
    assert strained.get_potential_energy() != pytest.approx(
        atoms.get_potential_energy(), rel=1e-8)


def test_stress_of_a_molecule_model_is_not_implemented(ds):
    from ase.calculators.calculator import PropertyNotImplementedError
    atoms = Atoms(numbers=ds["z"], positions=ds["R"][0])
    atoms.calc = GDMLCalculator(MODEL)
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_stress()


def test_periodic_model_needs_periodic_atoms():
    model, atoms = _periodic_model()
    atoms = atoms.copy()
    atoms.pbc = False
    atoms.calc = GDMLCalculator(model)
    with pytest.raises(ValueError, match="not periodic in three"):
        atoms.get_potential_energy()


def test_calculator_from_np_load(ds):
    atoms = Atoms(numbers=ds["z"], positions=ds["R"][4])
    with np.load(MODEL) as npz:
        atoms.calc = GDMLCalculator(npz)
    e = atoms.get_potential_energy()
    assert e == pytest.approx(GDMLCalculator(MODEL).get_potential_energy(
        atoms), rel=1e-12)


def test_extrapolation_of_inverse_distances_outside_the_training_range():
    import warnings

    from amp import ExtrapolationError, ExtrapolationWarning

    model, held_out = _periodic_model()
    train_dm = np.asarray(model["R_desc"]).T  # no symmetries: one each
    low, high = train_dm.min(axis=0), train_dm.max(axis=0)
    a, b = np.tril_indices(4, -1)

    def expected(structure, tolerance=0.1):
        inverse = 1.0 / structure.get_all_distances(mic=True)[a, b]
        scaled = np.abs(inverse - (low + high) / 2) / ((high - low) / 2)
        out = scaled > 1 + tolerance
        return len(set(a[out]) | set(b[out])), scaled.max()

    frames = rattled_with_emt(lambda k: cu_bulk(3.6, cubic=True), 24, 0.1,
                              seeds=range(24))
    training = frames[int(np.asarray(model["idxs_train"])[0])]
    calc = GDMLCalculator(model)
    for structure in (training, held_out, cu_bulk(3.9, cubic=True)):
        structure = structure.copy()
        structure.calc = calc
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExtrapolationWarning)
            structure.get_forces()
        found = calc.results["extrapolation"]
        count, worst = expected(structure)
        assert found["count"] == count
        assert found["worst"] == pytest.approx(worst, rel=1e-12)
    # Inside: a training geometry, at distance 0 from the training set.
    training = training.copy()
    training.calc = calc
    training.get_potential_energy()
    assert calc.results["extrapolation"]["count"] == 0
    assert calc.results["extrapolation"]["nearest"] < 1e-6
    # Outside: an expanded cell; the first calculator warned once only.
    assert calc._report.warned
    expanded = cu_bulk(4.0, cubic=True)
    expanded.calc = GDMLCalculator(model)
    with pytest.warns(ExtrapolationWarning, match="4 of 4 atoms"):
        expanded.get_potential_energy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expanded.rattle(0.01, seed=1)
        expanded.get_potential_energy()
    assert expanded.calc.results["extrapolation"]["count"] == 4
    assert expanded.calc.results["extrapolation"]["nearest"] > 0.05
    expanded.calc = GDMLCalculator(model, on_extrapolation="raise")
    with pytest.raises(ExtrapolationError):
        expanded.get_potential_energy()
