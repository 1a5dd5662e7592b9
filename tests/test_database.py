"""Tests of amp/database.py: entries, FileDatabase, MemoryDatabase, Data."""
import gzip
import io
import multiprocessing
import os
import pickle
import tarfile
import zipfile

import numpy as np
import pytest
from ase import Atoms

import amp.store.database as database
from amp.store.database import (CorruptEntryError, Data, FileDatabase,
                          MemoryDatabase, UnsupportedEntryError, check_key,
                          decode_entry, encode_entry)
from amp.utilities import hash_images


# ----------------------------------------------------------------- helpers

def assert_same(expected, actual):
    """Exact equality: types, dtypes, shapes, bytes, float representations."""
    assert type(actual) is type(expected), (expected, actual)
    if isinstance(expected, np.ndarray):
        assert actual.dtype == expected.dtype
        assert actual.shape == expected.shape
        assert actual.tobytes(order="A") == expected.tobytes(order="A")
        if not expected.flags.c_contiguous and expected.flags.f_contiguous:
            assert actual.flags.f_contiguous == expected.flags.f_contiguous
    elif isinstance(expected, np.generic):
        assert actual.dtype == expected.dtype
        assert actual.tobytes() == expected.tobytes()
    elif isinstance(expected, dict):
        assert list(actual) == list(expected)
        for key in expected:
            assert_same(expected[key], actual[key])
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected)
        for item, other in zip(expected, actual):
            assert_same(item, other)
    elif isinstance(expected, float):
        assert repr(actual) == repr(expected)
    else:
        assert actual == expected


def fingerprint_value(key, atoms=6):
    """A descriptor-like entry, determined by ``key``."""
    rng = np.random.default_rng(sum(key.encode()) * 7919 + len(key))
    pairs = atoms * 3
    return {"i": rng.integers(0, atoms, pairs),
            "j": rng.integers(0, atoms, pairs),
            "offsets": rng.integers(-1, 2, (pairs, 3)),
            "values_Cu": rng.random((atoms, 8)),
            "natoms": atoms, "key": key}


class Messages(list):
    """A log: collects every message."""

    def __call__(self, message):
        self.append(message)


class CountingCalculator:
    """Counts calculate() calls; the value depends on the image."""

    def __init__(self):
        self.calls = []

    def calculate(self, image, key):
        self.calls.append(key)
        return {"positions": image.get_positions(), "n": len(image)}


def make_images(count, start=0):
    return hash_images([Atoms("CuH", positions=[[0, 0, 0], [0, 0, 0.7 + i]])
                        for i in range(start, start + count)])


VALUES = {
    "float64": np.array([0.1, -0.0, 1e-310, np.nan, np.inf, -np.inf,
                         1 / 3]),
    "float32": np.linspace(0, 1, 7, dtype=np.float32),
    "int64_2d": np.arange(12, dtype=np.int64).reshape(3, 4),
    "int32": np.array([-2 ** 31, 2 ** 31 - 1], dtype=np.int32),
    "uint8_3d": np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
    "bool": np.array([True, False, True]),
    "complex": np.array([1 + 2j, -0.5j]),
    "big_endian": np.arange(4, dtype=">f8"),
    "unicode": np.array(["Cu", "Pt", "H"]),
    "structured": np.array([(1, 2.5)], dtype=[("a", "<i4"), ("b", "<f8")]),
    "zero_d": np.array(4.25),
    "empty": np.zeros((0, 3)),
    "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    "noncontiguous": np.arange(20.0)[::3],
    "python": {"int": 2 ** 70, "neg": -3, "float": 0.1, "tiny": 5e-324,
               "negzero": -0.0, "nan": float("nan"), "inf": float("inf"),
               "true": True, "false": False, "str": "Cu–Pt ✓", "none": None,
               "$array": 1, "$$x": [], "": "empty key"},
    "nested": {"list": [1, [2.5, {"a": np.arange(3)}], "x"],
               "tuple": (1, (np.float64(2.5), None)),
               "np_scalars": [np.int64(7), np.float32(0.5), np.bool_(True)],
               "dict": {"values_Cu": np.ones((2, 2)), "offsets":
                        np.zeros((0, 3), dtype=np.int64)}},
    "descriptor": fingerprint_value("abc"),
    "top_list": [np.arange(2), 3],
    "top_int": 5,
    "top_str": "hello",
    "top_none": None,
}


