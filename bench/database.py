"""Benchmark of amp/store/database.py: loose writes/reads, archive(), archive reads.

Prints ``name value unit`` lines. The entries are the fingerprints of 1,000
108-atom Cu/Pt images (10 radial G2 features per neighbour element, per atom,
float64), computed from one neighbour list with perturbed positions so that
every entry holds distinct full-precision numbers, as real ones do.

Run: ``.venv/bin/python bench/database.py`` (target:
``archive_read_1000`` <= 1 s).
"""
import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                  "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from ase.build import bulk  # noqa: E402
from ase.neighborlist import neighbor_list  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from amp.store.database import FileDatabase  # noqa: E402

IMAGES = 1000
CUTOFF = 6.5
ETAS = np.array([0.05, 0.23, 1.0, 2.0, 4.0, 8.0, 16.0, 20.0, 40.0, 80.0])


def fingerprint_entries(count):
    """Yield ``(key, entry)`` for ``count`` perturbed 108-atom images."""
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True).repeat(3)  # 108 atoms
    symbols = np.array(["Cu", "Pt"] * 54)
    i, j, shifts = neighbor_list("ijS", atoms, CUTOFF + 0.5)
    offsets = shifts @ atoms.cell.array
    rng = np.random.default_rng(0)
    for number in range(count):
        positions = atoms.positions + rng.normal(0, 0.1, atoms.positions.shape)
        r = np.linalg.norm(positions[j] - positions[i] + offsets, axis=1)
        weight = 0.5 * (np.cos(np.pi * r / CUTOFF) + 1) * (r < CUTOFF)
        terms = np.exp(-np.outer(r ** 2, ETAS) / CUTOFF ** 2) * weight[:, None]
        features = np.zeros((len(atoms), 2, len(ETAS)))
        np.add.at(features, (i, (symbols[j] == "Pt").astype(int)), terms)
        features = features.reshape(len(atoms), -1)
        entry = {"index_%s" % s: np.flatnonzero(symbols == s) for s in
                 ("Cu", "Pt")}
        entry.update({"values_%s" % s: features[symbols == s]
                      for s in ("Cu", "Pt")})
        yield "%032x" % rng.integers(2 ** 62), entry


def main():
    folder = tempfile.mkdtemp(prefix="amp-bench-")
    try:
        entries = dict(fingerprint_entries(IMAGES))
        path = os.path.join(folder, "fingerprints.ampdb")

        start = time.perf_counter()
        FileDatabase(path).update(entries)
        elapsed = time.perf_counter() - start
        print("loose_write_rate %.0f entries/s" % (IMAGES / elapsed))
        loose = sum(os.path.getsize(os.path.join(path, "loose", key))
                    for key in entries)
        print("entry_bytes_loose %.0f B" % (loose / IMAGES))

        start = time.perf_counter()
        db = FileDatabase(path)
        for key in entries:
            db[key]
        elapsed = time.perf_counter() - start
        print("loose_read_rate %.0f entries/s" % (IMAGES / elapsed))

        start = time.perf_counter()
        counts = FileDatabase(path).archive()
        print("archive_1000 %.3f s" % (time.perf_counter() - start))
        assert counts["moved"] == IMAGES
        print("entry_bytes_archived %.0f B"
              % (os.path.getsize(os.path.join(path, "archive.tar.gz"))
                 / IMAGES))

        start = time.perf_counter()
        db = FileDatabase(path)
        for key in entries:
            db[key]
        elapsed = time.perf_counter() - start
        print("archive_read_1000 %.3f s" % elapsed)
        assert np.array_equal(db[key]["values_Pt"], entries[key]["values_Pt"])

        start = time.perf_counter()
        keys = FileDatabase(path).keys()
        print("archive_keys_1000 %.4f s" % (time.perf_counter() - start))
        assert len(keys) == IMAGES
    finally:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
