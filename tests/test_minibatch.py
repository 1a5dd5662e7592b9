"""Mini-batch optimizers (amp.regression.minibatch) and the mini-batch loss
(amp.model.subsets.minibatch_loss): the update formulas, schedules,
reproducibility for a seed, the same parameters from memory or chunk files
and with one or two workers, maxiter and checkpoints counted in epochs."""
import os

import numpy as np
import pytest

from amp import Amp
from amp.descriptor.gaussian import Gaussian
from amp.model import LossFunction
from amp.model.neuralnetwork import NeuralNetwork
from amp.model.streaming import Streaming
from amp.regression import Regressor
from amp.regression.minibatch import LearningRate, minimize_minibatch
from amp.utilities import Logger, hash_images

from conftest import AMP_REFERENCE

TRAIN = os.path.join(AMP_REFERENCE, "ptcu_train.traj")


@pytest.fixture(scope="module")
def training():
    images = hash_images(TRAIN)
    descriptor = Gaussian(cutoff=5.0)
    descriptor.calculate_fingerprints(images, calculate_derivatives=True)
    return images, descriptor


def _model(training, options=None, optimizer="Adam", maxiter=4,
           streaming=None, overfit=0.0):
    images, descriptor = training
    options = dict({"batch_size": 2, "learning_rate": 0.01},
                   **(options or {}))
    model = NeuralNetwork(hiddenlayers=(3, 2), randomseed=1,
                          regressor=Regressor(optimizer, options))
    model.lossfunction = LossFunction(
        convergence={"energy_rmse": 1e-12, "force_rmse": 1e-12},
        maxiter=maxiter, log_losses=False, overfit=overfit)
    model.fit(images, descriptor, Logger(None), None, only_setup=True)
    model.lossfunction.streaming = streaming
    return model


def test_adam_and_sgd_steps_follow_their_formulas():
    # A quadratic, one "image" per step: the steps by hand.
    a = np.array([1.0, -2.0, 0.5])

    def step_loss(x, ids):
        return float(np.sum((x - a) ** 2)), 2 * (x - a)

    seen = []

    def epoch_loss(x):
        seen.append(x.copy())
        return float(np.sum((x - a) ** 2))

    x0 = np.zeros(3)
    minimize_minibatch(step_loss, epoch_loss, x0, 1, "Adam",
                       {"learning_rate": 0.1, "batch_size": 1,
                        "max_epochs": 3})
    x, m, v = x0.copy(), np.zeros(3), np.zeros(3)
    for t in (1, 2, 3):
        g = 2 * (x - a)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        x = x - 0.1 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t))
                                              + 1e-8)
        np.testing.assert_allclose(seen[t - 1], x, rtol=1e-14)
    seen.clear()
    minimize_minibatch(step_loss, epoch_loss, x0, 1, "SGD",
                       {"learning_rate": 0.1, "momentum": 0.5,
                        "batch_size": 1, "max_epochs": 2})
    u1 = -0.1 * 2 * (0 - a)
    x1 = u1
    u2 = 0.5 * u1 - 0.1 * 2 * (x1 - a)
    np.testing.assert_allclose(seen, [x1, x1 + u2], rtol=1e-14)


def test_learning_rate_schedules():
    rate = LearningRate(1.0, "exponential", decay=0.5)
    assert [rate.epoch_end(1.0) for _ in range(3)] == [0.5, 0.25, 0.125]
    rate = LearningRate(1.0, "plateau", factor=0.1, patience=2,
                        threshold=0.01, min_learning_rate=0.005)
    losses = [10.0, 9.0, 8.95, 8.94, 8.0, 7.99, 7.99, 7.99, 7.99, 7.99]
    rates = [rate.epoch_end(loss) for loss in losses]
    np.testing.assert_allclose(
        rates, [1, 1, 1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.005, 0.005])
    assert LearningRate(0.3).epoch_end(1.0) == 0.3


def test_minibatch_loss_is_the_whole_loss_on_average(training):
    model = _model(training, overfit=0.01)
    lossfunction = model.lossfunction
    vector = model.vector + np.random.default_rng(0).normal(
        0, 0.2, len(model.vector))
    whole = lossfunction.calculate_loss(vector)
    everything = lossfunction.minibatch_loss(vector, range(5))
    assert everything["loss"] == pytest.approx(whole["loss"], rel=1e-12)
    np.testing.assert_allclose(everything["dloss_dparameters"],
                               whole["dloss_dparameters"], rtol=1e-12,
                               atol=1e-14)
    # One image per batch: the mean of the five is the whole.
    singles = [lossfunction.minibatch_loss(vector, [i]) for i in range(5)]
    assert np.mean([s["loss"] for s in singles]) == pytest.approx(
        whole["loss"], rel=1e-12)
    np.testing.assert_allclose(
        np.mean([s["dloss_dparameters"] for s in singles], axis=0),
        whole["dloss_dparameters"], rtol=1e-11, atol=1e-13)
    # Its gradient is the derivative of its loss.
    ids = [1, 3]
    part = lossfunction.minibatch_loss(vector, ids)
    for k in (0, 7, len(vector) - 1):
        shifted = vector.copy()
        shifted[k] += 1e-6
        plus = lossfunction.minibatch_loss(shifted, ids, False)["loss"]
        shifted[k] -= 2e-6
        minus = lossfunction.minibatch_loss(shifted, ids, False)["loss"]
        assert part["dloss_dparameters"][k] == pytest.approx(
            (plus - minus) / 2e-6, rel=1e-5, abs=1e-8)


