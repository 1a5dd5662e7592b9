"""Helpers of tests/test_faults.py, imported by the test module and by
the child processes it starts (which find this folder on PYTHONPATH)."""

# The child scripts start with ``from fault_helpers import *``: the names
# imported here are theirs too.
import os
import sys  # noqa: F401
import time

import numpy as np
from amp import Amp
from amp.descriptor.gaussian import Gaussian, make_default_symmetry_functions
from amp.model.neuralnetwork import NeuralNetwork
from amp.store import modelfile  # noqa: F401


def big_calc(scale=1.0, width=200):
    """A calculator whose model file is about 2 MB of JSON (weights scaled
    by ``scale``), so that writing it takes a while."""
    descriptor = Gaussian(cutoff=6.5, Gs=make_default_symmetry_functions(
        ["Cu", "Pt"]))
    rng = np.random.default_rng(0)
    weights, scalings, fprange = {}, {}, {}
    for element, Gs in descriptor.Gs.items():
        sizes = [len(Gs), width, width, 1]
        weights[element] = {k + 1: scale * rng.normal(size=(m + 1, n))
                            for k, (m, n) in enumerate(zip(sizes, sizes[1:]))}
        scalings[element] = {"intercept": 0.0, "slope": 1.0}
        fprange[element] = [[0.0, 1.0]] * len(Gs)
    model = NeuralNetwork(hiddenlayers=(width, width), weights=weights,
                          scalings=scalings, fprange=fprange)
    return Amp(descriptor, model, cores=1)


def wait_for(path):
    """Return once ``path`` exists."""
    while not os.path.exists(path):
        time.sleep(0.005)


def emt_images(count, seed=0):
    """``count`` rattled Cu-Pt pairs with EMT energies and forces."""
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

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


def small_calc(label, convergence=None, maxiter=100000):
    """A calculator that trains on :func:`emt_images` in a fraction of a
    second (serially)."""
    from amp.model import LossFunction

    calc = Amp(descriptor=Gaussian(cutoff=4.0),
               model=NeuralNetwork(hiddenlayers=(3,), randomseed=1),
               label=label, cores=1)
    calc.model.lossfunction = LossFunction(
        convergence=convergence or {"energy_rmse": 0.05, "force_rmse": 0.5},
        force_coefficient=0.04, maxiter=maxiter)
    return calc
