"""Bootstrap ensembles: training, spread, percentiles, files, bad input."""
import json
import os

import numpy as np
import pytest
from ase.build import bulk

from amp import Amp
from amp.descriptor.gaussian import Gaussian
from amp.model import LossFunction, TrainingConvergenceError
from amp.model.neuralnetwork import NeuralNetwork
from amp.stats import bootstrap as bootstrap_module
from amp.stats.bootstrap import BootStrap, EnsembleFileError
from amp.stats.calctext import CalcTextError, read_calc_text
from amp.utilities import Logger
from conftest import adatom_slab_images

QUIET = Logger(None)


def distorted(image):
    """The adatom pushed 1.2 A into the surface, a Pt atom displaced."""
    atoms = image.copy()
    atoms.calc = None
    atoms.positions[-1, 2] -= 1.2
    atoms.positions[4] += [0.5, 0.4, 0.3]
    return atoms


def template(hiddenlayers=(5, 5), energy_rmse=0.002, maxiter=3000):
    calc = Amp(Gaussian(), NeuralNetwork(hiddenlayers=hiddenlayers))
    calc.model.lossfunction = LossFunction(
        convergence={"energy_rmse": energy_rmse}, force_coefficient=None,
        maxiter=maxiter)
    return calc


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ensemble")
    images = adatom_slab_images(10)
    label = str(folder / "pt")
    ensemble = BootStrap(log=QUIET)
    result = ensemble.train(images, n=5, calc=template(), seed=0,
                            label=label)
    assert result == {"complete": True, "n_converged": 5}
    return ensemble, images, label + ".ensemble"


def test_spread_is_larger_far_from_the_training_images(trained):
    ensemble, images, _ = trained
    calc = ensemble.calculator()
    spreads = []
    for image in images:
        atoms = image.copy()
        atoms.calc = calc
        atoms.get_potential_energy()
        spreads.append(calc.results["energy_std"])
    far = distorted(images[0])
    far.calc = calc
    far.get_potential_energy()
    # Measured: training images 0.024 eV mean, 0.045 max; distorted 0.29.
    assert calc.results["energy_std"] > 3 * max(spreads)
    assert calc.results["forces_std"].shape == (len(far), 3)
    assert calc.results["forces_std"].max() > 0.1


def test_percentiles_ordered_and_amp_output_codes(trained):
    ensemble, images, _ = trained
    atoms = distorted(images[3])
    low, median, high, members = ensemble.get_potential_energy(
        atoms, output=(.05, .5, .95, "e"))
    assert low <= median <= high
    assert len(members) == 5 and min(members) <= low and high <= max(members)
    assert ensemble.get_potential_energy(atoms) == pytest.approx(
        np.mean(members), abs=1e-12)
    assert ensemble.get_potential_energy(atoms, mean=False) == \
        pytest.approx(median, abs=1e-12)
    flow, fhigh = ensemble.get_forces(atoms, output=(.1, .9))
    assert np.all(flow <= fhigh) and flow.shape == (len(atoms), 3)
    alow, ahigh = ensemble.get_atomic_energies(atoms, output=(.1, .9))
    assert np.all(alow <= ahigh) and alow.shape == (len(atoms),)
    # k: the first k members.
    assert ensemble.get_potential_energy(atoms, k=2) == pytest.approx(
        np.mean(members[:2]), abs=1e-12)
    for bad in [(1.5,), ("x",), ("e", 0.5), ()]:
        with pytest.raises(ValueError):
            ensemble.get_potential_energy(atoms, output=bad)


def test_one_fingerprinting_gives_each_members_own_predictions(
        trained, monkeypatch):
    ensemble, images, _ = trained
    descriptor = ensemble._committee.descriptor
    calls = []
    compute = descriptor.compute
    monkeypatch.setattr(descriptor, "compute",
                        lambda *args: calls.append(1) or compute(*args))
    probe = distorted(images[5])
    ensemble.get_potential_energy(probe)
    ensemble.get_forces(probe, output=(.1, .9))
    ensemble.get_atomic_energies(probe)
    assert len(calls) == 1  # five members, three questions, one call
    cell = bulk("Pt", "fcc", a=3.95, cubic=True) * (2, 1, 1)
    cell[0].symbol = "Cu"
    cell.rattle(0.05, seed=1)
    slab = distorted(images[1])
    for atoms in (slab, cell):
        _, members = ensemble.get_potential_energy(atoms, output=(.5, "e"))
        forces = ensemble.get_forces(atoms, output=("e",))
        for k, member in enumerate(ensemble.ensemble):
            copy = atoms.copy()
            copy.calc = member
            assert members[k] == pytest.approx(copy.get_potential_energy(),
                                               abs=1e-10)
            np.testing.assert_allclose(forces[k], copy.get_forces(),
                                       atol=1e-10)
    calc = ensemble.calculator()
    cell.calc = calc
    stresses = []
    for member in ensemble.ensemble:
        copy = cell.copy()
        copy.calc = member
        stresses.append(copy.get_stress())
    np.testing.assert_allclose(cell.get_stress(), np.mean(stresses, axis=0),
                               atol=1e-10)
    assert set(calc.implemented_properties) == {
        "energy", "free_energy", "forces", "energies", "stress"}
    assert calc.results["energy_std"] == pytest.approx(
        np.std(calc.results["energy_ensemble"], ddof=1), abs=1e-12)


