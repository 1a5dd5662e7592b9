"""Parallel speed-ups over ZMQ workers, 2 local workers.

Prints ``name value unit`` lines:

* ``worker_start_2_local``: seconds to start 2 local workers until both
  are connected and authenticated (target < 2 s);
* ``fingerprint_derivatives_40x108_serial`` / ``..._2_workers`` and
  ``fingerprint_derivatives_speedup_2_workers``: fingerprints and their
  derivatives of 40 rattled 108-atom fcc Cu images (a = 3.6 A, 3x3x3 cubic),
  default symmetry functions, results back in the master as arrays (target
  speed-up >= 1.7);
* ``zmq_echo_round_trip_floor_2_processes``: a bare pyzmq message to 2
  processes that only echo it, the floor of any ZMQ design on this
  machine;
* ``persistent_call_round_trip_2_workers``: one call of a persistent job
  that does no work, i.e. the messaging cost every loss evaluation pays;
* ``machine_2process_scaling`` (before) and ``..._after``: two equal
  numpy work units in two processes against one after the other
  (``bench/training_scale.py``), the most two cores give on this machine
  at the time;
* ``fingerprint_derivatives_stored_40x108_serial`` / ``..._2_cores`` and
  ``..._speedup_2_cores``: the same images into databases through
  ``calculate_fingerprints``, as training does (the master stores what
  the workers compute);
* ``loss_and_gradient_forces_<n>_serial`` / ``..._2_cores`` /
  ``..._2_workers_forced`` and the speed-ups ``..._2_cores`` and
  ``..._2_workers_forced``: one loss-and-gradient evaluation with force
  training on n = 50 and n = 500 snapshots of the tutorial Pt/Cu slab and
  on 20 and 40 displaced 108-atom Cu cells (``20x108_cu``,
  ``40x108_cu``), interleaved: serial;
  with ``cores=2`` as training runs it (the master computes one share and
  one worker the other, after the set-up check that this pays off, serial
  otherwise: the line says what the check chose); and with the workers
  kept whatever the check says. For 50 slabs also ``..._half_share_serial``
  and ``loss_and_gradient_speedup_bound_...`` = serial / (half share + ZMQ
  floor), the best any ZMQ master/worker design could reach here;
* ``train_<set>_cores1`` / ``..._cores2`` s and ``train_<set>_cores2_vs_1``
  (the ratio cores=1 / cores=2: above 1 faster, never below 0.95 is the
  target): whole ``Amp.train`` calls in fresh processes, alternated
  (1, 2, 2, 1, ...), best of the repeats, on 20 and on 40 displaced Cu
  cells of 108 atoms (``hiddenlayers=(5, 5)``, 40 loss evaluations) and on
  the 200-image Au-Cu-Pt set of ``bench/training_scale.py``
  (``hiddenlayers=(10, 10)``, 50 evaluations); each line says what the
  ``cores=2`` run's log chose for the fingerprints and the loss.

Run: ``python bench/parallel.py [--training-only] [--repeats 2]``.
"""
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import time  # noqa: E402

import numpy as np  # noqa: E402
from ase.build import bulk  # noqa: E402

from amp.descriptor.gaussian import Gaussian  # noqa: E402
from amp.parallel import WorkerPool, fingerprint_job  # noqa: E402

# The round-trip job is the test suite's LeastSquares; workers import it
# from the tests folder, as the tests do.
_TESTS = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "tests")
os.environ["PYTHONPATH"] = os.pathsep.join(
    [_TESTS] + [p for p in [os.environ.get("PYTHONPATH")] if p])
sys.path.insert(0, _TESTS)
from parallel_jobs import LeastSquares  # noqa: E402
from amp.utilities import hash_images  # noqa: E402


def copper_images(n=40, seed=0):
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (3, 3, 3)
        atoms.rattle(0.05, rng=rng)
        images.append(atoms)
    return hash_images(images)


def bench_worker_start(repeats=3):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        pool = WorkerPool(2)
        times.append(time.perf_counter() - start)
        pool.close()
    print("worker_start_2_local %.3f s" % min(times))


