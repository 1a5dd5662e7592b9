"""Hostile files and careless input: each is refused with one named error,
without hanging, following a link or allocating more than its own size.

Database folders and model files may come from someone else; these tests
build the files an attacker would (a FIFO or links in place of entries, a
symlinked lock, a gzip bomb, model files asking for huge arrays or nested
100,000 levels deep, binary or NaN models) and the mistakes a user makes
(no images, two atoms at one position, a huge cutoff), and check the
message of each.
"""
import contextlib
import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
import tracemalloc
import zlib

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read

import amp.store.limits as limits
from amp import Amp
from amp.descriptor import neighbors
from amp.descriptor.gaussian import Gaussian
from amp.descriptor.neighbors import atoms_neighbor_list
from amp.model.neuralnetwork import NeuralNetwork
from amp.parallel import WorkerPool
from amp.parallel import wire
from amp.store.database import FileDatabase
from amp.store.files import UnsafeFileError, read_file
from amp.store.modelfile import ModelFileError
from amp.store.modelfile import read as read_model
from checks import watchdog
from conftest import AMP_REFERENCE, ROOT, gone, with_emt_results
from parallel_jobs import Echo

LEGACY = os.path.join(AMP_REFERENCE, "ptcu_nn33.amp")


@contextlib.contextmanager
def peak_memory(limit_bytes):
    """Fail when Python allocations during the block peak above a limit."""
    tracemalloc.start()
    try:
        yield
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < limit_bytes, "peak allocation %d bytes" % peak


def database_with_entries(path, count=3):
    db = FileDatabase(str(path))
    for k in range(count):
        db["k%d" % k] = np.arange(5.0) + k
    return db


