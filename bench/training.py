"""Training benchmarks on data made like Amp's tutorial.

Data: 50 Langevin MD snapshots (EMT) of the tutorial system, the Pt fcc(110)
slab with two Cu adsorbates (``examples/tutorial_data.py`` through
``bench/benchdata.py``); default ``Gaussian()``,
``NeuralNetwork(hiddenlayers=(5, 5), randomseed=42)``, one core (BLAS
threads set to 1 before numpy is imported). Prints ``name value unit``
lines:

* ``loss_and_gradient_forces`` ms: median of 200 evaluations of
  ``LossFunction.get_loss(vector, lossprime=True)`` with force training
  (target <= 10 ms; Amp 1.0.1 in the issue: 147 ms);
* ``setup_before_first_step`` s: from the call of ``Amp.train`` (hashing,
  checks, fingerprints and their derivatives into fresh databases in a
  temporary folder, model set-up, building the training batches) until the
  optimiser's first loss evaluation has returned; the batches are built
  inside that first evaluation, so it is included (one evaluation is about
  a millisecond here) (target <= 3 s; Amp 1.0.1: 61 s);
* ``train_to_convergence`` s: the whole ``Amp.train`` call, in a temporary
  folder, with ``convergence={'energy_rmse': 0.02, 'force_rmse': 0.3}``
  (target <= 120 s); ``train_steps`` (loss evaluations) and the saved
  model's ``train_energy_rmse`` and ``train_force_rmse`` on the training
  images (reloaded with ``Amp.load``);
* ``energy_only_derivatives_computed`` count and
  ``energy_only_primes_stored`` count: an energy-only ``Amp.train``
  (``force_coefficient=None``) with ``descriptor.compute`` counted and the
  ``fingerprint-primes`` database inspected afterwards (both should be 0);
  ``energy_criteria_default_coefficient_trains_forces``: whether energy
  criteria alone with the default ``force_coefficient`` train forces (they
  do: forces are trained unless ``force_coefficient`` is None, so that
  case is not energy-only here; Amp 1.0.1
  computes the derivatives and then drops the force term);
* ``memory_500x108_force_training`` GB: peak resident memory (VmHWM) of a
  subprocess that makes 500 thermally displaced 108-atom fcc Cu cells with
  EMT energies and forces, computes fingerprints with derivatives into
  databases in a temporary folder (as ``Amp.train`` does), sets up force
  training (``model.fit(only_setup=True)``, training batches) and evaluates
  the loss and gradient once (target <= 4 GB); with the child's
  ``force_training_500x108_fingerprints`` s, ``..._setup`` s and
  ``loss_and_gradient_500x108_forces`` ms. ``--quick`` skips it (it takes a
  minute or so).

``--original PYTHON`` also runs ``bench/original_amp.py training`` with that
interpreter (one where Amp 1.0.1 is installed, see that file) on the same
snapshots (passed as a ``.traj`` file) and prints its ``original_*`` lines.

Timings on a shared machine are noisy; run ``python bench/training.py
[--quick] [--original /tmp/origamp/bin/python]``.
"""
import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import benchdata  # noqa: E402
from benchdata import report  # noqa: E402

from amp import Amp  # noqa: E402
from amp.store.database import FileDatabase  # noqa: E402
from amp.descriptor.gaussian import Gaussian  # noqa: E402
from amp.model import LossFunction  # noqa: E402
from amp.model.neuralnetwork import NeuralNetwork  # noqa: E402
from amp.utilities import Logger, hash_images  # noqa: E402

CONVERGENCE = {"energy_rmse": 0.02, "force_rmse": 0.3}
N_IMAGES = 50
SEED = 42



