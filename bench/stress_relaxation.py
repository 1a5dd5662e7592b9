"""Does training on stress make cell relaxations land at the right volume?

EMT fcc Cu is the reference: its equilibrium volume comes from relaxing a
4-atom cubic cell with ``FrechetCellFilter`` + BFGS (fmax 1e-3 eV/A).
Networks (``Gaussian(cutoff=5.0)``, ``NeuralNetwork((5, 5))``, seeds 0-4;
``energy_rmse`` 0.001, ``force_rmse`` 0.02, at most 1500 loss evaluations)
are trained on 24 rattled, strained 4-atom cells with EMT energies, forces
and stresses, once on energies and forces and once with
``stress_coefficient=10``; each then relaxes perfect cells started at a =
3.58 and 3.64 A with ``FrechetCellFilter`` + BFGS, and the relaxed volume
is compared with EMT's. Two training sets:

* ``narrow``: every cell at a = 3.62 A with 1 % random strains and 0.08 A
  rattling, as snapshots of MD at one density would be (EMT's equilibrium,
  a = 3.59 A, is at the edge of this range);
* ``wide``: lattice constants drawn in 3.45-3.75 A, 2 % strains, 0.05 A
  rattling (an equation-of-state scan).

Prints ``name value unit`` lines: ``emt_equilibrium_volume``; per set and
training, ``<set>_<training>_within_1pct`` (relaxations within 1 % of
EMT's volume, out of 10) and ``<set>_<training>_volume_error`` (the median
and the range, %); per model ``..._seed<k>`` lines with both relaxations'
errors, whether the relaxed cell is flagged as extrapolating
(``results['extrapolation']``) and the training RMSEs. About two minutes
on one core: ``python bench/stress_relaxation.py``.
"""
import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
from ase.build import bulk  # noqa: E402
from ase.calculators.emt import EMT  # noqa: E402
from ase.calculators.singlepoint import SinglePointCalculator  # noqa: E402
from ase.filters import FrechetCellFilter  # noqa: E402
from ase.optimize import BFGS  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from benchdata import report  # noqa: E402

from amp import Amp, ExtrapolationWarning  # noqa: E402
from amp.descriptor.gaussian import Gaussian  # noqa: E402
from amp.model import LossFunction  # noqa: E402
from amp.model.neuralnetwork import NeuralNetwork  # noqa: E402
from amp.utilities import TrainingConvergenceError  # noqa: E402

SETS = {"narrow": {"a": (3.62, 3.62), "strain": 0.01, "rattle": 0.08},
        "wide": {"a": (3.45, 3.75), "strain": 0.02, "rattle": 0.05}}
TRAININGS = {"energy_forces": None, "energy_forces_stress": 10.0}
STARTS = (3.58, 3.64)


def relax(atoms, calc, fmax=1e-3):
    """The relaxed cell (positions and cell) and its volume per atom."""
    atoms = atoms.copy()
    atoms.calc = calc
    BFGS(FrechetCellFilter(atoms), logfile=None).run(fmax=fmax, steps=300)
    return atoms, atoms.get_volume() / len(atoms)


def training_images(kind, count=24, seed=0):
    """``count`` 4-atom Cu cells with EMT energy, forces and stress."""
    spec, rng = SETS[kind], np.random.default_rng(seed)
    images = []
    for _ in range(count):
        atoms = bulk("Cu", "fcc", a=rng.uniform(*spec["a"]), cubic=True)
        strain = np.eye(3) + spec["strain"] * rng.normal(size=(3, 3))
        atoms.set_cell(atoms.cell @ strain, scale_atoms=True)
        atoms.positions += rng.normal(0, spec["rattle"],
                                      atoms.positions.shape)
        atoms.calc = EMT()
        atoms.calc = SinglePointCalculator(
            atoms, energy=atoms.get_potential_energy(),
            forces=atoms.get_forces(), stress=atoms.get_stress())
        images.append(atoms)
    return images


def train(images, stress_coefficient, seed, folder):
    calc = Amp(Gaussian(cutoff=5.0), NeuralNetwork((5, 5), randomseed=seed),
               label=os.path.join(folder, "model"), cores=1)
    calc.model.lossfunction = LossFunction(
        convergence={"energy_rmse": 0.001, "force_rmse": 0.02},
        stress_coefficient=stress_coefficient, maxiter=1500)
    try:
        calc.train(images, overwrite=True)
    except TrainingConvergenceError:
        pass  # the lowest-loss parameters are in the calculator
    loss = calc.model.lossfunction.calculate_loss(calc.model.vector, False)
    return calc, loss


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5,
                        help="networks per set and training (default 5)")
    args = parser.parse_args()
    warnings.simplefilter("ignore", ExtrapolationWarning)
    _, v0 = relax(bulk("Cu", cubic=True), EMT())
    report("emt_equilibrium_volume", "%.4f" % v0, "A^3/atom",
           "a = %.4f A" % (4 * v0) ** (1 / 3))
    with tempfile.TemporaryDirectory() as folder:
        for kind in SETS:
            images = training_images(kind)
            for name, coefficient in TRAININGS.items():
                errors = []
                for seed in range(args.seeds):
                    calc, loss = train(images, coefficient, seed, folder)
                    relaxed = [relax(bulk("Cu", "fcc", a=a, cubic=True),
                                     calc) for a in STARTS]
                    found = [100 * (v / v0 - 1) for _, v in relaxed]
                    errors += found
                    flagged = [atoms.calc.results["extrapolation"]["count"]
                               > 0 for atoms, _ in relaxed]
                    stress = "" if loss.get("stress_rmse") is None else \
                        ", stress %.4f eV/A^3" % loss["stress_rmse"]
                    report("%s_%s_seed%d" % (kind, name, seed),
                           " ".join("%.2f" % e for e in found), "%",
                           "from a = %s; extrapolating at the end: %s; "
                           "training RMSEs energy %.4f eV/atom, forces "
                           "%.3f eV/A%s" % (
                               " and ".join(map(str, STARTS)),
                               "/".join("yes" if f else "no"
                                        for f in flagged),
                               loss["energy_rmse"], loss["force_rmse"],
                               stress))
                errors = np.array(errors)
                report("%s_%s_within_1pct" % (kind, name),
                       "%d/%d" % (np.sum(np.abs(errors) <= 1.0),
                                  len(errors)), "relaxations")
                report("%s_%s_volume_error" % (kind, name),
                       "%.2f" % np.median(errors), "%",
                       "median; range %.2f to %.2f"
                       % (errors.min(), errors.max()))


if __name__ == "__main__":
    main()
