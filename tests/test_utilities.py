import io
import json
import os

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.io import read, write

from amp.utilities import (Logger, MetaDict, get_hash, hash_images,
                           make_filename)
from conftest import AMP_REFERENCE


def test_get_hash_matches_amp():
    with open(os.path.join(AMP_REFERENCE, "hashes.json")) as f:
        reference = json.load(f)["hashes"]
    checked = 0
    for name in ("pd3o2.traj", "pd4o2.traj", "ptcu_train.traj"):
        images = read(os.path.join(AMP_REFERENCE, name), index=":")
        expected = reference[name]
        assert len(expected) == len(images)
        for image, h in zip(images, expected):
            assert get_hash(image) == h
            checked += 1
    assert checked == 11


def test_hash_images_duplicates_and_inputs(tmp_path):
    a = molecule("H2O")
    b = a.copy()
    b.positions[0, 0] += 0.1
    hashed = hash_images([a, b, a, a])
    assert isinstance(hashed, MetaDict)
    assert list(hashed) == [get_hash(a), get_hash(b)]
    assert hashed.metadata["duplicates"] == {get_hash(a): 3}
    assert list(hash_images(a)) == [get_hash(a)]
    path = tmp_path / "x.traj"
    write(path, [a, b])
    assert list(hash_images(str(path))) == [get_hash(a), get_hash(b)]
    dbpath = tmp_path / "x.db"
    write(dbpath, [a, b])
    assert list(hash_images(str(dbpath))) == [get_hash(a), get_hash(b)]


@pytest.mark.parametrize("bad, message", [
    (Atoms(), "no atoms"),
    (Atoms("H2", positions=[[0, 0, 0], [np.nan, 0, 0]]), "NaN"),
    (Atoms("H2", positions=[[0, 0, 0], [np.inf, 0, 0]]), "infinite"),
])
def test_hash_images_bad_images(bad, message):
    with pytest.raises(ValueError, match=message):
        hash_images([molecule("H2O"), bad])


