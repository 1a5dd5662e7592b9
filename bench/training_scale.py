"""Training at a realistic size, with one and with two cores.

Data: 200 snapshots of a 32-atom fcc Au-Cu-Pt alloy cell (2x2x2 cubic,
a = 3.9 A, elements drawn at random with a fixed seed) from Langevin MD at
600 K with ASE's EMT (one snapshot every 10 steps of 5 fs, after 200 steps
of equilibration), with energies and forces. The set is generated once
and cached in ``bench/cache/`` (git-ignored).

Training: ``Amp(Gaussian(), NeuralNetwork(hiddenlayers=(10, 10)))``, the
default loss (force training), the default optimizer (BFGS), 50 loss
evaluations (``LossFunction(maxiter=50)``; the criteria are not reached,
so ``train`` ends with ``TrainingConvergenceError``), each run in a fresh
subprocess with BLAS threads set to 1. Runs alternate ``cores=1`` and
``cores=2`` (``--repeats`` pairs, in the order 1, 2, 2, 1, ...); the best
of the repeats is printed.

Prints ``name value unit`` lines, per ``cores``:

* ``scale_parameters`` count: parameters of the network;
* ``scale_cores<c>_setup`` s: from the call of ``Amp.train`` until the
  first loss evaluation has returned (hashing, memory estimate,
  fingerprints with derivatives, model set-up, training batches and, with
  workers, shipping them);
* ``scale_cores<c>_fingerprints`` s: fingerprints and derivatives alone;
* ``scale_cores<c>_step_mean`` ms: the optimisation after the first
  evaluation divided by the number of evaluations after it;
* ``scale_cores<c>_loss_mean`` ms: mean loss-and-gradient evaluation (the
  same span without the optimizer's own work);
* ``scale_cores<c>_optimizer_share`` %: share of the step time spent in
  the optimizer itself (line search and inverse-Hessian update), target
  <= 10 %;
* ``scale_cores<c>_compression`` s and ``..._compression_share`` % of the
  whole ``train`` call (target <= 10 %): what archiving the databases adds
  at the end of training (it starts in a thread after the first loss
  evaluation), and ``..._archive_work`` s, the archiving itself;
* ``scale_cores<c>_train_total`` s: the whole ``Amp.train`` call;
* ``scale_cores<c>_peak_memory_master`` MB (VmHWM of the training
  process) and ``..._peak_memory_worker`` MB (largest worker's peak);
* ``scale_cores<c>_memory_estimate`` MB: the estimate logged before the
  fingerprint derivatives are computed;
* ``scale_cores2_setup_check`` ms: one loss evaluation serially and with
  the workers as measured before the first step, when nothing else runs
  (during the steps the archiving thread shares the two cores);

and ``machine_2process_scaling`` x: two equal numpy work units (sparse
products, dense products and element-wise maths like a loss evaluation's)
run by two processes at once against one after the other in one process,
measured before, between and after the pairs of runs (the best is the
reference: it is what two cores gave at the time), and
``machine_2process_scaling_memory_bound`` the same with a 65 MB sparse
matrix per process (half the benchmark's force data: two processes then
share the memory bandwidth, as master and worker do in training); ``scale_speedup_2_cores_loss``,
``..._fingerprints`` and ``..._train`` x, each also as a share of the
machine's scaling.

``--compare-scipy`` adds a ``cores=1`` run with scipy's own BFGS (dense
O(n^3) inverse-Hessian update) for reference.

Run: ``python bench/training_scale.py [--repeats 2] [--compare-scipy]``.
"""
import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.path.join(HERE, "cache")
N_IMAGES, TEMPERATURE, SEED, STEPS = 200, 600.0, 7, 50


def report(name, value, unit, note=""):
    print("%s %s %s%s" % (name, value, unit, ("  # " + note) if note else ""),
          flush=True)


# ------------------------------------------------------------------ data

def alloy_images(count=N_IMAGES):
    """The cached MD snapshots (made on first use)."""
    from ase.io import read, write

    path = os.path.join(CACHE, "AuCuPt32_%dK_%d.traj"
                        % (TEMPERATURE, count))
    if os.path.exists(path):
        return read(path, index=":")
    from ase import units
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    import warnings

    # ASE's deprecation notes about the MD set-up, not about us.
    warnings.filterwarnings("ignore", message=".*fixcm")
    warnings.filterwarnings("ignore", message="Use thermalize_momenta")
    rng = np.random.default_rng(SEED)
    atoms = bulk("Cu", "fcc", a=3.9, cubic=True) * (2, 2, 2)
    atoms.symbols = rng.choice(["Au", "Cu", "Pt"], len(atoms))
    atoms.calc = EMT()
    MaxwellBoltzmannDistribution(atoms, temperature_K=TEMPERATURE, rng=rng)
    dynamics = Langevin(atoms, 5 * units.fs, temperature_K=TEMPERATURE,
                        friction=0.02, rng=rng)
    dynamics.run(200)
    images = []
    for _ in range(count):
        dynamics.run(10)
        snapshot = atoms.copy()
        snapshot.calc = SinglePointCalculator(
            snapshot, energy=atoms.get_potential_energy(),
            forces=atoms.get_forces())
        images.append(snapshot)
    os.makedirs(CACHE, exist_ok=True)
    partial = path + ".part"
    write(partial, images, format="traj")
    os.replace(partial, path)
    return images