# ----------------------------------------------------------------- entries

@pytest.mark.parametrize("name", sorted(VALUES))
def test_round_trip_every_kind_through_loose_and_archive(tmp_path, name):
    value = VALUES[name]
    assert_same(value, decode_entry(encode_entry(value)))
    path = str(tmp_path / "db")
    FileDatabase(path)[name] = value
    assert os.path.isfile(os.path.join(path + ".ampdb", "loose", name))
    assert_same(value, FileDatabase(path)[name])  # fresh: from disk
    assert FileDatabase(path).archive()["moved"] == 1
    assert os.listdir(os.path.join(path + ".ampdb", "loose")) == []
    assert_same(value, FileDatabase(path)[name])  # from the archive


def test_entry_is_a_self_describing_zip_readable_by_numpy():
    data = encode_entry({"a": np.arange(3.0), "n": 2})
    assert data == encode_entry({"a": np.arange(3.0), "n": 2})  # stable
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == ["entry.json", "a0.npy"]
        import json
        header = json.loads(archive.read("entry.json"))
    assert header["format"] == "amp-ampdb-entry"
    assert header["version"] == 1
    assert header["kind"] == "dict"
    assert header["value"] == {"a": {"$array": 0}, "n": 2}
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        assert np.array_equal(npz["a0"], np.arange(3.0))


def test_entry_whose_arrays_disagree_with_the_header_is_corrupt():
    good = encode_entry(np.arange(6.0))
    for old, new in ((b'"shape": [6]', b'"shape": [7]'),
                     (b'"shape": [6]', b'"shape": [-6]'),
                     (b'"dtype": "<f8"', b'"dtype": "<f4"'),
                     (b'"dtype": "<f8"', b'"dtype": "|O"'),
                     (b'{"$array": 0}', b'{"$array": 1}')):
        buffer = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(good)) as source, \
                zipfile.ZipFile(buffer, "w") as target:
            for info in source.infolist():
                content = source.read(info)
                if info.filename == "entry.json":
                    assert old in content
                    content = content.replace(old, new)
                target.writestr(info, content)
        with pytest.raises(CorruptEntryError):
            decode_entry(buffer.getvalue())


def test_npy_header_claiming_a_huge_shape_is_corrupt_without_allocating():
    import tracemalloc

    structured = np.zeros(2, dtype=[("x", "<f8"), ("n", "<i4")])
    good = encode_entry({"s": structured})
    assert decode_entry(good)["s"].tobytes() == structured.tobytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as source, \
            zipfile.ZipFile(buffer, "w") as target:
        for info in source.infolist():
            content = source.read(info)
            if info.filename == "a0.npy":
                assert b"'shape': (2,)" in content
                # 12 GB declared; the header's padding absorbs the digits.
                content = content.replace(b"'shape': (2,)",
                                          b"'shape': (1000000000,)")
            target.writestr(info, content)
    tracemalloc.start()
    try:
        with pytest.raises(CorruptEntryError, match="does not match its "
                           ".npy header"):
            decode_entry(buffer.getvalue())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 ** 20


def test_unsupported_values_are_refused():
    for bad in (object(), {1: np.arange(2)}, np.array([None, 1]), {1, 2}):
        with pytest.raises(TypeError):
            encode_entry(bad)


def test_newer_entry_version_is_refused_not_treated_as_corrupt():
    data = encode_entry(np.arange(2)).replace(b'"version": 1',
                                              b'"version": 9')
    # The CRC of entry.json no longer matches, so rebuild it properly.
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(encode_entry(np.arange(2)))) as old, \
            zipfile.ZipFile(buffer, "w") as new:
        for info in old.infolist():
            content = old.read(info)
            if info.filename == "entry.json":
                content = content.replace(b'"version": 1', b'"version": 9')
            new.writestr(info, content)
    assert data != buffer.getvalue()
    with pytest.raises(UnsupportedEntryError, match="format version 9"):
        decode_entry(buffer.getvalue())


# ------------------------------------------------------------- FileDatabase

