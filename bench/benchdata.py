"""Benchmark data, made with ASE and numpy only (no ``amp`` import).

Shared by ``bench/training.py``, ``bench/inference.py`` and
``bench/original_amp.py`` (which runs under Amp 1.0.1's interpreter), so both
packages are measured on the same structures:

* ``slab_images``: Langevin MD snapshots of Amp's tutorial system, the Pt
  fcc(110) slab with two Cu adsorbates (``examples/tutorial_data.py``);
* ``copper_cell`` / ``copper_images``: thermally displaced 108-atom fcc Cu
  cells (a = 3.6 A, 3x3x3 cubic, Gaussian displacements of 0.05 A per
  component, about room temperature), with EMT energies and forces.

Running this file does nothing.
"""
import os
import sys
import warnings

import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                os.pardir, "examples"))
from tutorial_data import generate_data, make_slab  # noqa: E402

__all__ = ["make_slab", "slab_images", "copper_cell", "copper_images",
           "report", "run_original"]

# ASE's deprecation notes about the tutorial's MD set-up, not about us.
warnings.filterwarnings("ignore", message=".*fixcm")
warnings.filterwarnings("ignore", message="Use thermalize_momenta")


def report(name, value, unit, note=""):
    """Print one ``name value unit`` line (with an optional ``# note``)."""
    print("%s %s %s%s" % (name, value, unit, ("  # " + note) if note else ""),
          flush=True)


def slab_images(path, count=50, seed=0):
    """``count`` tutorial snapshots (EMT), also written to ``path``."""
    return generate_data(path, count, seed=seed)


def copper_cell(rng, displacement=0.05):
    """A 108-atom fcc Cu cell with random thermal displacements."""
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (3, 3, 3)
    atoms.positions += rng.normal(0.0, displacement, atoms.positions.shape)
    return atoms


def copper_images(count, seed=0):
    """``count`` displaced 108-atom Cu cells with EMT energies and forces."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        atoms = copper_cell(rng)
        atoms.calc = EMT()
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, energy=energy,
                                           forces=forces)
        images.append(atoms)
    return images


def run_original(python, *arguments):
    """Run ``bench/original_amp.py ARGUMENTS`` under ``python`` (an
    interpreter with Amp 1.0.1) and pass its ``name value unit`` lines on
    (and return them); a failure prints an ``original_failed`` line with
    its last error."""
    import subprocess

    here = os.path.dirname(os.path.abspath(__file__))
    command = [python, os.path.join(here, "original_amp.py")]
    command += [str(argument) for argument in arguments]
    # PYTHONPATH could point the other interpreter at this package.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(command, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    sys.stdout.write(result.stdout)
    if result.returncode:
        report("original_failed", result.returncode, "exit_code",
               " ".join(result.stderr.strip().splitlines()[-1:]))
    return result.stdout
