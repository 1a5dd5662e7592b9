"""Speed on n2p2's own water potential, one core.

The potential is n2p2's ``H2O_RPBE-D3`` example (27 symmetry functions for
H and 30 for O, types 2 and 3, cutoff 12 bohr, two hidden layers of 25
tanh neurons), loaded with ``amp.n2p2.load`` from ``tests/data``; the
structures are n2p2's 1080-atom water box (``input.data``) and its
repetitions to 2160 (2x1x1) and 8640 (2x2x2) atoms. One force call is
``potential.evaluate`` (neighbour list, symmetry functions, networks,
forces, stress), as ``atoms.get_forces()`` runs it. Prints ``name value
unit`` lines:

* ``n2p2_force_call_<N>_atoms`` us/atom: the fastest of the repeats, wall
  clock;
* ``n2p2_force_call_<N>_atoms_cpu`` us/atom: the same, process CPU time
  (less sensitive to other programs on a shared machine);
* ``n2p2_neighbour_list_<N>_atoms`` us/atom: the neighbour search alone.

For comparison (the issue's figures for n2p2's C++ ``nnp-predict`` built
from source, one core, on this kind of machine): about 290 us/atom for
this potential's work and 450 us/atom on the 1080-atom box including its
O(N^2) neighbour search. Target: <= 100 us/atom on 8640 atoms, cost linear
in the number of atoms.

Run ``python bench/n2p2.py [--repeats N]``.
"""
import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from benchdata import report  # noqa: E402

from amp import n2p2, potential  # noqa: E402
from amp.descriptor.neighbors import atoms_neighbor_list  # noqa: E402

WATER = os.path.join(HERE, os.pardir, "tests", "data", "n2p2-reference",
                     "H2O_RPBE-D3")


def timed(function, repeats):
    """Fastest wall-clock and CPU seconds of ``repeats`` calls."""
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        function()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return min(wall), min(cpu)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    calc = n2p2.load(WATER)                     # bohr and hartree as given
    box = n2p2.read_structures(os.path.join(WATER, "input.data"))[0]
    for repeat in ((1, 1, 1), (2, 1, 1), (2, 2, 2)):
        atoms = box.repeat(repeat)
        n = len(atoms)
        potential.evaluate(calc.descriptor, calc.model, atoms)   # warm-up
        wall, cpu = timed(lambda: potential.evaluate(
            calc.descriptor, calc.model, atoms), args.repeats)
        report("n2p2_force_call_%d_atoms" % n, "%.1f" % (wall / n * 1e6),
               "us/atom", "n2p2 C++: ~290 (work), 450 (1080 atoms, all)")
        report("n2p2_force_call_%d_atoms_cpu" % n, "%.1f" % (cpu / n * 1e6),
               "us/atom")
        wall, _ = timed(lambda: atoms_neighbor_list(atoms, 12.0),
                        args.repeats)
        report("n2p2_neighbour_list_%d_atoms" % n, "%.1f" % (wall / n * 1e6),
               "us/atom")


if __name__ == "__main__":
    main()
