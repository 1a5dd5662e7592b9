"""Make the pictures of the documentation (the PNG files beside this one).

``python docs/images/make_images.py`` (about a minute, one core) trains
the small models the pages describe and draws:

* ``validation-convergence.png`` (analysis.md): the convergence of a fit
  with held-out images and early stopping;
* ``validation-parity.png`` (analysis.md): the parity plot of the same
  fit, training and held-out images;
* ``extrapolation-relaxation.png`` (calculator.md): the collapsing cell of
  ``examples/extrapolation.py`` with the two signals, and the cell of the
  network trained with stress;
* ``stress-relaxation.png`` (model.md): the relaxed volumes of
  ``bench/stress_relaxation.py``'s networks.
"""
import os
import sys
import tempfile
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [os.path.join(ROOT, "examples"), os.path.join(ROOT, "bench")]

from ase.build import bulk, fcc111  # noqa: E402
from ase.calculators.emt import EMT  # noqa: E402
from ase.calculators.singlepoint import SinglePointCalculator  # noqa: E402
from ase.filters import FrechetCellFilter  # noqa: E402
from ase.optimize import BFGS  # noqa: E402

from amp import Amp, ExtrapolationWarning  # noqa: E402
from amp.analysis import plot_convergence, plot_parity_and_error  # noqa
from amp.descriptor.gaussian import Gaussian  # noqa: E402
from amp.model import LossFunction  # noqa: E402
from amp.model.neuralnetwork import NeuralNetwork  # noqa: E402
from amp.plotting import new_figure, save_figure  # noqa: E402

import extrapolation as example  # noqa: E402  (examples/extrapolation.py)
import stress_relaxation as bench  # noqa: E402  (bench/stress_relaxation.py)


def slabs(count, seed=0):
    """Rattled Cu7Pt fcc(111) slabs with EMT energies and forces."""
    images = []
    for k in range(count):
        atoms = fcc111("Cu", (2, 2, 3), vacuum=5.0)
        atoms[0].symbol = "Pt"
        atoms.rattle(0.1, seed=seed + k)
        atoms.calc = EMT()
        atoms.calc = SinglePointCalculator(
            atoms, energy=atoms.get_potential_energy(),
            forces=atoms.get_forces())
        images.append(atoms)
    return images


def validation_pictures(folder):
    images = slabs(30)
    calc = Amp(Gaussian(cutoff=5.0), NeuralNetwork((8, 8), randomseed=3),
               label=os.path.join(folder, "fit"), cores=1)
    calc.model.lossfunction = LossFunction(
        convergence={"energy_rmse": 1e-4, "force_rmse": 0.01},
        maxiter=600)
    calc.train(images[:12], validation=images[12:], patience=60)
    plot_convergence(os.path.join(folder, "fit-log.txt"),
                     os.path.join(HERE, "validation-convergence.png"))
    plot_parity_and_error(os.path.join(folder, "fit.amp"), images[:12],
                          validation=images[12:], overwrite=True,
                          plotfile=os.path.join(HERE,
                                                "validation-parity.png"))