def test_suffix_open_and_nothing_created_before_writing(tmp_path):
    db = FileDatabase.open(str(tmp_path / "fp"), "r")
    assert db.path == str(tmp_path / "fp") + ".ampdb"
    assert FileDatabase(str(tmp_path / "x.ampdb")).path.endswith("x.ampdb")
    assert db.keys() == [] and len(db) == 0 and "a" not in db
    with pytest.raises(KeyError):
        db["a"]
    assert os.listdir(tmp_path) == []
    (tmp_path / "file.ampdb").write_text("not a folder")
    with pytest.raises(ValueError, match="not an .ampdb folder"):
        FileDatabase(str(tmp_path / "file.ampdb"))


def test_no_rewrite_when_unchanged(tmp_path):
    db = FileDatabase(str(tmp_path / "db"))
    db["k"] = {"a": np.arange(5.0), "n": 1}
    path = os.path.join(db.loosepath, "k")
    before = os.stat(path)
    os.utime(path, ns=(before.st_atime_ns, 1_000_000_000))
    before = os.stat(path)
    FileDatabase(db.path)["k"] = {"a": np.arange(5.0), "n": 1}  # equal copy
    after = os.stat(path)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino,
                                                  before.st_mtime_ns)
    db["k"] = {"a": np.arange(5.0), "n": 2}  # changed: rewritten
    assert os.stat(path).st_ino != before.st_ino
    assert FileDatabase(db.path)["k"]["n"] == 2
    # Equal to the archived version: no loose copy is made.
    db.archive()
    FileDatabase(db.path)["k"] = {"a": np.arange(5.0), "n": 2}
    assert os.listdir(db.loosepath) == []


@pytest.mark.parametrize("key", ["", ".", "..", "a/b", "/etc", "a\\b",
                                 "a\0b", ".hidden", ".tmp-x", "x" * 201,
                                 None, 3, b"abc"])
def test_invalid_keys_are_refused_naming_the_key(tmp_path, key):
    db = FileDatabase(str(tmp_path / "db"))
    for operation in (lambda: db.__setitem__(key, 1),
                      lambda: db[key], lambda: key in db,
                      lambda: MemoryDatabase().__setitem__(key, 1)):
        with pytest.raises(ValueError) as info:
            operation()
        assert repr(key)[:50] in str(info.value)
    assert not os.path.exists(db.path)


def test_valid_keys(tmp_path):
    db = FileDatabase(str(tmp_path / "db"))
    keys = ["d41d8cd98f00b204e9800998ecf8427e", "a.b", "a-b_c", "ü", "x" * 200]
    for number, key in enumerate(keys):
        check_key(key)
        db[key] = number
    assert sorted(FileDatabase(db.path).keys()) == sorted(keys)
    assert [FileDatabase(db.path)[key] for key in keys] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_pickle_entries_are_refused_with_rebuild_message(tmp_path, protocol):
    db = FileDatabase(str(tmp_path / "amp1"))
    os.makedirs(db.loosepath)
    with open(os.path.join(db.loosepath, "h1"), "wb") as handle:
        pickle.dump({"x": [1.0, 2.0]}, handle, protocol=protocol)
    for operation in (lambda: db["h1"], lambda: "h1" in db, db.archive):
        with pytest.raises(UnsupportedEntryError) as info:
            operation()
        message = str(info.value)
        assert "pickle" in message and "delete " + db.path in message
        assert "recomputed" in message
    # archive() refused before changing anything.
    assert os.listdir(db.loosepath) == ["h1"]
    assert not os.path.exists(db.tarpath)


