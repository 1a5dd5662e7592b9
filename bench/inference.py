"""Inference benchmarks: force calls and MD steps, one core.

Models: default ``Gaussian()`` + ``NeuralNetwork(hiddenlayers=(5, 5),
randomseed=42)`` set up on EMT data (fingerprint range and energy scalings
from the data, random weights; the cost of a call does not depend on the
weights), saved, and loaded back with ``Amp.load`` as a user would. Prints
``name value unit`` lines:

* ``force_call_108_atoms`` ms: one ``get_forces`` on a fresh thermally
  displaced 108-atom fcc Cu cell (a = 3.6 A, 3x3x3 cubic, periodic; model
  set up on 5 such cells); median over 20 cells, each with new positions
  so nothing is cached (target <= 30 ms; Amp 1.0.1 in the issue: 63 s);
* ``energy_call_108_atoms`` ms: the same with ``get_potential_energy``
  (the calculator computes energy, forces and stress in one pass whatever
  is asked, so this is the same work);
* ``md_step_10_atom_slab`` ms: one ``VelocityVerlet`` step (1 fs) of Amp's
  tutorial slab (Pt fcc(110) with two Cu adsorbates; model set up on the
  50 tutorial snapshots), median over 200 steps (target <= 5 ms; Amp 1.0.1:
  210 ms).

``--original PYTHON`` also runs ``bench/original_amp.py inference`` with
that interpreter (Amp 1.0.1 installed, see that file): the same cells
(same generator and seeds) and the same slab snapshots (passed as a
``.traj`` file), and prints its ``original_*`` lines. In pure Python
the original needs about half a minute for one 108-atom energy call and
more than 30 minutes for one force call, so it makes one of each and stops
a call after ``--original-time-limit`` seconds (default 600), printing a
lower bound.

Timings on a shared machine are noisy; run ``python bench/inference.py
[--original /tmp/origamp/bin/python]``.
"""
import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from ase import units  # noqa: E402
from ase.md.velocitydistribution import \
    MaxwellBoltzmannDistribution  # noqa: E402
from ase.md.verlet import VelocityVerlet  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import benchdata  # noqa: E402
from benchdata import report  # noqa: E402

from amp import Amp  # noqa: E402
from amp.descriptor.gaussian import Gaussian  # noqa: E402
from amp.model.neuralnetwork import NeuralNetwork  # noqa: E402
from amp.utilities import hash_images  # noqa: E402

SEED = 42
CELL_SEED = 100  # the fresh 108-atom cells (the same in original_amp.py)



def build_model(images, path):
    """Save a model set up on ``images`` (random weights) to ``path``."""
    calc = Amp(descriptor=Gaussian(),
               model=NeuralNetwork(hiddenlayers=(5, 5), randomseed=SEED),
               cores=1, logging=False)
    images = hash_images(images)
    calc.descriptor.calculate_fingerprints(images)
    calc.model.fit(images, calc.descriptor, only_setup=True)
    calc.save(path)
    return path


def bench_copper(path, repeats=20):
    calc = Amp.load(path)
    rng = np.random.default_rng(CELL_SEED)
    warm = benchdata.copper_cell(rng)
    warm.calc = calc
    warm.get_forces()
    for name, call in (("force_call_108_atoms", "get_forces"),
                       ("energy_call_108_atoms", "get_potential_energy")):
        times = []
        for _ in range(repeats):
            atoms = benchdata.copper_cell(rng)
            atoms.calc = calc
            start = time.perf_counter()
            getattr(atoms, call)()
            times.append(time.perf_counter() - start)
        report(name, "%.2f" % (1e3 * np.median(times)), "ms",
               "median of %i fresh cells, min %.2f; target <= 30"
               % (repeats, 1e3 * np.min(times)))


def bench_md(path, slab_positions, steps=200):
    atoms = benchdata.make_slab()
    atoms.set_positions(slab_positions)
    atoms.calc = Amp.load(path)
    MaxwellBoltzmannDistribution(atoms, temperature_K=300,
                                 rng=np.random.default_rng(7))
    dynamics = VelocityVerlet(atoms, 1 * units.fs)
    dynamics.run(5)
    stamps = []
    dynamics.attach(lambda: stamps.append(time.perf_counter()), 1)
    dynamics.run(steps)
    times = np.diff(stamps)
    report("md_step_10_atom_slab", "%.2f" % (1e3 * np.median(times)), "ms",
           "median of %i VelocityVerlet steps, min %.2f; target <= 5"
           % (len(times), 1e3 * np.min(times)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--original", metavar="PYTHON",
                        help="interpreter with Amp 1.0.1 installed")
    parser.add_argument("--original-time-limit", type=float, default=600.0,
                        metavar="SECONDS",
                        help="time allowed to each of the original's "
                        "108-atom calls (default 600)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:
        traj = os.path.join(folder, "slab.traj")
        slab = benchdata.slab_images(traj, 50)
        copper = benchdata.copper_images(5, seed=1)
        bench_copper(build_model(copper, os.path.join(folder, "cu.amp")))
        bench_md(build_model(slab, os.path.join(folder, "slab.amp")),
                 slab[-1].positions)
        if args.original:
            benchdata.run_original(args.original, "inference", "--slab", traj,
                                   "--time-limit", args.original_time_limit)


if __name__ == "__main__":
    main()
