"""Faults from outside: a full disk, a process killed at any moment,
processes racing on one file or one label, and a peer that is not ours.

Each fault is made for real: a small tmpfs (or, where mounting is not
allowed, a file-size limit set in a child process), SIGKILL at random
moments followed by a rerun, several processes started together, an
unauthenticated ZMQ peer. Each test checks that nothing the user had is
lost and that an error names the problem. ``docs/security.md`` ("What
happens when") states the guarantees these tests hold the code to.
"""
import contextlib
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from amp import Amp
from amp.store import modelfile
from amp.store.database import FileDatabase
from amp.store.files import temporary_name
from conftest import AMP_REFERENCE, GDML_REFERENCE
from fault_helpers import emt_images, small_calc

# Child processes start with this: the helpers, among them a model large
# enough (about 2 MB of JSON) that writing it takes a while, so racing
# writers overlap.
PRELUDE = "from fault_helpers import *  # noqa\n"


def child(script, *args, limit=None):
    """Start ``PRELUDE + script`` in a new Python with ``args``; with
    ``limit``, files it writes may not grow beyond that many bytes."""
    def limited():
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG, not death
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.Popen(
        [sys.executable, "-c", PRELUDE + script] + [str(a) for a in args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=limited if limit is not None else None)


def finish(process, timeout=120):
    """Wait for ``process``; return its standard output (fail on error)."""
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    return out


def temporaries(folder):
    return sorted(name for name in os.listdir(folder)
                  if name.startswith(".tmp-"))


def dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# ------------------------------------------------------------ racing saves

RACER = r'''
folder, index, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
calc = big_calc(1.0 + index / 10.0)
text = modelfile.dumps(calc.descriptor.todict(), calc.model.todict())
print("ready", flush=True)
go = os.path.join(folder, "go")
wait_for(go)
start = float(open(go).read())
for r in range(rounds):
    target = os.path.join(folder, "race%02d.amp" % r)
    time.sleep(max(0.0, start + 0.25 * r - time.time()))
    try:
        if r % 2:
            calc.save(target)
        else:
            modelfile.write(target, text)
        print("won", r, flush=True)
    except FileExistsError:
        pass
'''


def test_racing_saves_without_overwrite_have_one_winner(tmp_path):
    """Four processes save to the same new file at the same moment, with
    ``Amp.save`` and with ``modelfile.write`` (``overwrite=False``): in
    every round exactly one succeeds, the others get FileExistsError, and
    the file holds the winner's model."""
    rounds, racers = 6, 4
    processes = [child(RACER, tmp_path, index, rounds)
                 for index in range(racers)]
    for process in processes:
        assert process.stdout.readline().strip() == "ready", \
            process.stderr.read()[-3000:]
    (tmp_path / "go.part").write_text(repr(time.time() + 0.2))
    os.replace(tmp_path / "go.part", tmp_path / "go")
    winners = {r: [] for r in range(rounds)}
    for index, process in enumerate(processes):
        for line in finish(process).split():
            if line.isdigit():
                winners[int(line)].append(index)
    assert all(len(w) == 1 for w in winners.values()), winners
    def first_layer(r):
        model = Amp.load(str(tmp_path / ("race%02d.amp" % r))).model
        return np.asarray(model.parameters["weights"]["Cu"][1])

    base = first_layer(0) / (1.0 + winners[0][0] / 10.0)
    for r, (winner,) in winners.items():
        np.testing.assert_allclose(first_layer(r),
                                   base * (1.0 + winner / 10.0), rtol=1e-14)
    assert temporaries(tmp_path) == []


@pytest.mark.parametrize("hard_links", [True, False])
def test_no_overwrite_never_replaces_a_file_made_meanwhile(
        tmp_path, monkeypatch, hard_links):
    """Another writer creates the file between the check and the
    publication: the file is theirs, this writer gets FileExistsError and
    leaves nothing -- also where the file system has no hard links."""
    import errno

    from amp.store.files import atomic_file

    if not hard_links:
        def no_links(*args, **kwargs):
            raise OSError(errno.EPERM, "Operation not permitted")

        monkeypatch.setattr(os, "link", no_links)
    path = tmp_path / "x.amp"
    with pytest.raises(FileExistsError, match="another writer created it"):
        with atomic_file(path, overwrite=False) as handle:
            handle.write(b"mine")
            path.write_bytes(b"theirs")  # another writer, meanwhile
    assert path.read_bytes() == b"theirs"
    assert temporaries(tmp_path) == []


# ------------------------------------------------- durable, tidy publishing

def _record_publishing(monkeypatch):
    """Record fsyncs (of what inode, a folder or not) and publications
    (``os.replace`` / ``os.link``: the inode that becomes the target)."""
    events = []
    fsync, replace, link = os.fsync, os.replace, os.link

    def recording_fsync(fd):
        status = os.fstat(fd)
        events.append(("fsync", status.st_ino,
                       os.path.isdir("/proc/self/fd/%d" % fd)))
        return fsync(fd)

    def recording_replace(source, target, **kwargs):
        events.append(("publish", os.lstat(source).st_ino, str(target)))
        return replace(source, target, **kwargs)

    def recording_link(source, target, **kwargs):
        events.append(("publish", os.lstat(source).st_ino, str(target)))
        return link(source, target, **kwargs)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    monkeypatch.setattr(os, "link", recording_link)
    return events


def _assert_durable(events, path):
    """The file's data were flushed before it was published under
    ``path``, and its folder's entry after."""
    path = str(path)
    published = [i for i, e in enumerate(events)
                 if e[0] == "publish" and e[2] == path]
    assert published, "%s was not published (%s)" % (path, events)
    at = published[-1]
    inode = events[at][1]
    assert ("fsync", inode, False) in events[:at], \
        "%s was published before its data were flushed" % path
    folder = os.stat(os.path.dirname(path)).st_ino
    assert ("fsync", folder, True) in events[at:], \
        "the folder entry of %s was not flushed" % path


def test_model_and_gdml_files_are_flushed_before_they_are_published(
        tmp_path, monkeypatch):
    from amp.gdml.io import load_npz, save_dataset, save_model
    from amp.stats.ensemble import write_ensemble

    calc = Amp.load(os.path.join(AMP_REFERENCE, "ptcu_nn33.amp"))
    dataset = load_npz(os.path.join(GDML_REFERENCE, "benzene_dataset.npz"))
    model = load_npz(os.path.join(GDML_REFERENCE, "benzene_gdml_model.npz"))
    text = modelfile.dumps(calc.descriptor.todict(), calc.model.todict())
    events = _record_publishing(monkeypatch)
    calc.save(str(tmp_path / "model.amp"))
    calc.save(str(tmp_path / "model.amp"), overwrite=True)
    calc.save(str(tmp_path / "legacy.amp"), format="amp1")
    write_ensemble(str(tmp_path / "committee.ensemble"), [text, text])
    save_dataset(str(tmp_path / "dataset.npz"), dataset)
    save_model(str(tmp_path / "gdml-model.npz"), model)
    for name in ("model.amp", "legacy.amp", "committee.ensemble",
                 "dataset.npz", "gdml-model.npz"):
        _assert_durable(events, tmp_path / name)


def test_next_writer_removes_only_dead_writers_temporaries(tmp_path):
    """Temporary files of a writer that died on this host are removed by
    the next writer in the folder; a live writer's, another host's and
    files that are not temporaries of this library stay."""
    calc = Amp.load(os.path.join(AMP_REFERENCE, "ptcu_nn33.amp"))
    own = os.path.basename(temporary_name(str(tmp_path), "model.amp"))
    me = "-%d-" % os.getpid()
    assert me in own
    dead = own.replace(me, "-%d-" % dead_pid())
    host = own[len(".tmp-model.amp-"):].split("-")[0]
    elsewhere = dead.replace("-%s-" % host, "-%s-" % ("0" * len(host)))
    other_target = dead.replace("model.amp", "run-checkpoint.amp")
    mine = own  # this process is alive: a writer at work
    keep = [mine, elsewhere, ".tmp-notes", "tmp-model.amp-1-2"]
    for name in [dead, other_target] + keep:
        (tmp_path / name).write_bytes(b"partial")
    calc.save(str(tmp_path / "model.amp"))
    assert sorted(os.listdir(tmp_path)) == sorted(keep + ["model.amp"])


# ------------------------------------------------------ killed while saving

SAVER = r'''
path = sys.argv[1]
calc = big_calc(1.0)
print("ready", flush=True)
while True:
    calc.save(path, overwrite=True)
'''


def test_save_killed_at_random_moments_then_rerun(tmp_path):
    """SIGKILL while a model is being saved over and over: the file is
    always the whole model; the temporary files the dead writer left are
    removed by the next save, which succeeds."""
    rng = random.Random(int(time.time()))
    path = tmp_path / "model.amp"
    left_behind = 0
    for attempt in range(6):
        process = child(SAVER, path)
        assert process.stdout.readline().strip() == "ready"
        while not path.exists():
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.2))
        while not temporaries(tmp_path):  # kill it inside a save
            time.sleep(0.0005)
        process.kill()
        process.wait()
        Amp.load(str(path))  # whole, never half
        left_behind += len(temporaries(tmp_path))
        if left_behind >= 2:
            break
    assert left_behind, "the writer was never killed inside a save"
    calc = Amp.load(str(path))
    calc.save(str(path), overwrite=True)  # the next writer
    assert temporaries(tmp_path) == []
    np.testing.assert_array_equal(Amp.load(str(path)).model.vector,
                                  calc.model.vector)


