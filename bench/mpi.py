"""Training across MPI ranks (``cores='mpi'``): serial against
``mpiexec -n 2``, with the machine's own 2-process scaling in the same run.

Data: the 200-image Au-Cu-Pt set of ``bench/training_scale.py`` (32-atom
cells, ``NeuralNetwork(hiddenlayers=(10, 10))``, 1,479 parameters) and 40
displaced 108-atom fcc Cu cells (``bench/benchdata.py``,
``hiddenlayers=(5, 5)``); default ``Gaussian()``, force training, BLAS
threads set to 1. Each measurement runs in fresh processes: ``python
bench/mpi.py --child ...`` for serial, ``mpiexec -n 2 python bench/mpi.py
--child ...`` for MPI, the two alternated (serial, MPI, MPI, serial, ...),
the best of the repeats kept. Prints ``name value unit`` lines:

* ``machine_2process_scaling`` x: two equal numpy work units in two
  processes at once against one after the other
  (``bench/training_scale.py``), measured before, between and after the
  comparisons, and ``..._memory_bound`` with 65 MB sparse matrices
  (processes then share the memory bandwidth); each comparison is set
  against the better of the measurements just before and after it
  (``mpi_<set>_machine_2process_scaling``): other programs on a shared
  machine change it from minute to minute;
* ``mpi_<set>_fingerprints_serial`` / ``..._2_ranks`` s and
  ``..._fingerprints_speedup`` x: fingerprints with derivatives of every
  image (into memory), each rank computing its share, including the
  values sent to the other rank;
* ``mpi_<set>_loss_serial`` / ``..._loss_2_ranks`` ms: median of one
  loss-and-gradient evaluation (``LossFunction.calculate_loss``; for MPI on
  rank 0, the ranks evaluating in step), ``..._loss_speedup`` x and its
  share of the machine's scaling (target >= 90 %);
* ``mpi_<set>_overhead_per_evaluation`` ms: an evaluation of the same
  model with every rank's share empty, i.e. what the ranks' exchange of
  partial sums and its packing cost (target <= 0.1 ms);
* ``mpi_<set>_batch_peak_serial`` / ``..._batch_peak_per_rank`` MB: peak
  memory (``tracemalloc``, which numpy reports to) while the training
  batch is built and held, serially and on the larger rank (target: per
  rank <= serial / 2 + 50 MB), beside the processes' peak resident memory
  (``..._rss_serial``, ``..._rss_per_rank``);
* ``mpi_train_alloy200_serial`` / ``..._2_ranks`` s and
  ``mpi_train_alloy200_speedup`` x: the whole ``Amp.train`` of the 200
  images for 50 loss evaluations (as ``bench/training_scale.py``), from
  the call to its end, and its share of the machine's scaling (target
  >= 80 %); ``mpi_train_loose_alloy200_*`` the same with
  ``compress_databases=False``. (Serially the databases are compressed
  in a thread during the fit, on the core the fit leaves idle; with MPI
  every core computes, so rank 0 compresses them after the fit: 0.7 s
  for the 209 MB of derivatives here.)

Run: ``python bench/mpi.py [--repeats 2] [--evaluations 200]`` (the MPI
runs use the ``mpiexec`` beside this interpreter: ``pip install
'amp-mlip[mpi]'``).
"""
import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

SETS = {"alloy200": (10, 10), "cu40x108": (5, 5)}


def report(name, value, unit, note=""):
    print("%s %s %s%s" % (name, value, unit, ("  # " + note) if note else ""),
          flush=True)


def images_of(name):
    if name == "alloy200":
        from training_scale import alloy_images

        return alloy_images()
    from benchdata import copper_images

    return copper_images(40)


def _rank_context():
    """The MPI context under mpiexec (None serially)."""
    from amp.parallel.mpi import parallel_context

    return parallel_context("mpi")


