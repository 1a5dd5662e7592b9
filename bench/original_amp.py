"""Amp 1.0.1 (the original) measured on the benchmarks' data.

Run it with the interpreter of a separate environment where the original is
installed, not with this project's: ``bench/training.py --original PYTHON``
and ``bench/inference.py --original PYTHON`` call
``PYTHON bench/original_amp.py training|inference --slab SNAPSHOTS.traj``
and print its lines beside their own. The data are the same: the tutorial
snapshots are passed as the ``.traj`` file the calling benchmark wrote, and
the 108-atom Cu cells come from the same generator and seeds
(``bench/benchdata.py``, which imports nothing from either package).

Installing the original on this project's machines (Python 3.11):
``pip install amp-atomistics`` fails, because its ``setup.py`` imports
numpy at build time (to compile optional Fortran modules with
``numpy.distutils``/f2py) and pip's isolated build has no numpy ("Please
install numpy (version 1.7.0 or greater) before installing Amp"). Building
without isolation, with numpy < 2 and setuptools < 60 present for
``numpy.distutils``, works. With no Fortran compiler (no gfortran here) the
Fortran modules are skipped and Amp runs in pure Python (it warns "Did not
find fortran modules"): that is the mode measured here (``fortran=False``).
It imports under numpy 2, but its loss function then fails
(``float()`` of a 1x1 array in ``calculate_atomic_energy``: "only
0-dimensional arrays can be converted to Python scalars"), so numpy must be
< 2 at run time too (1.26.4 with scipy 1.17.1 and ASE 3.29.0 works)::

    python3 -m venv /tmp/origamp
    /tmp/origamp/bin/pip install "numpy<2" "setuptools<60" wheel
    /tmp/origamp/bin/pip install --no-build-isolation amp-atomistics \
        ase scipy pyzmq pexpect
    /tmp/origamp/bin/pip install "numpy<2"   # the line above upgrades it

Prints ``name value unit`` lines, one core, BLAS threads set to 1:

* ``training``: ``original_setup_before_first_step`` s (``Amp.train`` on
  the snapshots in a fresh temporary folder, until the first loss
  evaluation has returned, as in ``bench/training.py``) and
  ``original_loss_and_gradient_forces`` ms (median of 3 evaluations, force
  training on). About 25 minutes in all in pure Python. Training to
  convergence is not attempted (at ~17 s per evaluation it would take
  hours; the issue reports a force RMSE still above 0.38 after 15 minutes
  with the original).
* ``inference``: ``original_energy_call_108_atoms`` s and
  ``original_force_call_108_atoms`` s, one call each on a fresh cell (the
  original evaluates energy and forces separately); a call still running
  after ``--time-limit`` seconds (default 600) is stopped and reported as
  ``..._lower_bound``. ``original_md_step_10_atom_slab`` ms: median of 3
  VelocityVerlet steps. The models are set up like ``bench/inference.py``'s
  (fingerprint range and scalings from EMT data: one Cu cell, ten slab
  snapshots; random weights), saved and loaded with ``Amp.load``; the
  loaded calculator writes its log and databases into a temporary folder.

* ``descriptors`` (``bench/descriptors.py --original PYTHON``): Amp's
  ``Zernike()`` (its Fortran path when its compiled modules were built,
  which needs gfortran at install time) and ``Bispectrum()`` on one
  108-atom Cu cell, CPU seconds for fingerprints and (Zernike) fingerprints
  with derivatives; a call still running after ``--time-limit`` seconds is
  reported as ``..._lower_bound``. Amp 1.0.1's Zernike imports
  ``scipy.special.sph_harm``, removed in scipy 1.17: install
  ``scipy<1.15`` in that environment (1.11.4 made the reference data).

Under another ``amp`` (this project's) it prints a note and exits.
"""
import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import contextlib  # noqa: E402
import importlib.util  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import benchdata  # noqa: E402
from benchdata import report  # noqa: E402

CONVERGENCE = {"energy_rmse": 0.02, "force_rmse": 0.3}
SEED = 42
CELL_SEED = 100  # as in bench/inference.py
warnings.filterwarnings("ignore", message=".*fortran")



