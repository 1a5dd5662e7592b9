"""The Amp calculator: ASE protocol, physics, files, training."""
import io
import json
import os

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

from amp import Amp
from amp.descriptor.gaussian import Gaussian
from amp.model import LossFunction, TrainingConvergenceError
from amp.model.neuralnetwork import NeuralNetwork
from amp.store.modelfile import ModelFileError
from checks import (assert_forces_are_gradients, assert_invariant,
                    assert_stress_is_strain_derivative, energy_of)
from conftest import AMP_REFERENCE, cu_bulk, rattled_with_emt

LEGACY = os.path.join(AMP_REFERENCE, "ptcu_nn33.amp")


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
    # ASE's properties, and the extrapolation record beside them (which
    # get_properties, above, leaves out).
    assert set(calc.results) == {"energy", "free_energy", "energies",
                                 "forces", "extrapolation"}
    assert "extrapolation" not in results
    # Slab (pbc T,T,F): no stress, as ASE expects.
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_stress()
    json.dumps(calc.parameters)


def test_forces_and_stress_are_gradients(trained, tmp_path):
    calc = Amp.load(trained)
    # The training slab made periodic in z and sheared: fingerprints stay
    # in the model's range (a bulk cell saturates its networks: zero
    # forces, which would test nothing).
    atoms = read(os.path.join(AMP_REFERENCE, "ptcu_train.traj"))
    atoms.pbc = True
    atoms.set_cell(atoms.cell @ [[1, 0.02, 0], [0, 1, 0.01], [0, 0, 1]],
                   scale_atoms=True)
    atoms.rattle(0.05, rng=np.random.default_rng(2))
    atoms.calc = calc
    assert_forces_are_gradients(energy_of(calc), atoms, atoms.get_forces(),
                                atol=1e-7)
    assert_stress_is_strain_derivative(energy_of(calc), atoms,
                                       atoms.get_stress(), atol=1e-7)
    slab = read(os.path.join(AMP_REFERENCE, "ptcu_train.traj"))
    slab.calc = calc
    assert_forces_are_gradients(energy_of(calc), slab, slab.get_forces(),
                                atol=1e-7)
    energy = atoms.get_potential_energy()
    write(str(tmp_path / "x.traj"), atoms)  # parameters are plain data
    again = read(str(tmp_path / "x.traj"))
    assert again.calc.results["energy"] == pytest.approx(energy)


def test_stored_and_fused_force_paths_agree(trained, tmp_path):
    """Without a dblabel the derivatives are contracted as they are made;
    with one they are stored first. Both give the same results."""
    atoms = bulk("Cu", "fcc", a=3.75, cubic=True) * (1, 1, 2)
    atoms.symbols[[1, 5]] = "Pt"
    atoms.rattle(0.1, rng=np.random.default_rng(3))
    fused = Amp.load(trained)
    stored = Amp.load(trained, dblabel=str(tmp_path / "db"))
    results = []
    for calc in (fused, stored):
        copy = atoms.copy()
        copy.calc = calc
        results.append((copy.get_potential_energy(), copy.get_forces(),
                        copy.get_stress(), copy.get_potential_energies()))
    assert os.path.isdir(str(tmp_path / "db-fingerprint-primes.ampdb"))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_invariances(trained):
    calc = Amp.load(trained)
    atoms = read(os.path.join(AMP_REFERENCE, "ptcu_train.traj"))
    assert_invariant(lambda a: energy_of(calc)(a), atoms, atol=1e-10)
    assert_invariant(lambda a: energy_of(calc)(a), atoms, atol=1e-10,
                     operations=("permutation",))

    def forces(a):
        a = a.copy()
        a.calc = calc
        return a.get_forces()
    # Forces follow a permutation of like atoms.
    assert_invariant(forces, atoms, per_atom=True, atol=1e-10,
                     operations=("translation", "permutation", "periodic"))


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
    return rattled_with_emt(lambda k: cu_bulk(3.6, (2, 1, 1), pt=[1]), count,
                            0.1, rng=np.random.default_rng(seed))


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
    ("no energy", "training image 1.*no energy"),
    ("nan energy", "training image 1.*NaN or infinite energy"),
    ("inf energy", "training image 1.*NaN or infinite energy"),
    ("no forces", "training image 1.*no forces.*force_coefficient=None"),
    ("nan forces", "training image 1.*NaN or infinite forces"),
    ("inf forces", "training image 1.*NaN or infinite forces"),
    ("nan positions", "image 1 has NaN or infinite positions"),
    ("inf positions", "image 1 has NaN or infinite positions"),
])
def test_bad_training_images(tmp_path, breakage, message):
    images = emt_images(3)
    bad = images[1]
    zeros = np.zeros((len(bad), 3))
    if breakage == "no energy":
        bad.calc = None
    elif breakage.endswith("energy"):
        value = np.nan if breakage.startswith("nan") else np.inf
        bad.calc = SinglePointCalculator(bad, energy=value, forces=zeros)
    elif breakage == "no forces":  # force training is on (the default)
        bad.calc = SinglePointCalculator(bad, energy=1.0)
    elif breakage.endswith("forces"):
        value = np.nan if breakage.startswith("nan") else -np.inf
        bad.calc = SinglePointCalculator(bad, energy=1.0,
                                         forces=np.full((len(bad), 3),
                                                        value))
    else:
        bad.positions[0, 2] = np.nan if breakage.startswith("nan") \
            else np.inf
    calc = make_calc(str(tmp_path / "bad"), {"energy_rmse": 0.1})
    assert calc.model.forcetraining
    with pytest.raises(ValueError, match=message):
        calc.train(images)
    assert not os.path.exists(str(tmp_path / "bad.amp"))