def _peak_rss_mb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def child_loss(name, evaluations):
    """Fingerprints, batch and loss timings of one set, in this process
    (and its ranks); rank 0 prints a RESULT line."""
    import tracemalloc

    from amp.descriptor.fingerprint_store import MemoryStore
    from amp.descriptor.gaussian import Gaussian
    from amp.model import LossFunction
    from amp.model._ranks import RankBatches
    from amp.model.neuralnetwork import NeuralNetwork
    from amp.utilities import Logger, hash_images

    context = _rank_context()
    images = hash_images(images_of(name))
    descriptor = Gaussian().resolve(images)
    store = MemoryStore(parameters=descriptor.fingerprint_parameters())
    if context is not None:
        context.barrier()
    start = time.perf_counter()
    descriptor.calculate_fingerprints(images, parallel=context,
                                      calculate_derivatives=True,
                                      store=store)
    if context is not None:
        context.barrier()
    fingerprints = time.perf_counter() - start
    model = NeuralNetwork(hiddenlayers=SETS[name], randomseed=7)
    model.lossfunction = LossFunction(raise_ConvergenceOccurred=False,
                                      log_losses=False)
    model.setup(images, store, Logger(None))
    lossfunction = model.lossfunction
    tracemalloc.start()
    with lossfunction.evaluator(context):
        if context is None:
            lossfunction.batches()
        vector = np.array(model.vector)
        lossfunction.calculate_loss(vector, True)  # warm-up
        batch_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        times = []
        for _ in range(evaluations):
            if context is not None:
                context.barrier()
            start = time.perf_counter()
            lossfunction.calculate_loss(vector, True)
            times.append(time.perf_counter() - start)
    overhead = []
    if context is not None:
        empty = RankBatches(context, None, lossfunction._share_setup(),
                            len(vector))
        for _ in range(evaluations):
            context.barrier()
            start = time.perf_counter()
            empty.partials(vector, True)
            overhead.append(time.perf_counter() - start)
    peaks = [batch_peak, _peak_rss_mb()]
    if context is not None:
        rows = context.allgather_rows(peaks)
        peaks = rows[int(np.argmax(rows[:, 0]))]
    if context is None or context.is_root:
        print("RESULT " + json.dumps({
            "fingerprints": fingerprints, "loss": float(np.median(times)),
            "overhead": float(np.median(overhead)) if overhead else 0.0,
            "batch_peak": float(peaks[0]) / 1e6, "rss": float(peaks[1])}),
            flush=True)


def child_train(compress=True):
    """The whole Amp.train of the 200 images, 50 evaluations."""
    from amp import Amp
    from amp.descriptor.gaussian import Gaussian
    from amp.model import LossFunction, TrainingConvergenceError
    from amp.model.neuralnetwork import NeuralNetwork

    context = _rank_context()
    images = images_of("alloy200")
    folder = tempfile.mkdtemp(dir="/tmp") if context is None or \
        context.is_root else None
    if context is not None:
        folder = context.broadcast(folder)
    model = NeuralNetwork(hiddenlayers=(10, 10), randomseed=7)
    model.lossfunction = LossFunction(
        convergence={"energy_rmse": 1e-9, "force_rmse": 1e-9}, maxiter=50)
    calc = Amp(descriptor=Gaussian(), model=model,
               label=os.path.join(folder, "train"),
               cores="mpi" if context is not None else 1)
    if context is not None:
        context.barrier()
    start = time.perf_counter()
    try:
        calc.train(images, compress_databases=compress)
    except TrainingConvergenceError:
        pass
    total = time.perf_counter() - start
    if context is None or context.is_root:
        shutil.rmtree(folder, ignore_errors=True)
        print("RESULT " + json.dumps({"train": total}), flush=True)


def mpiexec():
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return here if os.path.exists(here) else shutil.which("mpiexec")


def run(ranks, *arguments):
    command = [sys.executable, os.path.abspath(__file__), "--child"] + \
        [str(a) for a in arguments]
    if ranks > 1:
        command = [mpiexec(), "-n", str(ranks)] + command
    output = subprocess.run(command, check=True, stdout=subprocess.PIPE,
                            text=True).stdout
    for line in output.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError("no result from %s" % " ".join(command))


def alternated(repeats, *arguments):
    """``{1: [results], 2: [results]}``: serial and 2 ranks alternated."""
    runs = {1: [], 2: []}
    for repeat in range(repeats):
        for ranks in ((1, 2) if repeat % 2 == 0 else (2, 1)):
            runs[ranks].append(run(ranks, *arguments))
    return runs


