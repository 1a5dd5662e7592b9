"""The Gaussian descriptor's fingerprint stores: .ampdb files, memory,
ephemeral."""
import os
import tracemalloc

import numpy as np
import pytest
from ase.build import bulk
from ase.io import read

import amp
from amp.descriptor.gaussian import Gaussian
from amp.utilities import hash_images
from conftest import AMP_REFERENCE

AMP_PACKAGE = os.path.dirname(os.path.abspath(amp.__file__))


@pytest.fixture
def images():
    return hash_images(os.path.join(AMP_REFERENCE, "pd4o2.traj"))


def counting(descriptor):
    """Count the images the descriptor actually computes."""
    calls = []
    compute = descriptor.compute

    def counted(atoms, derivatives=False):
        calls.append(derivatives)
        return compute(atoms, derivatives)

    descriptor.compute = counted
    return calls


def test_shared_dblabel_recomputes_nothing(tmp_path, images):
    label = str(tmp_path / "shared")
    first = Gaussian(dblabel=label)
    calls = counting(first)
    first.calculate_fingerprints(images, calculate_derivatives=True)
    assert len(calls) == len(images)
    for name in ("neighborlists", "fingerprints", "fingerprint-primes"):
        assert os.path.isdir("%s-%s.ampdb" % (label, name))

    second = Gaussian(dblabel=label)
    calls = counting(second)
    assert second.calculate_fingerprints(images,
                                         calculate_derivatives=True) == []
    assert calls == []
    for key in images:
        a, b = first.arrays[key], second.arrays[key]
        for element in a.values:
            np.testing.assert_array_equal(a.values[element],
                                          b.values[element])
            np.testing.assert_array_equal(a.derivatives[element],
                                          b.derivatives[element])
        assert first.fingerprintprimes[key] == second.fingerprintprimes[key]
        for (ja, oa), (jb, ob) in zip(first.neighborlist[key],
                                      second.neighborlist[key]):
            np.testing.assert_array_equal(ja, jb)
            np.testing.assert_array_equal(oa, ob)
    # The stored data give the same forces as a fresh computation.
    atoms = images[next(iter(images))]
    fresh = Gaussian().compute(atoms, derivatives=True)
    stored = second.arrays[next(iter(images))]
    dE_dG = {e: np.ones_like(v) for e, v in fresh.values.items()}
    np.testing.assert_allclose(stored.forces(dE_dG), fresh.forces(dE_dG),
                               atol=1e-13)


def test_derivatives_added_later(tmp_path, images):
    label = str(tmp_path / "later")
    descriptor = Gaussian(dblabel=label)
    calls = counting(descriptor)
    descriptor.calculate_fingerprints(images)
    assert calls == [False] * len(images)
    descriptor.calculate_fingerprints(images, calculate_derivatives=True)
    assert calls[len(images):] == [True] * len(images)
    assert all(key in descriptor.fingerprintprimes for key in images)


def test_parameter_mismatch_is_refused(tmp_path, images):
    label = str(tmp_path / "db")
    Gaussian(cutoff=6.5, dblabel=label).calculate_fingerprints(images)
    other = Gaussian(cutoff=5.0, dblabel=label)
    with pytest.raises(ValueError, match="cutoff"):
        other.calculate_fingerprints(images)
    # Nothing was mixed in: the stored entries are the 6.5 ones.
    again = Gaussian(cutoff=6.5, dblabel=label)
    assert again.calculate_fingerprints(images) == []


def test_archive_then_read(tmp_path, images):
    label = str(tmp_path / "arch")
    descriptor = Gaussian(dblabel=label)
    descriptor.calculate_fingerprints(images, calculate_derivatives=True)
    reports = descriptor.archive_databases()
    assert {r["moved"] for r in reports.values()} == {len(images)}
    for name in ("neighborlists", "fingerprints", "fingerprint-primes"):
        folder = "%s-%s.ampdb" % (label, name)
        assert os.path.exists(os.path.join(folder, "archive.tar.gz"))
        assert os.listdir(os.path.join(folder, "loose")) == []
    reader = Gaussian(dblabel=label)
    assert reader.calculate_fingerprints(images,
                                         calculate_derivatives=True) == []
    key = next(iter(images))
    assert reader.fingerprints[key] == descriptor.fingerprints[key]


def test_ephemeral_writes_nothing_and_stays_flat(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    descriptor = Gaussian(cutoff=4.0, elements=["Cu"])
    descriptor.ephemeral = True
    base = bulk("Cu", "fcc", a=3.6, cubic=True)
    rng = np.random.default_rng(0)

    def step():
        atoms = base.copy()
        atoms.rattle(0.05, rng=rng)
        descriptor.calculate_fingerprints([atoms],
                                          calculate_derivatives=True)

    def library_bytes():
        # Only what the library's own code holds: the test runner's records
        # of warnings (say, deprecations from ASE under a new numpy) are not
        # the library's memory.
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(True, os.path.join(AMP_PACKAGE, "*"))])
        return sum(stat.size for stat in snapshot.statistics("filename"))

    for _ in range(50):
        step()
    tracemalloc.start()
    for _ in range(200):
        step()
    after_200 = library_bytes()
    for _ in range(1750):
        step()
    after_2000 = library_bytes()
    tracemalloc.stop()
    assert after_200 > 0  # the filter sees the library's allocations
    assert len(descriptor.arrays) == 1
    assert after_2000 - after_200 < 200_000  # bytes: no growth per image
    assert os.listdir(tmp_path) == []


def test_memory_store_keeps_every_image(images):
    descriptor = Gaussian()
    descriptor.calculate_fingerprints(images)
    assert sorted(descriptor.arrays.keys()) == sorted(images)
    assert descriptor.calculate_fingerprints(images) == []
