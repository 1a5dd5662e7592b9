"""Catching a collapsing cell: the two signals that a model is extrapolating.

A network trained on energies and forces of Cu cells at one density (as
snapshots of MD at one volume would be) relaxes a cell with
``FrechetCellFilter``: with no information on how the energy changes with
the volume, it collapses. Two signals show it long before the end:

1. ``results['extrapolation']`` of the calculator, at every calculation:
   how many atoms have fingerprints outside the training range, and the
   largest scaled value (training spans [-1, 1]). ``Amp.load(...,
   on_extrapolation='raise')`` stops the relaxation at the first such
   step instead of letting it run on.
2. The spread of a bootstrap ensemble (``results['energy_std']``,
   ``results['forces_std']``): its members agree where the data constrain
   them and disagree away from it.

Then the same network trained with the stress
(``LossFunction(stress_coefficient=10)``) relaxes to EMT's volume.
Run ``python examples/extrapolation.py [folder]`` (about half a minute);
it writes into ``folder`` (default ``out/extrapolation``).
"""

import os
import sys
import warnings

import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS

from amp import Amp, ExtrapolationError, ExtrapolationWarning
from amp.descriptor.gaussian import Gaussian
from amp.model import LossFunction
from amp.model.neuralnetwork import NeuralNetwork
from amp.stats.bootstrap import BootStrap
from amp.utilities import TrainingConvergenceError


def one_density_cells(count=24, seed=0):
    """4-atom Cu cells at a = 3.62 A, strained by 1 % and rattled by
    0.08 A, with EMT energies, forces and stresses."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        atoms = bulk("Cu", "fcc", a=3.62, cubic=True)
        strain = np.eye(3) + 0.01 * rng.normal(size=(3, 3))
        atoms.set_cell(atoms.cell @ strain, scale_atoms=True)
        atoms.positions += rng.normal(0, 0.08, atoms.positions.shape)
        atoms.calc = EMT()
        atoms.calc = SinglePointCalculator(
            atoms, energy=atoms.get_potential_energy(),
            forces=atoms.get_forces(), stress=atoms.get_stress())
        images.append(atoms)
    return images


def template(stress_coefficient=None, seed=1, convergence=None):
    calc = Amp(Gaussian(cutoff=5.0), NeuralNetwork((5, 5), randomseed=seed),
               cores=1)
    calc.model.lossfunction = LossFunction(
        convergence=convergence or {"energy_rmse": 0.001,
                                    "force_rmse": 0.02},
        stress_coefficient=stress_coefficient, maxiter=1500)
    return calc


def train(images, label, stress_coefficient=None):
    calc = template(stress_coefficient)
    calc.label = label
    try:
        calc.train(images, overwrite=True)
    except TrainingConvergenceError:
        calc.save(label + ".amp", overwrite=True)  # the best reached
    return label + ".amp"


def relax(calc, a=3.62, steps=60):
    """Relax a perfect cell; yield (step, atoms) after every step."""
    atoms = bulk("Cu", "fcc", a=a, cubic=True)
    atoms.calc = calc
    optimizer = BFGS(FrechetCellFilter(atoms), logfile=None)
    yield 0, atoms
    for step in range(1, steps + 1):
        optimizer.run(fmax=1e-3, steps=1)
        yield step, atoms
        if optimizer.converged():
            return


def main(folder="out/extrapolation"):
    os.makedirs(folder, exist_ok=True)
    images = one_density_cells()
    emt_cell = bulk("Cu", cubic=True)
    emt_cell.calc = EMT()
    BFGS(FrechetCellFilter(emt_cell), logfile=None).run(fmax=1e-4)
    v0 = emt_cell.get_volume()
    print("EMT's equilibrium volume: %.2f A^3 (4 atoms)" % v0)

    plain = train(images, os.path.join(folder, "plain"))
    ensemble = BootStrap()
    # The members train to looser criteria (each must converge).
    ensemble.train(images, n=4, calc=template(convergence={
        "energy_rmse": 0.002, "force_rmse": 0.05}),
                   label=os.path.join(folder, "ensemble"), seed=0,
                   overwrite=True)
    committee = BootStrap.load(os.path.join(folder, "ensemble.ensemble"))
    spread = committee.calculator()

    print("\n1. Energy+forces model, relaxation watched at every step")
    print("%4s %8s %7s %10s %9s %10s %10s" % (
        "step", "V, A^3", "V/V0-1", "E, eV", "flagged", "worst |x'|",
        "E std, eV"))
    flagged_at = None
    with warnings.catch_warnings():
        # Watched here step by step; the once-per-calculator warning
        # would say the same.
        warnings.simplefilter("ignore", ExtrapolationWarning)
        for step, atoms in relax(Amp.load(plain)):
            energy = atoms.get_potential_energy()
            found = atoms.calc.results["extrapolation"]
            probe = atoms.copy()
            probe.calc = spread
            probe.get_potential_energy()
            if found["count"] and flagged_at is None:
                flagged_at = step
            if step % 5 == 0 or step == flagged_at:
                print("%4d %8.2f %6.1f%% %10.4f %6d/%d %10.2f %10.4f" % (
                    step, atoms.get_volume(),
                    100 * (atoms.get_volume() / v0 - 1), energy,
                    found["count"],
                    len(atoms), found["worst"],
                    spread.results["energy_std"]))
    print("final volume %.2f A^3 (%+.1f %% from EMT's); first flagged at "
          "step %s" % (atoms.get_volume(),
                       100 * (atoms.get_volume() / v0 - 1), flagged_at))

    print("\n2. The same relaxation with Amp.load(..., "
          "on_extrapolation='raise')")
    try:
        for step, atoms in relax(Amp.load(plain, on_extrapolation="raise")):
            atoms.get_potential_energy()
            last = (step, atoms.get_volume())
        print("finished at %.2f A^3 without leaving the training range"
              % atoms.get_volume())
    except ExtrapolationError as error:
        print("stopped after step %d at %.2f A^3: %s"
              % (last[0], last[1], str(error)[:110] + "..."))

    print("\n3. Trained with stress_coefficient=10 as well")
    stressed = Amp.load(train(images, os.path.join(folder, "stress"),
                              stress_coefficient=10.0))
    for step, atoms in relax(stressed):
        atoms.get_potential_energy()
    found = atoms.calc.results["extrapolation"]
    print("final volume %.2f A^3 (%+.2f %% from EMT's) after %d steps; "
          "%d atoms flagged" % (atoms.get_volume(),
                                100 * (atoms.get_volume() / v0 - 1), step,
                                found["count"]))


if __name__ == "__main__":
    main(*sys.argv[1:])
