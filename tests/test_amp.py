"""The Amp calculator: ASE protocol, physics, files, training."""
import io
import json
import os

import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

from amp import Amp
from amp.descriptor.gaussian import Gaussian
from amp.model import LossFunction, TrainingConvergenceError
from amp.model.neuralnetwork import NeuralNetwork
from amp.modelfile import ModelFileError
from conftest import AMP_REFERENCE

LEGACY = os.path.join(AMP_REFERENCE, "ptcu_nn33.amp")


def numerical_forces(atoms, h=1e-5):
    forces = np.zeros((len(atoms), 3))
    for a in range(len(atoms)):
        for axis in range(3):
            energies = []
            for sign in (1, -1):
                moved = atoms.copy()
                moved.positions[a, axis] += sign * h
                moved.calc = atoms.calc
                energies.append(moved.get_potential_energy())
            forces[a, axis] = -(energies[0] - energies[1]) / (2 * h)
    return forces


def numerical_stress(atoms, h=1e-6):
    stress = np.zeros((3, 3))
    for i in range(3):
        for j in range(3):
            energies = []
            for sign in (1, -1):
                strain = np.eye(3)
                strain[i, j] += sign * h
                s = atoms.copy()
                s.set_cell(atoms.cell @ strain, scale_atoms=True)
                s.calc = atoms.calc
                energies.append(s.get_potential_energy())
            stress[i, j] = (energies[0] - energies[1]) / (2 * h)
    stress /= atoms.get_volume()
    stress = 0.5 * (stress + stress.T)
    return stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]



def test_legacy_amp_file_reproduces_amp():
    with open(os.path.join(AMP_REFERENCE, "ptcu_nn33_predictions.json")) as f:
        reference = json.load(f)
    calc = Amp.load(LEGACY)
    for k, image in enumerate(read(os.path.join(AMP_REFERENCE,
                                                "ptcu_train.traj"), ":")):
        atoms = image.copy()
        atoms.calc = calc
        assert atoms.get_potential_energy() == pytest.approx(
            reference["energies"][k], abs=1e-8)
        np.testing.assert_allclose(atoms.get_forces(),
                                   reference["forces"][k], atol=1e-8)
        np.testing.assert_allclose(calc.results["energies"],
                                   reference["atomic_energies"][k], atol=1e-8)


@pytest.fixture
def trained(tmp_path):
    """The legacy calculator saved in this library's format."""
    path = str(tmp_path / "model.amp")
    Amp.load(LEGACY).save(path)
    return path


def test_json_round_trip_is_exact(trained, tmp_path):
    first = Amp.load(trained)
    again_path = str(tmp_path / "again.amp")
    first.save(again_path)
    second = Amp.load(again_path)
    assert open(trained).read() == open(again_path).read()
    np.testing.assert_array_equal(first.model.vector, second.model.vector)
    with open(trained) as f:
        from_file_object = Amp.load(f)
    np.testing.assert_array_equal(from_file_object.model.vector,
                                  first.model.vector)


def test_ase_protocol(trained):
    calc = Amp.load(trained)
    atoms = read(os.path.join(AMP_REFERENCE, "ptcu_train.traj"))
    atoms.calc = calc
    results = atoms.get_properties(["energy", "forces", "energies",
                                    "free_energy"])
    assert isinstance(results["energy"], float)
    assert results["free_energy"] == results["energy"]
    assert results["energies"].sum() == pytest.approx(results["energy"])
    assert set(calc.results) == {"energy", "free_energy", "energies",
                                 "forces"}
    # Slab (pbc T,T,F): no stress, as ASE expects.
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_stress()
    json.dumps(calc.parameters)


def test_forces_and_stress_are_gradients(trained, tmp_path):
    calc = Amp.load(trained)
    atoms = bulk("Cu", "fcc", a=3.75, cubic=True) * (1, 1, 2)
    atoms.symbols[[1, 5]] = "Pt"
    atoms.set_cell(atoms.cell @ [[1, 0.05, 0], [0, 1, 0.03], [0, 0, 1]],
                   scale_atoms=True)
    atoms.rattle(0.1, rng=np.random.default_rng(2))
    atoms.calc = calc
    np.testing.assert_allclose(atoms.get_forces(), numerical_forces(atoms),
                               atol=1e-7)
    np.testing.assert_allclose(atoms.get_stress(), numerical_stress(atoms),
                               atol=1e-7)
    slab = read(os.path.join(AMP_REFERENCE, "ptcu_train.traj"))
    slab.calc = calc
    np.testing.assert_allclose(slab.get_forces(), numerical_forces(slab),
                               atol=1e-7)
    energy = atoms.get_potential_energy()
    write(str(tmp_path / "x.traj"), atoms)  # parameters are plain data
    again = read(str(tmp_path / "x.traj"))
    assert again.calc.results["energy"] == pytest.approx(energy)


def test_invariances(trained):
    calc = Amp.load(trained)
    atoms = read(os.path.join(AMP_REFERENCE, "ptcu_train.traj"))
    atoms.calc = calc
    energy = atoms.get_potential_energy()
    forces = atoms.get_forces()
    moved = atoms.copy()
    moved.translate([1.0, -2.0, 0.5])
    moved.calc = calc
    assert moved.get_potential_energy() == pytest.approx(energy, abs=1e-10)
    rotated = atoms.copy()
    rotated.rotate(90, "z", rotate_cell=True)
    rotated.calc = calc
    assert rotated.get_potential_energy() == pytest.approx(energy, abs=1e-10)
    pt = [a.index for a in atoms if a.symbol == "Pt"]
    order = np.arange(len(atoms))
    order[pt] = pt[::-1]
    permuted = atoms[order]
    permuted.calc = calc
    assert permuted.get_potential_energy() == pytest.approx(energy,
                                                            abs=1e-10)
    np.testing.assert_allclose(permuted.get_forces(), forces[order],
                               atol=1e-10)