def bench_fingerprints(pool, repeats=2):
    images = copper_images()
    # the default Gs fixed
    descriptor = Gaussian(cutoff=6.5, elements=["Cu"]).resolve(images)
    job, setup = fingerprint_job(descriptor, derivatives=True)
    serial, parallel = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        expected = {key: descriptor.compute(atoms, True).todict()
                    for key, atoms in images.items()}
        serial.append(time.perf_counter() - start)
        start = time.perf_counter()
        values = dict(pool.map(job, images, setup))
        parallel.append(time.perf_counter() - start)
    key = next(iter(images))
    assert all(np.array_equal(values[key][name], expected[key][name])
               for name in expected[key] if isinstance(expected[key][name],
                                                       np.ndarray))
    print("fingerprint_derivatives_40x108_serial %.3f s" % min(serial))
    print("fingerprint_derivatives_40x108_2_workers %.3f s" % min(parallel))
    print("fingerprint_derivatives_speedup_2_workers %.2f x"
          % (min(serial) / min(parallel)))
    # As training does it: into databases, the master storing what the
    # workers compute.
    import shutil
    import tempfile

    stored = {"serial": [], "2_cores": []}
    for _ in range(repeats):
        for how in stored:
            folder = tempfile.mkdtemp()
            try:
                fresh = Gaussian.fromdict(descriptor.todict())
                fresh.dblabel = os.path.join(folder, "cu")
                start = time.perf_counter()
                fresh.calculate_fingerprints(
                    images, parallel=pool if how == "2_cores" else None,
                    calculate_derivatives=True)
                stored[how].append(time.perf_counter() - start)
            finally:
                shutil.rmtree(folder)
    for how, values in stored.items():
        print("fingerprint_derivatives_stored_40x108_%s %.3f s"
              % (how, min(values)))
    print("fingerprint_derivatives_stored_speedup_2_cores %.2f x"
          % (min(stored["serial"]) / min(stored["2_cores"])))


def tutorial_slabs(count):
    """``count`` snapshots of the tutorial Pt/Cu slab (EMT)."""
    import tempfile

    from benchdata import slab_images

    with tempfile.TemporaryDirectory() as folder:
        return slab_images(os.path.join(folder, "slab.traj"), count)


def bench_loss_gradient(pool, images, name, repeats=200, floor=None):
    """One loss-and-gradient evaluation with force training, default
    Gaussian, ``hiddenlayers=(5, 5)``: serial against ``cores=2`` as
    training runs it (the master computes one share, one worker the other,
    after the set-up check that workers pay off; serial otherwise) and
    against the workers kept whatever the check says. Serial and parallel
    calls are interleaved. With ``floor`` (the bare ZMQ round trip), also
    the serial time of one half of the images and the speed-up bound
    ``serial / (half share + floor)``."""
    from amp.model import LossFunction
    from amp.model.neuralnetwork import NeuralNetwork
    from amp.utilities import Logger

    images = hash_images(images)
    descriptor = Gaussian()
    descriptor.calculate_fingerprints(images, calculate_derivatives=True)

    def loss(use_workers=None):
        model = NeuralNetwork(hiddenlayers=(5, 5), randomseed=0)
        model.lossfunction = LossFunction(
            convergence={"energy_rmse": 0.02, "force_rmse": 0.3},
            raise_ConvergenceOccurred=False, log_losses=False,
            use_workers=use_workers)
        model.fit(images, descriptor, Logger(None), {"cores": 1},
                  only_setup=True)
        return model.vector, model.lossfunction

    vector, serial = loss()
    _, checked = loss()
    _, forced = loss(use_workers=True)
    reference = serial.calculate_loss(vector, True)
    times = {"serial": [], "2_cores": [], "2_workers_forced": []}
    with checked.evaluator(pool):
        decision = "workers" if checked._workers.job is not None \
            else "serial"
        with forced.evaluator(pool):
            result = forced.calculate_loss(vector, True)
            assert abs(result["loss"] - reference["loss"]) <= \
                1e-12 * reference["loss"]
            for _ in range(repeats):
                for how, lossfunction in (("serial", serial),
                                          ("2_cores", checked),
                                          ("2_workers_forced", forced)):
                    start = time.perf_counter()
                    lossfunction.calculate_loss(vector, True)
                    times[how].append(time.perf_counter() - start)
    medians = {how: np.median(values) for how, values in times.items()}
    for how, median in medians.items():
        print("loss_and_gradient_forces_%s_%s %.2f ms"
              % (name, how, 1e3 * median))
    print("loss_and_gradient_speedup_%s_2_cores %.2f x  # set-up chose %s"
          % (name, medians["serial"] / medians["2_cores"], decision))
    print("loss_and_gradient_speedup_%s_2_workers_forced %.2f x"
          % (name, medians["serial"] / medians["2_workers_forced"]))
    if floor is not None:
        serial.split_images(2)
        batch = serial.batches()[0]
        model = NeuralNetwork.fromdict(checked._model.todict())
        half = []
        for _ in range(repeats):
            start = time.perf_counter()
            batch.partial(model.element_networks(), True, 1.0, 0.04,
                          model.raveler)
            half.append(time.perf_counter() - start)
        print("loss_and_gradient_forces_%s_half_share_serial %.2f ms"
              % (name, 1e3 * np.median(half)))
        print("loss_and_gradient_speedup_bound_%s_2_workers %.2f x"
              % (name, medians["serial"] / (np.median(half) + floor)))


