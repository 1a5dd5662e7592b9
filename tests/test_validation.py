"""Held-out images in training: the split, their errors at every step equal
to a separate evaluation, early stopping keeping the best parameters, the
same numbers with workers, and logs that Amp 1.0.1's own reader still
reads (with the validation and stress block read back here)."""
import importlib.util
import os

import numpy as np
import pytest

from amp import Amp
from amp.analysis import plot_convergence, read_trainlog
from amp.descriptor.gaussian import Gaussian
from amp.images import hold_out
from amp.model import EarlyStoppingOccurred, LossFunction
from amp.model.neuralnetwork import NeuralNetwork
from amp.model.validation import HeldOut
from amp.utilities import Logger, hash_images
from conftest import AMP_REFERENCE, cu_slab_images, strained_cell

_spec = importlib.util.spec_from_file_location(
    "amp101_read_trainlog",
    os.path.join(AMP_REFERENCE, "amp101_read_trainlog.py"))
_amp101 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_amp101)


def amp101_read(logfile, multiple=0):
    """What Amp 1.0.1's own read_trainlog makes of ``logfile``."""
    return _amp101.read_trainlog(logfile, verbose=False, multiple=multiple)


def small_gaussian():
    return Gaussian(cutoff=4.0, Gs=[
        {"type": "G2", "element": "Cu", "eta": 0.1},
        {"type": "G2", "element": "Pt", "eta": 0.5},
        {"type": "G2", "element": "Cu", "eta": 2.0},
        {"type": "G4", "elements": ["Cu", "Cu"], "eta": 0.005, "zeta": 1.0,
         "gamma": 1.0}], elements=["Cu", "Pt"])


def calculator(label, convergence, maxiter=200, **loss):
    calc = Amp(small_gaussian(), NeuralNetwork((3,), randomseed=1),
               label=label, cores=1)
    calc.model.lossfunction = LossFunction(convergence=convergence,
                                           maxiter=maxiter, **loss)
    return calc


def separate_errors(calc, images):
    """Energy (per atom) and force RMSEs of ``images`` from the
    calculator's own energies and forces."""
    energy, forces = [], []
    for atoms in images:
        copy = atoms.copy()
        copy.calc = calc
        energy.append((copy.get_potential_energy()
                       - atoms.get_potential_energy()) / len(atoms))
        forces.append(((copy.get_forces() - atoms.get_forces()) ** 2)
                      .mean())
    return np.sqrt(np.mean(np.square(energy))), np.sqrt(np.mean(forces))


@pytest.fixture(scope="module")
def fraction_fit(tmp_path_factory):
    label = str(tmp_path_factory.mktemp("fraction") / "fit")
    images = cu_slab_images(list(range(12)), pt=[0])
    calc = calculator(label, {"energy_rmse": 0.01, "force_rmse": 0.3})
    assert calc.train(images, validation=0.25, validation_seed=4) is True
    return label, images, calc


def test_fraction_is_held_out_reproducibly_and_recorded(fraction_fit):
    label, images, calc = fraction_fit
    training, held, description = hold_out(hash_images(images), 0.25, 4)
    assert len(held) == 3 and len(training) == 9
    assert not set(held) & set(training)
    record = Amp.load(label + ".amp").metadata["validation"]
    assert record["hashes"] == list(held)
    assert (record["fraction"], record["seed"], record["source"]) == \
        (0.25, 4, "fraction")
    assert calc.metadata["training"] == {"n_images": 9, "converged": True,
                                         "stopped_early": False}
    text = open(label + "-log.txt").read()
    assert " Held out for validation: 3 images (fraction 0.25 of the " \
        "images given, seed 4).\n 9 unique images after hashing.\n" in text


def test_validation_errors_equal_a_separate_evaluation(fraction_fit):
    label, images, calc = fraction_fit
    held = calc.model.lossfunction.validation
    step, last = held.history[-1]
    # Converged: the saved parameters are those of the last step.
    energy_rmse, force_rmse = separate_errors(Amp.load(label + ".amp"),
                                              held.images.values())
    assert last["energy_rmse"] == pytest.approx(energy_rmse, rel=1e-12)
    assert last["force_rmse"] == pytest.approx(force_rmse, rel=1e-12)
    record = calc.metadata["validation"]
    assert record["step"] == step
    assert record["energy_rmse"] == last["energy_rmse"]


def test_amp101_reads_the_log_and_the_block_reads_back(fraction_fit,
                                                       tmp_path):
    label, images, calc = fraction_fit
    log = label + "-log.txt"
    ours = read_trainlog(log, verbose=False)
    validation = ours.pop("validation")
    assert ours == amp101_read(log)
    held = calc.model.lossfunction.validation
    assert validation["no_images"] == 3
    assert validation["steps"] == [s for s, _ in held.history] == \
        ours["convergence"]["steps"]
    for short, key in (("es", "energy_rmse"), ("fs", "force_rmse"),
                       ("emrs", "energy_maxresid"),
                       ("fmrs", "force_maxresid"), ("costfxns", "loss")):
        np.testing.assert_allclose(validation[short],
                                   [row[key] for _, row in held.history],
                                   rtol=1e-6)
    assert validation["best_step"] == held.best_step
    assert validation["stopped_early"] is False
    figure = plot_convergence(log, plotfile=None)
    labels = figure.axes[0].get_legend_handles_labels()[1]
    assert "validation energy rmse" in labels
    assert "validation force rmse" in labels


