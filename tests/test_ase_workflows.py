"""The ASE workflows users run with a trained model: relaxations (BFGS,
FIRE), cell relaxation with stress (FrechetCellFilter), NEB with one
calculator per image and with a shared one, Langevin and NPT dynamics,
vibrational analysis, ASE's gradient test, and what they record
(``free_energy``, ``todict()`` in an ``ase.db`` row and a trajectory).

The model: a small Cu/Pt network trained once on EMT data
(tests/md_models.py).
"""
import numpy as np
import pytest
from ase import units
from ase.constraints import FixAtoms
from ase.filters import FrechetCellFilter
from ase.io import read, write
from ase.optimize import BFGS, FIRE

import md_models
from amp import Amp


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """Path of the small Cu/Pt model trained on EMT data."""
    return md_models.cu_pt_model(tmp_path_factory.mktemp("cupt"))


def rattled(seed=0, amplitude=0.12):
    atoms = md_models.cu_pt_cell()
    atoms.rattle(amplitude, rng=np.random.default_rng(seed))
    return atoms


def vacancy_endpoints(calc):
    """The 7-atom cell with a vacancy, relaxed with a neighbour of the
    vacancy on its own site and on the vacancy's site."""
    perfect = md_models.cu_pt_cell()
    site = perfect.positions[md_models.VACANCY].copy()
    start = perfect.copy()
    del start[md_models.VACANCY]
    hopper = md_models.HOPPER - 1
    end = start.copy()
    end.positions[hopper] = site
    for atoms in (start, end):
        # One atom is held: the relaxed endpoints share their origin.
        atoms.set_constraint(FixAtoms(indices=[2]))
        atoms.calc = calc
        BFGS(atoms, logfile=None).run(fmax=1e-3, steps=500)
        atoms.calc = None
    return start, end


def test_bfgs_and_fire_find_the_same_minimum(model):
    """BFGS and FIRE from the same rattled cell (one atom held, which
    removes the translations) reach the same minimum."""
    results = []
    for Optimizer in (BFGS, FIRE):
        atoms = rattled()
        atoms.set_constraint(FixAtoms(indices=[0]))
        atoms.calc = Amp.load(model)
        start = atoms.get_potential_energy()
        assert Optimizer(atoms, logfile=None).run(fmax=1e-4, steps=2000)
        assert np.abs(atoms.get_forces()).max() < 1e-4
        assert atoms.get_potential_energy() < start - 0.1
        results.append((atoms.get_potential_energy(), atoms.positions))
    (e_bfgs, r_bfgs), (e_fire, r_fire) = results
    assert e_bfgs == pytest.approx(e_fire, abs=1e-7)
    np.testing.assert_allclose(r_bfgs, r_fire, atol=1e-3)


def test_cell_relaxation_reaches_zero_stress_at_a_minimum(model):
    """FrechetCellFilter + BFGS from a strained, rattled cell: the stress
    vanishes, and small strains of the result raise the energy (a minimum,
    not a saddle)."""
    atoms = rattled(seed=1, amplitude=0.05)
    atoms.set_cell(atoms.cell @ [[0.98, 0.01, 0.0], [0.0, 0.99, 0.0],
                                 [0.0, 0.0, 1.0]], scale_atoms=True)
    atoms.calc = Amp.load(model)
    start_stress = np.abs(atoms.get_stress()).max()
    start_volume = atoms.get_volume()
    assert BFGS(FrechetCellFilter(atoms), logfile=None).run(
        fmax=1e-3, steps=1000)
    assert start_stress > 0.02
    # The filter's cell forces are -V sigma / N.
    assert np.abs(atoms.get_stress()).max() < \
        1.5e-3 * len(atoms) / atoms.get_volume()
    assert np.abs(atoms.get_forces()).max() < 1e-3
    assert atoms.get_volume() > start_volume  # it was compressed
    # A minimum in cell and positions is a minimum along any strain of
    # both together.
    energy = atoms.get_potential_energy()
    rng = np.random.default_rng(4)
    for _ in range(10):
        strain = rng.normal(scale=0.003, size=(3, 3))
        strained = atoms.copy()
        strained.set_cell(atoms.cell @ (np.eye(3) + 0.5 * (strain +
                                                           strain.T)),
                          scale_atoms=True)
        strained.calc = atoms.calc
        assert strained.get_potential_energy() > energy


