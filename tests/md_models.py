"""A small Cu/Pt model trained once per test session on EMT data, for the
tests of the MD engines and of ASE's workflows (tests/test_md_engines.py,
tests/test_ase_workflows.py).

Training images: 8-atom fcc Cu6Pt2 cells (a = 3.6 A, cubic, doubled along
z) from EMT molecular dynamics near 600 K, the same cells strained
(isotropic and shear, up to 4 %) and rattled, and the 7-atom cell with a
vacancy with a neighbour of the vacancy on its way into it (for the NEB).
Energies and forces from EMT. A Gaussian descriptor (cutoff 4 A) and one
hidden layer of 5 nodes: the fit takes about a second.
"""
import os

import numpy as np
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.md.verlet import VelocityVerlet

from amp import Amp
from amp.descriptor.gaussian import Gaussian
from amp.model import LossFunction
from amp.model.neuralnetwork import NeuralNetwork

#: The atom that hops into the vacancy, and the vacancy's site, in
#: :func:`cu_pt_cell` with atom VACANCY removed.
VACANCY = 0
HOPPER = 1

_TRAINED = {}


def cu_pt_cell():
    """The 8-atom fcc Cu6Pt2 cell (a = 3.6 A, 3.6 x 3.6 x 7.2 A)."""
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (1, 1, 2)
    atoms.symbols[[3, 6]] = "Pt"
    return atoms


def _labelled(atoms):
    """``atoms`` with its EMT energy and forces fixed."""
    atoms = atoms.copy()
    atoms.calc = EMT()
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
    return atoms


def training_images(seed=0):
    """EMT-labelled images (see the module docstring)."""
    rng = np.random.default_rng(seed)
    images = []
    atoms = cu_pt_cell()
    atoms.calc = EMT()
    sigma = np.sqrt(atoms.get_masses() * units.kB * 600)
    atoms.set_momenta(rng.normal(size=(len(atoms), 3)) * sigma[:, None])
    dynamics = VelocityVerlet(atoms, timestep=2 * units.fs)
    for _ in range(8):
        dynamics.run(5)
        images.append(_labelled(atoms))
    for _ in range(10):
        strained = cu_pt_cell()
        strain = np.eye(3) + rng.uniform(-0.04, 0.04, (3, 3))
        strained.set_cell(strained.cell @ strain, scale_atoms=True)
        strained.rattle(0.05, rng=rng)
        images.append(_labelled(strained))
    vacancy = cu_pt_cell()
    start = vacancy.positions[VACANCY].copy()
    del vacancy[VACANCY]
    hopper = HOPPER - 1
    origin = vacancy.positions[hopper].copy()
    for fraction in np.linspace(0, 1, 6):
        image = vacancy.copy()
        image.positions[hopper] = origin + fraction * (start - origin)
        image.rattle(0.03, rng=rng)
        images.append(_labelled(image))
    return images


def cu_pt_model(folder):
    """Path of the trained model (trained on the first call of the
    session, in ``folder``)."""
    if "path" not in _TRAINED:
        label = os.path.join(str(folder), "cupt")
        calc = Amp(descriptor=Gaussian(cutoff=4.0),
                   model=NeuralNetwork(hiddenlayers=(5,), randomseed=1),
                   label=label, cores=1, logging=False)
        calc.model.lossfunction = LossFunction(
            convergence={"energy_rmse": 0.002, "force_rmse": 0.05})
        calc.train(training_images())
        _TRAINED["path"] = label + ".amp"
    return _TRAINED["path"]