def test_early_stopping_keeps_the_best_validation_parameters(tmp_path):
    label = str(tmp_path / "early")
    images = cu_slab_images(list(range(8)), pt=[0])
    calc = calculator(label, {"energy_rmse": 1e-9, "force_rmse": 1e-9})
    assert calc.train(images[:5], validation=images[5:], patience=3) is True
    held = calc.model.lossfunction.validation
    assert held.stopped_early and calc.metadata["training"]["stopped_early"]
    last = held.history[-1][0]
    assert last - held.best_step == 3
    best_loss = min(row["loss"] for _, row in held.history)
    assert held.best_loss == best_loss
    saved = Amp.load(label + ".amp")
    np.testing.assert_array_equal(saved.model.vector, held.best_vector)
    np.testing.assert_array_equal(calc.model.vector, held.best_vector)
    energy_rmse, _ = separate_errors(saved, images[5:])
    assert dict(held.history)[held.best_step]["energy_rmse"] == \
        pytest.approx(energy_rmse, rel=1e-12)
    assert saved.metadata["validation"]["step"] == held.best_step
    text = open(label + "-log.txt").read()
    assert "Reason: stopped early: the validation loss has not improved " \
        "for 3 loss evaluations" in text
    assert "stopped early (patience 3): the parameters of step %d are " \
        "kept." % held.best_step in text
    data = read_trainlog(label + "-log.txt", verbose=False)
    assert data["validation"]["stopped_early"] is True
    assert data["validation"]["best_step"] == held.best_step
    assert data["convergence"]["converged"] is False
    assert amp101_read(label + "-log.txt")["convergence"]["converged"] \
        is False


def test_held_out_record_and_patience():
    held = HeldOut({"a": None, "b": None}, patience=2)
    for step, loss in enumerate([3.0, 2.0, 2.5], start=1):
        held.record(step, [step], {"loss": loss})
    with pytest.raises(EarlyStoppingOccurred, match="lowest 2.0000e\\+00 at "
                       "step 2"):
        held.record(4, [4], {"loss": 2.0})  # equal is no improvement
    assert held.best_step == 2 and held.best_vector.tolist() == [2.0]
    with pytest.raises(ValueError, match="patience"):
        HeldOut({"a": None}, patience=0)


def test_validation_and_stress_logs_read_by_amp101(tmp_path):
    label = str(tmp_path / "stress")
    cells = [strained_cell(k) for k in range(6)]
    calc = Amp(Gaussian(cutoff=4.5), NeuralNetwork((3,), randomseed=2),
               label=label, cores=1)
    calc.model.lossfunction = LossFunction(
        convergence={"energy_rmse": 1e-9, "stress_rmse": 1e-9},
        stress_coefficient=10.0, maxiter=6)
    with pytest.raises(Exception, match="did not converge"):
        calc.train(cells[:4], validation=cells[4:])
    log = label + "-log.txt"
    ours = read_trainlog(log, verbose=False)
    validation = ours.pop("validation")
    c = ours["convergence"]
    keys = ("stress_rmse", "stress_maxresid", "stress_coefficient", "ss",
            "smrs")
    extra = {key: c.pop(key) for key in keys}
    assert ours == amp101_read(log)
    assert extra["stress_rmse"] == 1e-9 and \
        extra["stress_coefficient"] == 10.0
    assert len(extra["ss"]) == len(c["steps"]) == 6
    assert len(validation["ss"]) == 6 and validation["no_images"] == 2
    # The last row is the training's last evaluation.
    loss = calc.model.lossfunction
    assert extra["ss"][-1] == pytest.approx(
        loss._stress_history[-1][1]["stress_rmse"], rel=1e-6)


@pytest.fixture(scope="module")
def fingerprinted():
    images = hash_images(cu_slab_images(list(range(9)), pt=[0]))
    descriptor = small_gaussian()
    descriptor.calculate_fingerprints(images, calculate_derivatives=True)
    return images, descriptor


def test_validation_with_workers_equals_serial(fingerprinted):
    images, descriptor = fingerprinted
    keys = list(images)
    training = {k: images[k] for k in keys[:6]}
    held = {k: images[k] for k in keys[6:]}

    def model(cores):
        m = NeuralNetwork((3,), randomseed=1)
        m.lossfunction = LossFunction(raise_ConvergenceOccurred=False,
                                      log_losses=False, use_workers=True)
        m.setup(training, descriptor.arrays, Logger(None), validation=held)
        return m

    serial = model(1)
    vectors = [serial.vector, 1.1 * serial.vector + 0.01]
    expected = [serial.lossfunction.validation_errors(v) for v in vectors]
    spread = model(2)
    lossfunction = spread.lossfunction
    with lossfunction.evaluator({"cores": 2}):
        # The held-out images are on the workers, as the training images.
        assert lossfunction.validation.workers.job is not None
        for vector, reference in zip(vectors, expected):
            result = lossfunction.validation_errors(vector)
            for key, value in reference.items():
                if value is not None:
                    assert result[key] == pytest.approx(value, rel=1e-12)
    assert lossfunction.validation.workers is None


def test_bad_validation_arguments(tmp_path):
    images = cu_slab_images(list(range(4)), pt=[0])
    hashed = hash_images(images)
    with pytest.raises(ValueError, match="also training images"):
        hold_out(hashed, images[:1])
    for fraction in (0.0, 1.0, 0.01):
        with pytest.raises(ValueError, match="validation="):
            hold_out(hashed, fraction)
    calc = calculator(str(tmp_path / "x"), {"energy_rmse": 0.1})
    with pytest.raises(ValueError, match="patience .* needs held-out"):
        calc.train(images, patience=3)
    from ase.io import write

    path = str(tmp_path / "held.traj")
    write(path, cu_slab_images([50, 51], pt=[0]))
    _, held, description = hold_out(hashed, path)
    assert description["source"] == "path" and len(held) == 2