def test_images_without_forces_train_energy_only(tmp_path):
    """Forces are needed only when force training is on."""
    images = emt_images(3)
    for atoms in images:
        atoms.calc = SinglePointCalculator(
            atoms, energy=atoms.get_potential_energy())
    calc = make_calc(str(tmp_path / "energy"), {"energy_rmse": 0.01},
                     force=None)
    assert not calc.model.forcetraining
    assert calc.train(images) is True


def test_checkpoint_from_other_settings_is_refused(tmp_path):
    label = str(tmp_path / "ck")
    Amp.load(LEGACY).save(label + "-checkpoint.amp")
    calc = make_calc(label, {"energy_rmse": 0.1})
    with pytest.raises(ValueError, match="other descriptor or model"):
        calc.train(emt_images(3))


def test_ctrl_c_leaves_a_checkpoint_that_a_rerun_resumes(tmp_path):
    """KeyboardInterrupt in the middle of the fit propagates after
    ``<label>-checkpoint.amp`` is written with the parameters of that
    moment; a rerun under the same label starts from them (logged)."""
    label = str(tmp_path / "ctrlc")
    images = emt_images(6)
    calc = make_calc(label, {"energy_rmse": 1e-9, "force_rmse": 1e-9})
    lossfunction = calc.model.lossfunction
    evaluate = lossfunction.get_loss
    at_interrupt = {}

    def interrupted_at_step_7(vector, lossprime=True):
        result = evaluate(vector, lossprime=lossprime)
        if lossfunction._step == 7:
            at_interrupt["vector"] = calc.model.vector.copy()
            raise KeyboardInterrupt
        return result

    lossfunction.get_loss = interrupted_at_step_7
    with pytest.raises(KeyboardInterrupt):
        calc.train(images)
    assert "vector" in at_interrupt
    assert not os.path.exists(label + ".amp")
    checkpoint = Amp.load(label + "-checkpoint.amp")
    np.testing.assert_array_equal(checkpoint.model.vector,
                                  at_interrupt["vector"])
    assert "Interrupted; parameters saved to %s-checkpoint.amp" % label \
        in open(label + "-log.txt").read()

    rerun = make_calc(label, {"energy_rmse": 0.01, "force_rmse": 0.5})
    assert rerun.train(images) is True
    log = open(label + "-log.txt").read()
    assert "Resuming from checkpoint %s-checkpoint.amp." % label in log
    # The rerun's starting point is the checkpoint, not new random weights.
    start = Amp.load(label + "-initial-parameters.amp")
    np.testing.assert_array_equal(start.model.vector, at_interrupt["vector"])
    Amp.load(label + ".amp")
    # Once converged, the checkpoint is superseded and removed.
    assert not os.path.exists(label + "-checkpoint.amp")
    assert "Removed %s-checkpoint.amp" % label in log


