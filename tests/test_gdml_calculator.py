"""amp.gdml.calculator: ASE calculator, units, species checks, MD."""
import json
import os

import numpy as np
import pytest
from ase import Atoms, units

from amp.gdml import io
from amp.gdml.calculator import GDMLCalculator
from conftest import GDML_REFERENCE

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
        assert set(calc.results) == {"energy", "free_energy", "forces"}
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
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    atoms = Atoms(numbers=ds["z"], positions=ds["R"][10])
    atoms.calc = GDMLCalculator(MODEL)
    MaxwellBoltzmannDistribution(atoms, temperature_K=300,
                                 rng=np.random.default_rng(0))
    dyn = VelocityVerlet(atoms, timestep=0.25 * units.fs)
    e0 = atoms.get_total_energy()
    dyn.run(100)
    assert abs(atoms.get_total_energy() - e0) < 2e-3