def bench_train(images, folder):
    """Amp.train to convergence; set-up time to the first loss evaluation."""
    calc = Amp(descriptor=Gaussian(),
               model=NeuralNetwork(hiddenlayers=(5, 5), randomseed=SEED),
               label=os.path.join(folder, "calc"), cores=1)
    calc.model.lossfunction = LossFunction(convergence=dict(CONVERGENCE))
    lossfunction = calc.model.lossfunction
    evaluate = lossfunction.get_loss
    seen = {"first": None, "steps": 0}

    def counted(vector, lossprime=True):
        seen["steps"] += 1
        result = evaluate(vector, lossprime)  # may raise ConvergenceOccurred
        if seen["first"] is None:
            seen["first"] = time.perf_counter()
        return result

    lossfunction.get_loss = counted
    start = time.perf_counter()
    calc.train(images=images)
    total = time.perf_counter() - start
    if seen["first"] is None:  # converged at the very first evaluation
        seen["first"] = time.perf_counter()
    report("setup_before_first_step", "%.3f" % (seen["first"] - start), "s",
           "target <= 3")
    report("train_to_convergence", "%.2f" % total, "s", "target <= 120")
    report("train_steps", seen["steps"], "loss_evaluations")
    # RMSEs of the saved model on the training images.
    final = Amp.load(os.path.join(folder, "calc.amp"))
    energy_rmse, force_rmse = rmse(final, images)
    report("train_energy_rmse", "%.4f" % energy_rmse, "eV/atom",
           "criterion 0.02")
    report("train_force_rmse", "%.4f" % force_rmse, "eV/A", "criterion 0.3")


def rmse(calc, images):
    """Energy RMSE per atom and force RMSE as the loss function defines
    them (force RMSE: sqrt of the mean over images of sum dF^2 / 3N)."""
    de, df = [], []
    for image in images:
        atoms = image.copy()
        atoms.calc = calc
        n = len(atoms)
        de.append((atoms.get_potential_energy()
                   - image.get_potential_energy()) / n)
        residual = (atoms.get_forces(apply_constraint=False)
                    - image.get_forces(apply_constraint=False))
        df.append(np.sum(residual ** 2) / (3 * n))
    return float(np.sqrt(np.mean(np.square(de)))), float(np.sqrt(np.mean(df)))


def setup_loss(images, train_forces=True, dblabel=None):
    """Fingerprints, model set-up and batches; returns the loss function."""
    images = hash_images(images)
    descriptor = Gaussian(dblabel=dblabel)
    descriptor.calculate_fingerprints(images, calculate_derivatives=True)
    model = NeuralNetwork(hiddenlayers=(5, 5), randomseed=SEED)
    model.lossfunction = LossFunction(
        convergence=dict(CONVERGENCE), raise_ConvergenceOccurred=False,
        log_losses=False, force_coefficient=0.04 if train_forces else None)
    model.fit(images, descriptor, Logger(None), {"cores": 1},
              only_setup=True)
    model.lossfunction.batches()
    return model


def bench_loss_gradient(images, repeats=200):
    model = setup_loss(images)
    lossfunction, vector = model.lossfunction, model.vector
    lossfunction.get_loss(vector, lossprime=True)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        lossfunction.get_loss(vector, lossprime=True)
        times.append(time.perf_counter() - start)
    report("loss_and_gradient_forces", "%.2f" % (1e3 * np.median(times)),
           "ms", "median of %i, min %.2f; target <= 10"
           % (repeats, 1e3 * np.min(times)))


