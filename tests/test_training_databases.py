"""Training databases: compact neighbour-list entries (earlier entries
still read) and end-of-training archives with a gzip level per database,
readable by ``tarfile`` and ``amp-compress``."""
import gzip
import os
import tarfile

import numpy as np
import pytest
from ase.build import bulk

from amp.cli import compress_main
from amp.descriptor.fingerprint_store import ARCHIVE_LEVELS
from amp.descriptor.entries import compact_neighbors, expand_neighbors
from amp.descriptor.fingerprints import STORAGE_VERSION
from amp.descriptor.gaussian import Gaussian
from amp.store.database import FileDatabase
from amp.utilities import hash_images


@pytest.fixture(scope="module")
def copper():
    rng = np.random.default_rng(0)
    images = []
    for _ in range(3):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (3, 3, 3)
        atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
        images.append(atoms)
    return hash_images(images)


def _database(label, name):
    return "%s-%s.ampdb" % (label, name)


def test_compact_neighbor_entry_round_trip(copper):
    atoms = next(iter(copper.values()))
    nl = Gaussian().compute(atoms, True).neighbors
    entry = compact_neighbors(nl)
    assert "nl/i" not in entry
    assert entry["nl/j"].dtype == np.uint8  # 108 atoms
    assert entry["nl/offsets"].dtype == np.int8
    assert entry["nl/counts"].dtype == np.uint8
    size = sum(entry[k].nbytes for k in ("nl/counts", "nl/j", "nl/offsets"))
    loose = nl.i.nbytes + nl.j.nbytes + nl.offsets.nbytes
    assert size < loose / 8  # 376 kB -> about 38 kB
    back = expand_neighbors(entry)
    for name in ("i", "j", "offsets"):
        np.testing.assert_array_equal(back["nl/" + name],
                                      getattr(nl, name))
        assert back["nl/" + name].dtype == np.int64


def test_databases_archived_per_level_and_readable(copper, tmp_path,
                                                   capsys):
    label = str(tmp_path / "db")
    descriptor = Gaussian()
    descriptor.dblabel = label
    descriptor.calculate_fingerprints(copper, calculate_derivatives=True)
    reference = {key: descriptor.arrays[key] for key in copper}
    neighbors = os.path.join(_database(label, "neighborlists"), "loose")
    per_image = np.mean([os.path.getsize(os.path.join(neighbors, name))
                         for name in os.listdir(neighbors)])
    assert per_image < 60e3  # 376 kB in the earlier form
    descriptor.archive_databases()
    assert ARCHIVE_LEVELS["primes"] == 0
    for name in ("neighborlists", "fingerprints", "fingerprint-primes"):
        path = os.path.join(_database(label, name), "archive.tar.gz")
        with tarfile.open(path, "r:gz") as tar:
            assert sorted(tar.getnames()) == sorted(copper)
            members = sum(member.size for member in tar.getmembers())
        with gzip.open(path) as stream:
            inflated = len(stream.read())
        ratio = os.path.getsize(path) / inflated
        if name == "fingerprint-primes":
            assert ratio > 0.99  # stored
        else:
            assert ratio < 0.8
        assert members < inflated
    # Read back through a new descriptor, and after amp-compress.
    for step in ("archived", "amp-compress"):
        if step == "amp-compress":
            assert compress_main(["-r", str(tmp_path)]) == 0
            capsys.readouterr()
        again = Gaussian.fromdict(descriptor.todict())
        again.dblabel = label
        for key, fingerprints in reference.items():
            read = again.arrays[key]
            for name in ("i", "j", "offsets", "vectors"):
                np.testing.assert_array_equal(
                    getattr(read.neighbors, name),
                    getattr(fingerprints.neighbors, name))
            for element in fingerprints.derivatives:
                np.testing.assert_array_equal(
                    read.derivatives[element],
                    fingerprints.derivatives[element])
            assert again.arrays.neighbor_list(key)[5][0].tolist() == \
                fingerprints.neighbors.as_amp()[5][0].tolist()


def test_earlier_neighbor_entries_still_read(copper, tmp_path):
    label = str(tmp_path / "old")
    descriptor = Gaussian()
    descriptor.dblabel = label
    descriptor.calculate_fingerprints(copper, calculate_derivatives=True)
    key = next(iter(copper))
    fingerprints = descriptor.arrays[key]
    nl = fingerprints.neighbors
    # Rewrite one entry the way earlier versions stored it.
    database = FileDatabase(_database(label, "neighborlists"))
    database[key] = {"version": STORAGE_VERSION, "nl/i": nl.i, "nl/j": nl.j,
                     "nl/offsets": nl.offsets}
    again = Gaussian.fromdict(descriptor.todict())
    again.dblabel = label
    read = again.arrays[key]
    np.testing.assert_array_equal(read.neighbors.i, nl.i)
    np.testing.assert_array_equal(read.neighbors.offsets, nl.offsets)
    assert len(again.arrays.neighbor_list(key)) == len(copper[key])


def _alloy(count=2, seed=1):
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        atoms = bulk("Cu", "fcc", a=3.8, cubic=True) * (2, 2, 2)
        atoms.symbols = rng.choice(["Au", "Cu", "Pt"], len(atoms))
        atoms.rattle(0.05, rng=rng)
        images.append(atoms)
    return hash_images(images)


def test_derivatives_stored_without_zeros(tmp_path):
    """Three elements: the packed blocks hold under half the values and
    read back bit for bit; full blocks (the earlier form) still read."""
    from amp.descriptor.entries import pack_derivatives, unpack_derivatives

    images = _alloy()
    memory = Gaussian()
    memory.calculate_fingerprints(images, calculate_derivatives=True)
    label = str(tmp_path / "alloy")
    descriptor = Gaussian()
    descriptor.dblabel = label
    descriptor.calculate_fingerprints(images, calculate_derivatives=True)
    primes = FileDatabase(_database(label, "fingerprint-primes"))
    for key in images:
        expected = memory.arrays[key]
        entry = primes[key]
        full = sum(block.size for block in expected.derivatives.values())
        packed = sum(np.asarray(v).size for n, v in entry.items()
                     if n.startswith("dpack/"))
        assert packed < 0.5 * full
        read = descriptor.arrays[key]
        for element, block in expected.derivatives.items():
            np.testing.assert_array_equal(read.derivatives[element], block)
            np.testing.assert_array_equal(read.entries[element],
                                          expected.entries[element])
        parts = expected.todict(parts=("derivatives",))
        packed_parts = pack_derivatives(dict(parts), expected.symbols,
                                        expected.neighbors.j)
        back = unpack_derivatives(packed_parts, expected.symbols,
                                  expected.neighbors.j)
        for element in expected.derivatives:
            np.testing.assert_array_equal(back["derivatives/" + element],
                                          parts["derivatives/" + element])
    # An entry written the earlier way (full blocks) reads the same.
    key = next(iter(images))
    parts = memory.arrays[key].todict(parts=("derivatives",))
    for name in ("nl/i", "nl/j", "nl/offsets"):
        del parts[name]
    primes[key] = parts
    again = Gaussian.fromdict(descriptor.todict())
    again.dblabel = label
    for element, block in memory.arrays[key].derivatives.items():
        np.testing.assert_array_equal(again.arrays[key].derivatives[element],
                                      block)