def test_hash_images_bad_path(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        hash_images(str(tmp_path / "missing.traj"))
    garbage = tmp_path / "garbage.traj"
    garbage.write_bytes(b"not a trajectory")
    with pytest.raises(ValueError, match="cannot read"):
        hash_images(str(garbage))


def test_logger_tic_toc():
    buffer = io.StringIO()
    log = Logger(buffer)
    log("start", tic="a")
    log("end", toc="a")
    lines = buffer.getvalue().splitlines()
    assert lines[0] == "start"
    assert lines[1].startswith("end ") and lines[1].endswith(" sec.")
    Logger(None)("nothing happens")


def test_make_filename():
    assert make_filename("amp", "-log.txt") == "amp-log.txt"
    assert make_filename("dir/amp", ".amp") == "dir/amp.amp"
    assert make_filename("amp", None) == "amp"
    assert make_filename(None, "-log.txt") is None


@pytest.mark.parametrize("first", ["amp.utilities", "amp.model", "amp",
                                   "amp.regression"])
def test_training_convergence_error_one_class_both_paths(first):
    """Amp 1.x's ``from amp.utilities import TrainingConvergenceError``
    works and names the class ``amp.model`` exports, whichever module is
    imported first (no import cycle)."""
    import subprocess
    import sys

    code = ("import importlib; importlib.import_module(%r); "
            "from amp.utilities import TrainingConvergenceError as a; "
            "from amp.model import TrainingConvergenceError as b; "
            "from amp.utilities import ConvergenceOccurred as c; "
            "from amp.model import ConvergenceOccurred as d; "
            "assert a is b and issubclass(a, Exception); "
            "assert c is d and issubclass(c, Exception); print('ok')"
            % first)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    from amp.model import TrainingConvergenceError as from_model
    from amp.utilities import TrainingConvergenceError as from_utilities
    assert from_utilities is from_model


# Amp 1.x's other utility names -------------------------------------------

def _images_with_energies(n, forces=True):
    from ase.build import bulk
    from ase.calculators.singlepoint import SinglePointCalculator

    images = []
    for k in range(n):
        atoms = bulk("Cu", "fcc", a=3.6 + 0.01 * k) * (2, 1, 1)
        atoms[0].symbol = "Au"
        results = {"energy": -float(k)}
        if forces:
            results["forces"] = np.zeros((len(atoms), 3))
        atoms.calc = SinglePointCalculator(atoms, **results)
        images.append(atoms)
    return images


def test_randomize_images_seeded_and_from_files(tmp_path):
    from amp.utilities import randomize_images

    images = [molecule("H2O") for _ in range(10)]
    for k, atoms in enumerate(images):
        atoms.positions[0, 0] += 0.01 * k
    np.random.seed(4)
    train, test = randomize_images(images)
    assert len(train) == 8 and len(test) == 2
    assert {get_hash(a) for a in train + test} == {get_hash(a)
                                                   for a in images}
    np.random.seed(4)
    again = randomize_images(images)
    assert [get_hash(a) for a in again[1]] == [get_hash(a) for a in test]
    first = randomize_images(images, fraction=0.5, rng=1)
    second = randomize_images(images, fraction=0.5, rng=1)
    assert [get_hash(a) for a in first[1]] == \
        [get_hash(a) for a in second[1]]
    path = str(tmp_path / "images.traj")
    write(path, images)
    train, test = randomize_images(path, fraction=0.7, rng=2)
    assert (len(train), len(test)) == (7, 3)
    with pytest.raises(ValueError, match="fraction"):
        randomize_images(images, fraction=1.5)


def test_string2dict_reads_amp_text_and_refuses_code(tmp_path):
    from amp.utilities import string2dict

    text = open(os.path.join(AMP_REFERENCE, "ptcu_nn33.amp")).read()
    outer = string2dict(text)
    model = string2dict(outer["model"])
    assert list(model["weights"]["Cu"]) == [1, 2, 3]
    assert model["hiddenlayers"]["Cu"] == (3, 3)
    assert string2dict("{'a': array([1., 2.]), 'b': matrix([[1]])}")[
        "a"].tolist() == [1.0, 2.0]
    marker = tmp_path / "ran"
    for code in ["__import__('os').system('touch %s')" % marker,
                 "dict(a=open('%s', 'w'))" % marker,
                 "{'a': (lambda: 1)()}", "{'a': 1 + 1}", "[1, 2]"]:
        with pytest.raises(ValueError, match="string2dict"):
            string2dict(code)
    assert not marker.exists()


def test_importer_and_importhelper_resolve_only_amps_classes():
    import amp
    from amp.descriptor.gaussian import Gaussian
    from amp.model import LossFunction
    from amp.model.neuralnetwork import NeuralNetwork
    from amp.utilities import importer

    assert amp.importhelper(".descriptor.gaussian.Gaussian") is Gaussian
    assert amp.importhelper(".model.neuralnetwork.NeuralNetwork") is \
        NeuralNetwork
    assert amp.importhelper(".model.LossFunction") is LossFunction
    for name in ("os.system", ".utilities.os", "subprocess.Popen",
                 "..x", None):
        with pytest.raises(NotImplementedError, match="refusing"):
            amp.importhelper(name)
    assert importer("Gaussian") is Gaussian
    assert importer("NeighborList").__module__.startswith("ase.")
    for name in ("os", "subprocess", "amp.utilities", "__builtins__"):
        with pytest.raises(ImportError, match="not one of amp's classes"):
            importer(name)


def test_check_images_names_the_image():
    from ase.calculators.singlepoint import SinglePointCalculator

    from amp.utilities import MissingDataError, check_images

    images = _images_with_energies(3)
    check_images(images)
    check_images(hash_images(images), forces=True)
    images[1].calc = SinglePointCalculator(images[1], energy=1.0)
    check_images(images, forces=False)
    with pytest.raises(MissingDataError, match="image 1 has no finite "
                       "forces.*force_coefficient=None"):
        check_images(images)
    images[2].calc = None
    with pytest.raises(MissingDataError, match=r"image 2 \(hash .*\) has no "
                       "finite energy"):
        check_images(hash_images(images), forces=False)
    assert issubclass(MissingDataError, ValueError)


def test_lossfunction_defaults_and_network_randomize_prescale():
    from amp.model import LossFunction
    from amp.model.neuralnetwork import NeuralNetwork

    defaults = LossFunction.default_parameters["convergence"]
    assert defaults == {"energy_rmse": 0.001, "energy_maxresid": None,
                        "force_rmse": None, "force_maxresid": None}
    loss = LossFunction(convergence={"energy_rmse": 0.1})
    assert loss.parameters["convergence"]["energy_rmse"] == 0.1
    assert defaults["energy_rmse"] == 0.001  # the defaults are not changed
    images = _images_with_energies(4)
    model = NeuralNetwork(hiddenlayers=(2,),
                          fprange={"Au": [[0, 1]] * 3, "Cu": [[0, 1]] * 3})
    model.randomize(images, seed=1)
    first = model.vector.copy()
    model.randomize(images, seed=1)
    np.testing.assert_array_equal(model.vector, first)
    model.randomize(images, seed=2)
    assert not np.array_equal(model.vector, first)
    assert model.parameters.weights["Au"][1].shape == (4, 2)
    before = model.parameters.scalings
    model.randomize(weights=True, scalings=False)
    assert model.parameters.scalings == before
    with pytest.raises(ValueError, match="training images"):
        model.randomize()
    model.prescale_intercepts(images)
    scalings = model.parameters.scalings
    assert scalings["Au"]["slope"] == scalings["Cu"]["slope"] == 1.0
    # Au + Cu per image: the per-atom fit gives intercepts summing to the
    # mean of energy / 2.
    energies = np.array([a.get_potential_energy() for a in images])
    assert scalings["Au"]["intercept"] + scalings["Cu"]["intercept"] == \
        pytest.approx(energies.mean(), abs=1e-10)


def test_gaussian_with_one_list_and_no_elements(tmp_path):
    from amp import Amp
    from amp.descriptor.gaussian import Gaussian
    from amp.model import LossFunction
    from amp.model.neuralnetwork import NeuralNetwork

    Gs = [{"type": "G2", "element": "Cu", "eta": 1.0},
          {"type": "G2", "element": "Au", "eta": 2.0},
          {"type": "G4", "elements": ["Cu", "Au"], "eta": 0.005,
           "zeta": 1.0, "gamma": 1.0}]
    descriptor = Gaussian(Gs=Gs)
    assert descriptor.Gs is None and descriptor.elements is None
    rebuilt = Gaussian.fromdict(descriptor.todict())
    images = _images_with_energies(3)
    calc = Amp(descriptor=descriptor, model=NeuralNetwork(hiddenlayers=(2,)),
               label=str(tmp_path / "list"))
    calc.model.lossfunction = LossFunction(
        convergence={"energy_rmse": 10.0}, force_coefficient=None)
    calc.train(images)
    assert calc.descriptor.elements == ["Au", "Cu"]
    assert set(calc.descriptor.Gs) == {"Au", "Cu"}
    assert calc.descriptor.Gs["Au"] == calc.descriptor.Gs["Cu"]
    assert len(calc.descriptor.Gs["Cu"]) == 3
    rebuilt.calculate_fingerprints(images)
    assert rebuilt.Gs == calc.descriptor.Gs
    with pytest.raises(ValueError, match="unknown symmetry function"):
        Gaussian(Gs=[{"type": "G7"}])


def test_save_in_amp1_format_round_trips(tmp_path):
    from amp import Amp

    legacy = os.path.join(AMP_REFERENCE, "ptcu_nn33.amp")
    calc = Amp.load(legacy)
    path = str(tmp_path / "old.amp")
    calc.save(path, format="amp1")
    # Amp 1.0.1's own file for this model, byte for byte.
    assert open(path).read() == open(legacy).read()
    again = Amp.load(str(tmp_path / "old.amp"))
    json_path = str(tmp_path / "new.amp")
    calc.save(json_path)
    assert open(json_path).read().startswith("{")
    with pytest.raises(FileExistsError):
        calc.save(path, format="amp1")
    with pytest.raises(ValueError, match="format"):
        calc.save(str(tmp_path / "x.amp"), format="pickle")
    for image in read(os.path.join(AMP_REFERENCE, "ptcu_train.traj"), ":"):
        a, b = image.copy(), image.copy()
        a.calc, b.calc = calc, again
        assert a.get_potential_energy() == b.get_potential_energy()
        np.testing.assert_array_equal(a.get_forces(), b.get_forces())


def test_amp_compress_several_paths(tmp_path, capsys):
    from amp.cli import compress_main
    from amp.store.database import FileDatabase

    paths = []
    for name in ("a", "b"):
        db = FileDatabase(str(tmp_path / (name + ".ampdb")))
        db.update({"k%d" % n: {"n": np.arange(3.0) + n} for n in range(3)})
        paths.append(db.path)
    assert compress_main(paths) == 0
    out = capsys.readouterr().out
    assert "total: 2 databases, moved 6 loose entries" in out
    assert compress_main(paths + [str(tmp_path / "missing.ampdb")]) == 1
    assert "nothing was changed" in capsys.readouterr().err