class Reports(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def reports():
    handler = Reports()
    logger = logging.getLogger("amp.store.database")
    logger.addHandler(handler)
    yield handler.lines
    logger.removeHandler(handler)


# ------------------------------------------------ files in a database folder

def test_fifo_entry_is_skipped_by_name_without_hanging(tmp_path, reports):
    db = database_with_entries(tmp_path / "db")
    os.mkfifo(os.path.join(db.loosepath, "pipe"))
    fresh = FileDatabase(db.path)
    with watchdog():
        assert "pipe" not in fresh
        assert sorted(fresh.keys()) == ["k0", "k1", "k2"]
        counts = FileDatabase(db.path).archive()  # amp-compress's path
    assert counts["moved"] == 3 and counts["entries"] == 3
    assert any("entry 'pipe' in loose/ of %s is a FIFO, not a regular file; "
               "it is skipped" % db.path in line for line in reports)
    # Left where it was; the real entries are archived and still read.
    assert os.path.exists(os.path.join(db.loosepath, "pipe"))
    assert FileDatabase(db.path)["k1"][0] == 1.0


def test_amp_compress_skips_a_fifo_entry(tmp_path):
    db = database_with_entries(tmp_path / "db")
    os.mkfifo(os.path.join(db.loosepath, "pipe"))
    done = subprocess.run([sys.executable, "-m", "amp.cli", "compress",
                           db.path], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "moved 3 loose entries" in done.stdout
    assert "'pipe'" in done.stderr and "FIFO" in done.stderr


def test_symlink_entries_are_never_followed(tmp_path, reports):
    db = database_with_entries(tmp_path / "db")
    secret = tmp_path / "secret"
    secret.write_bytes(db._read_loose("k0"))  # a valid entry, outside
    os.symlink(str(secret), os.path.join(db.loosepath, "outside"))
    # Followed, /dev/zero would be read until memory runs out.
    os.symlink("/dev/zero", os.path.join(db.loosepath, "zero"))
    fresh = FileDatabase(db.path)
    with watchdog(), peak_memory(50 * 2 ** 20):
        assert "outside" not in fresh and "zero" not in fresh
        with pytest.raises(KeyError):
            fresh["zero"]
    assert sorted(fresh.keys()) == ["k0", "k1", "k2"]
    for key in ("outside", "zero"):
        assert any("entry %r in loose/ of %s is a symbolic link, which is "
                   "never followed; it is skipped" % (key, db.path) in line
                   for line in reports)
    with watchdog():
        assert FileDatabase(db.path).archive()["moved"] == 3
    assert os.path.islink(os.path.join(db.loosepath, "zero"))


def test_folder_entry_and_oversized_entry_are_skipped(tmp_path, reports,
                                                       monkeypatch):
    db = database_with_entries(tmp_path / "db")
    os.mkdir(os.path.join(db.loosepath, "folder"))
    db["big"] = np.zeros(1000)
    monkeypatch.setattr(limits, "MAX_ENTRY_BYTES", 4000)
    fresh = FileDatabase(db.path)
    assert "folder" not in fresh and "big" not in fresh
    assert fresh["k2"][0] == 2.0
    assert any("more than the cap of 4000 (see amp.store.limits)" in line
               for line in reports)


def test_symlinked_lock_creates_nothing_outside(tmp_path):
    db = database_with_entries(tmp_path / "db")
    target = tmp_path / "elsewhere"
    os.symlink(str(target), os.path.join(db.path, "lock"))
    with pytest.raises(UnsafeFileError, match="the lock file .*lock is a "
                       "symbolic link, which is never followed; archive\\(\\) "
                       "creates nothing outside the database: delete"):
        db.archive()
    assert not target.exists()
    assert len(os.listdir(db.loosepath)) == 3  # nothing moved
    os.remove(os.path.join(db.path, "lock"))
    assert db.archive()["moved"] == 3


def test_fifo_lock_is_refused(tmp_path):
    db = database_with_entries(tmp_path / "db")
    os.mkfifo(os.path.join(db.path, "lock"))
    with watchdog(), pytest.raises(UnsafeFileError, match="is a FIFO"):
        db.archive()


def gzip_bomb(db, zero_bytes):
    """Rewrite ``db``'s archive so that its gzip stream goes on with
    ``zero_bytes`` zeros after the tar members (a few kB per MB)."""
    tar = zlib.decompress(open(db.tarpath, "rb").read(), wbits=31)
    deflate = zlib.compressobj(9, wbits=31)
    parts = [deflate.compress(tar)]
    block = bytes(2 ** 22)
    for _ in range(zero_bytes // len(block)):
        parts.append(deflate.compress(block))
    parts.append(deflate.flush())
    with open(db.tarpath, "wb") as handle:
        handle.write(b"".join(parts))


def test_gzip_bomb_archive_inflates_only_its_members(tmp_path):
    db = database_with_entries(tmp_path / "db")
    db.archive()
    gzip_bomb(db, 256 * 2 ** 20)
    assert os.path.getsize(db.tarpath) < 2 ** 20
    fresh = FileDatabase(db.path)
    assert fresh["k2"][0] == 2.0
    # Inflating stopped at the tar end block: a few kB, not 256 MB.
    assert fresh._index._spool.seek(0, os.SEEK_END) < 2 ** 16
    assert sorted(fresh.keys()) == ["k0", "k1", "k2"]
    fresh["k3"] = np.ones(2)
    assert fresh.archive()["entries"] == 4


def test_archive_inflation_and_member_caps(tmp_path, reports, monkeypatch):
    db = database_with_entries(tmp_path / "db", count=40)
    db["large"] = np.zeros(20000)
    db.archive()
    monkeypatch.setattr(limits, "MAX_ENTRY_BYTES", 100000)
    fresh = FileDatabase(db.path)
    assert "k39" in fresh  # members before the large one are read
    assert "large" not in fresh.keys()
    assert any("member 'large' declares" in line and "more than the cap of "
               "100000" in line for line in reports)
    fresh["new"] = np.ones(3)
    with pytest.raises(UnsafeFileError, match="archive\\(\\) leaves .* as it "
                       "is: member 'large' declares"):
        fresh.archive()
    monkeypatch.setattr(limits, "MAX_ENTRY_BYTES", 2 ** 30)
    monkeypatch.setattr(limits, "MAX_ARCHIVE_BYTES", 50000)
    capped = FileDatabase(db.path)
    assert "large" not in capped.keys()
    assert any("inflates to more than the cap of 50000" in line
               for line in reports)


def test_symlinked_archive_is_treated_as_absent(tmp_path, reports):
    db = database_with_entries(tmp_path / "db")
    db.archive()
    real = tmp_path / "real.tar.gz"
    os.replace(db.tarpath, str(real))
    os.symlink(str(real), db.tarpath)
    fresh = FileDatabase(db.path)
    assert fresh.keys() == []
    assert any("archive %s is a symbolic link" % db.tarpath in line
               for line in reports)
    # Perhaps the user's own link to another disk: never replaced.
    fresh["new"] = np.ones(2)
    with pytest.raises(UnsafeFileError, match="archive\\(\\) leaves .* as it "
                       "is: archive .* is a symbolic link, which is never "
                       "followed; move it away"):
        fresh.archive()
    assert os.path.islink(db.tarpath)
    assert os.path.exists(os.path.join(db.loosepath, "new"))


def test_read_file_refuses_links_fifos_and_oversized_files(tmp_path):
    regular = tmp_path / "regular"
    regular.write_bytes(b"12345")
    assert read_file(str(regular), 5) == b"12345"
    with pytest.raises(UnsafeFileError, match="has 5 bytes, more than the "
                       "cap of 4"):
        read_file(str(regular), 4)
    os.symlink(str(regular), str(tmp_path / "link"))
    with pytest.raises(UnsafeFileError, match="symbolic link"):
        read_file(str(tmp_path / "link"), 100)
    os.mkfifo(str(tmp_path / "fifo"))
    with watchdog(), pytest.raises(UnsafeFileError, match="a FIFO"):
        read_file(str(tmp_path / "fifo"), 100)
    with pytest.raises(UnsafeFileError, match="a folder"):
        read_file(str(tmp_path), 100)


# ------------------------------------------------------------- model files

def write(path, text):
    with open(path, "wb") as handle:
        handle.write(text if isinstance(text, bytes) else text.encode())
    return str(path)


@pytest.mark.parametrize("dtype, refused", [
    ('("f8", (12000, 12000))', "dtype \\('f8', \\(12000, 12000\\)\\) is not "
     "allowed \\(only plain number, bool and string dtypes\\)"),
    ('"U300000000"', "an array of 1200000000 bytes \\(dtype U300000000\\) is "
     "more than the cap of 1073741824"),
    ('"(12000,12000)f8"', "dtype '\\(12000,12000\\)f8' is not allowed"),
])
def test_legacy_file_asking_for_a_huge_array(tmp_path, dtype, refused):
    path = write(tmp_path / "huge.amp", "dict(descriptor=dict(), model=dict("
                 "weights=array([1.0], dtype=%s)))" % dtype)
    assert os.path.getsize(path) < 100
    with peak_memory(20 * 2 ** 20), \
            pytest.raises(ModelFileError, match="refusing to load .*huge.amp: "
                          + refused):
        Amp.load(path)


@pytest.mark.parametrize("text, refused", [
    ("[" * 100000, "not a Python literal: too many nested parentheses"),
    ('{"format": "amp-mlip-model", "descriptor": ' + "[" * 100000
     + "]" * 100000 + "}", "nesting 100001 levels deep is more than the "
     "cap of 100"),
    ("{" + '"a": {' * 101 + "}" * 102, "nesting 102 levels deep"),
    ("dict(descriptor=" + "-" * 100000 + "1, model=dict())",
     "nesting deeper than Python's parser accepts"),
    ("dict(descriptor=dict(), model=dict(a=" + "[" * 100000 + "]" * 100000
     + "))", "too many nested parentheses"),
    ("dict(descriptor=dict(), model=" + "dict(a=" * 150 + "1" + ")" * 151,
     "nesting deeper than 100 levels"),
    # Python 3.10's parser takes this chain; later ones refuse it.
    ("dict(descriptor=dict(), model=a" + ".a" * 100000 + "())",
     "nesting deeper than Python's parser accepts|call of an expression"),
])
def test_deeply_nested_model_file(tmp_path, text, refused):
    path = write(tmp_path / "deep.amp", text)
    with pytest.raises(ModelFileError, match=refused):
        Amp.load(path)


def test_binary_model_file(tmp_path):
    path = write(tmp_path / "binary.amp", bytes(range(256)) * 4)
    with pytest.raises(ModelFileError, match="binary.amp is not a model "
                       "file: it is binary, not text \\(byte 128 is not "
                       "UTF-8\\)"):
        Amp.load(path)
    path = write(tmp_path / "nul.amp", b"dict(descriptor=\0)")
    with pytest.raises(ModelFileError, match="NUL"):
        Amp.load(path)


def saved_model(tmp_path):
    path = str(tmp_path / "model.amp")
    Amp.load(LEGACY).save(path)
    return json.loads(open(path).read())


@pytest.mark.parametrize("edit, refused", [
    (lambda m: m["model"]["weights"]["Cu"]["1"][0].__setitem__(0, np.nan),
     "holds a NaN or infinite number in model/weights/Cu/1"),
    (lambda m: m["model"]["weights"]["Pt"]["3"][1].__setitem__(0, np.inf),
     "holds a NaN or infinite number in model/weights/Pt/3"),
    (lambda m: m["model"]["scalings"]["Cu"].__setitem__("slope", -np.inf),
     "holds a NaN or infinite number in model/scalings/Cu/slope"),
    (lambda m: m["model"]["fprange"]["Pt"][3].__setitem__(1, np.nan),
     "holds a NaN or infinite number in model/fprange/Pt"),
    (lambda m: m["descriptor"]["cutoff"]["kwargs"].__setitem__("Rc", np.nan),
     "holds a NaN or infinite number in descriptor/cutoff/kwargs/Rc"),
    (lambda m: m["model"]["weights"]["Cu"]["2"].pop(),
     "model weights of Cu layer 2 has shape \\(3, 3\\), which does not fit "
     "the layer before"),
    (lambda m: m["model"]["fprange"]["Cu"].pop(),
     "model fprange of Cu has 19 features but its network takes 20"),
    (lambda m: m["model"]["weights"]["Cu"]["1"][2].append(1.0),
     "model weights of Cu layer 1 is not an array of numbers"),
    (lambda m: m["model"]["scalings"]["Cu"].__setitem__("slope", "1"),
     "model scalings are not a number intercept and slope"),
])
def test_model_numbers_must_be_finite_and_fit(tmp_path, edit, refused):
    content = saved_model(tmp_path)
    edit(content)
    path = write(tmp_path / "edited.amp", json.dumps(content))
    with pytest.raises(ModelFileError, match=refused):
        Amp.load(path)


def test_nan_weights_in_a_legacy_file(tmp_path):
    text = open(LEGACY).read()
    assert "1.533194571258241" in text  # the Cu intercept
    path = write(tmp_path / "nan.amp", text.replace("1.533194571258241",
                                                    "nan"))
    with pytest.raises(ModelFileError, match="in model/scalings/Cu/"
                       "intercept"):
        Amp.load(path)


def test_model_file_that_is_a_fifo_or_too_large(tmp_path, monkeypatch):
    os.mkfifo(str(tmp_path / "pipe.amp"))
    with watchdog(), pytest.raises(ModelFileError, match="refusing to load: "
                                   "model file .*pipe.amp is a FIFO"):
        Amp.load(str(tmp_path / "pipe.amp"))
    monkeypatch.setattr(limits, "MAX_MODEL_FILE_BYTES", 1000)
    with pytest.raises(ModelFileError, match="ptcu_nn33.amp has 9066 bytes, "
                       "more than the cap of 1000"):
        Amp.load(LEGACY)
    with pytest.raises(ModelFileError, match="refusing to load: the file "
                       "object is longer than the cap of 1000 bytes"):
        Amp.load(io.StringIO(open(LEGACY).read()))


def test_fixtures_and_saved_models_still_load(tmp_path):
    legacy = Amp.load(LEGACY)
    saved = str(tmp_path / "saved.amp")
    legacy.save(saved)
    for path in (LEGACY, saved):
        descriptor, model = read_model(path)
        assert set(model["weights"]) == {"Cu", "Pt"}


# --------------------------------------------------------------- user input

def test_train_on_no_images_writes_nothing(tmp_path):
    calc = Amp(descriptor=Gaussian(), model=NeuralNetwork(),
               label=str(tmp_path / "calc"), cores=1)
    with pytest.raises(ValueError, match="train\\(\\) was given no images"):
        calc.train([])
    assert os.listdir(tmp_path) == []


def coincident_image():
    atoms = read(os.path.join(AMP_REFERENCE, "ptcu_train.traj"))
    atoms.positions[7] = atoms.positions[3]
    return atoms


def test_coincident_atoms_at_inference():
    atoms = coincident_image()
    atoms.calc = Amp.load(LEGACY)
    with pytest.raises(ValueError, match="the image Cu2Pt8 \\(hash [0-9a-f]+"
                       "\\) has atoms 3 and 7 at the same position \\(0 "
                       "Angstrom apart, closer than 1e-06 Angstrom\\); its "
                       "descriptor would divide by zero. Remove one of "
                       "them."):
        atoms.get_potential_energy()


def test_coincident_atoms_in_training(tmp_path):
    from amp.utilities import get_hash

    good = with_emt_results(read(os.path.join(AMP_REFERENCE,
                                              "ptcu_train.traj")))
    bad = coincident_image()
    bad.calc = SinglePointCalculator(bad, energy=1.0,
                                     forces=np.zeros((len(bad), 3)))
    calc = Amp(descriptor=Gaussian(), model=NeuralNetwork(hiddenlayers=(2,)),
               label=str(tmp_path / "calc"), cores=1)
    with pytest.raises(ValueError, match="hash %s\\) has atoms 3 and 7 at "
                       "the same position" % get_hash(bad)):
        calc.train([good, bad])


def test_coincident_with_a_periodic_copy():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.positions[1] = atoms.positions[0] + atoms.cell[0]
    with pytest.raises(ValueError, match="atoms 0 and 1 at the same position "
                       ".* \\(one of them in the periodic copy at cell offset "
                       "\\[-1, 0, 0\\]\\)"):
        atoms_neighbor_list(atoms, 6.5, image="image 4")


def test_huge_cutoff_is_refused_before_allocating(monkeypatch):
    monkeypatch.setattr(neighbors, "available_memory", lambda: 8 * 10 ** 9)
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    with peak_memory(20 * 2 ** 20), pytest.raises(
            ValueError, match="a cutoff of 1000 Angstrom is too large for "
            "the image Cu4 \\(hash [0-9a-f]+\\): its neighbour search would "
            "need about 274 GB of memory \\(172808693 periodic copies of the "
            "cell\\), more than the 8 GB available. Use a smaller cutoff"):
        Gaussian(cutoff=1000.0).calculate_fingerprints([atoms])


def test_dead_local_worker_is_logged_with_its_exit_status():
    lines = []
    with WorkerPool(2, timeout=5.0, log=lines.append) as pool:
        assert len(list(pool.map(Echo, {"a": 1, "b": 2}))) == 2
        victim = pool.peers[0].pid
        os.kill(victim, signal.SIGKILL)
        assert gone(victim)
        # Give ZMQ time to see the connection close, so that the next send
        # fails (the path that said "Host unreachable"); if it has not, the
        # failure is found by polling the process, with the same words.
        time.sleep(0.5)
        assert len(list(pool.map(Echo, {"a": 1, "b": 2, "c": 3}))) == 3
    text = "\n".join(lines)
    assert "worker 0 on localhost (pid %d) failed: its process exited: " \
        "killed by SIGKILL (exit status -9)" % victim in text
    assert "unreachable" not in text


# ------------------------------------------------------- worker messages

@pytest.mark.parametrize("frames, refused", [
    ([b'{"subject": "x", "data": ' + b"[" * 100000 + b"]" * 100000 + b"}"],
     "header is not JSON: RecursionError"),
    ([b'{"subject": "x", "data": {"$a": 0}, "arrays": [["(1000,1000)f8", '
      b'[1]]]}', b"12345678"], "bad array description"),
    ([b'{"subject": "x", "data": null, "arrays": [5]}', b""],
     "bad array description 5"),
    ([b'{"subject": "x", "data": null, "arrays": [[{"a": 1}, [1]]]}', b""],
     "bad dtype"),
    ([b'{"subject": "x", "data": {"$atoms": {"numbers": 1}}, "arrays": []}'],
     "malformed message: KeyError"),
    ([b'{"subject": "x", "data": {"$a": 0}, "arrays": [["<f8", [1000000]]]}',
      b"12345678"], "array frame length does not match"),
])
def test_malformed_worker_messages(frames, refused):
    with peak_memory(20 * 2 ** 20), \
            pytest.raises(wire.ProtocolError, match=refused):
        wire.decode(frames)