def test_saved_ensemble_reproduces_predictions_and_writes_nothing(
        trained, tmp_path, monkeypatch):
    ensemble, images, path = trained
    content = json.load(open(path))
    assert content["format"] == "amp-mlip-ensemble"
    assert len(content["members"]) == 5
    record = content["training"]
    assert len(record["resamples"]) == 5 and record["seed"] == 0
    assert all(len(r) == len(images) for r in record["resamples"])
    assert len(record["images"]) == len(images)
    monkeypatch.chdir(tmp_path)
    loaded = BootStrap.load(path, log=QUIET)
    again = BootStrap(load=path, log=QUIET)
    for atoms in (images[2], distorted(images[2])):
        for other in (loaded, again):
            for method in ("get_potential_energy", "get_forces",
                           "get_atomic_energies"):
                a = getattr(ensemble, method)(atoms, output=(.2, .7, "e"))
                b = getattr(other, method)(atoms, output=(.2, .7, "e"))
                for x, y in zip(a, b):
                    np.testing.assert_allclose(x, y, rtol=0, atol=1e-12)
    assert os.listdir(tmp_path) == []  # inference is ephemeral
    with_db = BootStrap.load(path, log=QUIET, dblabel="cache")
    with_db.get_potential_energy(images[0])
    assert any(name.startswith("cache-") for name in os.listdir(tmp_path))


def test_resamples_are_seeded_and_failed_members_listed(tmp_path,
                                                        monkeypatch):
    monkeypatch.chdir(tmp_path)
    images = adatom_slab_images(4)
    hopeless = template(hiddenlayers=(2,), energy_rmse=1e-9, maxiter=3)
    with pytest.raises(TrainingConvergenceError) as info:
        BootStrap(log=QUIET).train(images, n=2, calc=hopeless, seed=5,
                                   retries=1, label="never")
    message = str(info.value)
    assert "2 of 2 members did not converge after 2 attempts" in message
    assert "member 0 (seeds [" in message and "member 1 (seeds [" in message
    seeds = json.loads(message.split("member 0 (seeds ")[1].split(")")[0])
    assert len(set(seeds)) == 2  # a retry uses a new seed
    assert not os.path.exists("never.ensemble")