def _steps(model):
    counted = []
    original = model.lossfunction.minibatch_loss

    def counting(vector, ids, lossprime=True):
        counted.append(np.array(ids))
        return original(vector, ids, lossprime)
    model.lossfunction.minibatch_loss = counting
    return counted


def test_reproducible_for_a_seed_and_the_same_from_chunk_files(training,
                                                               tmp_path):
    vectors = {}
    for name, seed, streaming in (
            ("a", 7, None), ("b", 7, None), ("other seed", 8, None),
            ("streamed", 7, Streaming(tmp_path, chunk_bytes=1))):
        model = _model(training, {"seed": seed, "schedule": "plateau"},
                       streaming=streaming)
        batches = _steps(model)
        assert model.regress(Logger(None)) is False
        vectors[name] = model.vector
        # 4 epochs (maxiter) of 3 batches of at most 2 of the 5 images,
        # each epoch every image once.
        assert len(batches) == 12
        for epoch in range(4):
            np.testing.assert_array_equal(
                np.sort(np.concatenate(batches[3 * epoch:3 * epoch + 3])),
                np.arange(5))
    np.testing.assert_array_equal(vectors["a"], vectors["b"])
    np.testing.assert_array_equal(vectors["streamed"], vectors["a"])
    assert not np.allclose(vectors["other seed"], vectors["a"])
    assert not list(tmp_path.glob("run-*"))  # chunk files removed


def test_amp_trains_adam_the_same_with_one_or_two_workers(tmp_path):
    images = hash_images(TRAIN)
    vectors, logs = {}, {}
    for cores in (1, 2):
        label = str(tmp_path / ("c%d" % cores))
        model = NeuralNetwork(
            hiddenlayers=(3,), randomseed=2, checkpoints=1,
            regressor=Regressor("Adam", {"batch_size": 2,
                                         "learning_rate": 0.02,
                                         "schedule": "exponential",
                                         "decay": 0.9}))
        model.lossfunction = LossFunction(
            convergence={"energy_rmse": 1e-9}, maxiter=5)
        calc = Amp(descriptor=Gaussian(cutoff=5.0), model=model,
                   label=label, cores=cores)
        saved = []
        original = calc.save
        calc.save = lambda f, **k: (saved.append(os.path.basename(f)),
                                    original(f, **k))
        with pytest.raises(Exception, match="no convergence after 5 loss "
                                            "evaluations"):
            calc.train(images)
        vectors[cores] = calc.model.vector
        # A checkpoint after each epoch (checkpoints=1 counts epochs) but
        # the last, which ends training (its parameters are saved as the
        # untrained ones).
        assert saved.count("c%d-checkpoint.amp" % cores) == 4
        assert saved[-1] == "c%d-untrained-parameters.amp" % cores
        with open(label + "-log.txt") as handle:
            logs[cores] = handle.read()
    np.testing.assert_array_equal(vectors[1], vectors[2])
    # One line of the convergence table per epoch: maxiter counts epochs.
    table = [line for line in logs[2].splitlines()
             if line[:5].strip().isdigit() and "T" in line]
    assert [int(line.split()[0]) for line in table] == [1, 2, 3, 4, 5]
    assert "Optimizer: Adam" in logs[2]


def test_adam_converges_and_stops(training):
    model = _model(training, {"learning_rate": 0.05}, maxiter=2000)
    model.lossfunction.parameters.convergence.update(
        energy_rmse=0.05, force_rmse=None)
    assert model.regress(Logger(None)) is True
    assert model.regressor.stop_reason == "converged"
    assert model.lossfunction.calculate_loss(model.vector)[
        "energy_rmse"] <= 0.05


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="unknown Adam settings"):
        Regressor("Adam", {"batchsize": 3})
    with pytest.raises(ValueError, match="schedule"):
        Regressor("SGD", {"schedule": "cosine"})
    with pytest.raises(ValueError, match="batch_size"):
        Regressor("Adam", {"batch_size": 0})
    with pytest.raises(ValueError, match="gradient"):
        Regressor("Adam", lossprime=False)