def bench_energy_only(images, folder):
    """Energy-only training: count derivative computations and entries."""
    label = os.path.join(folder, "energy")
    calc = Amp(descriptor=Gaussian(),
               model=NeuralNetwork(hiddenlayers=(5, 5), randomseed=SEED),
               label=label, cores=1)
    calc.model.lossfunction = LossFunction(
        convergence={"energy_rmse": CONVERGENCE["energy_rmse"]},
        force_coefficient=None)
    compute = calc.descriptor.compute
    calls = {True: 0, False: 0}

    def counted(atoms, derivatives=False):
        calls[bool(derivatives)] += 1
        return compute(atoms, derivatives)

    calc.descriptor.compute = counted
    calc.train(images=images, compress_databases=False)
    with FileDatabase(label + "-fingerprint-primes") as primes:
        n_primes = len(primes.keys())
    with FileDatabase(label + "-fingerprints") as fingerprints:
        n_fingerprints = len(fingerprints.keys())
    report("energy_only_derivatives_computed", calls[True], "count",
           "images fingerprinted without derivatives: %i" % calls[False])
    report("energy_only_primes_stored", n_primes, "count",
           "fingerprints stored: %i" % n_fingerprints)
    # Energy criteria only but the default force_coefficient (0.04): forces
    # are trained here, so derivatives are computed; Amp 1.0.1
    # computes them too and then drops the force term at the first step.
    model = NeuralNetwork(hiddenlayers=(5, 5))
    model.lossfunction = LossFunction(
        convergence={"energy_rmse": CONVERGENCE["energy_rmse"]})
    report("energy_criteria_default_coefficient_trains_forces",
           int(model.forcetraining), "bool",
           "force_coefficient=0.04, no force criterion")


def peak_rss_gb():
    """This process's peak resident set (VmHWM) in GB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e9
    raise RuntimeError("no VmHWM in /proc/self/status")


def memory_child(n_images):
    """Runs in the subprocess of :func:`bench_memory`."""
    images = hash_images(benchdata.copper_images(n_images, seed=1))
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:
        start = time.perf_counter()
        descriptor = Gaussian(dblabel=os.path.join(folder, "cu"))
        descriptor.calculate_fingerprints(images, calculate_derivatives=True)
        report("force_training_%ix108_fingerprints" % n_images,
               "%.1f" % (time.perf_counter() - start), "s",
               "with derivatives, into databases; peak so far %.2f GB"
               % peak_rss_gb())
        start = time.perf_counter()
        model = NeuralNetwork(hiddenlayers=(5, 5), randomseed=SEED)
        model.lossfunction = LossFunction(
            convergence=dict(CONVERGENCE), raise_ConvergenceOccurred=False,
            log_losses=False)
        model.fit(images, descriptor, Logger(None), {"cores": 1},
                  only_setup=True)
        model.lossfunction.batches()
        report("force_training_%ix108_setup" % n_images,
               "%.1f" % (time.perf_counter() - start), "s",
               "model set-up and training batches; peak so far %.2f GB"
               % peak_rss_gb())
        start = time.perf_counter()
        model.lossfunction.get_loss(model.vector, lossprime=True)
        report("loss_and_gradient_%ix108_forces" % n_images,
               "%.0f" % (1e3 * (time.perf_counter() - start)), "ms")
        report("child_peak_rss", "%.3f" % peak_rss_gb(), "GB")


def bench_memory(n_images=500):
    import resource

    command = [sys.executable, os.path.abspath(__file__), "--memory-child",
               str(n_images)]
    output = subprocess.run(command, check=True, stdout=subprocess.PIPE,
                            text=True).stdout
    peak = None
    for line in output.splitlines():
        if line.startswith("child_peak_rss"):
            peak = float(line.split()[1])
        else:
            print(line, flush=True)
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    report("memory_%ix108_force_training" % n_images, "%.2f" % peak, "GB",
           "VmHWM of the child (ru_maxrss of children %.2f GB); target <= 4"
           % (children * 1024 / 1e9))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="skip the 500-image memory benchmark")
    parser.add_argument("--original", metavar="PYTHON",
                        help="interpreter with Amp 1.0.1 installed")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
        return
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:
        traj = os.path.join(folder, "slab.traj")
        images = benchdata.slab_images(traj, N_IMAGES)
        report("images", len(images), "snapshots",
               "%s, %i atoms" % (images[0].get_chemical_formula(),
                                 len(images[0])))
        os.mkdir(os.path.join(folder, "train"))
        bench_train(images, os.path.join(folder, "train"))
        bench_loss_gradient(images)
        os.mkdir(os.path.join(folder, "energy"))
        bench_energy_only(images, os.path.join(folder, "energy"))
        if not args.quick:
            bench_memory()
        if args.original:
            benchdata.run_original(args.original, "training", "--slab", traj)


if __name__ == "__main__":
    main()
