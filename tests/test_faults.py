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
from amp.store.files import temporary_name
from conftest import AMP_REFERENCE, GDML_REFERENCE, gone

TESTS = os.path.dirname(os.path.abspath(__file__))

# Child processes start with this: a model large enough (about 2 MB of
# JSON) that writing it takes a while, so racing writers overlap.
PRELUDE = r'''
import os, sys, time
import numpy as np
from amp import Amp
from amp.descriptor.gaussian import Gaussian, make_default_symmetry_functions
from amp.model.neuralnetwork import NeuralNetwork
from amp.store import modelfile


def big_calc(scale=1.0, width=200):
    descriptor = Gaussian(cutoff=6.5, Gs=make_default_symmetry_functions(
        ["Cu", "Pt"]))
    rng = np.random.default_rng(0)
    weights, scalings, fprange = {}, {}, {}
    for element, Gs in descriptor.Gs.items():
        sizes = [len(Gs), width, width, 1]
        weights[element] = {k + 1: scale * rng.normal(size=(m + 1, n))
                            for k, (m, n) in enumerate(zip(sizes, sizes[1:]))}
        scalings[element] = {"intercept": 0.0, "slope": 1.0}
        fprange[element] = [[0.0, 1.0]] * len(Gs)
    model = NeuralNetwork(hiddenlayers=(width, width), weights=weights,
                          scalings=scalings, fprange=fprange)
    return Amp(descriptor, model, cores=1)


def wait_for(path):
    while not os.path.exists(path):
        time.sleep(0.005)
'''


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
    time.sleep(max(0.0, start + 0.3 * r - time.time()))
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
    rounds, racers = 8, 4
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
