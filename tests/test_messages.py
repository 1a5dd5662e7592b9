"""What a newcomer sees: each common mistake gets one named error that
says what to do, and messages go through ``logging`` (amp.* loggers), not
to standard output."""
import logging
import os

import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from amp import Amp
from amp.cli import plotconvergence_main
from amp.descriptor.base import ElementNotCoveredError
from amp.descriptor.gaussian import Gaussian
from amp.images import (EnergyForceUnitsError, check_energy_force_units,
                        energy_force_ratio)
from amp.model import LossFunction
from amp.model.neuralnetwork import NeuralNetwork
from amp.utilities import Logger
from conftest import cu_bulk, rattled_with_emt


def _path(count):
    """Consecutive frames of a short EMT Langevin run (a path: each frame
    a small step from the one before), as MD data sets are."""
    from ase import units
    from ase.calculators.emt import EMT
    from ase.md.langevin import Langevin

    atoms = cu_bulk(3.6, repeat=(2, 2, 1), cubic=True, pt=[0])
    atoms.rattle(0.05, seed=1)
    atoms.calc = EMT()
    dynamics = Langevin(atoms, 2.0 * units.fs, temperature_K=600,
                        friction=0.02, fixcm=False,
                        rng=np.random.default_rng(0))
    frames = []
    for _ in range(count):
        dynamics.run(5)
        frame = atoms.copy()
        frame.calc = SinglePointCalculator(
            frame, energy=atoms.get_potential_energy(),
            forces=atoms.get_forces())
        frames.append(frame)
    return frames


def scaled(frames, energy=1.0, forces=1.0):
    out = []
    for atoms in frames:
        copy = atoms.copy()
        copy.calc = SinglePointCalculator(
            copy, energy=atoms.get_potential_energy() * energy,
            forces=atoms.get_forces() * forces)
        out.append(copy)
    return out


# Units ---------------------------------------------------------------------

def test_energies_and_forces_of_a_path_agree():
    slope, correlation, pairs = energy_force_ratio(_path(12))
    assert pairs == 11
    assert slope == pytest.approx(1.0, abs=0.1) and correlation > 0.95
    check_energy_force_units(_path(12))


@pytest.mark.parametrize("energy, forces, message", [
    (23.0605, 1.0, r"changes 2\d.\d+ times .* \(as energies in kcal/mol "
     r"with forces in eV/Å give\)"),
    (1.0, 23.0605, r"\(as forces in kcal/mol/Å with energies in eV give\)"),
    (1.0, -1.0, r"the forces seem to be energy gradients"),
])
def test_mismatched_units_are_refused_before_training(tmp_path, energy,
                                                      forces, message):
    frames = scaled(_path(12), energy, forces)
    with pytest.raises(EnergyForceUnitsError, match=message):
        check_energy_force_units(frames)
    calc = Amp(Gaussian(), NeuralNetwork((2,)), label=str(tmp_path / "u"))
    with pytest.raises(EnergyForceUnitsError):
        calc.train(frames)
    # refused before any fingerprint was computed or model written
    assert sorted(os.listdir(tmp_path)) == ["u-log.txt"]


def test_images_that_are_not_a_path_are_not_judged():
    rattled = rattled_with_emt(lambda k: cu_bulk(3.6, cubic=True), 6, 0.3,
                               rng=np.random.default_rng(2))
    assert energy_force_ratio(scaled(rattled, 23.0605)) is None
    check_energy_force_units(scaled(rattled, 23.0605))


# Named mistakes --------------------------------------------------------------

@pytest.mark.parametrize("elements, message", [
    (["Xx"], r"'Xx' is not a chemical symbol \(in Gaussian's elements\)$"),
    (["cu"], r"'cu' is not a chemical symbol .*; did you mean 'Cu'\?"),
])
def test_gaussian_takes_chemical_symbols_only(elements, message):
    with pytest.raises(ValueError, match=message):
        Gaussian(elements=elements)
    with pytest.raises(TypeError, match="a list of chemical symbols"):
        Gaussian(elements="Cu")
    with pytest.raises(ValueError, match="'Q' is not a chemical symbol"):
        Gaussian(Gs={"Cu": [{"type": "G2", "element": "Q", "eta": 1.0}]})
    assert Gaussian(elements=["Pt", "Cu"]).elements == ["Cu", "Pt"]


