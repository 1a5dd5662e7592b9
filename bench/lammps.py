"""Cost of the LAMMPS coupling (``amp.engines.lammps``), one core.

LAMMPS runs NVE steps with the model attached by ``fix external``, and the
model's own force call is timed on the same configurations, interleaved
(runs of LAMMPS steps and runs of force calls alternate); every figure is
the minimum over the repeats. Prints ``name value unit`` lines, for each
system:

* ``lammps_step_<system>`` ms: one LAMMPS step (velocity Verlet,
  ``pair_style zero`` with the model's cutoff, the callback, the model);
* ``model_in_lammps_step_<system>`` ms: the calculator's ``calculate()``
  (the model's own work) inside those steps, timed in them;
* ``force_call_<system>`` ms: ``atoms.get_forces()`` with the calculator
  in ASE on the configuration LAMMPS holds, moved a little before each
  call so nothing is cached;
* ``coupling_overhead_<system>`` ms: a LAMMPS step minus the model's
  ``calculate()`` in it (LAMMPS's integration and neighbour lists, the
  callback, ASE's calculator protocol), measured within the same steps,
  and ``coupling_overhead_<system>_pct``, its share of the force call
  (target <= 10 % on 2,048 atoms);
* ``step_minus_force_call_<system>`` ms: a LAMMPS step minus the separate
  force call, the same quantity from two separate timings (noisier on a
  busy machine).

Systems: ``10_atom_slab``, Amp's tutorial slab (Pt fcc(110) with two Cu
adsorbates, periodic in two directions; model set up on 50 tutorial
snapshots), and ``2048_atom_cu``, an fcc Cu cell of 8 x 8 x 8 cubic cells
(a = 3.6 A) with thermal displacements (model set up on 108-atom cells).
Models as in ``bench/inference.py``: ``Gaussian()`` and
``NeuralNetwork(hiddenlayers=(5, 5))`` set up on EMT data with random
weights (the cost of a call does not depend on the weights).

Run ``python bench/lammps.py`` (needs ``pip install 'amp-mlip[md]'``).
"""
import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from ase.build import bulk  # noqa: E402
from ase.io import write  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import benchdata  # noqa: E402
from benchdata import report  # noqa: E402
from inference import build_model  # noqa: E402

# This file is named lammps.py: with its folder on sys.path, "import lammps"
# would find it instead of LAMMPS.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]

from amp import Amp  # noqa: E402
from amp.engines.lammps import attach, new_lammps  # noqa: E402


def lammps_with(atoms, folder, cutoff):
    """LAMMPS (units metal) reading ``atoms`` from a data file written by
    ASE, as a user would, ready for NVE."""
    data = os.path.join(folder, "atoms.data")
    symbols = sorted(set(atoms.get_chemical_symbols()))
    write(data, atoms, format="lammps-data", specorder=symbols, masses=True,
          units="metal", atom_style="atomic")
    lmp = new_lammps(["-screen", "none", "-log", "none", "-nocite"])
    boundary = " ".join("p" if p else "f" for p in atoms.pbc)
    lmp.commands_string("""
        units metal
        atom_style atomic
        boundary %s
        read_data %s
        pair_style zero %r
        pair_coeff * *
        velocity all create 300 42 mom yes rot no
        timestep 0.0005
        fix nve all nve
        thermo 1000
        """ % (boundary, data, cutoff))
    return lmp, symbols


def bench(name, atoms, model, folder, steps, calls, repeats=4):
    calc = Amp.load(model)
    lmp, symbols = lammps_with(atoms, folder, calc.descriptor.cutoff.Rc)
    coupling = attach(lmp, calc, symbols)
    lmp.command("run 0")
    # The model's own work inside the LAMMPS steps: its calculate().
    inside = []
    calculate = calc.calculate

    def timed(*args, **kwargs):
        start = time.perf_counter()
        calculate(*args, **kwargs)
        inside.append(time.perf_counter() - start)

    calc.calculate = timed
    own = Amp.load(model)
    rng = np.random.default_rng(3)
    steps_ms, inside_ms, calls_ms = [], [], []
    for _ in range(repeats):
        del inside[:]
        start = time.perf_counter()
        lmp.command("run %d pre no post no" % steps)
        steps_ms.append(1e3 * (time.perf_counter() - start) / steps)
        assert len(inside) == steps, "one model evaluation per step"
        inside_ms.append(1e3 * sum(inside) / steps)
        configuration = coupling.atoms()
        configuration.calc = own
        elapsed = 0.0
        for _ in range(calls):
            configuration.positions += rng.normal(0, 1e-4, (len(atoms), 3))
            start = time.perf_counter()
            configuration.get_forces()
            elapsed += time.perf_counter() - start
        calls_ms.append(1e3 * elapsed / calls)
    steps_ms, inside_ms = np.array(steps_ms), np.array(inside_ms)
    overhead = np.min(steps_ms - inside_ms)
    call = min(calls_ms)
    report("lammps_step_%s" % name, "%.2f" % min(steps_ms), "ms",
           "min of %d runs of %d steps" % (repeats, steps))
    report("model_in_lammps_step_%s" % name, "%.2f" % min(inside_ms), "ms",
           "the calculator's calculate() inside those steps")
    report("force_call_%s" % name, "%.2f" % call, "ms",
           "atoms.get_forces() in ASE, min of %d runs of %d calls"
           % (repeats, calls))
    report("coupling_overhead_%s" % name, "%.2f" % overhead, "ms",
           "LAMMPS step minus the model's calculate() in it")
    report("coupling_overhead_%s_pct" % name,
           "%.1f" % (100 * overhead / call), "percent",
           "of the force call" + ("; target <= 10" if len(atoms) > 1000
                                  else ""))
    report("step_minus_force_call_%s" % name,
           "%.2f" % (min(steps_ms) - call), "ms",
           "the same from separate timings (noisier)")
    lmp.close()


def main():
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:
        slab_images = benchdata.slab_images(os.path.join(folder, "s.traj"),
                                            50)
        slab = benchdata.make_slab()
        slab.set_constraint()
        slab.positions = slab_images[-1].positions
        bench("10_atom_slab", slab,
              build_model(slab_images, os.path.join(folder, "slab.amp")),
              folder, steps=50, calls=50)
        copper = bulk("Cu", "fcc", a=3.6, cubic=True) * (8, 8, 8)
        copper.positions += np.random.default_rng(5).normal(
            0.0, 0.05, copper.positions.shape)
        bench("2048_atom_cu", copper,
              build_model(benchdata.copper_images(5, seed=1),
                          os.path.join(folder, "cu.amp")),
              folder, steps=3, calls=3)


if __name__ == "__main__":
    main()
