"""Training sets larger than memory: streamed batches and mini-batches.

Data: displaced 108-atom fcc Cu cells with EMT energies and forces
(``benchdata.copper_images``, seed 1, cached in ``bench/cache/``), the
tutorial's Pt slab with Cu adsorbates (``benchdata.slab_images``) and the
200 Au-Cu-Pt snapshots of ``bench/training_scale.py``. Default
``Gaussian()``, ``NeuralNetwork(hiddenlayers=(10, 10))``, forces, BLAS
threads 1. Every section prints ``name value unit`` lines.

Sections (``--sections``, default all but ``big``):

``ratio``
    On ``--ratio-images`` Cu108 images (250: 580 MB of force data, which
    fits in memory), loss-and-gradient time per image in memory (the
    library's in-memory path: one batch) and streamed from 64 MB chunks,
    with and without the reader thread, with the chunk files in the page
    cache and with them evicted from it before every evaluation
    (``posix_fadvise(POSIX_FADV_DONTNEED)`` on each chunk file, checked
    with ``fincore`` when it is installed: ``ratio_uncached_resident``
    is the share of the chunk bytes still cached just before a cold
    evaluation). Ways interleaved, ``--repeats`` rounds, minimum of each.
    Also the in-memory path split into batches of the chunks' size, for
    reference.
``growth``
    ``Amp.train`` of 250, 500, 1,000 and 2,000 Cu108 images
    (``--growth-sizes``) with ``memory_limit='200 MB'`` (all streamed, in
    64 MB chunks as under ``'2 GB'``), ``--steps`` loss evaluations
    (``LossFunction(maxiter=6)`` by default), one core, each in a fresh
    process:
    fingerprint time, set-up time (until the first evaluation has
    returned: fingerprints, model set-up, chunk files), time per
    loss-and-gradient evaluation (an epoch of full-batch training) and per
    image, whole ``train()``, peak RSS of the process during ``train()``
    (``VmHWM`` reset before the call), the estimate and the chunk bytes.
    The epoch time is the mean and the fastest of the evaluations after
    the first (which builds the chunk files); ``train()`` archives its
    databases in a thread meanwhile, as it always does.
``big``
    The target run: 2,000 Cu108 images with ``memory_limit='2 GB'``,
    ``--steps`` evaluations, as a ``growth`` run (``big_*`` lines).
``adam``
    Adam against BFGS on the tutorial (50 slab snapshots) and on the
    200-image Au-Cu-Pt set: BFGS's force RMSE after 50 steps, its time,
    and the time Adam (several settings) takes to reach that force RMSE,
    with the RMSEs each reaches at fractions of BFGS's time.
``float32``
    Relative difference of loss and gradient with the force data in
    float32 instead of float64, at the initial parameters and after 50
    BFGS steps (the 200-image Au-Cu-Pt set) or 100 (40 Cu108 images).

Run: ``python bench/large_training.py [--sections ratio,growth,adam]``;
the 2,000-image target: ``python bench/large_training.py --sections big``.
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
CACHE = os.path.join(HERE, "cache")
sys.path.insert(0, HERE)
from benchdata import copper_images, report, slab_images  # noqa: E402

SEED = 1


def cu_images(count):
    """``count`` Cu108 images, cached as a trajectory."""
    from ase.io import read, write

    path = os.path.join(CACHE, "Cu108_seed%d_%d.traj" % (SEED, count))
    if not os.path.exists(path):
        os.makedirs(CACHE, exist_ok=True)
        partial = path + ".part"
        write(partial, copper_images(count, seed=SEED), format="traj")
        os.replace(partial, path)
    return read(path, ":")


def _peak_mb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _reset_peak():
    """Reset VmHWM to the current RSS (Linux ``clear_refs`` 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


# ------------------------------------------------------------- growth

def train_child(count, limit, steps):
    """One ``Amp.train``; prints a RESULT JSON line."""
    from amp import Amp
    from amp.descriptor import budget
    from amp.descriptor.gaussian import Gaussian
    from amp.model import LossFunction, TrainingConvergenceError
    from amp.model.neuralnetwork import NeuralNetwork

    images = cu_images(count)
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

    timed(Gaussian, "calculate_fingerprints", "fingerprints")
    timed(NeuralNetwork, "get_loss", "evaluations")
    plans = []
    plan_training = budget.plan_training

    def recorded(*args, **kwargs):
        plans.append(plan_training(*args, **kwargs))
        return plans[-1]
    budget.plan_training = recorded
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP",
                                                        "/tmp")) as folder:
        model = NeuralNetwork(hiddenlayers=(10, 10), randomseed=SEED)
        model.lossfunction = LossFunction(
            convergence={"energy_rmse": 1e-9, "force_rmse": 1e-9},
            maxiter=steps)
        calc = Amp(descriptor=Gaussian(), model=model,
                   label=os.path.join(folder, "large"), cores=1)
        reset = _reset_peak()
        start = time.perf_counter()
        try:
            calc.train(images, memory_limit=limit)
        except TrainingConvergenceError:
            pass
        total = time.perf_counter() - start
        peak = _peak_mb()
        with open(os.path.join(folder, "large-log.txt")) as handle:
            streamed_lines = [line.strip() for line in handle
                              if "Streaming" in line]
    evaluations = times["evaluations"]
    later = evaluations[1:]
    plan = plans[0]
    result = {
        "images": count, "streamed": bool(plan.streamed),
        "fingerprints": times["fingerprints"][1] - times["fingerprints"][0],
        "setup": evaluations[0][1] - start,
        "first_evaluation": evaluations[0][1] - evaluations[0][0],
        "evaluation": (sum(e - b for b, e in later) / len(later)
                       if later else float("nan")),
        "evaluation_min": min((e - b for b, e in later),
                              default=float("nan")),
        "train_total": total, "peak_rss": peak, "peak_reset": reset,
        "estimate": plan.estimate / 1e6,
        "disk": (plan.disk_bytes or 0) / 1e6,
        "chunk": (plan.chunk_bytes or 0) / 1e6,
        "log": streamed_lines,
    }
    print("RESULT " + json.dumps(result), flush=True)