def best(runs, key):
    return min(run[key] for run in runs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--evaluations", type=int, default=200)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.child[0] == "loss":
            child_loss(args.child[1], int(args.child[2]))
        else:
            child_train(args.child[0] == "train")
        return
    from training_scale import machine_scaling

    images_of("alloy200")  # made and cached before anything is timed
    scalings, bound = [], []

    def measure_machine():
        scalings.append(machine_scaling(rounds=1))
        bound.append(machine_scaling(rounds=1, kind="memory"))

    # The machine's scaling before and after each comparison: the load of
    # the other programs on a shared machine changes from minute to
    # minute, so each comparison is set against its neighbours.
    measure_machine()
    loss, adjacent = {}, {}
    for name in SETS:
        loss[name] = alternated(args.repeats, "loss", name, args.evaluations)
        measure_machine()
        adjacent[name] = max(scalings[-2:])
    train = alternated(args.repeats, "train")
    measure_machine()
    adjacent["train"] = max(scalings[-2:])
    loose = alternated(args.repeats, "train-loose")
    measure_machine()
    adjacent["train-loose"] = max(scalings[-2:])
    report("machine_2process_scaling", "%.2f" % max(scalings), "x",
           "best of %s (before, between and after the comparisons)"
           % " ".join("%.2f" % s for s in scalings))
    report("machine_2process_scaling_memory_bound", "%.2f" % max(bound), "x",
           "best of %s" % " ".join("%.2f" % s for s in bound))
    for name, runs in loss.items():
        prefix = "mpi_%s_" % name
        scaling = adjacent[name]
        report(prefix + "machine_2process_scaling", "%.2f" % scaling, "x",
               "the better of the measurements before and after")
        fp1, fp2 = best(runs[1], "fingerprints"), best(runs[2],
                                                        "fingerprints")
        report(prefix + "fingerprints_serial", "%.2f" % fp1, "s")
        report(prefix + "fingerprints_2_ranks", "%.2f" % fp2, "s")
        report(prefix + "fingerprints_speedup", "%.2f" % (fp1 / fp2), "x",
               "%.0f %% of the machine's scaling" % (100 * fp1 / fp2
                                                     / scaling))
        l1, l2 = best(runs[1], "loss"), best(runs[2], "loss")
        report(prefix + "loss_serial", "%.2f" % (1e3 * l1), "ms")
        report(prefix + "loss_2_ranks", "%.2f" % (1e3 * l2), "ms")
        report(prefix + "loss_speedup", "%.2f" % (l1 / l2), "x",
               "%.0f %% of the machine's scaling (target >= 90 %%)"
               % (100 * l1 / l2 / scaling))
        report(prefix + "overhead_per_evaluation", "%.3f" % (
            1e3 * best(runs[2], "overhead")), "ms",
            "every rank's share empty (target <= 0.1 ms)")
        p1, p2 = best(runs[1], "batch_peak"), best(runs[2], "batch_peak")
        report(prefix + "batch_peak_serial", "%.1f" % p1, "MB")
        report(prefix + "batch_peak_per_rank", "%.1f" % p2, "MB",
               "target <= %.1f (serial / 2 + 50)" % (p1 / 2 + 50))
        report(prefix + "rss_serial", "%.0f" % best(runs[1], "rss"), "MB")
        report(prefix + "rss_per_rank", "%.0f" % best(runs[2], "rss"), "MB",
               "the larger rank's peak resident memory")
    for name, runs in (("train", train), ("train_loose", loose)):
        t1, t2 = best(runs[1], "train"), best(runs[2], "train")
        scaling = adjacent[name.replace("_", "-")]
        prefix = "mpi_%s_alloy200_" % name
        report(prefix + "machine_2process_scaling", "%.2f" % scaling, "x",
               "the better of the measurements before and after")
        report(prefix + "serial", "%.2f" % t1, "s")
        report(prefix + "2_ranks", "%.2f" % t2, "s")
        report(prefix + "speedup", "%.2f" % (t1 / t2), "x",
               "%.0f %% of the machine's scaling (target >= 80 %%)"
               % (100 * t1 / t2 / scaling))


if __name__ == "__main__":
    main()