def bench_round_trip(pool, repeats=500):
    """Master-to-workers round trip of a persistent call doing nothing."""
    rng = np.random.default_rng(0)
    shares = [{"X": rng.normal(size=(2, 100)), "y": rng.normal(size=2)}
              for _ in pool.alive()]
    with pool.persistent(LeastSquares, shares) as job:
        parameters = rng.normal(size=100)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            job.call("evaluate", parameters)
            times.append(time.perf_counter() - start)
    print("persistent_call_round_trip_2_workers %.3f ms"
          % (1e3 * np.median(times)))


def _echo(address):
    import zmq

    socket = zmq.Context().socket(zmq.DEALER)
    socket.connect(address)
    socket.send(b"ready")
    while True:
        frames = socket.recv_multipart()
        if frames[0] == b"stop":
            return
        socket.send_multipart(frames)


def bench_zmq_floor(repeats=2000):
    """Round trip of a bare pyzmq message (1 kB) to 2 processes that only
    echo it: what any ZMQ master/worker design pays on this machine, with
    no Python work on either side."""
    import multiprocessing

    import zmq

    router = zmq.Context().socket(zmq.ROUTER)
    router.bind("tcp://127.0.0.1:0")
    address = router.last_endpoint.decode()
    processes = [multiprocessing.Process(target=_echo, args=(address,))
                 for _ in range(2)]
    for process in processes:
        process.start()
    identities = [router.recv_multipart()[0] for _ in processes]
    payload = bytes(1000)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for identity in identities:
            router.send_multipart([identity, payload])
        for _ in identities:
            router.recv_multipart()
        times.append(time.perf_counter() - start)
    for identity in identities:
        router.send_multipart([identity, b"stop"])
    for process in processes:
        process.join()
    router.close(linger=0)
    floor = np.median(times[repeats // 10:])
    print("zmq_echo_round_trip_floor_2_processes %.3f ms" % (1e3 * floor))
    return floor


TRAININGS = {"cu20x108": (20, (5, 5), 40), "cu40x108": (40, (5, 5), 40),
             "alloy200": (200, (10, 10), 50)}


def train_child(name, cores):
    """One whole Amp.train; prints a RESULT line (seconds, and what the
    log says was chosen)."""
    import json
    import shutil
    import tempfile

    from amp import Amp
    from amp.model import LossFunction, TrainingConvergenceError
    from amp.model.neuralnetwork import NeuralNetwork

    count, hidden, steps = TRAININGS[name]
    if name == "alloy200":
        from training_scale import alloy_images

        images = alloy_images()
    else:
        from benchdata import copper_images as emt_copper_images

        images = emt_copper_images(count)
    folder = tempfile.mkdtemp(dir="/tmp")
    try:
        model = NeuralNetwork(hiddenlayers=hidden, randomseed=7)
        model.lossfunction = LossFunction(
            convergence={"energy_rmse": 1e-9, "force_rmse": 1e-9},
            maxiter=steps)
        calc = Amp(descriptor=Gaussian(), model=model,
                   label=os.path.join(folder, "t"), cores=cores)
        start, cpu = time.perf_counter(), time.process_time()
        try:
            calc.train(images)
        except TrainingConvergenceError:
            pass
        total, cpu = time.perf_counter() - start, time.process_time() - cpu
        log = open(os.path.join(folder, "t-log.txt")).read()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    chose = []
    if "workers ready" in log:
        chose.append("fingerprints by workers" if "images by" in log
                     else "workers started")
    else:
        chose.append("no workers started")
    chose.append("loss with workers" if "shares held by workers" in log
                 else "loss serial")
    print("RESULT " + json.dumps({"train": total, "cpu": cpu,
                                  "chose": ", ".join(chose)}), flush=True)


def bench_trainings(repeats):
    """Whole trainings, cores=1 against cores=2, each in a fresh process,
    alternated; the best of the repeats."""
    import json
    import subprocess

    def run(name, cores):
        output = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--train-child",
             name, str(cores)], check=True, stdout=subprocess.PIPE,
            text=True).stdout
        line = [x for x in output.splitlines() if x.startswith("RESULT ")]
        return json.loads(line[-1][len("RESULT "):])

    for name in TRAININGS:
        runs = {1: [], 2: []}
        for repeat in range(repeats):
            for cores in ((1, 2) if repeat % 2 == 0 else (2, 1)):
                runs[cores].append(run(name, cores))
        best = {cores: min(r["train"] for r in runs[cores])
                for cores in runs}
        print("train_%s_cores1 %.2f s" % (name, best[1]))
        print("train_%s_cores2 %.2f s  # %s" % (
            name, best[2], "; ".join(sorted({r["chose"]
                                             for r in runs[2]}))))
        print("train_%s_cores2_vs_1 %.2f x  # target >= 0.95" % (
            name, best[1] / best[2]), flush=True)
        cpu = {cores: min(r["cpu"] for r in runs[cores]) for cores in runs}
        print("train_%s_master_cpu_cores2_vs_1 %.2f x  # the training "
              "process's own CPU time, which other programs' load does not "
              "change: 1.00 when no worker took part" % (
                  name, cpu[1] / cpu[2]), flush=True)


def main():
    import argparse

    from training_scale import machine_scaling

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--training-only", action="store_true")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--train-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train_child:
        train_child(args.train_child[0], int(args.train_child[1]))
        return
    print("machine_2process_scaling %.2f x  # two equal numpy work units"
          % machine_scaling())
    if args.training_only:
        bench_trainings(args.repeats)
        print("machine_2process_scaling_after %.2f x" % machine_scaling())
        return
    bench_worker_start()
    floor = bench_zmq_floor()
    with WorkerPool(2) as pool:
        bench_fingerprints(pool)
        bench_round_trip(pool)
        bench_loss_gradient(pool, tutorial_slabs(50), "50_slabs", floor=floor)
        bench_loss_gradient(pool, tutorial_slabs(500), "500_slabs",
                            repeats=50)
        from benchdata import copper_images as emt_copper_images
        bench_loss_gradient(pool, emt_copper_images(20), "20x108_cu",
                            repeats=40)
        bench_loss_gradient(pool, emt_copper_images(40), "40x108_cu",
                            repeats=20)
    print("machine_2process_scaling_between %.2f x" % machine_scaling())
    bench_trainings(args.repeats)
    print("machine_2process_scaling_after %.2f x" % machine_scaling())


if __name__ == "__main__":
    main()