def run_child(*arguments):
    command = [sys.executable, os.path.abspath(__file__), "--child"]
    command += [str(a) for a in arguments]
    output = subprocess.run(command, check=True, stdout=subprocess.PIPE,
                            text=True).stdout
    for line in output.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError("no result from %s" % " ".join(command))


def print_growth(name, r):
    report("%s_mode" % name, "streamed" if r["streamed"] else "memory", "")
    report("%s_fingerprints" % name, "%.1f" % r["fingerprints"], "s")
    report("%s_setup" % name, "%.1f" % r["setup"], "s",
           "until the first evaluation returned")
    report("%s_first_evaluation" % name, "%.2f" % r["first_evaluation"],
           "s", "builds the chunk files")
    report("%s_epoch" % name, "%.3f" % r["evaluation"], "s",
           "one loss-and-gradient evaluation over every image")
    report("%s_epoch_per_image" % name,
           "%.3f" % (1e3 * r["evaluation"] / r["images"]), "ms")
    report("%s_epoch_min" % name, "%.3f" % r["evaluation_min"], "s",
           "the fastest evaluation (the archiving thread of train() runs "
           "meanwhile and shares the cores)")
    report("%s_train_total" % name, "%.1f" % r["train_total"], "s")
    report("%s_peak_rss" % name, "%.0f" % r["peak_rss"], "MB",
           "whole train(), fingerprinting included" +
           ("" if r["peak_reset"] else "; VmHWM not reset: whole process"))
    report("%s_estimate" % name, "%.0f" % r["estimate"], "MB",
           "force data in memory if not streamed")
    report("%s_chunk_files" % name, "%.0f" % r["disk"], "MB")
    report("%s_chunk_size" % name, "%.0f" % r["chunk"], "MB")


def growth(sizes, limit, steps, prefix="growth"):
    rows = []
    for count in sizes:
        r = run_child(count, limit, steps)
        print_growth("%s_%d" % (prefix, count), r)
        rows.append(r)
    if len(rows) > 1:
        print("# images | mode | fingerprints s | set-up s | epoch s (min) "
              "| ms/image (min) | train() s | peak RSS MB | chunk files MB")
        for r in rows:
            print("# %d | %s | %.1f | %.1f | %.3f | %.3f | %.1f | %.0f | %.0f"
                  % (r["images"], "streamed" if r["streamed"] else "memory",
                     r["fingerprints"], r["setup"], r["evaluation_min"],
                     1e3 * r["evaluation_min"] / r["images"],
                     r["train_total"], r["peak_rss"], r["disk"]))
    return rows


# -------------------------------------------------------------- ratio

def _fingerprinted(images, folder, cores=2):
    from amp.descriptor.gaussian import Gaussian
    from amp.utilities import hash_images

    images = hash_images(images)
    descriptor = Gaussian()
    store = descriptor.open_store(os.path.join(folder, "db"), images=images)
    descriptor.calculate_fingerprints(images, parallel={"cores": cores},
                                      calculate_derivatives=True,
                                      store=store)
    return images, descriptor, store


