"""Parallel speed-ups over ZMQ workers (issue 5), 2 local workers.

Prints ``name value unit`` lines:

* ``worker_start_2_local``: seconds to start 2 local workers until both
  are connected and authenticated (target < 2 s);
* ``fingerprint_derivatives_40x108_serial`` / ``..._2_workers`` and
  ``fingerprint_derivatives_speedup_2_workers``: fingerprints and their
  derivatives of 40 rattled 108-atom fcc Cu images (a = 3.6 A, 3x3x3 cubic),
  default symmetry functions, results back in the master as arrays (target
  speed-up >= 1.7);
* the loss-and-gradient speed-up (50 Pt/Cu slab snapshots, forces; target
  >= 1.5) comes from :func:`bench_loss_gradient` once the loss function
  runs through :meth:`amp.parallel.WorkerPool.persistent`.
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import time  # noqa: E402

import numpy as np  # noqa: E402
from ase.build import bulk  # noqa: E402

from amp.descriptor.gaussian import Gaussian  # noqa: E402
from amp.parallel import WorkerPool, fingerprint_job  # noqa: E402
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
    descriptor = Gaussian(cutoff=6.5, elements=["Cu"])
    descriptor._ensure_parameters(images)  # fixes the default Gs
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


def bench_loss_gradient(pool):
    """One loss-and-gradient evaluation, 50 Pt/Cu slab snapshots with
    forces, 2 workers vs serial (target >= 1.5x).

    To be filled in when the loss function (issue 4) exposes its per-share
    batches: build shares with ``pool.split(keys)``, start
    ``pool.persistent(<loss share job>, shares, setup)``, time
    ``job.call('evaluate', parameters)`` against the serial loss.
    """
    print("# loss_and_gradient_speedup_2_workers: waiting for the loss "
          "function (issue 4)")


def main():
    bench_worker_start()
    with WorkerPool(2) as pool:
        bench_fingerprints(pool)
        bench_loss_gradient(pool)


if __name__ == "__main__":
    main()