class _Payload:
    """Unpickling this creates the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_crafted_entries_never_run_code(tmp_path):
    marker = str(tmp_path / "marker")
    db = FileDatabase(str(tmp_path / "db"))
    os.makedirs(db.loosepath)
    # 1. A bare pickle whose loading would call open(marker, 'w').
    with open(os.path.join(db.loosepath, "bare"), "wb") as handle:
        pickle.dump(_Payload(marker), handle, protocol=0)
    # 2. A well-formed entry whose array member is a pickled object array.
    array = np.empty(1, dtype=object)
    array[0] = _Payload(marker)
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    crafted = io.BytesIO()
    with zipfile.ZipFile(crafted, "w") as archive:
        archive.writestr("entry.json", '{"format": "amp-ampdb-entry", '
                         '"version": 1, "kind": "ndarray", "arrays": 1, '
                         '"value": {"$array": 0}}')
        archive.writestr("a0.npy", buffer.getvalue())
    with open(os.path.join(db.loosepath, "npy"), "wb") as handle:
        handle.write(crafted.getvalue())
    with pytest.raises(UnsupportedEntryError):
        db["bare"]
    log = Messages()
    db.log = log
    assert "npy" not in db
    with pytest.raises(KeyError):
        db["npy"]
    assert "damaged" in log[0] and "'npy'" in log[0]
    assert not os.path.exists(marker)


def test_loose_wins_over_archive_and_keys_from_both_places(tmp_path):
    db = FileDatabase(str(tmp_path / "db"))
    db.update({"a": np.arange(3), "shared": "archived"})
    assert db.archive()["moved"] == 2
    db.update([("b", 1.5), ("shared", "loose")])
    fresh = FileDatabase(db.path)
    assert sorted(fresh.keys()) == ["a", "b", "shared"]
    assert len(fresh) == 3
    assert "a" in fresh and "b" in fresh and "shared" in fresh
    assert "c" not in fresh
    assert fresh["shared"] == "loose"
    assert_same(np.arange(3), fresh["a"])
    assert sorted(dict(fresh.items())) == ["a", "b", "shared"]
    assert sorted(map(str, fresh.values())) == ["1.5", "[0 1 2]", "loose"]
    counts = fresh.archive()
    assert (counts["moved"], counts["entries"]) == (2, 3)
    fresh = FileDatabase(db.path)
    assert fresh["shared"] == "loose" and fresh["b"] == 1.5
    assert os.listdir(db.loosepath) == []


def test_archive_is_indexed_once_and_refreshed_when_replaced(tmp_path,
                                                           monkeypatch):
    writer = FileDatabase(str(tmp_path / "db"))
    writer.update({"k%03d" % n: np.full(4, n) for n in range(100)})
    writer.archive()
    builds = []
    original = database._ArchiveIndex.__init__

    def counting(self, *args):
        builds.append(1)
        original(self, *args)

    monkeypatch.setattr(database._ArchiveIndex, "__init__", counting)
    reader = FileDatabase(writer.path)
    assert len(reader) == 100
    assert all(reader["k%03d" % n][0] == n for n in range(100))
    assert len(builds) == 1
    writer["new"] = np.zeros(2)
    writer.archive()  # replaces the archive file: the reader re-indexes
    del builds[:]
    assert "new" in reader and len(reader) == 101 and "k050" in reader
    assert len(builds) == 1


def test_close_forgets_memory(tmp_path):
    with FileDatabase(str(tmp_path / "db")) as db:
        db["a"] = 1
        assert db._memdict == {"a": 1}
    assert db._memdict == {}
    assert db["a"] == 1


# --------------------------------------------------------- damaged entries

def _damage(path, how):
    data = open(path, "rb").read()
    if how == "truncated":
        data = data[:len(data) // 2]
    elif how == "empty":
        data = b""
    elif how == "bitflip":  # inside the array bytes: only the CRC tells
        position = data.index(b"a0.npy", 40) + 200
        data = data[:position] + bytes([data[position] ^ 1]) \
            + data[position + 1:]
    elif how == "garbage":
        data = b"hello, I am not an entry"
    with open(path, "wb") as handle:
        handle.write(data)


@pytest.mark.parametrize("how", ["truncated", "empty", "bitflip", "garbage"])
def test_damaged_loose_entry_is_missing_and_recomputed(tmp_path, how):
    images = make_images(3)
    keys = list(images)
    calculator = CountingCalculator()
    data = Data(str(tmp_path / "fp"), calculator=calculator)
    assert data.calculate_items(images, {"cores": 1}) == keys
    expected = data[keys[1]]
    assert expected["positions"].shape == (2, 3)
    _damage(os.path.join(data.d.loosepath, keys[1]), how)

    log = Messages()
    db = FileDatabase(str(tmp_path / "fp"), log=log)
    assert keys[1] not in db
    with pytest.raises(KeyError):
        db[keys[1]]
    assert sorted(db.keys()) == sorted([keys[0], keys[2]])
    assert len(db) == 2
    assert any("damaged" in message and keys[1] in message
               for message in log)

    calculator2 = CountingCalculator()
    again = Data(str(tmp_path / "fp"), calculator=calculator2)
    assert again.calculate_items(images, None) == [keys[1]]
    assert calculator2.calls == [keys[1]]
    assert_same(expected, FileDatabase(str(tmp_path / "fp"))[keys[1]])


def test_damaged_loose_entry_falls_back_to_the_archive(tmp_path):
    db = FileDatabase(str(tmp_path / "db"))
    db["k"] = np.arange(4.0)
    db.archive()
    with open(os.path.join(db.loosepath, "k"), "wb") as handle:
        handle.write(encode_entry(np.arange(4.0) * 2)[:60])
    assert_same(np.arange(4.0), FileDatabase(db.path)["k"])
    counts = FileDatabase(db.path).archive()  # drops the damaged loose one
    assert (counts["moved"], counts["dropped"], counts["entries"]) == (0, 1, 1)
    assert os.listdir(db.loosepath) == []


def _rewrite_archive(path, change):
    with gzip.open(path, "rb") as handle:
        raw = bytearray(handle.read())
    change(raw)
    with gzip.open(path, "wb") as handle:
        handle.write(bytes(raw))


def test_damaged_archive_member_is_missing_and_recomputed(tmp_path):
    images = make_images(4)
    keys = list(images)
    data = Data(str(tmp_path / "fp"), calculator=CountingCalculator())
    data.calculate_items(images)
    data.d.archive()
    expected = FileDatabase(data.d.path)[keys[2]]

    def flip(raw):  # one byte of member keys[2]'s array data
        with tarfile.open(fileobj=io.BytesIO(bytes(raw))) as tar:
            info = tar.getmember(keys[2])
        raw[info.offset_data + info.size - 5] ^= 0xFF

    _rewrite_archive(data.d.tarpath, flip)
    db = FileDatabase(data.d.path)
    assert keys[2] not in db and keys[0] in db and keys[3] in db
    assert sorted(db.keys()) == sorted(keys[:2] + keys[3:])

    calculator = CountingCalculator()
    again = Data(str(tmp_path / "fp"), calculator=calculator)
    assert again.calculate_items(images) == [keys[2]]
    assert_same(expected, again[keys[2]])
    assert os.listdir(again.d.loosepath) == [keys[2]]  # loose now wins


def test_truncated_archive_keeps_its_readable_members(tmp_path):
    db = FileDatabase(str(tmp_path / "db"))
    db.update({"k%02d" % n: np.random.default_rng(n).random(2000)
               for n in range(10)})
    db.archive()
    size = os.path.getsize(db.tarpath)
    with open(db.tarpath, "r+b") as handle:
        handle.truncate(size // 2)
    log = Messages()
    fresh = FileDatabase(db.path, log=log)
    present = fresh.keys()
    assert 2 <= len(present) <= 7  # about the first half
    assert present == ["k%02d" % n for n in range(len(present))]
    for key in present:
        assert_same(db[key], fresh[key])
    assert "k09" not in fresh
    assert any("damaged" in message for message in log)
    # Garbage instead of gzip: no member, no exception.
    with open(db.tarpath, "wb") as handle:
        handle.write(b"not gzip at all")
    assert FileDatabase(db.path).keys() == []


@pytest.mark.parametrize("shape", ["one gzip member", "three members",
                                   "truncated"])
def test_archive_is_read_without_a_copy_when_there_is_no_room(
        tmp_path, monkeypatch, shape):
    """When the inflated copy cannot be written, the archive is read from
    the compressed file (zlib checkpoints, bounded memory): every member
    gives the same bytes as through the copy, read in any order."""
    import random
    import zlib

    from amp.store import archive, gzipseek

    db = FileDatabase(str(tmp_path / "db"))
    rng = np.random.default_rng(3)
    db.update({"k%03d" % n: rng.integers(0, 50, size=rng.integers(1, 3000))
               for n in range(120)})
    db.archive()
    tar = gzip.decompress(open(db.tarpath, "rb").read())
    if shape == "three members":
        cuts = [0, 12345, len(tar) // 2 + 7, len(tar)]
        parts = []
        for a, b in zip(cuts, cuts[1:]):
            packer = zlib.compressobj(6, zlib.DEFLATED, 31)
            parts.append(packer.compress(tar[a:b]) + packer.flush())
        open(db.tarpath, "wb").write(b"".join(parts))
    elif shape == "truncated":
        data = open(db.tarpath, "rb").read()
        open(db.tarpath, "wb").write(data[:len(data) * 2 // 3])
    expected = FileDatabase(db.path)
    keys = expected.keys()
    assert len(keys) > 30
    values = {key: expected[key] for key in keys}

    def no_room(self, data):
        raise archive._NoRoom(OSError(28, "No space left on device"))

    monkeypatch.setattr(archive._Spool, "write", no_room)
    monkeypatch.setattr(gzipseek.InflatedView, "SPACING", 4096)
    monkeypatch.setattr(gzipseek.InflatedView, "TAIL_BYTES", 8192)
    monkeypatch.setattr(gzipseek.InflatedView, "MAX_CHECKPOINTS", 2)
    log = Messages()
    reader = FileDatabase(db.path, log=log)
    assert reader.keys() == keys
    assert any("no room for its inflated copy" in m for m in log)
    order = list(keys) * 2
    random.Random(5).shuffle(order)
    for key in order:
        reader._memdict.clear()
        assert_same(values[key], reader[key])
    view = reader._archive_index()._spool
    assert isinstance(view, gzipseek.InflatedView)
    assert len(view._checkpoints) <= 2 and view.spacing > 4096


def test_archive_recovers_what_a_crashed_archiver_left(tmp_path):
    db = FileDatabase(str(tmp_path / "db"))
    db["a"] = 1
    os.rename(os.path.join(db.loosepath, "a"),
              os.path.join(db.loosepath, ".archiving-a-123-abcdef"))
    open(os.path.join(db.path, ".tmp-archive-123-abcdef.tar.gz"), "w").close()
    assert FileDatabase(db.path).keys() == []  # temporary names are no keys
    counts = FileDatabase(db.path).archive()
    assert (counts["moved"], counts["entries"]) == (1, 1)
    assert FileDatabase(db.path)["a"] == 1
    assert sorted(os.listdir(db.path)) == ["archive.tar.gz", "lock", "loose"]
    assert os.listdir(db.loosepath) == []


# ------------------------------------------------------------- concurrency

WRITERS, PER_WRITER, SHARED = 4, 200, 40


def _writer(path, number, start):
    start.wait()
    db = FileDatabase(path)
    for index in range(PER_WRITER):
        key = "w%d-%03d" % (number, index)
        db[key] = fingerprint_value(key)
        if index < SHARED:  # the same images computed by every writer
            db["shared-%03d" % index] = fingerprint_value("shared-%03d"
                                                          % index)
        if index % 25 == 0:  # read back from disk while archive() runs
            key = "w%d-%03d" % (number, index // 2)
            assert_same(fingerprint_value(key), FileDatabase(path)[key])


def _archiver(path, start, stop, moved):
    start.wait()
    db = FileDatabase(path)
    while not stop.is_set():
        counts = db.archive()
        if counts["moved"]:
            moved.append(counts["moved"])
    moved.append(db.archive()["moved"])


def test_concurrent_writers_and_archivers_lose_nothing(tmp_path):
    context = multiprocessing.get_context("fork")
    path = str(tmp_path / "shared.ampdb")
    manager = context.Manager()
    moved = manager.list()
    start, stop = context.Barrier(WRITERS + 2), context.Event()
    writers = [context.Process(target=_writer, args=(path, number, start))
               for number in range(WRITERS)]
    archivers = [context.Process(target=_archiver,
                                 args=(path, start, stop, moved))
                 for _ in range(2)]
    for process in writers + archivers:
        process.start()
    for process in writers:
        process.join(120)
    stop.set()
    for process in archivers:
        process.join(120)
    assert [p.exitcode for p in writers + archivers] == [0] * (WRITERS + 2)
    moved = list(moved)
    manager.shutdown()
    assert sum(1 for count in moved if count) >= 2  # ran during the writes
    expected = ["w%d-%03d" % (n, i) for n in range(WRITERS)
                for i in range(PER_WRITER)]
    expected += ["shared-%03d" % i for i in range(SHARED)]
    db = FileDatabase(path)
    assert sorted(db.keys()) == sorted(expected)
    assert len(db) == WRITERS * PER_WRITER + SHARED == 840
    for key in expected:
        assert_same(fingerprint_value(key), db[key])
    leftovers = [name for name in os.listdir(path) + os.listdir(db.loosepath)
                 if name.startswith(".")]
    assert leftovers == []
    assert os.listdir(db.loosepath) == []  # the last archive() took all
    assert sum(moved) >= len(expected)


# ------------------------------------------------------- parameter record

def test_parameter_record(tmp_path):
    parameters = {"cutoff": {"name": "Cosine", "kwargs": {"Rc": 6.5}},
                  "Gs": {"Cu": [{"type": "G2", "element": "Cu", "eta": 0.05}]},
                  "etas": np.array([0.05, 4.0])}
    db = FileDatabase(str(tmp_path / "fp"))
    assert db.read_parameters() is None
    record = db.check_parameters(parameters)
    assert record["etas"] == [0.05, 4.0]
    assert FileDatabase(db.path).read_parameters() == record
    # Same parameters (lists for arrays, other key order): accepted.
    same = {"etas": [0.05, 4.0], "Gs": parameters["Gs"],
            "cutoff": {"kwargs": {"Rc": 6.5}, "name": "Cosine"}}
    assert FileDatabase(db.path).check_parameters(same) == record
    different = dict(same, cutoff={"name": "Cosine", "kwargs": {"Rc": 5.0}})
    with pytest.raises(ValueError) as info:
        FileDatabase(db.path).check_parameters(different)
    message = str(info.value)
    assert db.path in message and "cutoff" in message
    assert '"Rc": 6.5' in message and '"Rc": 5.0' in message
    assert "Gs" not in message and "etas" not in message
    assert "dblabel" in message and "never mixed" in message
    with pytest.raises(ValueError, match="extra"):
        FileDatabase(db.path).check_parameters(dict(same, extra=1))
    assert FileDatabase(db.path).read_parameters() == record  # unchanged
    with open(db.parameterspath, "w") as handle:
        handle.write("{torn")
    with pytest.raises(ValueError, match="unreadable"):
        FileDatabase(db.path).check_parameters(same)


def _record(path, cutoff, start, results):
    start.wait()
    try:
        FileDatabase(path).check_parameters({"cutoff": cutoff})
        results.append(("ok", cutoff))
    except ValueError:
        results.append(("refused", cutoff))


def test_concurrent_first_parameter_records_do_not_clobber(tmp_path):
    context = multiprocessing.get_context("fork")
    path = str(tmp_path / "fp.ampdb")
    manager = context.Manager()
    results = manager.list()
    start = context.Barrier(4)
    processes = [context.Process(target=_record,
                                 args=(path, cutoff, start, results))
                 for cutoff in (3.0, 4.0, 5.0, 6.0)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    results = list(results)
    manager.shutdown()
    winner = FileDatabase(path).read_parameters()["cutoff"]
    assert sorted(results) == sorted(
        [("ok", winner)] + [("refused", c) for c in (3.0, 4.0, 5.0, 6.0)
                            if c != winner])
    assert [name for name in os.listdir(path) if name.startswith(".")] == []


# ------------------------------------------------------------------- Data

def test_data_computes_only_missing_keys(tmp_path):
    images = make_images(5)
    calculator = CountingCalculator()
    data = Data(str(tmp_path / "fp"), calculator=calculator)
    log = Messages()
    assert data.calculate_items(images, {"cores": 1}, log=log) == list(images)
    assert calculator.calls == list(images)
    assert "0 of 5 images present, 5 to calculate" in log[0]
    data.close()
    assert data.d is None

    calculator = CountingCalculator()
    again = Data(str(tmp_path / "fp"), calculator=calculator)
    assert again.calculate_items(images, None) == []
    assert calculator.calls == []
    for key, image in images.items():
        assert np.array_equal(again[key]["positions"], image.positions)
    more = dict(images, **make_images(2, start=10))
    assert again.calculate_items(more) == list(more)[5:]
    assert calculator.calls == list(more)[5:]
    assert len(FileDatabase(str(tmp_path / "fp"))) == 7
    assert isinstance(again.open(), FileDatabase)


def test_data_in_memory_writes_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    images = make_images(3)
    calculator = CountingCalculator()
    data = Data(None, calculator=calculator)
    assert isinstance(data.open(), MemoryDatabase)
    assert data.calculate_items(images) == list(images)
    data.close()
    assert data.calculate_items(images) == []  # kept across close()
    assert len(calculator.calls) == 3
    named = Data("label", db=MemoryDatabase, calculator=calculator)
    named.calculate_items(images)
    named.close()
    assert named.calculate_items(images) == [] and len(named.open()) == 3
    store = MemoryDatabase(max_entries=1)
    ephemeral = Data(None, db=store, calculator=calculator)
    for key in images:
        ephemeral.calculate_items({key: images[key]})
        assert store.keys() == [key]
    assert os.listdir(tmp_path) == []


def test_data_getitem_recomputes_a_value_damaged_after_calculation(tmp_path):
    images = make_images(2)
    key = list(images)[0]
    calculator = CountingCalculator()
    data = Data(str(tmp_path / "fp"), calculator=calculator)
    data.calculate_items(images)
    data.d.close()  # forget memory: the next read goes to disk
    _damage(os.path.join(data.d.loosepath, key), "truncated")
    assert np.array_equal(data[key]["positions"], images[key].positions)
    assert calculator.calls == list(images) + [key]
    with pytest.raises(KeyError):
        data["unknown"]


def test_memory_database():
    store = MemoryDatabase.open("ignored")
    store.update({"a": 1, "b": np.arange(2)})
    store["c"] = [3]
    assert store.keys() == ["a", "b", "c"] and len(store) == 3
    assert "b" in store and "z" not in store and store["c"] == [3]
    assert store.archive()["moved"] == 0
    store.close()
    assert len(store) == 3
    store.clear()
    assert store.keys() == []
    bounded = MemoryDatabase(max_entries=2)
    for number in range(5):
        bounded["k%d" % number] = number
    assert bounded.items() == [("k3", 3), ("k4", 4)]
    assert bounded.check_parameters({"cutoff": 6.5}) == {"cutoff": 6.5}
    with pytest.raises(ValueError, match="cutoff"):
        bounded.check_parameters({"cutoff": 5.0})
    with pytest.raises(ValueError):
        MemoryDatabase(max_entries=0)


def test_corrupt_entry_error_is_a_value_error():
    with pytest.raises(CorruptEntryError):
        decode_entry(encode_entry([1, 2])[:-10])
    assert issubclass(CorruptEntryError, ValueError)


def test_parallel_code_can_take_over_the_missing_keys(tmp_path):
    class Handed(Data):
        def _calculate_missing(self, keys, images, parallel, log):
            self.handed = (list(keys), parallel)
            self.d.update({key: len(images[key]) for key in keys})

    images = make_images(4)
    keys = list(images)
    FileDatabase(str(tmp_path / "fp"))[keys[1]] = 2
    data = Handed(str(tmp_path / "fp"))
    assert data.calculate_items(images, {"cores": 2}) == [keys[0]] + keys[2:]
    assert data.handed == ([keys[0]] + keys[2:], {"cores": 2})
    assert [FileDatabase(str(tmp_path / "fp"))[key] for key in keys] == [2] * 4


def test_fsync_option_and_amp1_archives_are_refused(tmp_path):
    db = FileDatabase(str(tmp_path / "db"), fsync=True)
    db["a"] = np.arange(3)
    assert_same(np.arange(3), FileDatabase(db.path)["a"])
    # An archive made by Amp 1.x: tar.gz members holding pickles.
    legacy = FileDatabase(str(tmp_path / "old"))
    os.makedirs(legacy.path)
    payload = pickle.dumps([1.0, 2.0], protocol=0)
    with tarfile.open(legacy.tarpath, "w:gz") as tar:
        info = tarfile.TarInfo("h1")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    assert legacy.keys() == ["h1"]
    with pytest.raises(UnsupportedEntryError, match="archive.tar.gz of .*"
                       "delete .*old.ampdb"):
        legacy["h1"]