def _model(images, store, streaming=None, hiddenlayers=(10, 10)):
    from amp.model import LossFunction
    from amp.model.neuralnetwork import NeuralNetwork

    model = NeuralNetwork(hiddenlayers=hiddenlayers, randomseed=SEED)
    model.lossfunction = LossFunction(raise_ConvergenceOccurred=False,
                                      log_losses=False)
    model.setup(images, store)
    model.lossfunction.streaming = streaming
    return model


def _evict(paths):
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _resident(paths):
    """Share of the bytes of ``paths`` in the page cache (fincore), or
    None."""
    if shutil.which("fincore") is None:
        return None
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output",
                          "RES,SIZE"] + list(paths),
                         stdout=subprocess.PIPE, text=True).stdout
    resident = size = 0
    for line in out.split("\n"):
        if line.strip():
            res, total = line.split()[:2]
            resident, size = resident + int(res), size + int(total)
    return resident / size if size else None


def ratio(count, repeats):
    from amp.model.streaming import Streaming
    from amp.model.batch import TrainingBatch

    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP",
                                                        "/tmp")) as folder:
        images, _, store = _fingerprinted(cu_images(count), folder)
        memory = _model(images, store)
        vector = memory.vector
        ways = {}
        streams = {}
        for prefetch in (True, False):
            model = _model(images, store, Streaming(
                os.path.join(folder, "chunks"), prefetch=prefetch))
            streams[prefetch] = model
        lf = streams[True].lossfunction
        batches = lf.batches()
        paths = [p for i in range(len(batches))
                 for p in batches.chunkset.paths(i)]
        # The other streamed model walks the same files.
        streams[False].lossfunction._batches = type(batches)(
            batches.chunkset, keep=True, prefetch=False)
        split = _model(images, store)
        counts, keys = batches.counts, list(images)
        starts = np.concatenate([[0], np.cumsum(counts)])
        split.lossfunction._batches = [  # in memory, the chunks' images
            TrainingBatch({k: images[k] for k in keys[a:b]}, store, True)
            for a, b in zip(starts[:-1], starts[1:])]
        store.clear_memory()
        resident = []

        def cold(model):
            def run():
                _evict(paths)
                resident.append(_resident(paths[:40]))
                return model.lossfunction.calculate_loss(vector)
            return run

        ways = {
            "memory": lambda: memory.lossfunction.calculate_loss(vector),
            "memory_split": lambda: split.lossfunction.calculate_loss(
                vector),
            "cached_prefetch": lambda: streams[True].lossfunction
            .calculate_loss(vector),
            "cached_plain": lambda: streams[False].lossfunction
            .calculate_loss(vector),
            "uncached_prefetch": cold(streams[True]),
            "uncached_plain": cold(streams[False]),
        }
        reference = ways["memory"]()
        for name, way in ways.items():
            result = way()  # warm-up, and the same numbers
            relative = abs(result["loss"] - reference["loss"]) / \
                abs(reference["loss"])
            assert relative < 1e-12, (name, relative)
        best = dict.fromkeys(ways, np.inf)
        for _ in range(repeats):
            for name, way in ways.items():
                start = time.perf_counter()
                way()
                if name.startswith("uncached"):
                    # The eviction and its check are not the evaluation.
                    pass
                best[name] = min(best[name], time.perf_counter() - start)
        # Eviction cost alone, to subtract from the uncached times.
        evict = np.inf
        for _ in range(repeats):
            start = time.perf_counter()
            _evict(paths)
            _resident(paths[:40])
            evict = min(evict, time.perf_counter() - start)
        for name in ways:
            if name.startswith("uncached"):
                best[name] -= evict
        report("ratio_images", count, "images")
        report("ratio_chunks", len(counts), "chunks",
               "%d images each" % max(counts))
        for name, seconds in best.items():
            report("ratio_%s_per_image" % name,
                   "%.3f" % (1e3 * seconds / count), "ms")
        for name in ("cached_prefetch", "cached_plain", "uncached_prefetch",
                     "uncached_plain"):
            report("ratio_%s_vs_memory" % name,
                   "%.2f" % (best[name] / best["memory"]), "x",
                   "target <= %s" % ("1.2" if name.startswith("cached")
                                     else "2"))
        report("ratio_cached_prefetch_vs_memory_split", "%.2f" % (
            best["cached_prefetch"] / best["memory_split"]), "x",
            "against in-memory batches of the chunks' size")
        # What the disk gives: the chunk files read cold with read().
        nbytes = sum(os.path.getsize(p) for p in paths)
        read_s = np.inf
        for _ in range(2):
            _evict(paths)
            start = time.perf_counter()
            for path in paths:
                with open(path, "rb") as handle:
                    while handle.read(1 << 24):
                        pass
            read_s = min(read_s, time.perf_counter() - start)
        report("ratio_disk_read", "%.2f" % (nbytes / read_s / 1e9), "GB/s",
               "chunk files read cold with read()")
        report("ratio_uncached_floor_per_image",
               "%.3f" % (1e3 * read_s / count), "ms",
               "reading alone: %.1f MB per image" % (nbytes / count / 1e6))
        checked = [r for r in resident if r is not None]
        if checked:
            report("ratio_uncached_resident", "%.3f" % max(checked), "",
                   "largest share of chunk bytes still cached before a "
                   "cold evaluation (fincore)")
        streams[True].lossfunction.drop_batches()