def test_label_folder_is_created(tmp_path):
    label = str(tmp_path / "new" / "folder" / "fit")
    calc = make_calc(label, {"energy_rmse": 0.05, "force_rmse": None},
                     force=None)
    assert calc.train(emt_images(3)) is True
    assert os.path.exists(label + ".amp") and os.path.exists(
        label + "-log.txt")


def _shrunk_Gs(calc, n_features):
    return {e: g[:n_features] for e, g in calc.descriptor.Gs.items()}


def test_descriptor_and_model_feature_counts_disagree(trained, tmp_path):
    calc = Amp.load(trained)
    assert {e: len(g) for e, g in calc.descriptor.Gs.items()} == \
        {"Cu": 20, "Pt": 20}
    counts = "8 features for Cu but the model's network takes 20"
    # A descriptor with other Gs next to the loaded model.
    smaller = Gaussian(Gs=_shrunk_Gs(calc, 8), cutoff=6.5)
    with pytest.raises(ValueError, match="feature counts.*" + counts):
        Amp(descriptor=smaller, model=calc.model)
    # The same mismatch in a saved file.
    content = json.loads(open(trained).read())
    content["descriptor"]["Gs"]["Cu"] = content["descriptor"]["Gs"]["Cu"][:8]
    edited = tmp_path / "edited.amp"
    edited.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=counts):
        Amp.load(str(edited))
    # A descriptor swapped in after construction: caught at the first call.
    calc.descriptor = Gaussian(Gs=_shrunk_Gs(calc, 8), cutoff=6.5)
    atoms = read(os.path.join(AMP_REFERENCE, "ptcu_train.traj"))
    atoms.calc = calc
    with pytest.raises(ValueError, match="Cu: the fingerprints have 8 "
                       "features but the network takes 20"):
        atoms.get_potential_energy()


def test_descriptor_and_model_disagree_on_elements(trained, tmp_path):
    calc = Amp.load(trained)
    Gs = dict(calc.descriptor.Gs)
    Gs["Au"] = Gs["Cu"]
    with pytest.raises(ValueError, match="disagree on elements.*20 features "
                       "for Au but the model has no network for it"):
        Amp(descriptor=Gaussian(Gs=Gs, cutoff=6.5), model=calc.model)
    # A saved model without a Pt network next to a descriptor with Pt.
    content = json.loads(open(trained).read())
    for key in ("weights", "scalings", "fprange", "hiddenlayers"):
        if isinstance(content["model"].get(key), dict):
            del content["model"][key]["Pt"]
    edited = tmp_path / "edited.amp"
    edited.write_text(json.dumps(content))
    with pytest.raises(ValueError, match="disagree on elements.*20 features "
                       "for Pt but the model has no network for it"):
        Amp.load(str(edited))
    # A descriptor for Cu alone next to a model with a Pt network.
    only_cu = {"Cu": [g for g in calc.descriptor.Gs["Cu"]
                      if set(g.get("elements", [g.get("element")])) ==
                      {"Cu"}]}
    with pytest.raises(ValueError, match="disagree on elements.*network for "
                       "Pt but the descriptor has no symmetry functions"):
        Amp(descriptor=Gaussian(Gs=only_cu, cutoff=6.5), model=calc.model)


def emt_md_images(count, temperature_K=600, seed=0):
    """Snapshots (every 5 steps) of EMT NVE MD of an 8-atom Cu6Pt2 cell;
    the last image carries the MD's velocities."""
    from ase import units
    from ase.md.velocitydistribution import Stationary
    from ase.md.verlet import VelocityVerlet

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 1, 1)
    atoms.symbols[[1, 6]] = "Pt"
    atoms.calc = EMT()
    # Maxwell-Boltzmann momenta (written out: ASE renamed its helper).
    rng = np.random.default_rng(seed)
    sigma = np.sqrt(atoms.get_masses() * units.kB * temperature_K)
    atoms.set_momenta(rng.normal(size=(len(atoms), 3)) * sigma[:, None])
    Stationary(atoms)
    dynamics = VelocityVerlet(atoms, timestep=2 * units.fs)
    images = []
    for _ in range(count):
        dynamics.run(5)
        image = atoms.copy()
        image.calc = SinglePointCalculator(
            image, energy=atoms.get_potential_energy(),
            forces=atoms.get_forces())
        images.append(image)
    return images