# ------------------------------------------------------ machine scaling

def _work_unit(kind="cache", seed=0):
    """Numpy work like a loss evaluation's: a sparse product and its
    transpose, dense products and element-wise maths. ``cache``: a 14 MB
    sparse matrix (mostly cache-resident); ``memory``: 65 MB, like half
    of the benchmark's force data, so two processes share the memory
    bandwidth as master and worker do in training."""
    import scipy.sparse

    rows, per_row, repeats = ((20000, 60, 200) if kind == "cache"
                              else (150000, 36, 40))
    rng = np.random.default_rng(seed)
    matrix = scipy.sparse.csr_matrix(
        (rng.normal(size=rows * per_row),
         rng.integers(0, 6000, size=rows * per_row, dtype=np.int32),
         np.arange(0, rows * per_row + 1, per_row, dtype=np.int32)),
        shape=(rows, 6000))
    x = rng.normal(size=6000)
    a = rng.normal(size=(3000, 60))
    w = rng.normal(size=(60, 10))
    start = time.perf_counter()
    for _ in range(repeats):
        y = matrix @ x
        matrix.T @ y
        h = np.tanh(a @ w)
        (1 - h * h).sum()
    return time.perf_counter() - start


def machine_scaling(rounds=3, kind="cache"):
    """Two equal work units: two processes at once vs one after the other
    (best of ``rounds``); the set-up of each unit is not timed."""
    command = [sys.executable, os.path.abspath(__file__), "--work-unit",
               kind]
    serial, parallel = [], []
    for _ in range(rounds):
        output = subprocess.run(command + ["2"], check=True, text=True,
                                stdout=subprocess.PIPE).stdout
        serial.append(sum(map(float, output.split())))
        both = [subprocess.Popen(command + ["1"], stdout=subprocess.PIPE,
                                 text=True) for _ in range(2)]
        parallel.append(max(float(process.communicate()[0])
                            for process in both))
    return min(serial) / min(parallel)


# --------------------------------------------------------------- training

def _peak_mb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def train_child(cores, optimizer):
    """One training run; prints a JSON line of measurements."""
    import resource

    from amp import Amp
    from amp.descriptor import budget
    from amp.descriptor.gaussian import Gaussian
    from amp.model import LossFunction, TrainingConvergenceError
    from amp.model.neuralnetwork import NeuralNetwork
    from amp.regression import Regressor

    images = alloy_images()
    times = {"evaluations": []}

    def timed(owner, name, key):
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                end = time.perf_counter()
                if key == "evaluations":
                    times[key].append((start, end))
                else:
                    times[key] = (start, end)

        setattr(owner, name, wrapper)

    from amp.descriptor.fingerprint_store import (BackgroundArchive,
                                                  DatabaseStore)

    timed(Gaussian, "calculate_fingerprints", "fingerprints")
    timed(DatabaseStore, "archive", "archive_work")
    timed(BackgroundArchive, "finish", "compression")
    timed(NeuralNetwork, "get_loss", "evaluations")
    timed(Regressor, "regress", "regress")
    estimate = {}
    check = budget.check_memory

    def recorded(*args, **kwargs):
        estimate["bytes"] = check(*args, **kwargs)
        return estimate["bytes"]

    budget.check_memory = recorded
    from amp.model._shares import WorkerBatches

    checks = []
    start_shares = WorkerBatches.__init__

    def checked(self, *args, **kwargs):
        try:
            return start_shares(self, *args, **kwargs)
        finally:
            checks.append(dict(self.timings))

    WorkerBatches.__init__ = checked
    if optimizer == "scipy":
        from scipy.optimize import minimize

        def scipy_bfgs(function, x0, jac=None, **kwargs):
            return minimize(function, x0, jac=jac, **kwargs)

        regressor = Regressor(scipy_bfgs, optimizer_kwargs={
            "method": "BFGS", "options": {"gtol": 1e-15}})
    else:
        regressor = Regressor(optimizer)
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:
        model = NeuralNetwork(hiddenlayers=(10, 10), randomseed=SEED,
                              regressor=regressor)
        model.lossfunction = LossFunction(
            convergence={"energy_rmse": 1e-9, "force_rmse": 1e-9},
            maxiter=STEPS)
        calc = Amp(descriptor=Gaussian(), model=model,
                   label=os.path.join(folder, "scale"), cores=cores)
        start = time.perf_counter()
        try:
            calc.train(images)
        except TrainingConvergenceError:
            pass
        total = time.perf_counter() - start
    evaluations = times["evaluations"]
    first_end = evaluations[0][1]
    regress_end = times["regress"][1]
    later = evaluations[1:]
    span = regress_end - first_end
    loss = sum(end - begin for begin, end in later)
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = {
        "parameters": len(model.vector),
        "setup": first_end - start,
        "fingerprints": (times["fingerprints"][1]
                         - times["fingerprints"][0]),
        "step_mean": span / max(len(later), 1),
        "loss_mean": loss / max(len(later), 1),
        "optimizer_share": (span - loss) / span if span > 0 else 0.0,
        "compression": times["compression"][1] - times["compression"][0],
        "archive_work": (times["archive_work"][1]
                         - times["archive_work"][0]),
        "train_total": total,
        "peak_master": _peak_mb(),
        "peak_worker": children / 1024.0,
        "estimate": estimate.get("bytes", 0) / 1e6,
        "evaluations": len(evaluations),
        "check_serial": checks[0].get("serial", 0.0) if checks else 0.0,
        "check_workers": checks[0].get("workers", 0.0) if checks else 0.0,
    }
    print("RESULT " + json.dumps(result), flush=True)