def extrapolation_picture(folder):
    images = example.one_density_cells()
    emt = bulk("Cu", cubic=True)
    emt.calc = EMT()
    BFGS(FrechetCellFilter(emt), logfile=None).run(fmax=1e-4)
    v0 = emt.get_volume()
    plain = Amp.load(example.train(images, os.path.join(folder, "plain")))
    from amp.stats.bootstrap import BootStrap

    members = BootStrap()
    members.train(images, n=4, calc=example.template(convergence={
        "energy_rmse": 0.002, "force_rmse": 0.05}),
        label=os.path.join(folder, "ensemble"), seed=0, overwrite=True)
    spread = BootStrap.load(os.path.join(folder,
                                         "ensemble.ensemble")).calculator()
    rows = []
    for step, atoms in example.relax(plain):
        atoms.get_potential_energy()
        probe = atoms.copy()
        probe.calc = spread
        probe.get_potential_energy()
        rows.append((step, atoms.get_volume() / v0 - 1,
                     atoms.calc.results["extrapolation"]["worst"],
                     atoms.calc.results["extrapolation"]["count"],
                     spread.results["energy_std"]))
    stressed = Amp.load(example.train(images, os.path.join(folder, "s"),
                                      stress_coefficient=10.0))
    stress_rows = []
    for step, atoms in example.relax(stressed):
        atoms.get_potential_energy()
        stress_rows.append((step, atoms.get_volume() / v0 - 1))
    rows, stress_rows = np.array(rows), np.array(stress_rows)
    flagged = rows[rows[:, 3] > 0, 0].min()
    figure = new_figure(figsize=(7.0, 6.5))
    top = figure.add_subplot(2, 1, 1)
    top.plot(rows[:, 0], 100 * rows[:, 1], "k.-",
             label="trained on energies and forces")
    top.plot(stress_rows[:, 0], 100 * stress_rows[:, 1], "m.-",
             label="trained with stress_coefficient=10")
    top.axhspan(-1, 1, color="0.85", label="within 1 % of EMT's volume")
    top.axvline(flagged, color="r", linestyle=":",
                label="first step flagged as extrapolating")
    top.set_ylabel("volume - EMT's equilibrium, %")
    top.set_title("FrechetCellFilter + BFGS on a 4-atom Cu cell")
    top.legend(loc="lower left", fontsize=8)
    bottom = figure.add_subplot(2, 1, 2, sharex=top)
    bottom.semilogy(rows[:, 0], rows[:, 2], "r.-",
                    label="largest scaled fingerprint |x'| "
                    "(results['extrapolation']['worst'])")
    bottom.semilogy(rows[:, 0], rows[:, 4], "b.-",
                    label="bootstrap energy_std, eV (4 members)")
    bottom.axhline(1.1, color="r", linestyle="--", lw=1,
                   label="1 + tolerance (training spans |x'| <= 1)")
    bottom.axvline(flagged, color="r", linestyle=":")
    bottom.set_xlabel("optimizer step")
    bottom.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    save_figure(figure, os.path.join(HERE, "extrapolation-relaxation.png"))


def stress_picture(folder):
    _, v0 = bench.relax(bulk("Cu", cubic=True), EMT())
    figure = new_figure(figsize=(7.0, 4.0))
    ax = figure.add_subplot(1, 1, 1)
    positions = []
    for number, kind in enumerate(bench.SETS):
        images = bench.training_images(kind)
        for offset, (name, coefficient) in enumerate(
                bench.TRAININGS.items()):
            errors = []
            for seed in range(5):
                calc, _ = bench.train(images, coefficient, seed, folder)
                errors += [100 * (bench.relax(bulk("Cu", "fcc", a=a,
                                                   cubic=True), calc)[1]
                                  / v0 - 1) for a in bench.STARTS]
            x = 3 * number + offset
            positions.append((x, "%s\n%s" % (kind, "E+F+stress"
                                             if coefficient else "E+F")))
            ax.plot(np.full(len(errors), x), errors, "o",
                    color="m" if coefficient else "k", alpha=0.6)
    ax.axhspan(-1, 1, color="0.85")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_xticks([x for x, _ in positions])
    ax.set_xticklabels([text for _, text in positions])
    ax.set_ylabel("relaxed volume - EMT's, % (grey: 1 %)")
    ax.set_title("10 relaxations per training (5 networks, 2 starts)")
    figure.tight_layout()
    save_figure(figure, os.path.join(HERE, "stress-relaxation.png"))


def main():
    warnings.simplefilter("ignore", ExtrapolationWarning)
    with tempfile.TemporaryDirectory() as folder:
        validation_pictures(folder)
        extrapolation_picture(folder)
        stress_picture(folder)


if __name__ == "__main__":
    main()
