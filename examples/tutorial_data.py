"""The tutorial's training data, with ASE and numpy only (no ``amp``).

Shared by ``examples/tutorial.py`` and the benchmarks in ``bench/``; it
imports nothing from this package so that ``bench/original_amp.py`` can make
the same data under Amp 1.0.1.
"""

import numpy as np
from ase import units
from ase.build import add_adsorbate, fcc110
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixAtoms
from ase.io import Trajectory, read
from ase.md.langevin import Langevin

try:  # ASE 3.29 and later
    from ase.md.velocitydistribution import thermalize_momenta
except ImportError:  # older ASE: the same function under its old name
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    def thermalize_momenta(atoms, temperature_K, rng=None):
        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K,
                                     rng=rng)


def make_slab():
    """Pt fcc(110) 2x2x2 slab with two Cu adsorbates (Amp's tutorial)."""
    slab = fcc110("Pt", (2, 2, 2), vacuum=7.0)
    add_adsorbate(slab, "Cu", 1.8, "longbridge")
    add_adsorbate(slab, "Cu", 1.8, "shortbridge")
    slab.set_constraint(FixAtoms(indices=[a.index for a in slab
                                          if a.symbol == "Pt"][:4]))
    return slab


def generate_data(path, count, seed=0):
    """Langevin MD snapshots with EMT energies and forces."""
    atoms = make_slab()
    atoms.calc = EMT()
    thermalize_momenta(atoms, 300, rng=np.random.default_rng(seed))
    # fixcm=False: ASE 3.28 deprecates removing the centre-of-mass motion
    # inside Langevin (four fixed Pt atoms anchor the slab anyway).
    dynamics = Langevin(atoms, 5 * units.fs, temperature_K=300,
                        friction=0.02, fixcm=False,
                        rng=np.random.default_rng(seed + 1))
    with Trajectory(path, "w") as trajectory:
        for _ in range(count):
            dynamics.run(5)
            snapshot = atoms.copy()
            snapshot.calc = SinglePointCalculator(
                snapshot, energy=atoms.get_potential_energy(),
                forces=atoms.get_forces(apply_constraint=False))
            trajectory.write(snapshot)
    return read(path, ":")
