"""Regressor and NeuralNetwork.fit: convergence, stopping, maxiter, log,
presets, custom optimisers, checkpoints."""
import io
import os

import numpy as np
import pytest

from amp.descriptor.gaussian import Gaussian
from amp.model import LossFunction
from amp.model.neuralnetwork import NeuralNetwork
from amp.regression import Regressor
from amp.utilities import Logger, hash_images

from conftest import AMP_REFERENCE


@pytest.fixture(scope="module")
def training():
    """ptcu_train.traj (5 images) with default Gaussian fingerprints."""
    images = hash_images(os.path.join(AMP_REFERENCE, "ptcu_train.traj"))
    descriptor = Gaussian()
    descriptor.calculate_fingerprints(images)
    return images, descriptor


def _energy_rmse(model, images, descriptor):
    residuals = [(model.evaluate(descriptor.arrays[k], forces=False)[0].sum()
                  - a.get_potential_energy()) / len(a)
                 for k, a in images.items()]
    return float(np.sqrt(np.mean(np.square(residuals))))


def _table_rows(text):
    return [line for line in text.splitlines()
            if line[:5].strip().isdigit() and line.rstrip()[-1] in "C-"]


def test_energy_training_converges_and_stops_at_once(training):
    images, descriptor = training
    model = NeuralNetwork(hiddenlayers=(3, 3), randomseed=1)
    model.lossfunction = LossFunction(
        convergence={"energy_rmse": 0.02, "force_rmse": None},
        force_coefficient=None)
    text = io.StringIO()
    assert model.fit(images, descriptor, Logger(text), {"cores": 1}) is True
    assert _energy_rmse(model, images, descriptor) <= 0.02
    log = text.getvalue()
    assert "EnergyRMSE" in log and "ForceRMSE" not in log
    assert "...optimization successful." in log
    rows = _table_rows(log)
    steps = [int(row.split()[0]) for row in rows]
    assert steps == list(range(1, len(rows) + 1))
    assert steps[-1] == model.lossfunction._step
    # Stopped at the first evaluation meeting the criteria, no later.
    assert rows[-1].split()[5] == "C"
    assert all(row.split()[5] == "-" for row in rows[:-1])
    assert float(rows[-1].split()[4]) <= 0.02


def test_maxiter_returns_false_with_best_parameters(training):
    images, descriptor = training
    model = NeuralNetwork(hiddenlayers=(3,), randomseed=2)
    model.lossfunction = LossFunction(
        convergence={"energy_rmse": 1e-9}, force_coefficient=None,
        maxiter=12)
    text = io.StringIO()
    assert model.fit(images, descriptor, Logger(text), None) is False
    assert model.lossfunction._step == 12
    assert "optimization unsuccessful" in text.getvalue()
    assert len(_table_rows(text.getvalue())) == 12
    best_loss, best_vector = model.lossfunction._best
    np.testing.assert_array_equal(model.vector, best_vector)
    check = LossFunction(raise_ConvergenceOccurred=False, log_losses=False,
                         force_coefficient=None)
    model.lossfunction = check
    check.attach_model(model, images=images)
    assert check.get_loss(model.vector)["loss"] == best_loss


def test_force_training_table_and_lbfgs(training):
    images = hash_images(os.path.join(AMP_REFERENCE, "ptcu_train.traj"))
    descriptor = Gaussian(cutoff=4.0, Gs=[
        {"type": "G2", "element": "Cu", "eta": 0.1},
        {"type": "G2", "element": "Pt", "eta": 0.1},
        {"type": "G4", "elements": ["Pt", "Pt"], "eta": 0.005, "zeta": 1.0,
         "gamma": 1.0}], elements=["Cu", "Pt"])
    descriptor.calculate_fingerprints(images, calculate_derivatives=True)
    model = NeuralNetwork(hiddenlayers=(2,), randomseed=0,
                          regressor=Regressor("L-BFGS-B"))
    model.lossfunction = LossFunction(
        convergence={"energy_rmse": 0.5, "force_rmse": 50.0})
    text = io.StringIO()
    assert model.fit(images, descriptor, Logger(text), None) is True
    log = text.getvalue()
    assert "ForceRMSE" in log and "L-BFGS-B" in log
    row = _table_rows(log)[-1].split()
    assert len(row) == 12 and row[5] == row[9] == "C"


@pytest.mark.parametrize("optimizer", ["TNC", "Newton-CG"])
def test_presets_run(training, optimizer):
    images, descriptor = training
    model = NeuralNetwork(hiddenlayers=(2,), randomseed=0,
                          regressor=Regressor(optimizer))
    model.lossfunction = LossFunction(convergence={"energy_rmse": 0.3},
                                      force_coefficient=None, maxiter=200)
    assert model.fit(images, descriptor, Logger(None), None) is True


def test_callable_optimizer_and_unconverged_finish(training):
    images, descriptor = training
    calls = []

    def few_steps(function, x0, jac=None, **kwargs):
        """Three plain gradient steps, then give up."""
        calls.append(jac)
        x = x0
        for _ in range(3):
            loss, gradient = function(x)
            x = x - 1e-3 * gradient
        return x

    model = NeuralNetwork(hiddenlayers=(2,), randomseed=0,
                          regressor=Regressor(few_steps))
    model.lossfunction = LossFunction(force_coefficient=None,
                                      convergence={"energy_rmse": 1e-9})
    assert model.fit(images, descriptor, Logger(None), None) is False
    assert calls == [True]
    assert model.lossfunction._step == 3


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown optimizer"):
        Regressor("SGD")


class _Parent:
    """Stands in for the Amp calculator: records checkpoint saves."""

    label = "run/calc"

    def __init__(self):
        self.saved = []

    def save(self, filename, overwrite=False):
        self.saved.append((filename, overwrite))
        return filename


def test_checkpoints_every_n_steps(training):
    images, descriptor = training
    model = NeuralNetwork(hiddenlayers=(2,), randomseed=0, checkpoints=4)
    model.parent = _Parent()
    model.lossfunction = LossFunction(force_coefficient=None, maxiter=10,
                                      convergence={"energy_rmse": 1e-9})
    assert model.fit(images, descriptor, Logger(None), None) is False
    # Steps 4 and 8 (step 10 raises MaxIterationsReached before saving).
    assert model.parent.saved == [("run/calc-checkpoint.amp", True)] * 2
    model = NeuralNetwork(hiddenlayers=(2,), randomseed=0, checkpoints=None)
    model.parent = _Parent()
    model.lossfunction = LossFunction(force_coefficient=None, maxiter=5,
                                      convergence={"energy_rmse": 1e-9})
    model.fit(images, descriptor, Logger(None), None)
    assert model.parent.saved == []