def run_child(cores, optimizer="BFGS"):
    command = [sys.executable, os.path.abspath(__file__), "--child",
               str(cores), optimizer]
    output = subprocess.run(command, check=True, stdout=subprocess.PIPE,
                            text=True).stdout
    for line in output.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError("no result from %s" % " ".join(command))


def print_run(name, runs):
    best = {key: min(run[key] for run in runs) for key in runs[0]}
    report("%s_setup" % name, "%.2f" % best["setup"], "s")
    report("%s_fingerprints" % name, "%.2f" % best["fingerprints"], "s")
    report("%s_step_mean" % name, "%.1f" % (1e3 * best["step_mean"]), "ms")
    report("%s_loss_mean" % name, "%.1f" % (1e3 * best["loss_mean"]), "ms")
    report("%s_optimizer_share" % name,
           "%.1f" % (100 * best["optimizer_share"]), "%", "target <= 10")
    report("%s_compression" % name, "%.2f" % best["compression"], "s",
           "what archiving adds at the end of train()")
    report("%s_archive_work" % name, "%.2f" % best["archive_work"], "s",
           "archiving itself, mostly overlapped with the optimisation")
    report("%s_compression_share" % name, "%.1f" % (
        100 * min(r["compression"] / r["train_total"] for r in runs)), "%",
        "of the train() call; target <= 10")
    report("%s_train_total" % name, "%.2f" % best["train_total"], "s")
    report("%s_peak_memory_master" % name, "%.0f" % best["peak_master"],
           "MB")
    report("%s_peak_memory_worker" % name, "%.0f" % best["peak_worker"],
           "MB", "largest child process (0: no workers)")
    report("%s_memory_estimate" % name, "%.1f" % best["estimate"], "MB",
           "fingerprint-derivative force data, logged before computing")
    if best["check_workers"]:
        report("%s_setup_check" % name, "%.1f %.1f" % (
            1e3 * best["check_serial"], 1e3 * best["check_workers"]),
            "ms", "loss evaluation serially and with the workers, measured "
            "before the first step (no archiving running yet): %.2fx"
            % (best["check_serial"] / best["check_workers"]))
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=2,
                        help="pairs of cores=1 / cores=2 runs")
    parser.add_argument("--compare-scipy", action="store_true",
                        help="also a cores=1 run with scipy's BFGS")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--work-unit", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.work_unit:
        kind, count = args.work_unit[0], int(args.work_unit[1])
        print(" ".join("%.6f" % _work_unit(kind) for _ in range(count)))
        return
    if args.child:
        train_child(int(args.child[0]), args.child[1])
        return
    alloy_images()  # made and cached before anything is timed
    runs, scalings, bound = {1: [], 2: []}, [], []
    for repeat in range(args.repeats):
        # The machine's scaling next to each pair of runs: other work on
        # the host changes it from minute to minute.
        scalings.append(machine_scaling(rounds=1))
        bound.append(machine_scaling(rounds=1, kind="memory"))
        for cores in ((1, 2) if repeat % 2 == 0 else (2, 1)):
            runs[cores].append(run_child(cores))
    scalings.append(machine_scaling(rounds=1))
    bound.append(machine_scaling(rounds=1, kind="memory"))
    scaling = max(scalings)
    report("machine_2process_scaling", "%.2f" % scaling, "x",
           "best of %s: two equal numpy work units, 2 processes vs 1"
           % " ".join("%.2f" % value for value in scalings))
    report("machine_2process_scaling_memory_bound", "%.2f" % max(bound),
           "x", "best of %s: the same with 65 MB sparse matrices"
           % " ".join("%.2f" % value for value in bound))
    report("scale_parameters", runs[1][0]["parameters"], "count")
    best = {cores: print_run("scale_cores%d" % cores, runs[cores])
            for cores in (1, 2)}
    for key, name in (("loss_mean", "loss"), ("fingerprints", "fingerprints"),
                      ("train_total", "train")):
        speedup = best[1][key] / best[2][key]
        report("scale_speedup_2_cores_%s" % name, "%.2f" % speedup, "x",
               "%.0f %% of the machine's 2-process scaling, %.0f %% of the "
               "memory-bound one" % (100 * speedup / scaling,
                                     100 * speedup / max(bound)))
    if args.compare_scipy:
        print_run("scale_scipy_bfgs_cores1", [run_child(1, "scipy")])


if __name__ == "__main__":
    main()