# --------------------------------------------------------------- adam

def alloy():
    sys.path.insert(0, HERE)
    from training_scale import alloy_images
    return alloy_images()


def _run_optimizer(images, optimizer, options, steps, seconds, folder):
    """Train; returns [(seconds, energy_rmse, force_rmse)] per whole-set
    evaluation."""
    from amp import Amp
    from amp.descriptor.gaussian import Gaussian
    from amp.model import (LossFunction, MaxIterationsReached,
                           TrainingConvergenceError)
    from amp.model.neuralnetwork import NeuralNetwork
    from amp.regression import Regressor

    trace = []
    model = NeuralNetwork(hiddenlayers=(10, 10), randomseed=SEED,
                          regressor=Regressor(optimizer, options))
    model.lossfunction = LossFunction(
        convergence={"energy_rmse": 1e-9, "force_rmse": 1e-9},
        maxiter=steps)
    lossfunction = model.lossfunction
    check = lossfunction.check_convergence
    clock = {}

    def recorded(result):
        now = time.perf_counter()
        clock.setdefault("start", now)
        trace.append((now - clock["start"], result["energy_rmse"],
                      result["force_rmse"]))
        if seconds is not None and now - clock["start"] > seconds:
            raise MaxIterationsReached("time budget")
        return check(result)
    lossfunction.check_convergence = recorded
    # The databases of the first run serve the others.
    calc = Amp(descriptor=Gaussian(), model=model, cores=1,
               label=os.path.join(folder, "run-%d" % len(os.listdir(folder))),
               dblabel=os.path.join(folder, "db"))
    regress = model.regress

    def timed(*args, **kwargs):  # the clock starts with the optimisation
        clock["start"] = time.perf_counter()
        return regress(*args, **kwargs)
    model.regress = timed
    try:
        calc.train(images)
    except TrainingConvergenceError:
        pass
    return trace


def _first_time(trace, target):
    for seconds, _, force in trace:
        if force <= target:
            return seconds
    return None


def adam(sets):
    settings = [("Adam", {"batch_size": 8, "learning_rate": 1e-3}),
                ("Adam", {"batch_size": 8, "learning_rate": 1e-2,
                          "schedule": "plateau", "patience": 5}),
                ("Adam", {"batch_size": 32, "learning_rate": 1e-2,
                          "schedule": "plateau", "patience": 5}),
                ("SGD", {"batch_size": 8, "learning_rate": 1e-4,
                         "momentum": 0.9})]
    rows = []
    for name, images in sets:
        with tempfile.TemporaryDirectory() as folder:
            bfgs = _run_optimizer(images, "BFGS", None, 50, None, folder)
            target, spent = bfgs[-1][2], bfgs[-1][0]
            report("adam_%s_bfgs50_force_rmse" % name, "%.4f" % target,
                   "eV/A")
            report("adam_%s_bfgs50_energy_rmse" % name,
                   "%.4f" % bfgs[-1][1], "eV/atom")
            report("adam_%s_bfgs50_time" % name, "%.2f" % spent, "s")
            for optimizer, options in settings:
                tag = "%s_b%d_lr%g%s" % (
                    optimizer, options["batch_size"],
                    options["learning_rate"],
                    "_plateau" if options.get("schedule") == "plateau"
                    else "")
                trace = _run_optimizer(images, optimizer, options, 100000,
                                       4 * spent, folder)
                reached = _first_time(trace, target)
                report("adam_%s_%s_time_to_bfgs50" % (name, tag),
                       "%.2f" % reached if reached is not None else "never",
                       "s", "in %.0f s (4x BFGS's)" % (4 * spent))
                report("adam_%s_%s_best_force_rmse" % (name, tag),
                       "%.4f" % min(t[2] for t in trace), "eV/A",
                       "%d epochs" % len(trace))
                rows.append((name, tag, target, spent, reached, trace,
                             bfgs))
    print("# set | optimizer | force RMSE at 0.25/0.5/1/2/4 x BFGS time "
          "| time to BFGS's 50-step force RMSE")
    for name, tag, target, spent, reached, trace, bfgs in rows:
        marks = []
        for fraction in (0.25, 0.5, 1, 2, 4):
            seen = [t[2] for t in trace if t[0] <= fraction * spent]
            marks.append("%.4f" % min(seen) if seen else "-")
        print("# %s | %s | %s | %s" % (
            name, tag, " / ".join(marks),
            "%.2f s" % reached if reached is not None else "not reached"))
    for name, tag, target, spent, reached, trace, bfgs in rows[:1] + [
            r for r in rows[1:] if r[0] != rows[0][0]][:1]:
        marks = []
        for fraction in (0.25, 0.5, 1):
            seen = [t[2] for t in bfgs if t[0] <= fraction * spent]
            marks.append("%.4f" % min(seen) if seen else "-")
        print("# %s | BFGS | %s | %.2f s (50 steps)" % (
            name, " / ".join(marks), spent))


