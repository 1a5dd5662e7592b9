"""The main job: Amp's tutorial system, end to end.

1. Makes a training set with ASE's EMT: an fcc(110) Pt slab with two Cu
   adsorbates, snapshots of a Langevin MD run.
2. Trains a Gaussian + neural-network potential on energies and forces.
3. Prints train and held-out RMSEs (the held-out images are scored at
   every training step too, ``train(..., validation=...)``).
4. Reloads the model with ``Amp.load`` and runs a short NVE MD with it,
   counting the steps with atoms outside the training range.
5. Draws the parity and error plot of the training and held-out images
   and the convergence of the training log (``parity.png``,
   ``convergence.png``).

Everything it writes goes to one folder (default ``out/tutorial``).
Run ``make demo`` or ``python examples/tutorial.py [folder]``.
"""

import os
import sys
import time

import numpy as np
from ase import units
from ase.md.verlet import VelocityVerlet

from amp import Amp
from amp.analysis import (plot_convergence, plot_parity_and_error,
                          read_trainlog)
from amp.descriptor.gaussian import Gaussian
from amp.model import LossFunction
from amp.model.neuralnetwork import NeuralNetwork
from tutorial_data import generate_data, make_slab, thermalize_momenta


def rmse(calc, images):
    """Energy RMSE per atom and force RMSE of ``calc`` on ``images``."""
    de, df = [], []
    for image in images:
        reference_e = image.get_potential_energy()
        reference_f = image.get_forces(apply_constraint=False)
        atoms = image.copy()
        atoms.calc = calc
        de.append((atoms.get_potential_energy() - reference_e) / len(atoms))
        df.append((atoms.get_forces(apply_constraint=False)
                   - reference_f).ravel())
    return (float(np.sqrt(np.mean(np.square(de)))),
            float(np.sqrt(np.mean(np.square(np.concatenate(df))))))


def main(folder="out/tutorial"):
    os.makedirs(folder, exist_ok=True)
    start = time.time()
    images = generate_data(os.path.join(folder, "emt.traj"), 60)
    train, test = images[::2][:25] + images[1::2][:15], images[1::2][15:]
    print("data: %d training and %d held-out snapshots of %s (%.1f s)"
          % (len(train), len(test), images[0].get_chemical_formula(),
             time.time() - start))

    label = os.path.join(folder, "calc")
    calc = Amp(descriptor=Gaussian(),
               model=NeuralNetwork(hiddenlayers=(5, 5), randomseed=42),
               label=label, cores=1)
    calc.model.lossfunction = LossFunction(
        convergence={"energy_rmse": 0.02, "force_rmse": 0.3},
        force_coefficient=0.04)
    start = time.time()
    calc.train(images=train, overwrite=True, validation=test)
    print("trained in %.1f s -> %s.amp" % (time.time() - start, label))

    loaded = Amp.load(label + ".amp")
    for name, subset in (("train", train), ("held-out", test)):
        e, f = rmse(loaded, subset)
        print("%-8s energy RMSE %.4f eV/atom, force RMSE %.4f eV/A"
              % (name, e, f))
    held = loaded.metadata["validation"]
    print("held-out, as scored in training at step %d: energy RMSE %.4f "
          "eV/atom, force RMSE %.4f eV/A" % (held["step"],
                                             held["energy_rmse"],
                                             held["force_rmse"]))

    atoms = make_slab()
    atoms.set_positions(test[0].positions)
    atoms.calc = loaded
    thermalize_momenta(atoms, 300, rng=np.random.default_rng(7))
    dynamics = VelocityVerlet(atoms, 1 * units.fs,
                              trajectory=os.path.join(folder, "md.traj"))
    energies, outside = [], []
    dynamics.attach(lambda: energies.append(atoms.get_total_energy()), 10)
    dynamics.attach(lambda: outside.append(
        loaded.results["extrapolation"]["count"] > 0), 1)
    start = time.time()
    dynamics.run(500)
    print("NVE MD with the loaded model: 500 steps in %.1f s, total-energy "
          "drift %.2e eV; %d steps with atoms outside the training range"
          % (time.time() - start, energies[-1] - energies[0],
             sum(outside)))
    parity = os.path.join(folder, "parity.png")
    plot_parity_and_error(loaded, train, validation=test, plotfile=parity,
                          overwrite=True)
    print("parity and error plot of the training and held-out images: %s"
          % parity)
    convergence = os.path.join(folder, "convergence.png")
    # The log keeps every run under this label; plot this one (the last).
    plot_convergence(read_trainlog(label + "-log.txt", verbose=False,
                                   multiple=-1), plotfile=convergence)
    print("convergence of the training log: %s" % convergence)
    print("outputs in %s" % folder)


if __name__ == "__main__":
    main(*sys.argv[1:])