# -------------------------------------------------------------- full disks

class SmallDisk:
    """A folder with little room left, made for real.

    Where mounting is allowed (root on Linux) it is a tmpfs that
    :meth:`fill` fills up to the room asked for, so writers get ENOSPC;
    elsewhere the child processes of :meth:`run` may not write files
    larger than the room (``RLIMIT_FSIZE``), so writers get EFBIG. Either
    way a write that needs more room than is left fails midway.
    """

    def __init__(self, folder):
        self.folder = str(folder)
        os.makedirs(self.folder)
        self.mode = "rlimit"
        self.room = None
        if os.environ.get("AMP_TEST_SMALL_DISK", "tmpfs") == "tmpfs" and \
                sys.platform.startswith("linux") and os.geteuid() == 0:
            mounted = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs",
                 self.folder], capture_output=True)
            if mounted.returncode == 0:
                self.mode = "tmpfs"

    def fill(self, room):
        """Leave about ``room`` bytes for what is written from now on."""
        self.room = room
        if self.mode != "tmpfs":
            return
        status = os.statvfs(self.folder)
        free = status.f_bavail * status.f_frsize
        fd = os.open(os.path.join(self.folder, "filler"),
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        try:
            os.posix_fallocate(fd, 0, free - room)
        finally:
            os.close(fd)

    def run(self, script, *args):
        """Run ``script`` in a child process writing under these limits."""
        return finish(child(script, *args, limit=None if self.mode ==
                            "tmpfs" else self.room))

    def close(self):
        if self.mode == "tmpfs":
            if subprocess.run(["umount", self.folder]).returncode:
                subprocess.run(["umount", "-l", self.folder])


@pytest.fixture
def small_disk(tmp_path):
    """A :class:`SmallDisk`: a tmpfs, or a file-size limit in child
    processes where mounting is not allowed. Skipped only where neither
    exists (no ``resource`` module: not a POSIX system)."""
    try:
        import resource  # noqa: F401
    except ImportError:
        pytest.skip("neither a tmpfs can be mounted nor RLIMIT_FSIZE set "
                    "here (not a POSIX system)")
    disk = SmallDisk(tmp_path / "disk")
    try:
        yield disk
    finally:
        disk.close()


def database_contents(label):
    """{database: {key: {name: array}}} of the databases under ``label``,
    read loose or archived."""
    found = {}
    for name in ("fingerprints", "fingerprint-primes", "neighborlists"):
        with FileDatabase("%s-%s.ampdb" % (label, name)) as database:
            found[name] = {key: {part: np.asarray(value) for part, value
                                 in database[key].items()}
                           for key in database.keys()}
    return found


def assert_same_contents(found, expected):
    assert {name: sorted(entries) for name, entries in found.items()} == \
        {name: sorted(entries) for name, entries in expected.items()}
    for name, entries in expected.items():
        for key, value in entries.items():
            assert sorted(found[name][key]) == sorted(value)
            for part, array in value.items():
                np.testing.assert_array_equal(found[name][key][part], array)


TRAIN = r'''
label = sys.argv[1]
try:
    small_calc(label).train(emt_images(16))
    print("trained")
except Exception as error:
    print("failed: %s: %s" % (type(error).__name__, error))
'''


def test_training_on_a_full_disk_keeps_the_model(small_disk):
    """The databases fill the disk; compressing them at the end runs out
    of room. The converged model is written all the same, the failure is
    logged, and the loose databases stay whole."""
    label = os.path.join(small_disk.folder, "m", "run")
    small_calc(label).train(emt_images(16), compress_databases=False)
    before = database_contents(label)
    for suffix in (".amp", "-initial-parameters.amp", "-log.txt"):
        os.remove(label + suffix)
    small_disk.fill(100 * 1024)  # the model, its log: yes; an archive: no
    out = small_disk.run(TRAIN, label)
    assert out.strip() == "trained", out
    Amp.load(label + ".amp")
    log = open(label + "-log.txt").read()
    assert "Compressing the databases failed" in log
    assert "No space left on device" in log or "File too large" in log
    assert_same_contents(database_contents(label), before)
    for name in before:
        assert temporaries("%s-%s.ampdb" % (label, name)) == []


def test_model_without_room_waits_for_the_compression_then_says_where(
        tmp_path, monkeypatch):
    """No room for the model while the databases are being compressed:
    the compression (which gives its room back) is waited for and the
    model written again; if there is still no room, the error names the
    file and says the parameters are still in the calculator."""
    import errno

    save = Amp.save
    failures = []

    def no_room_for_models(self, filename, *args, **kwargs):
        if filename.endswith("run.amp") and len(failures) < limit:
            failures.append(filename)
            raise OSError(errno.ENOSPC, "No space left on device")
        return save(self, filename, *args, **kwargs)

    monkeypatch.setattr(Amp, "save", no_room_for_models)
    label = str(tmp_path / "run")
    limit = 1
    assert small_calc(label).train(emt_images(6)) is True
    Amp.load(label + ".amp")
    log = open(label + "-log.txt").read()
    assert "waiting for the compression, then writing it again" in log
    assert log.index("Compressed") < log.index("Trained parameters saved")
    limit, failures[:] = 2, []
    calc = small_calc(label)
    with pytest.raises(OSError, match="cannot write .*run.amp .*No space "
                       "left.*still in this calculator"):
        calc.train(emt_images(6), overwrite=True)
    monkeypatch.undo()
    calc.save(label + ".amp", overwrite=True)  # once there is room
    np.testing.assert_array_equal(Amp.load(label + ".amp").model.vector,
                                  calc.model.vector)


READ_ARCHIVE = r'''
from amp.store.database import FileDatabase
database = FileDatabase(sys.argv[1])
value = database["k05"]
assert np.array_equal(value["x"], np.full(2 ** 17, 5.0))
print(len(database.keys()))
database["k05"] = value  # unchanged: needs no room
print(float(database["k17"]["x"][0]))
try:
    database["new"] = {"x": np.arange(2.0 ** 18)}
except OSError as error:
    print("refused:", error)
'''


def test_archived_entries_are_read_on_a_full_disk(small_disk):
    """Reading an archive that inflates past the in-memory spool needs no
    room on the disk; a write that needs room fails with the disk's
    error, a write that changes nothing succeeds."""
    path = os.path.join(small_disk.folder, "big.ampdb")
    database = FileDatabase(path)
    for k in range(24):  # 24 MiB inflated, a few kB compressed
        database["k%02d" % k] = {"x": np.full(2 ** 17, float(k))}
    database.archive()
    assert os.path.getsize(os.path.join(path, "archive.tar.gz")) < 2 ** 20
    small_disk.fill(0 if small_disk.mode == "tmpfs" else 2 ** 20)
    out = small_disk.run(READ_ARCHIVE, path).splitlines()
    assert out[:2] == ["24", "17.0"], out
    assert out[2].startswith("refused:") and (
        "No space left on device" in out[2] or "File too large" in out[2])
    assert temporaries(path) == [] and temporaries(path + "/loose") == []


# ----------------------------------------------------- one label, two runs

HOLDER = r'''
label, release = sys.argv[1], sys.argv[2]
calc = small_calc(label)
fit = type(calc.model).regress


def held(self, *args, **kwargs):
    print("training", flush=True)
    wait_for(release)
    return fit(self, *args, **kwargs)


type(calc.model).regress = held
calc.train(emt_images(6))
print("trained", flush=True)
'''


def test_a_label_in_use_is_refused_at_the_start(tmp_path, monkeypatch):
    """A second training under the label of a running one is refused
    before it writes or computes anything, naming the first one's pid;
    the first one finishes undisturbed, and the label is free after."""
    from amp.store.locks import InUseError

    label = str(tmp_path / "run")
    release = tmp_path / "release"
    first = child(HOLDER, label, release)
    try:
        assert first.stdout.readline().strip() == "training", \
            first.stderr.read()[-3000:]
        log_before = open(label + "-log.txt").read()
        second = small_calc(label)
        fitted = []
        monkeypatch.setattr(type(second.model), "regress",
                            lambda *a, **k: fitted.append(1) or True)
        with pytest.raises(InUseError, match="label %r.*pid %d"
                           % (label, first.pid)):
            second.train(emt_images(6))
        assert fitted == []
        assert open(label + "-log.txt").read() == log_before
        assert not os.path.exists(label + ".amp")
    finally:
        release.touch()
    assert finish(first).split() == ["trained"]
    trained = Amp.load(label + ".amp")
    assert open(label + "-log.txt").read().count("training started") == 1
    monkeypatch.undo()
    again = small_calc(label)
    assert again.train(emt_images(6), overwrite=True) is True
    np.testing.assert_array_equal(Amp.load(label + ".amp").model.vector,
                                  again.model.vector)
    assert trained.model.vector.shape == again.model.vector.shape
    assert not os.path.exists(label + ".lock")


# ------------------------------------------------- killed while training

TRAINER = r'''
label = sys.argv[1]
calc = small_calc(label, {"energy_rmse": 1e-9, "force_rmse": 1e-9},
                  maxiter=1000)
calc.model.checkpoints = 5
images = emt_images(12)
print("ready", flush=True)
try:
    calc.train(images, overwrite=True)
except Exception as error:
    print(type(error).__name__)
'''


def test_training_killed_at_a_random_moment_then_rerun(tmp_path):
    """SIGKILL at a random moment of a training (fingerprinting, fitting,
    checkpointing, compressing): the rerun under the same label takes over
    the dead run's lock, resumes, and leaves no temporary file."""
    rng = random.Random()
    label = str(tmp_path / "m" / "run")
    process = child(TRAINER, label)
    assert process.stdout.readline().strip() == "ready"
    owner = '"pid": %d' % process.pid
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and owner not in _text(label +
                                                              ".lock"):
        time.sleep(0.01)  # until the run holds its label
    # The training takes about 0.75 s on a quiet machine (longer on a busy
    # one): the kill lands inside it.
    time.sleep(rng.uniform(0.0, 0.6))
    killed_while_running = process.poll() is None
    process.kill()
    process.wait()
    if killed_while_running:
        assert owner in _text(label + ".lock")  # the dead run's lock
    rerun = small_calc(label)
    assert rerun.train(emt_images(12), overwrite=True) is True
    Amp.load(label + ".amp")
    assert temporaries(tmp_path / "m") == []
    assert not os.path.exists(label + ".lock")
    for name in ("fingerprints", "fingerprint-primes", "neighborlists"):
        folder = "%s-%s.ampdb" % (label, name)
        assert temporaries(folder) == []
        assert temporaries(os.path.join(folder, "loose")) == [] \
            if os.path.isdir(os.path.join(folder, "loose")) else True


def _text(path):
    try:
        with open(path) as handle:
            return handle.read()
    except FileNotFoundError:
        return ""


ARCHIVER = r'''
from amp.store.database import FileDatabase
database = FileDatabase(sys.argv[1])
print("ready", flush=True)
for round in range(1000):
    for k in range(8):
        database["r%03dk%d" % (round, k)] = {"x": np.full(4096, round + k / 8)}
    database.archive()
'''


def test_archive_killed_at_random_moments_then_rerun(tmp_path):
    """SIGKILL while entries are written and archived: every entry a
    completed archive() had is still readable with its value, a rerun of
    archive() completes, and no temporary file is left."""
    rng = random.Random()
    path = str(tmp_path / "db.ampdb")
    for _ in range(2):
        process = child(ARCHIVER, path)
        assert process.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.8))
        process.kill()
        process.wait()
    database = FileDatabase(path)
    report = database.archive()
    keys = database.keys()
    assert keys and report["entries"] == len(keys)
    for key in keys:
        round, k = int(key[1:4]), int(key[5:])
        np.testing.assert_array_equal(database[key]["x"],
                                      np.full(4096, round + k / 8))
    assert temporaries(path) == []
    assert temporaries(os.path.join(path, "loose")) == []


