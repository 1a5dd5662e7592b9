"""Loss-and-gradient timing of the neural-network training core.

50 snapshots of a 10-atom Pt/Cu slab (fcc111 Pt 2x2x2 + 2 Cu, EMT, rattled),
default Gaussian descriptor, ``hiddenlayers=(5, 5)``, force training. Prints
``name value unit`` lines; the issue's target is <= 10 ms per evaluation
(Amp 1.0.1: 147 ms). Run: ``python bench/training_core.py``.
"""
import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import time  # noqa: E402

import numpy as np  # noqa: E402
from ase.build import add_adsorbate, fcc111  # noqa: E402
from ase.calculators.emt import EMT  # noqa: E402

from amp.descriptor.gaussian import Gaussian  # noqa: E402
from amp.model import LossFunction  # noqa: E402
from amp.model.neuralnetwork import NeuralNetwork  # noqa: E402
from amp.utilities import Logger, hash_images  # noqa: E402


def make_images(n_images=50, seed=0):
    """Rattled Pt/Cu slabs with EMT energies and forces."""
    from ase.calculators.singlepoint import SinglePointCalculator

    rng = np.random.RandomState(seed)
    slab = fcc111("Pt", size=(2, 2, 2), vacuum=7.0)
    add_adsorbate(slab, "Cu", 2.0, "ontop")
    add_adsorbate(slab, "Cu", 2.0, "fcc")
    images = []
    for _ in range(n_images):
        atoms = slab.copy()
        atoms.positions += rng.normal(0.0, 0.08, atoms.positions.shape)
        atoms.calc = EMT()
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, energy=energy,
                                           forces=forces)
        images.append(atoms)
    return images


def main():
    images = hash_images(make_images())
    descriptor = Gaussian()
    start = time.perf_counter()
    descriptor.calculate_fingerprints(images, calculate_derivatives=True)
    print("fingerprints_with_derivatives %.3f s" % (time.perf_counter()
                                                    - start))
    model = NeuralNetwork(hiddenlayers=(5, 5), randomseed=0)
    model.lossfunction = LossFunction(
        convergence={"energy_rmse": 0.02, "force_rmse": 0.3},
        raise_ConvergenceOccurred=False, log_losses=False)
    start = time.perf_counter()
    model.fit(images, descriptor, Logger(None), {"cores": 1},
              only_setup=True)
    lossfunction = model.lossfunction
    lossfunction.batches()
    print("setup_before_first_step %.3f s" % (time.perf_counter() - start))
    vector = model.vector
    lossfunction.get_loss(vector, lossprime=True)
    times = []
    for _ in range(50):
        start = time.perf_counter()
        lossfunction.get_loss(vector, lossprime=True)
        times.append(time.perf_counter() - start)
    print("loss_and_gradient_forces_median %.2f ms (target 10, Amp 147)"
          % (1e3 * np.median(times)))
    print("loss_and_gradient_forces_min %.2f ms" % (1e3 * np.min(times)))
    print("parameters %i" % len(vector))


if __name__ == "__main__":
    main()