def is_original():
    """Amp 1.0.1 has ``amp/VERSION`` and no ``amp.store.modelfile``."""
    spec = importlib.util.find_spec("amp")
    if spec is None:
        return False
    try:
        if importlib.util.find_spec("amp.store.modelfile") is not None:
            return False
    except ModuleNotFoundError:  # no amp.store package: Amp 1.0.1's amp
        pass
    version = os.path.join(os.path.dirname(spec.origin), "VERSION")
    return os.path.exists(version)


class _TimeLimit(Exception):
    """A call took longer than ``--time-limit``."""


@contextlib.contextmanager
def time_limit(seconds):
    """Raise :class:`_TimeLimit` in the main thread after ``seconds``."""
    def expire(signum, frame):
        raise _TimeLimit

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class _FirstEvaluation(Exception):
    """Stops Amp.train after its first loss evaluation."""


def training(slab):
    from ase.io import read

    from amp import Amp
    from amp.descriptor.gaussian import Gaussian
    from amp.model import LossFunction
    from amp.model.neuralnetwork import NeuralNetwork

    images = read(slab, ":")
    calc = Amp(descriptor=Gaussian(),
               model=NeuralNetwork(hiddenlayers=(5, 5), fortran=False,
                                   randomseed=SEED),
               label="calc", cores=1)
    calc.model.lossfunction = LossFunction(convergence=dict(CONVERGENCE))
    lossfunction = calc.model.lossfunction
    evaluate = lossfunction.get_loss

    def first(vector, lossprime):
        evaluate(vector, lossprime)
        raise _FirstEvaluation

    lossfunction.get_loss = first
    start = time.perf_counter()
    try:
        calc.train(images=images)
    except _FirstEvaluation:
        pass
    report("original_setup_before_first_step",
           "%.1f" % (time.perf_counter() - start), "s",
           "Amp 1.0.1, fortran=False")
    lossfunction.get_loss = evaluate
    vector = calc.model.vector
    times = []
    for _ in range(3):
        start = time.perf_counter()
        evaluate(vector, lossprime=True)
        times.append(time.perf_counter() - start)
    report("original_loss_and_gradient_forces",
           "%.1f" % (1e3 * np.median(times)), "ms",
           "Amp 1.0.1, median of %i, min %.1f" % (len(times),
                                                    1e3 * np.min(times)))


def build_model(images, label):
    """Set up a model on ``images`` (random weights), save it, load it."""
    from amp import Amp
    from amp.descriptor.gaussian import Gaussian
    from amp.model.neuralnetwork import NeuralNetwork
    from amp.utilities import Logger, hash_images

    calc = Amp(descriptor=Gaussian(),
               model=NeuralNetwork(hiddenlayers=(5, 5), fortran=False,
                                   randomseed=SEED),
               label=label, cores=1)
    images = hash_images(images)
    calc.descriptor.calculate_fingerprints(images, parallel={"cores": 1},
                                           calculate_derivatives=False)
    calc.model.fit(images, calc.descriptor, Logger(None), {"cores": 1},
                   only_setup=True)
    calc.save(label + ".amp", overwrite=True)
    return Amp.load(label + ".amp", label=label + "-loaded", cores=1)


