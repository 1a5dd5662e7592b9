"""Per-image cost of Gaussian fingerprints, one core.

Prints ``name value unit`` lines for thermally displaced fcc Cu cells
(a = 3.6 A) of 108, 500 and 2048 atoms, default symmetry functions, Cosine
cutoff 6.5 A, neighbour search included. Targets (108 atoms):
fingerprints <= 15 ms, with derivatives <= 50 ms, derivative data <= 5 MB.
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import time  # noqa: E402

import numpy as np  # noqa: E402
from ase.build import bulk  # noqa: E402

from amp.descriptor.gaussian import Gaussian  # noqa: E402
from amp.descriptor.neighbors import atoms_neighbor_list  # noqa: E402


def cell(repeat, seed=0):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * ((repeat,) * 3)
    atoms.rattle(0.05, rng=np.random.default_rng(seed))
    return atoms


def best_of(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), result


def folder_bytes(path):
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(path) for name in names)


def disk_bytes_per_image(n_images=5):
    """Bytes on disk per 108-atom image, loose and archived."""
    import tempfile

    images = [cell(3, seed) for seed in range(n_images)]
    with tempfile.TemporaryDirectory() as folder:
        label = os.path.join(folder, "bench")
        descriptor = Gaussian(cutoff=6.5, dblabel=label)
        descriptor.calculate_fingerprints(images, calculate_derivatives=True)
        for state in ("loose", "compressed"):
            if state == "compressed":
                descriptor.archive_databases()
            for name in ("fingerprints", "fingerprint-primes",
                         "neighborlists"):
                size = folder_bytes("%s-%s.ampdb" % (label, name))
                print("disk_%s_%s_108_atoms %.3f MB"
                      % (name.replace("-", "_"), state,
                         size / n_images / 1e6))


def main():
    for repeat, tries in ((3, 20), (5, 5), (8, 3)):
        atoms = cell(repeat)
        n = len(atoms)
        descriptor = Gaussian(cutoff=6.5, elements=["Cu"]).resolve([atoms])
        nl_time, _ = best_of(lambda: atoms_neighbor_list(atoms, 6.5), tries)
        fp_time, _ = best_of(lambda: descriptor.compute(atoms), tries)
        fpp_time, fp = best_of(lambda: descriptor.compute(atoms, True), tries)
        derivative_bytes = fp.nbytes - sum(v.nbytes for v in fp.values.values())
        print("neighbors_%d_atoms %.2f ms" % (n, nl_time * 1e3))
        print("fingerprints_%d_atoms %.2f ms" % (n, fp_time * 1e3))
        print("fingerprints_with_derivatives_%d_atoms %.2f ms"
              % (n, fpp_time * 1e3))
        print("derivative_data_%d_atoms %.2f MB" % (n, derivative_bytes / 1e6))
    disk_bytes_per_image()


if __name__ == "__main__":
    main()