@pytest.mark.parametrize("cores", [0, -2, {"localhost": 0}])
def test_cores_that_are_not_a_count_are_refused_at_once(cores):
    with pytest.raises(ValueError, match="cores"):
        Amp(Gaussian(), NeuralNetwork(), cores=cores)


def test_train_without_a_label_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    calc = Amp(Gaussian(), NeuralNetwork(), label=None)
    with pytest.raises(ValueError, match=r"train\(\) needs a label"):
        calc.train(_path(3))
    assert os.listdir(tmp_path) == []


def test_an_element_the_model_was_not_trained_for(tmp_path):
    frames = _path(4)
    calc = Amp(Gaussian(elements=["Cu", "Pt"]),
               NeuralNetwork((2,), randomseed=0),
               label=str(tmp_path / "cupt"), verbose=False)
    calc.model.lossfunction = LossFunction(
        convergence={"energy_rmse": 10.0, "force_rmse": None})
    calc.train(frames)
    gold = frames[0].copy()
    gold.symbols[1] = "Au"
    gold.calc = Amp.load(str(tmp_path / "cupt.amp"))
    with pytest.raises(ElementNotCoveredError) as caught:
        gold.get_potential_energy()
    assert str(caught.value) == (
        "this model was trained for Cu, Pt only; the image has Au (the "
        "descriptor has no features for it)")
    assert caught.value.found == ["Au"]


def test_plotconvergence_names_a_file_that_is_not_a_log(tmp_path, capsys):
    write(str(tmp_path / "x.traj"), _path(2))
    assert plotconvergence_main([str(tmp_path / "x.traj")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("amp-plotconvergence: error: %s is not an Amp "
                          "training log: it is not text" % (tmp_path /
                                                            "x.traj"))


# Logging ---------------------------------------------------------------------

def test_logger_makes_records_and_keeps_the_file_format(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="amp")
    path = tmp_path / "log.txt"
    log = Logger(str(path), name="amp.trainlog")
    log(" Step 1", tic="t")
    log("Warning: duplicate image (identical hash x).")
    log("done", toc="t")
    log.close()
    lines = path.read_text().splitlines()
    assert lines[:2] == [" Step 1", "Warning: duplicate image (identical "
                         "hash x)."]
    assert lines[2].startswith("done ") and lines[2].endswith(" sec.")
    records = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert records[:2] == [
        ("amp.trainlog", logging.INFO, "Step 1"),
        ("amp.trainlog", logging.WARNING,
         "Warning: duplicate image (identical hash x).")]
    assert records[2][2] == lines[2]


def test_training_is_logged_and_prints_nothing(tmp_path, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    calc = Amp(Gaussian(), NeuralNetwork((2,), randomseed=0),
               label=str(tmp_path / "t"), verbose=False)
    calc.model.lossfunction = LossFunction(
        convergence={"energy_rmse": 10.0, "force_rmse": None})
    calc.train(_path(4))
    training = [r.getMessage() for r in caplog.records
                if r.name == "amp.trainlog"]
    assert "Amp training started." in training[1]
    assert "...optimization successful." in " ".join(training)
    log_lines = [line.strip() for line in
                 (tmp_path / "t-log.txt").read_text().splitlines()
                 if line.strip()]
    assert training == log_lines      # the same lines, one record each
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_bootstrap_prints_nothing(tmp_path, caplog, capfd):
    from amp.stats.bootstrap import BootStrap

    caplog.set_level(logging.INFO, logger="amp")
    template = Amp(Gaussian(), NeuralNetwork((2,)), verbose=False)
    template.model.lossfunction = LossFunction(
        convergence={"energy_rmse": 10.0}, force_coefficient=None)
    ensemble = BootStrap()
    ensemble.train(_path(4), n=2, calc=template, label=str(tmp_path / "e"))
    out, _ = capfd.readouterr()
    assert out == ""
    assert any(r.name == "amp.stats.bootstrap" for r in caplog.records)