# --------------------------------------------------- a peer that is not ours

MASTER = r'''
from amp.parallel import WorkerPool
from parallel_jobs import Echo


def peak_mb():
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024


stop = sys.argv[1]
with WorkerPool(1, timeout=60, log=lambda line: print(line, flush=True)) \
        as pool:
    assert dict(pool.map(Echo, {"a": 1}))["a"]["item"] == 1
    print("listening", pool.server.last_endpoint.decode(), peak_mb(),
          flush=True)
    served = 0
    while not os.path.exists(stop):  # serve the worker meanwhile
        served += dict(pool.map(Echo, {"b": 2}))["b"]["item"]
    print("served", served > 0, len(pool.alive()), peak_mb(), flush=True)
'''


def _zmtp_peer(endpoint, mechanism):
    """A raw TCP peer that has sent a ZMTP 3.0 greeting for ``mechanism``
    (what any program can send, whatever its socket library)."""
    import socket

    host, port = endpoint.rsplit("/", 1)[1].rsplit(":", 1)
    peer = socket.create_connection((host, int(port)), timeout=10)
    peer.sendall(b"\xff" + bytes(8) + b"\x7f\x03\x00"
                 + mechanism.ljust(20, b"\0") + bytes(32))
    greeting = b""
    with contextlib.suppress(OSError):
        while len(greeting) < 64:  # the master's greeting, as ZMTP wants
            part = peer.recv(64 - len(greeting))
            if not part:
                break
            greeting += part
    return peer


