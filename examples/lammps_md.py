"""The tutorial's model in LAMMPS: 1,000 NVT steps of the tutorial slab.

1. Loads a trained model: the file given, or ``out/tutorial/calc.amp``
   (what ``make demo`` trains); without either, trains a small one on
   tutorial snapshots first (EMT data of the Pt(110) slab with two Cu
   adsorbates).
2. Writes the slab to a LAMMPS data file with ASE and builds an ordinary
   LAMMPS input: ``units metal``, ``boundary p p f``, ``pair_style zero``
   with the model's cutoff, the four bottom Pt atoms held, a Nose-Hoover
   thermostat at 300 K on the others.
3. Attaches the model (:func:`amp.engines.lammps.attach`) and runs 1,000
   steps of 1 fs, printing the temperature and energies every 100 steps.

Run ``python examples/lammps_md.py [model.amp] [folder]`` (default folder
``out/lammps``; an empty model argument means the default); needs ``pip
install 'amp-mlip[md]'``.
"""

import os
import sys
import time
import warnings

from ase.io import write

from amp import Amp
from amp.descriptor.gaussian import Gaussian
from amp.engines.lammps import attach, new_lammps
from amp.model import LossFunction
from amp.model.neuralnetwork import NeuralNetwork
from tutorial_data import generate_data, make_slab

TUTORIAL_MODEL = os.path.join("out", "tutorial", "calc.amp")


def trained_model(folder):
    """A small model of the tutorial system trained here."""
    # ASE's note about the tutorial's Langevin set-up, not about us.
    warnings.filterwarnings("ignore", message=".*fixcm")
    images = generate_data(os.path.join(folder, "emt.traj"), 30)
    label = os.path.join(folder, "calc")
    calc = Amp(descriptor=Gaussian(),
               model=NeuralNetwork(hiddenlayers=(5, 5), randomseed=42),
               label=label, cores=1)
    calc.model.lossfunction = LossFunction(
        convergence={"energy_rmse": 0.02, "force_rmse": 0.3},
        force_coefficient=0.04)
    start = time.time()
    calc.train(images=images, overwrite=True)
    print("trained in %.1f s -> %s.amp" % (time.time() - start, label))
    return label + ".amp"


def main(model=None, folder=os.path.join("out", "lammps")):
    os.makedirs(folder, exist_ok=True)
    if not model:
        model = TUTORIAL_MODEL if os.path.exists(TUTORIAL_MODEL) else \
            trained_model(folder)
    calc = Amp.load(model)
    print("model: %s (elements %s, cutoff %.1f A)"
          % (model, ", ".join(calc.descriptor.elements),
             calc.descriptor.cutoff.Rc))

    slab = make_slab()
    symbols = ["Cu", "Pt"]  # LAMMPS atom types 1 and 2
    data = os.path.join(folder, "slab.data")
    write(data, slab, format="lammps-data", specorder=symbols, masses=True,
          units="metal", atom_style="atomic")
    held = " ".join(str(i + 1) for i in slab.constraints[0].index)

    lmp = new_lammps(["-screen", "none", "-log",
                      os.path.join(folder, "log.lammps")])
    lmp.commands_string("""
        units metal
        atom_style atomic
        boundary p p f
        read_data %s
        pair_style zero %r
        pair_coeff * *
        group held id %s
        group mobile subtract all held
        velocity mobile create 300.0 4928459 mom yes rot no dist gaussian
        fix hold held setforce 0.0 0.0 0.0
        fix nvt mobile nvt temp 300.0 300.0 0.1
        compute mobile_temp mobile temp
        timestep 0.001
        thermo_style custom step temp pe etotal
        thermo_modify temp mobile_temp
        """ % (data, calc.descriptor.cutoff.Rc, held))
    attach(lmp, calc, symbols)

    print("%6s %10s %12s %12s" % ("step", "T (K)", "pe (eV)", "etotal (eV)"))
    start = time.time()
    for _ in range(10):
        lmp.command("run 100")
        print("%6d %10.1f %12.5f %12.5f" % (
            lmp.extract_global("ntimestep"), lmp.get_thermo("temp"),
            lmp.get_thermo("pe"), lmp.get_thermo("etotal")))
    elapsed = time.time() - start  # s per 1000 steps: ms per step
    print("1000 NVT steps in %.1f s (%.2f ms per step); LAMMPS log in %s"
          % (elapsed, elapsed, os.path.join(folder, "log.lammps")))
    lmp.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