def test_trained_model_conserves_energy_in_nve(tmp_path):
    """NVE with a model trained on EMT data: velocity Verlet, 2 fs, 400
    steps (0.8 ps) of an 8-atom cell near 300 K. The total energy must not
    drift (< 0.5 meV over the run) and its fluctuation must stay a small
    fraction of the kinetic energy's (a force that is not minus the energy
    gradient, even 1 % off, breaks this)."""
    from ase import units
    from ase.md.verlet import VelocityVerlet

    images = emt_md_images(10)
    label = str(tmp_path / "nve")
    calc = Amp(descriptor=Gaussian(cutoff=4.0),
               model=NeuralNetwork(hiddenlayers=(5,), randomseed=1),
               label=label, cores=1)
    calc.model.lossfunction = LossFunction(
        convergence={"energy_rmse": 0.005, "force_rmse": 0.1})
    calc.train(images)

    atoms = images[-1].copy()  # positions and momenta of the EMT run
    atoms.calc = Amp.load(label + ".amp")
    total, kinetic = [], []

    def record():
        total.append(atoms.get_total_energy())
        kinetic.append(atoms.get_kinetic_energy())

    dynamics = VelocityVerlet(atoms, timestep=2 * units.fs)
    dynamics.attach(record, interval=1)
    dynamics.run(400)
    total, kinetic = np.array(total), np.array(kinetic)
    fifth = len(total) // 5
    drift = total[-fifth:].mean() - total[:fifth].mean()
    spread = np.ptp(total)
    print("NVE drift %.2e eV (%.2e eV/atom) over %.1f ps; total-energy "
          "spread %.2e eV; kinetic-energy std %.2e eV"
          % (drift, drift / len(atoms), 400 * 2e-3, spread, kinetic.std()))
    assert kinetic.std() > 0.02  # the atoms do move
    assert abs(drift) < 5e-4
    assert spread < 0.03 * kinetic.std()


def test_inference_takes_the_fused_path_and_agrees_with_the_stored(
        trained, monkeypatch):
    from amp import potential

    calc = Amp.load(trained)
    assert potential.fused_path(calc.descriptor, calc.model)
    atoms = read(os.path.join(AMP_REFERENCE, "ptcu_train.traj"))
    fused = potential.evaluate(calc.descriptor, calc.model, atoms)
    monkeypatch.setattr(type(calc.model), "block_evaluation", False)
    assert not potential.fused_path(calc.descriptor, calc.model)
    stored = potential.evaluate(calc.descriptor, calc.model, atoms)
    assert fused["energy"] == pytest.approx(stored["energy"], abs=1e-12)
    np.testing.assert_allclose(fused["forces"], stored["forces"], rtol=0,
                               atol=1e-12)


@pytest.mark.parametrize("cell", [None, [5.0, 5.0, 5.0]])
def test_an_image_without_atoms_gives_what_ase_calculators_give(
        trained, tmp_path, cell):
    """Energy 0, forces of shape (0, 3) and, in a 3-D periodic cell, zero
    stress -- the answer of ASE's own EMT -- from the calculator, with a
    fingerprint database, and from an ensemble."""
    from amp.stats.ensemble import Ensemble, EnsembleCalculator

    first, second = Amp.load(trained), Amp.load(trained)
    second.model.vector = second.model.vector * 1.01
    calculators = [Amp.load(trained),
                   Amp.load(trained, dblabel=str(tmp_path / "db")),
                   EnsembleCalculator(Ensemble(first.descriptor,
                                               [first.model, second.model]))]
    empty = Atoms(cell=cell, pbc=cell is not None)
    reference = empty.copy()
    reference.calc = EMT()
    for calc in calculators:
        atoms = empty.copy()
        atoms.calc = calc
        assert atoms.get_potential_energy() == 0.0
        assert atoms.get_forces().shape == (0, 3)
        assert calc.results["energies"].shape == (0,)
        if cell is None:
            with pytest.raises(PropertyNotImplementedError):
                atoms.get_stress()
        else:
            np.testing.assert_array_equal(atoms.get_stress(),
                                          reference.get_stress())
    assert reference.get_potential_energy() == 0.0