def _send_until_dropped(peer, header, payload, count):
    """Send ``header + payload`` ``count`` times; stop when the master
    hangs up. Returns how many went out."""
    sent = 0
    with contextlib.suppress(OSError):
        for sent in range(1, count + 1):
            peer.sendall(header + payload)
    peer.close()
    return sent


def test_unauthenticated_peers_cannot_make_the_master_allocate(tmp_path):
    """Peers that do not know the run's secret send 400 MiB to the
    master's port: in one frame (a ZMQ DEALER, as anyone has), in 100,000
    frames of 4 KiB streamed over a raw connection, and as a 400 MiB
    handshake command. The master's peak memory stays within 100 MiB of
    what it was, its worker keeps working, and the refusals are logged."""
    import struct

    import zmq

    stop = tmp_path / "stop"
    master = child(MASTER, stop)
    try:
        words = []
        while words[:1] != ["listening"]:  # after the pool's log lines
            line = master.stdout.readline()
            assert line, "the master did not start"
            words = line.split()
        endpoint, baseline = words[1], int(words[2])
        context = zmq.Context()
        try:
            dealer = context.socket(zmq.DEALER)
            dealer.linger = 0
            dealer.connect(endpoint)
            dealer.send(np.zeros(400 * 2 ** 20, np.uint8), copy=False)
            time.sleep(1.0)
            dealer.close()
        finally:
            context.term()
        # ZMTP: greeting, READY (or HELLO) command, then frames.
        peer = _zmtp_peer(endpoint, b"NULL")
        ready = b"\x05READY\x0bSocket-Type" + struct.pack(">I", 6) + \
            b"DEALER"
        with contextlib.suppress(OSError):
            peer.sendall(bytes([0x04, len(ready)]) + ready)
            peer.recv(256)  # the master's READY (or its refusal)
        _send_until_dropped(peer, b"\x03" + struct.pack(">Q", 4096),
                            bytes(4096), 100000)
        peer = _zmtp_peer(endpoint, b"PLAIN")
        _send_until_dropped(peer, b"\x06" + struct.pack(">Q", 400 * 2 ** 20)
                            + b"\x05HELLO", bytes(2 ** 20), 400)
        time.sleep(0.5)
    finally:
        stop.touch()
    out = finish(master)
    served = out.split("served", 1)[1].split()
    assert served[:2] == ["True", "1"], out
    assert int(served[2]) - baseline < 100, \
        "the master's peak memory grew from %d to %s MB" % (baseline,
                                                          served[2])