def test_inference_writes_nothing(trained, tmp_path, monkeypatch):
    folder = tmp_path / "run"
    folder.mkdir()
    monkeypatch.chdir(folder)
    calc = Amp.load(trained)
    atoms = read(os.path.join(AMP_REFERENCE, "ptcu_train.traj"))
    atoms.calc = calc
    for step in range(5):
        atoms.positions[0, 0] += 0.01
        atoms.get_forces()
    assert os.listdir(folder) == []


def test_unknown_element_at_inference(trained):
    atoms = molecule("H2O")
    atoms.calc = Amp.load(trained)
    with pytest.raises(ValueError, match="H"):
        atoms.get_potential_energy()


def test_save_refuses_overwrite_and_bad_files(trained, tmp_path):
    calc = Amp.load(trained)
    before = open(trained).read()
    with pytest.raises(FileExistsError):
        calc.save(trained)
    assert open(trained).read() == before
    truncated = tmp_path / "truncated.amp"
    truncated.write_text(before[: len(before) // 2])
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        Amp.load(str(truncated))
    future = tmp_path / "future.amp"
    content = json.loads(before)
    content["version"] = 99
    future.write_text(json.dumps(content))
    with pytest.raises(ModelFileError, match="version 99"):
        Amp.load(str(future))
    marker = tmp_path / "pwned"
    crafted = tmp_path / "crafted.amp"
    crafted.write_text(
        "dict(descriptor=__import__('os').system('touch %s'), model='')"
        % marker)
    with pytest.raises(ModelFileError, match="refusing"):
        Amp.load(str(crafted))
    assert not marker.exists()
    with pytest.raises(ModelFileError):
        Amp.load(io.StringIO(""))


def emt_images(count, seed=0):
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        atoms = bulk("Cu", "fcc", a=3.6) * (2, 1, 1)
        atoms.symbols[1] = "Pt"
        atoms.rattle(0.1, rng=rng)
        atoms.calc = EMT()
        atoms.calc = SinglePointCalculator(
            atoms, energy=atoms.get_potential_energy(),
            forces=atoms.get_forces())
        images.append(atoms)
    return images


def make_calc(label, convergence, maxiter=100000, force=0.04):
    calc = Amp(descriptor=Gaussian(cutoff=4.0),
               model=NeuralNetwork(hiddenlayers=(3,), randomseed=1),
               label=label, cores=1)
    calc.model.lossfunction = LossFunction(convergence=convergence,
                                           force_coefficient=force,
                                           maxiter=maxiter)
    return calc


def test_training_writes_files_and_converges(tmp_path):
    label = str(tmp_path / "fit")
    images = emt_images(6)
    calc = make_calc(label, {"energy_rmse": 0.01, "force_rmse": 0.5})
    assert calc.train(images) is True
    for suffix in (".amp", "-initial-parameters.amp", "-log.txt"):
        assert os.path.exists(label + suffix)
    log = open(label + "-log.txt").read()
    assert "numpy" in log and "Descriptor" in log
    # Compressed at the end: the databases were this run's alone.
    assert os.path.exists(label + "-fingerprints.ampdb/archive.tar.gz")
    loaded = Amp.load(label + ".amp")
    de = [(loaded.get_potential_energy(a) - a.get_potential_energy())
          / len(a) for a in images]
    assert np.sqrt(np.mean(np.square(de))) <= 0.01
    with pytest.raises(FileExistsError):
        make_calc(label, {"energy_rmse": 0.01}).train(images)


def test_training_not_converged_raises(tmp_path):
    label = str(tmp_path / "short")
    calc = make_calc(label, {"energy_rmse": 1e-9, "force_rmse": 1e-9},
                     maxiter=3)
    with pytest.raises(TrainingConvergenceError):
        calc.train(emt_images(4))
    assert os.path.exists(label + "-untrained-parameters.amp")
    assert not os.path.exists(label + ".amp")
    Amp.load(label + "-untrained-parameters.amp")


@pytest.mark.parametrize("breakage, message", [
    ("no energy", "no energy"),
    ("nan energy", "NaN or infinite energy"),
    ("nan forces", "NaN or infinite forces"),
])
def test_bad_training_images(tmp_path, breakage, message):
    images = emt_images(3)
    bad = images[1]
    if breakage == "no energy":
        bad.calc = None
    elif breakage == "nan energy":
        bad.calc = SinglePointCalculator(bad, energy=np.nan,
                                         forces=np.zeros((len(bad), 3)))
    else:
        bad.calc = SinglePointCalculator(bad, energy=1.0,
                                         forces=np.full((len(bad), 3),
                                                        np.nan))
    calc = make_calc(str(tmp_path / "bad"), {"energy_rmse": 0.1})
    with pytest.raises(ValueError, match="training image 1.*" + message):
        calc.train(images)


def test_checkpoint_from_other_settings_is_refused(tmp_path):
    label = str(tmp_path / "ck")
    Amp.load(LEGACY).save(label + "-checkpoint.amp")
    calc = make_calc(label, {"energy_rmse": 0.1})
    with pytest.raises(ValueError, match="other descriptor or model"):
        calc.train(emt_images(3))