@pytest.fixture(scope="module")
def endpoints(model):
    return vacancy_endpoints(Amp.load(model))


def neb_path(endpoints, model, shared):
    """The converged NEB of the vacancy hop (3 moving images)."""
    from ase.mep import NEB

    start, end = endpoints
    images = [start.copy() for _ in range(4)] + [end.copy()]
    if shared:
        calc = Amp.load(model)
        for image in images:
            image.calc = calc
        neb = NEB(images, allow_shared_calculator=True,
                  method="improvedtangent")
    else:
        for image in images:
            image.calc = Amp.load(model)
        neb = NEB(images, method="improvedtangent")
    neb.interpolate()
    assert BFGS(neb, logfile=None).run(fmax=0.01, steps=1000)
    return (np.array([image.positions for image in images]),
            np.array([image.get_potential_energy() for image in images]))


def test_neb_per_image_and_shared_calculators_give_the_same_path(
        endpoints, model):
    """NEB of a vacancy hop with one calculator per image and with one
    shared calculator: the same path and energies, and a barrier."""
    path, energies = neb_path(endpoints, model, shared=False)
    shared_path, shared_energies = neb_path(endpoints, model, shared=True)
    np.testing.assert_allclose(shared_path, path, rtol=0, atol=1e-10)
    np.testing.assert_allclose(shared_energies, energies, rtol=0, atol=1e-10)
    barrier = energies.max() - energies[0]
    print("vacancy hop: barrier %.3f eV" % barrier)
    assert 0.05 < barrier < 3.0
    assert energies[0] < energies[2] and energies[-1] < energies[2]


def test_langevin_thermalises_and_conserves_energy_without_friction(model):
    """Langevin with friction heats a cold cell towards the target
    temperature; without friction it is velocity Verlet, and the total
    energy is conserved."""
    from ase.md.langevin import Langevin

    atoms = md_models.cu_pt_cell() * (2, 2, 1)
    atoms.calc = Amp.load(model)
    dynamics = Langevin(atoms, 2 * units.fs, temperature_K=500,
                        friction=0.02 / units.fs, fixcm=False,
                        rng=np.random.default_rng(5))
    temperatures = []
    dynamics.attach(lambda: temperatures.append(atoms.get_temperature()))
    dynamics.run(200)
    mean = np.mean(temperatures[100:])
    print("Langevin at 500 K: mean temperature %.0f K" % mean)
    assert 300 < mean < 700
    totals = []
    still = Langevin(atoms, 1 * units.fs, temperature_K=500, friction=0.0,
                     fixcm=False, rng=np.random.default_rng(6))
    still.attach(lambda: totals.append(atoms.get_total_energy()))
    still.run(100)
    assert np.ptp(totals) < 5e-3


def test_npt_cell_responds_to_pressure(model):
    """ASE's NPT (Nose-Hoover and Parrinello-Rahman, Melchionna's form)
    from a compressed cell at 300 K: the cell expands and NPT's conserved
    quantity stays within what the integrator itself gives (about 0.03 eV
    here with EMT in place of the model)."""
    try:
        from ase.md.melchionna import MelchionnaNPT as NPT
    except ImportError:  # ASE < 3.29
        from ase.md.npt import NPT
    from ase.md.velocitydistribution import Stationary

    atoms = md_models.cu_pt_cell()
    atoms.set_cell(atoms.cell * 3.62 / 3.6, scale_atoms=True)
    atoms.calc = Amp.load(model)
    BFGS(atoms, logfile=None).run(fmax=0.01)
    # Maxwell-Boltzmann momenta (written out: ASE renamed its helper).
    sigma = np.sqrt(atoms.get_masses() * units.kB * 300)
    atoms.set_momenta(np.random.default_rng(1).normal(
        size=(len(atoms), 3)) * sigma[:, None])
    Stationary(atoms)
    volume = atoms.get_volume()
    pressure = -atoms.get_stress()[:3].mean()
    dynamics = NPT(atoms, 1 * units.fs, temperature_K=300,
                   externalstress=0.0, ttime=25 * units.fs,
                   pfactor=(100 * units.fs) ** 2 * 140 * units.GPa)
    volumes, conserved = [], []
    dynamics.attach(lambda: (volumes.append(atoms.get_volume()),
                             conserved.append(
                                 dynamics.get_gibbs_free_energy())))
    dynamics.run(150)
    print("NPT: pressure %.1f GPa at %.1f A^3, largest volume %.1f A^3; "
          "conserved quantity spread %.1e eV" % (
              pressure / units.GPa, volume, max(volumes),
              np.ptp(conserved)))
    assert pressure > 3 * units.GPa
    assert max(volumes) > 1.05 * volume
    assert np.ptp(conserved) < 0.05