def test_finished_members_are_never_retrained(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    images = adatom_slab_images(4)
    calls = []
    real = bootstrap_module._train_member

    def flaky(spec, member_images, label, dblabel, seeds, log):
        calls.append(os.path.basename(label))
        if len(calls) <= 3 and label.endswith("1"):
            return {"converged": False, "seeds": seeds}
        return real(spec, member_images, label, dblabel, seeds, log)

    monkeypatch.setattr(bootstrap_module, "_train_member", flaky)
    calc = template(hiddenlayers=(3,), energy_rmse=0.02)
    with pytest.raises(TrainingConvergenceError, match="member 1 "):
        BootStrap(log=QUIET).train(images, n=3, calc=calc, label="e", seed=2)
    assert calls == ["0", "1", "2"]
    ensemble = BootStrap(log=QUIET)
    ensemble.train(images, n=3, calc=calc, label="e", seed=2)
    assert calls == ["0", "1", "2", "1"]
    assert len(ensemble.ensemble) == 3
    # Another seed (or other images) does not reuse them, and an existing
    # ensemble file is not replaced without overwrite=True.
    with pytest.raises(FileExistsError):
        BootStrap(log=QUIET).train(images, n=3, calc=calc, label="e")


def test_calc_text_template_is_read_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = """
from amp import Amp
from amp.descriptor.gaussian import Gaussian
from amp.descriptor.cutoffs import Cosine
from amp.model.neuralnetwork import NeuralNetwork
from amp.model import LossFunction

calc = Amp(descriptor=Gaussian(cutoff=Cosine(5.0)),
           model=NeuralNetwork(hiddenlayers=(3,), activation='tanh'),
           dblabel='../amp-db')
calc.model.lossfunction = None if False else None
"""
    with pytest.raises(CalcTextError, match="line 11"):
        read_calc_text(text)
    good = text.replace(
        "calc.model.lossfunction = None if False else None",
        "calc.model.lossfunction.parameters['weight_duplicates'] = True\n"
        "calc.model.lossfunction.parameters['force_coefficient'] = None\n"
        "calc.model.lossfunction.parameters['convergence']['energy_rmse']"
        " = 0.02")
    calc = read_calc_text(good)
    assert isinstance(calc, Amp) and calc.descriptor.cutoff.Rc == 5.0
    parameters = calc.model.lossfunction.parameters
    assert parameters["weight_duplicates"] is True
    assert parameters["convergence"]["energy_rmse"] == 0.02
    ensemble = BootStrap(log=QUIET)
    ensemble.train(adatom_slab_images(4), n=2, calc_text=good, label="t", seed=1,
                   start_command="sbatch run.py", headerlines="#SBATCH")
    assert len(ensemble.ensemble) == 2
    assert not os.path.exists("../amp-db-fingerprints.ampdb")


@pytest.mark.parametrize("text", [
    "import os\nos.system('touch pwned')",
    "from os import system\nsystem('touch pwned')",
    "calc = __import__('os').system('touch pwned')",
    "from amp import Amp\ncalc = Amp.load('x')",
    "from amp import Amp\nfrom amp.descriptor.gaussian import Gaussian\n"
    "from amp.model.neuralnetwork import NeuralNetwork\n"
    "calc = Amp(Gaussian(), NeuralNetwork())\ncalc.train('x.traj')",
    "from amp.descriptor.gaussian import Gaussian\ncalc = Gaussian()",
    "from amp import Amp\nfrom amp.descriptor.gaussian import Gaussian\n"
    "calc = Amp(Gaussian(), [x for x in ()])",
    "from amp import Amp\ncalc = Amp(**{'a': 1})",
    "def f():\n    pass",
    "calc = 1 +",
])
def test_code_in_calc_text_is_refused_and_runs_nothing(text, tmp_path,
                                                       monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CalcTextError):
        read_calc_text(text)
    with pytest.raises(CalcTextError):
        BootStrap(log=QUIET).train(adatom_slab_images(2), n=2, calc_text=text)
    assert os.listdir(tmp_path) == []


def test_bad_input_is_refused_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    images = adatom_slab_images(2)
    with pytest.raises(ValueError, match="no training images"):
        BootStrap(log=QUIET).train([], n=2, calc=template())
    for n in (1, 0, -3, 2.5, True):
        with pytest.raises(ValueError, match="n >= 2"):
            BootStrap(log=QUIET).train(images, n=n, calc=template())
    with pytest.raises(TypeError, match="must be an amp.Amp"):
        BootStrap(log=QUIET).train(images, n=2, calc=NeuralNetwork())
    with pytest.raises(TypeError, match="unexpected keyword.*nonsense"):
        BootStrap(log=QUIET).train(images, n=2, calc=template(), nonsense=1)
    with pytest.raises(ValueError, match="either calc or calc_text"):
        BootStrap(log=QUIET).train(images, n=2, calc=template(),
                                   calc_text="calc = 1")
    no_energy = [a.copy() for a in images]
    with pytest.raises(ValueError, match="image 0 .*has no finite energy"):
        BootStrap(log=QUIET).train(no_energy, n=2, calc=template())
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match="empty"):
        BootStrap(log=QUIET).get_potential_energy(images[0])


@pytest.mark.parametrize("content", [
    "", "{\"format\": \"amp-mlip-ensemble\", \"members\": [",
    "{\"something\": 1}", "[]", "[1, 2]",
    json.dumps({"format": "amp-mlip-ensemble", "version": 99,
                "members": ["x"]}),
    json.dumps({"format": "amp-mlip-ensemble", "version": 1,
                "members": ["dict(descriptor=__import__('os'))"]}),
    json.dumps({"format": "amp-mlip-ensemble", "version": 1,
                "members": ["{\"truncated"]}),
])
def test_corrupt_ensemble_file(content, tmp_path):
    path = tmp_path / "bad.ensemble"
    path.write_text(content)
    with pytest.raises(EnsembleFileError, match="bad.ensemble"):
        BootStrap.load(str(path), log=QUIET)
    with pytest.raises(EnsembleFileError, match="cannot read"):
        BootStrap(load=str(tmp_path / "missing.ensemble"), log=QUIET)


def test_members_on_workers_equal_members_in_process(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    images = adatom_slab_images(4)
    calc = template(hiddenlayers=(3,), energy_rmse=0.02)
    serial, parallel = BootStrap(log=QUIET), BootStrap(log=QUIET)
    serial.train(images, n=2, calc=calc, seed=3, label="serial")
    parallel.train(images, n=2, calc=calc, seed=3, label="parallel", cores=2)
    atoms = distorted(images[0])
    np.testing.assert_array_equal(
        serial.get_forces(atoms, output=("e",)),
        parallel.get_forces(atoms, output=("e",)))


def test_amp1_ensemble_files_load(tmp_path):
    """Amp 1.x's .ensemble: a JSON list of Amp 1.x model texts."""
    from conftest import AMP_REFERENCE

    legacy = os.path.join(AMP_REFERENCE, "ptcu_nn33.amp")
    text = open(legacy).read()
    path = tmp_path / "old.ensemble"
    path.write_text(json.dumps([text, text]))
    ensemble = BootStrap.load(str(path), log=QUIET)
    single = Amp.load(legacy)
    atoms = adatom_slab_images(1)[0]
    atoms.calc = single
    low, high = ensemble.get_potential_energy(atoms, output=(.1, .9))
    assert low == high == pytest.approx(atoms.get_potential_energy(),
                                        abs=1e-12)
    np.testing.assert_allclose(ensemble.get_forces(atoms), atoms.get_forces(),
                               atol=1e-12)