def inference(slab, limit):
    from ase import units
    from ase.io import read
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet

    calc = build_model(benchdata.copper_images(5, seed=1)[:1], "cu")
    rng = np.random.default_rng(CELL_SEED)
    for name, call in (("original_energy_call_108_atoms",
                        "get_potential_energy"),
                       ("original_force_call_108_atoms", "get_forces")):
        atoms = benchdata.copper_cell(rng)
        atoms.calc = calc
        start = time.perf_counter()
        try:
            with time_limit(limit):
                getattr(atoms, call)()
        except _TimeLimit:
            report(name + "_lower_bound", "%.0f" % limit, "s",
                   "Amp 1.0.1, one call on a fresh cell, stopped unfinished "
                   "after %.0f s (--time-limit)" % limit)
            continue
        report(name, "%.1f" % (time.perf_counter() - start), "s",
               "Amp 1.0.1, one call on a fresh cell")

    snapshots = read(slab, ":")
    atoms = benchdata.make_slab()
    atoms.set_positions(snapshots[-1].positions)
    atoms.calc = build_model(snapshots[:10], "slab")
    steps = 4
    MaxwellBoltzmannDistribution(atoms, temperature_K=300,
                                 rng=np.random.default_rng(7))
    dynamics = VelocityVerlet(atoms, 1 * units.fs)
    dynamics.run(1)
    stamps = []
    dynamics.attach(lambda: stamps.append(time.perf_counter()), 1)
    dynamics.run(steps)
    times = np.diff(stamps)
    report("original_md_step_10_atom_slab",
           "%.1f" % (1e3 * np.median(times)), "ms",
           "Amp 1.0.1, median of %i steps, min %.1f"
           % (len(times), 1e3 * np.min(times)))


def descriptors(limit):
    """Amp's Zernike and Bispectrum with their defaults (nmax 5, jmax 5) on
    one 108-atom Cu cell (the cell of ``bench/descriptors.py``): CPU seconds
    for the fingerprints, and for fingerprints with derivatives (Zernike;
    Amp's Bispectrum has none). Zernike runs its Fortran path when Amp's
    compiled modules are there, its Python path otherwise."""
    import warnings

    from amp.descriptor.bispectrum import Bispectrum
    from amp.descriptor.zernike import Zernike
    from amp.utilities import hash_images

    try:
        from amp import fmodules
    except ImportError:
        fmodules = None
    fortran = fmodules is not None
    path = "fortran=True" if fortran else "fortran=False (no compiled modules)"
    atoms = benchdata.copper_cell(np.random.default_rng(100))
    calls = (("zernike_fingerprints", Zernike, {"fortran": fortran}, False),
             ("zernike_fingerprints_with_derivatives", Zernike,
              {"fortran": fortran}, True),
             ("bispectrum_fingerprints", Bispectrum, {}, False))
    for count, (name, cls, keywords, derivatives) in enumerate(calls):
        name = "original_%s_108_atoms" % name
        descriptor = cls(dblabel="descriptor%d" % count, **keywords)
        images = hash_images([atoms.copy()])
        start = time.process_time()
        try:
            with time_limit(limit), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                descriptor.calculate_fingerprints(
                    images, parallel={"cores": 1},
                    calculate_derivatives=derivatives)
        except _TimeLimit:
            report(name + "_lower_bound",
                   "%.0f" % (time.process_time() - start), "s",
                   "Amp 1.0.1 %s, CPU time until stopped unfinished after "
                   "%.0f s (--time-limit)" % (cls.__name__, limit))
            continue
        report(name, "%.2f" % (time.process_time() - start), "s",
               "Amp 1.0.1 %s%s, CPU time" % (
                   cls.__name__, ", " + path if cls is Zernike else ""))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", nargs="?",
                        choices=("training", "inference", "descriptors"))
    parser.add_argument("--slab", help="the tutorial snapshots (.traj)")
    parser.add_argument("--time-limit", type=float, default=600.0,
                        help="seconds allowed for each 108-atom call "
                        "(default 600); beyond it a lower bound is printed")
    args = parser.parse_args()
    if not is_original():
        print("# bench/original_amp.py: this interpreter's amp is not Amp "
              "1.0.1; run it with the original's python (see its docstring)")
        return
    if args.what is None:
        parser.error("say training, inference or descriptors")
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:
        slab = args.slab
        if slab is None and args.what != "descriptors":
            slab = os.path.join(folder, "slab.traj")
            benchdata.slab_images(slab, 50)
        slab = os.path.abspath(slab) if slab else None
        os.chdir(folder)  # the original writes logs and databases here
        if args.what == "training":
            training(slab)
        elif args.what == "descriptors":
            descriptors(args.time_limit)
        else:
            inference(slab, args.time_limit)


if __name__ == "__main__":
    main()
