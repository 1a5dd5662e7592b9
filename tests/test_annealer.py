"""The simulated annealer of amp.utilities."""
import json
import os
import signal

import numpy as np
import pytest

from amp import Amp
from amp.descriptor.gaussian import Gaussian
from amp.model import LossFunction
from amp.model.neuralnetwork import NeuralNetwork
from amp.store import modelfile
from amp.utilities import Annealer
from conftest import adatom_slab_images


@pytest.fixture(scope="module")
def images():
    return adatom_slab_images(4)


def make_calc(label):
    calc = Amp(Gaussian(cutoff=4.0),
               NeuralNetwork(hiddenlayers=(3,), randomseed=0), label=label)
    calc.model.lossfunction = LossFunction(
        convergence={"energy_rmse": 0.02}, force_coefficient=None)
    return calc


def test_annealing_lowers_the_loss_and_training_starts_there(images,
                                                             tmp_path):
    label = str(tmp_path / "a")
    calc = make_calc(label)
    annealer = Annealer(calc, images, steps=200, updates=4, seed=3)
    assert annealer.best_loss < annealer.initial_loss
    np.testing.assert_array_equal(calc.model.vector, annealer.best_state)
    assert annealer.energy(calc.model.vector) == annealer.best_loss
    assert annealer.step == 199
    log = open(label + "-log.txt").read()
    assert "Amp simulated annealer started" in log
    assert log.count("%") == 6  # progress at steps 50, 100, 150
    annealed = calc.model.vector.copy()
    assert calc.train(images) is True
    _, model = modelfile.read(label + "-initial-parameters.amp")
    np.testing.assert_array_equal(NeuralNetwork.fromdict(model).vector,
                                  annealed)


def test_seeded_annealing_is_reproducible(images, tmp_path):
    vectors = []
    for k, seed in enumerate((7, 7, 8)):
        calc = make_calc(str(tmp_path / str(k)))
        Annealer(calc, images, steps=60, updates=0, seed=seed)
        vectors.append(calc.model.vector)
    np.testing.assert_array_equal(vectors[0], vectors[1])
    assert not np.array_equal(vectors[0], vectors[2])


def test_ctrl_c_stops_cleanly_keeping_the_best_state(images, tmp_path):
    class Interrupted(Annealer):
        def move(self, state=None):
            if self.step == 5:
                os.kill(os.getpid(), signal.SIGINT)
            return super().move(state)

    before = signal.getsignal(signal.SIGINT)
    calc = make_calc(str(tmp_path / "c"))
    annealer = Interrupted(calc, images, steps=1000, updates=0, seed=1)
    assert annealer.user_exit and annealer.step == 5
    np.testing.assert_array_equal(calc.model.vector, annealer.best_state)
    assert annealer.best_loss <= annealer.initial_loss
    assert signal.getsignal(signal.SIGINT) is before
    assert "Stopped by the user after 5 moves" in open(
        str(tmp_path / "c-log.txt")).read()


def test_amps_attributes_and_helpers(images, tmp_path, monkeypatch):
    assert (Annealer.Tmax, Annealer.Tmin, Annealer.steps, Annealer.updates,
            Annealer.copy_strategy, Annealer.save_state_on_exit,
            Annealer.user_exit) == (20.0, 2.5, 10000, 50, "copy", False,
                                    False)
    assert Annealer.round_figures(123.456, 2) == 120.0
    assert Annealer.time_string(3725) == "   1:02:05"
    monkeypatch.chdir(tmp_path)
    calc = make_calc("h")
    annealer = Annealer(calc, images, steps=5, updates=0, seed=0,
                        Tmax=1.0, Tmin=0.5)
    assert (annealer.Tmax, annealer.Tmin) == (1.0, 0.5)
    schedule = annealer.auto(minutes=0.001, steps=10)
    assert set(schedule) == {"tmax", "tmin", "steps"}
    assert schedule["tmax"] >= schedule["tmin"] > 0
    annealer.set_schedule(schedule)
    assert annealer.steps == int(schedule["steps"])
    saved = json.load(open(annealer.save_state("state.json")))
    assert len(saved["state"]) == len(calc.model.vector)
    annealer.Tmin = 0.0
    with pytest.raises(ValueError, match="Tmin"):
        annealer.anneal()