# ------------------------------------------------------------ float32

def float32(images, name, steps):
    from amp.model.batch import TrainingBatch

    with tempfile.TemporaryDirectory() as folder:
        images, _, store = _fingerprinted(images, folder, cores=1)
        model = _model(images, store)
        lf = model.lossfunction
        points = [("initial", model.vector)]
        from amp.regression import Regressor
        from amp.model import LossFunction
        model.regressor = Regressor("BFGS")
        model.lossfunction = LossFunction(
            convergence={"energy_rmse": 1e-9, "force_rmse": 1e-9},
            maxiter=steps, log_losses=False)
        model.lossfunction.attach_model(model, images=images)
        model.regress()
        points.append(("bfgs%d" % steps, model.vector))
        model.lossfunction = lf
        lf.attach_model(model, images=images)
        batch = lf.batches()[0]
        single = TrainingBatch.fromdict(batch.todict())
        single.force_matrix = single.force_matrix.astype(np.float32)
        for point, vector in points:
            lf._batches = [batch]
            exact = lf.calculate_loss(vector)
            lf._batches = [single]
            rounded = lf.calculate_loss(vector)
            lf._batches = None
            report("float32_%s_%s_loss_relative" % (name, point), "%.2e" % (
                abs(rounded["loss"] - exact["loss"]) / abs(exact["loss"])),
                "", "target <= 1e-6")
            g, h = exact["dloss_dparameters"], rounded["dloss_dparameters"]
            report("float32_%s_%s_gradient_relative" % (name, point),
                   "%.2e" % (
                np.max(np.abs(g - h)) / np.max(np.abs(g))), "",
                "largest component difference / largest component")
        times = {"float64": np.inf, "float32": np.inf}
        for _ in range(5):
            for kind, which in (("float64", batch), ("float32", single)):
                lf._batches = [which]
                start = time.perf_counter()
                lf.calculate_loss(vector)
                times[kind] = min(times[kind], time.perf_counter() - start)
        lf._batches = None
        report("float32_%s_evaluation_vs_float64" % name,
               "%.2f" % (times["float32"] / times["float64"]), "x",
               "in memory (scipy's products with float32 data)")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sections", default="ratio,growth,adam,float32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ratio-images", type=int, default=250)
    parser.add_argument("--growth-sizes", default="250,500,1000,2000")
    parser.add_argument("--steps", type=int, default=6,
                        help="loss evaluations of a growth or big run")
    parser.add_argument("--child", nargs=3)
    args = parser.parse_args()
    if args.child:
        count, limit, steps = args.child
        train_child(int(count), limit, int(steps))
        return
    sections = args.sections.split(",")
    if "ratio" in sections:
        ratio(args.ratio_images, args.repeats)
    if "growth" in sections:
        growth([int(n) for n in args.growth_sizes.split(",")], "200 MB",
               args.steps)
    if "big" in sections:
        print_growth("big_2000", run_child(2000, "2 GB", args.steps))
    if "adam" in sections:
        with tempfile.TemporaryDirectory() as folder:
            tutorial = slab_images(os.path.join(folder, "slab.traj"), 50)
        adam([("tutorial", tutorial), ("alloy200", alloy())])
    if "float32" in sections:
        float32(alloy(), "alloy200", 50)
        float32(cu_images(40), "cu40", 100)


if __name__ == "__main__":
    main()