def test_vibrations_of_a_relaxed_cell(model, tmp_path):
    """Vibrations of the relaxed cell: three zero modes (translations,
    the forces sum to zero) and every other mode real."""
    from ase.vibrations import Vibrations

    atoms = rattled(seed=2, amplitude=0.05)
    atoms.calc = Amp.load(model)
    BFGS(atoms, logfile=None).run(fmax=1e-5, steps=1000)
    vibrations = Vibrations(atoms, delta=0.005, nfree=4,
                            name=str(tmp_path / "vib"))
    vibrations.run()
    energies = vibrations.get_energies()
    hessian = vibrations.get_vibrations().get_hessian_2d()
    print("vibrations: %s meV" % np.round(np.abs(energies) * 1e3, 1))
    np.testing.assert_allclose(hessian, hessian.T, rtol=0,
                               atol=1e-5 * np.abs(hessian).max())
    order = np.argsort(np.abs(energies))
    assert np.abs(energies[order[:3]]).max() < 1e-3
    assert np.all(np.isreal(energies[order[3:]]))
    assert np.real(energies[order[3:]]).min() > 3e-3


def test_ase_gradient_test(model):
    """ASE's own gradient test (its finite differences of the energy
    against the forces) on a rattled cell, for a Cu and a Pt atom."""
    from ase.calculators.test import gradient_test

    atoms = rattled(seed=3, amplitude=0.08)
    atoms.calc = Amp.load(model)
    forces, numerical = gradient_test(atoms, indices=[1, 3])  # Cu, Pt
    assert np.abs(forces).max() > 0.1
    # It returns the differences with its last step, 1e-8 A: round-off
    # of about 1e-6 eV/A.
    np.testing.assert_allclose(forces, numerical, rtol=0, atol=1e-5)


def test_what_workflows_record(model, tmp_path):
    """``free_energy`` (which optimizers and some thermostats ask for) is
    the energy; ``todict()`` is plain data that names the model, and it is
    what an ``ase.db`` row and a trajectory keep."""
    import ase.db

    atoms = rattled(seed=5)
    calc = Amp.load(model)
    atoms.calc = calc
    energy = atoms.get_potential_energy()
    assert atoms.get_potential_energy(force_consistent=True) == energy
    parameters = calc.todict()
    assert parameters["descriptor"]["cutoff"]["kwargs"]["Rc"] == 4.0
    assert parameters["descriptor"]["elements"] == ["Cu", "Pt"]
    assert parameters["model"]["hiddenlayers"] == {"Cu": [5], "Pt": [5]}
    other = Amp.load(model)
    assert other.todict() == parameters
    other.model.vector = other.model.vector * 1.01
    assert other.todict()["sha256"] != parameters["sha256"]
    database = ase.db.connect(str(tmp_path / "rows.db"))
    database.write(atoms, relaxed=False)
    row = database.get(relaxed=False)
    assert row.calculator == "amp"
    assert row.calculator_parameters == parameters
    assert row.energy == pytest.approx(energy, abs=1e-12)
    np.testing.assert_allclose(row.forces, atoms.get_forces(), atol=1e-12)
    write(str(tmp_path / "frames.traj"), atoms)
    frame = read(str(tmp_path / "frames.traj"))
    assert frame.calc.parameters == parameters
