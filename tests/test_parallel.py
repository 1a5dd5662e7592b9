"""Parallel workers: cores, wire format, local and SSH workers,
security, faults and clean-up. Results must equal the serial ones."""
import concurrent.futures
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import zmq
from ase.build import bulk

from amp.parallel import wire as _wire
from amp.parallel.hosts import expand_nodelist, expand_tasks
from amp.descriptor.gaussian import Gaussian, make_default_symmetry_functions
from amp.parallel import (WorkerError, WorkerPool,
                          compute_in_workers, fingerprint_job,
                          wants_parallel)
from amp.utilities import (MessageDictionary, assign_cores, hash_images,
                           make_sublists)
from conftest import ENVCOMMAND, ROOT, gone
from parallel_jobs import Echo, LeastSquares

def alive_pids(pool):
    return [peer.pid for peer in pool.peers]


# ------------------------------------------------------------ assign_cores

def test_assign_cores_int_dict_and_local(monkeypatch):
    for name in ("SLURM_JOB_NODELIST", "SLURM_NODELIST", "PE_HOSTFILE",
                 "PBS_NODEFILE", "LSB_MCPU_HOSTS", "SLURM_TASKS_PER_NODE"):
        monkeypatch.delenv(name, raising=False)
    assert assign_cores(3) == {"localhost": 3}
    assert assign_cores({"a": 2, "b": 4}) == {"a": 2, "b": 4}
    assert assign_cores(None) == {"localhost": len(os.sched_getaffinity(0))}
    lines = []
    assign_cores(2, log=lines.append)
    assert "localhost: 2" in lines[0]
    for bad in (0, -1, 1.5, {"a": 0}, True):
        with pytest.raises(ValueError):
            assign_cores(bad)


def test_slurm_nodelist_and_tasks(monkeypatch):
    assert expand_nodelist("node[01-03,07]") == [
        "node01", "node02", "node03", "node07"]
    assert expand_nodelist("a1,b[8-10],c") == ["a1", "b8", "b9", "b10", "c"]
    assert expand_nodelist("r[1-2]n[1-2]") == ["r1n1", "r1n2", "r2n1", "r2n2"]
    assert expand_tasks("16(x2),8") == [16, 16, 8]
    assert expand_tasks("4") == [4]
    monkeypatch.setenv("SLURM_JOB_NODELIST", "node[01-02],gpu7")
    monkeypatch.setenv("SLURM_TASKS_PER_NODE", "16(x2),8")
    monkeypatch.setenv("SLURM_NNODES", "3")
    assert assign_cores(None) == {"node01": 16, "node02": 16, "gpu7": 8}
    monkeypatch.delenv("SLURM_JOB_NODELIST")
    monkeypatch.setenv("SLURM_NODELIST", "n[1-2]")
    monkeypatch.setenv("SLURM_TASKS_PER_NODE", "2(x2)")
    monkeypatch.setenv("SLURM_NNODES", "2")
    assert assign_cores(None) == {"n1": 2, "n2": 2}
    monkeypatch.setenv("SLURM_NNODES", "5")
    with pytest.raises(ValueError, match="SLURM"):
        assign_cores(None)


def test_sge_pbs_lsf(monkeypatch, tmp_path):
    for name in ("SLURM_JOB_NODELIST", "SLURM_NODELIST", "PE_HOSTFILE",
                 "PBS_NODEFILE", "LSB_MCPU_HOSTS"):
        monkeypatch.delenv(name, raising=False)
    pe = tmp_path / "pe"
    pe.write_text("h1 4 all.q@h1 UNDEFINED\nh2 2 all.q@h2 UNDEFINED\n")
    monkeypatch.setenv("PE_HOSTFILE", str(pe))
    assert assign_cores(None) == {"h1": 4, "h2": 2}
    monkeypatch.delenv("PE_HOSTFILE")
    nodes = tmp_path / "nodes"
    nodes.write_text("c1\nc1\nc2\nc1\n")
    monkeypatch.setenv("PBS_NODEFILE", str(nodes))
    assert assign_cores(None) == {"c1": 3, "c2": 1}
    monkeypatch.delenv("PBS_NODEFILE")
    monkeypatch.setenv("LSB_MCPU_HOSTS", "x 8 y 4")
    assert assign_cores(None) == {"x": 8, "y": 4}


@pytest.mark.parametrize("host", [
    "-oProxyCommand=touch${IFS}MARK 127.1", "-oProxyCommand=touch MARK",
    "-x", "a b", "a;b", "a`b`", "$(touch MARK)", "host\n", "", "a..b",
    ".a", "a" * 64, "x" * 254, "h\u00e9te", "user@host"])
def test_host_names_that_are_not_host_names_are_refused(tmp_path,
                                                         monkeypatch, host):
    """A host name reaches ssh and a remote shell: anything that is not a
    host name (an option, a command) is refused before ssh runs."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="not a host name"):
        WorkerPool(cores={host: 1}, start_timeout=10).start()
    with pytest.raises(ValueError, match="not a host name"):
        assign_cores({host: 1})
    monkeypatch.setenv("PBS_NODEFILE", str(tmp_path / "nodes"))
    (tmp_path / "nodes").write_text(host + "\n")
    for name in ("SLURM_JOB_NODELIST", "SLURM_NODELIST", "PE_HOSTFILE"):
        monkeypatch.delenv(name, raising=False)
    if host and host.split() == [host]:  # a node file has one per line
        with pytest.raises(ValueError, match="not a host name"):
            assign_cores(None)
    assert os.listdir(tmp_path) == ["nodes"]  # no MARK: nothing ran


def test_host_names_pass_and_go_to_ssh_after_double_dash(monkeypatch):
    from pexpect import pxssh

    from amp.parallel.launch import login

    for host in ("localhost", "node01", "node-1.cluster.example.org.",
                 "10.0.0.1", "::1", "fe80::1%eth0", "amp-ssh-test",
                 "my_alias", "N" * 63):
        assert assign_cores({host: 1}) == {host: 1}
    calls = []

    def recording(self, server, *args, **kwargs):
        calls.append(server)
        raise pxssh.ExceptionPxssh("recorded")

    monkeypatch.setattr(pxssh.pxssh, "login", recording)
    with pytest.raises(WorkerError):
        login("node-1.example.org", 5)
    assert calls == ["-- node-1.example.org"]
    with pytest.raises(ValueError, match="not a host name"):
        login("-oProxyCommand=x", 5)
    assert len(calls) == 1


def test_make_sublists_and_message_dictionary():
    master = list(range(11))
    sublists = make_sublists(master, 3)
    assert master == []
    assert sorted(len(s) for s in sublists) == [3, 4, 4]
    assert sorted(sum(sublists, [])) == list(range(11))
    assert MessageDictionary(4)("hello", [1]) == {
        "id": 4, "subject": "hello", "data": [1]}
    assert not wants_parallel({"cores": 1})
    assert not wants_parallel(None)
    assert wants_parallel({"cores": 2})
    assert wants_parallel({"cores": {"otherhost": 1}})


# ------------------------------------------------------------- wire format

def test_wire_round_trip_and_refusals():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    data = {"x": np.arange(6.0).reshape(2, 3), "n": np.int32(3), "$k": [1],
            "s": "text", "e": np.zeros((0, 3)), "b": np.array([True]),
            "atoms": atoms}
    frames = _wire.encode({"subject": "t"}, data)
    head, back = _wire.decode([bytes(f) for f in frames])
    assert head["subject"] == "t" and back["n"] == 3 and back["$k"] == [1]
    assert np.array_equal(back["x"], data["x"]) and back["e"].shape == (0, 3)
    assert np.array_equal(back["atoms"].positions, atoms.positions)
    assert back["atoms"].get_chemical_symbols() == ["Cu"] * 4
    with pytest.raises(TypeError):
        _wire.encode({"subject": "t"}, np.array([object()]))
    with pytest.raises(TypeError):
        _wire.encode({"subject": "t"}, {1: 2})
    # A peer describing an object array, or lying about sizes, is refused.
    bad = b'{"subject": "t", "data": {"$a": 0}, "arrays": [["|O", [1]]]}'
    with pytest.raises(_wire.ProtocolError):
        _wire.decode([bad, b"\0" * 8])
    short = b'{"subject": "t", "data": {"$a": 0}, "arrays": [["<f8", [2]]]}'
    with pytest.raises(_wire.ProtocolError):
        _wire.decode([short, b"\0" * 8])
    with pytest.raises(_wire.ProtocolError):
        _wire.decode([b"\x80\x04pickle"])


# ------------------------------------------------------------ local workers

def images():
    rng = np.random.default_rng(5)
    out = []
    for k in range(6):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2)
        if k % 2:
            atoms.symbols[:5] = "Pt"
        atoms.rattle(0.08, rng=rng)
        out.append(atoms)
    return hash_images(out)


class FingerprintCalculator:
    """Serial fingerprints of images, as stored entries."""

    def __init__(self, descriptor):
        self.descriptor = descriptor
        self.calls = 0

    def calculate(self, atoms, key):
        self.calls += 1
        return self.descriptor.compute(atoms, True).todict()


def descriptor():
    return Gaussian(cutoff=6.5, Gs=make_default_symmetry_functions(
        ["Cu", "Pt"]))


def assert_same_entries(parallel, serial):
    assert sorted(parallel) == sorted(serial)
    for key in serial:
        a, b = parallel[key], serial[key]
        assert sorted(a) == sorted(b)
        for name in b:
            if isinstance(b[name], np.ndarray):
                assert a[name].dtype == b[name].dtype
                if b[name].dtype.kind == "f":
                    # A worker in another session may round the last bit
                    # of a vectorised exp differently (numpy's SIMD loops
                    # depend on how the arrays are aligned in memory).
                    np.testing.assert_allclose(a[name], b[name], rtol=1e-13,
                                               atol=1e-14, err_msg=name)
                else:
                    assert np.array_equal(a[name], b[name]), name
            else:
                assert a[name] == b[name]


@pytest.fixture(scope="module")
def serial_fingerprints():
    calc = FingerprintCalculator(descriptor())
    return {key: calc.calculate(atoms, key)
            for key, atoms in images().items()}


@pytest.fixture(scope="module")
def pool():
    with WorkerPool(2, timeout=20) as pool:
        yield pool
    assert all(gone(pid) for pid in alive_pids(pool))


def test_secret_not_in_argv_or_environment(pool):
    for peer in pool.peers:
        for part in ("cmdline", "environ"):
            with open("/proc/%d/%s" % (peer.pid, part), "rb") as handle:
                assert pool.secret.encode() not in handle.read()
    assert pool.server.last_endpoint.startswith(b"tcp://127.0.0.1:")


@pytest.mark.parametrize("n_shares", [1, 2, 3, 5])
def test_persistent_least_squares_equals_serial(pool, n_shares):
    rng = np.random.default_rng(n_shares)
    X, y = rng.normal(size=(301, 7)), rng.normal(size=301)
    bounds = np.linspace(0, len(y), n_shares + 1).astype(int)
    shares = [{"X": X[a:b], "y": y[a:b]} for a, b in zip(bounds, bounds[1:])]
    with pool.persistent(LeastSquares, shares) as job:
        for _ in range(3):
            p = rng.normal(size=7)
            parts = job.call("evaluate", p)
            r = X @ p - y
            loss = sum(part["loss"] for part in parts)
            gradient = sum(part["gradient"] for part in parts)
            assert abs(loss - 0.5 * r @ r) <= 1e-12 * abs(loss)
            assert np.allclose(gradient, X.T @ r, rtol=1e-12, atol=0)
            assert max(part["max_residual"] for part in parts) == \
                np.abs(r).max()
            assert sum(part["count"] for part in parts) == len(y)


def test_worker_error_is_reported(pool):
    job = pool.persistent(LeastSquares, [{"X": np.ones((2, 2)),
                                          "y": np.ones(2)}] * 2)
    with pytest.raises(WorkerError, match="no parallel method"):
        job.call("__init__", None)
    with pytest.raises(WorkerError, match="ValueError|matmul|shape"):
        job.call("evaluate", np.ones(5))
    assert len(pool.alive()) == 2  # errors in a job do not kill workers


def test_rogue_client_is_dropped_and_logged(pool, caplog):
    """A peer without the run's secret is refused at its connection: with
    no credentials (another ZMQ mechanism) silently, with guessed ones
    logged. A peer admitted to the socket must still answer the challenge
    and speak the protocol, or it is dropped (logged) and never served."""
    from amp.parallel import gate
    from amp.parallel.master import _Peer

    # A slot for a worker that has not connected yet, which the rogues
    # try to take.
    pool.peers.append(_Peer(len(pool.peers), "localhost"))
    pool.peers[-1].alive = False
    endpoint = pool.server.last_endpoint.decode()
    context = zmq.Context()

    def socket(username=None, password=None, admitted=False):
        made = context.socket(zmq.DEALER)
        made.linger = 0
        if admitted:
            gate.secure_worker_socket(made, pool.secret)
        elif username is not None:
            made.plain_username, made.plain_password = username, password
        made.connect(endpoint)
        return made

    hello = _wire.encode({"subject": "hello", "id": len(pool.peers) - 1})
    stranger = socket()
    guesser = socket(b"amp:" + b"0" * 32, b"0" * 64)
    insider = socket(admitted=True)
    garbage = socket(admitted=True)
    try:
        for rogue in (stranger, guesser, insider):
            rogue.send_multipart(hello)
        deadline = time.monotonic() + 10
        while not insider.poll(0) and time.monotonic() < deadline:
            pool._poll(0.1)
        assert insider.poll(0)
        head, _ = _wire.decode(insider.recv_multipart())
        assert head["subject"] == "challenge"
        insider.send_multipart(_wire.encode({"subject": "auth",
                                             "proof": "0" * 64}))
        insider.send_multipart(_wire.encode({"subject": "map", "job": "x"}))
        garbage.send(b"\x80\x04\x95 not json")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (sum(
                "Dropped unauthenticated" in r.message
                for r in caplog.records) < 2 or "wrong credentials"
                not in caplog.text):
            pool._poll(0.1)
        pool._poll(0.3)
        for rogue in (stranger, guesser, insider, garbage):
            assert not rogue.poll(300)  # nothing served
        assert sum("Dropped unauthenticated" in r.message
                   for r in caplog.records) == 2
        assert "wrong secret" in caplog.text
        assert "Refused a connection from 127.0.0.1: wrong credentials" \
            in caplog.text
    finally:
        pool.peers.pop()
        for rogue in (stranger, guesser, insider, garbage):
            rogue.close()
        context.term()
    assert sorted(pool.map(Echo, {"a": 1}))[0][1]["item"] == 1


def test_connection_credentials_are_single_use_and_frames_capped():
    """Admission credentials are proofs of the secret over a nonce, good
    once; every socket of a pool caps its frames, and arrays larger than
    a frame travel split and come back equal."""
    from amp.parallel.gate import Gate, credentials

    context = zmq.Context()
    try:
        checker = Gate(context, "s" * 64)
        user, password = credentials("s" * 64)
        assert checker._check(b"amp", b"PLAIN", [user, password]) is None
        assert "replay" in checker._check(b"amp", b"PLAIN", [user, password])
        assert "wrong credentials" in checker._check(
            b"amp", b"PLAIN", [user, password[:-1] + b"0"])
        assert "not a worker" in checker._check(b"amp", b"NULL", [])
        checker.close()
    finally:
        # destroy: closes whatever this context still has, then ends it
        # (term() alone hung once in a full run).
        context.destroy(linger=0)
    big = np.arange(3 * _wire.MAX_FRAME_BYTES // 8 + 5, dtype=np.float64)
    frames = _wire.encode({"subject": "t"}, {"big": big, "small": big[:3]})
    assert len(frames) == 1 + 4 + 1
    assert max(len(f) for f in frames) <= _wire.MAX_FRAME_BYTES
    head, back = _wire.decode([bytes(f) for f in frames])
    assert np.array_equal(back["big"], big) and back["small"].size == 3
    with pytest.raises(_wire.ProtocolError):  # one frame short
        _wire.decode([bytes(f) for f in frames[:-2]] + [bytes(frames[-1])])
    with pytest.raises(_wire.ProtocolError, match="header"):
        _wire.encode({"subject": "t"}, ["x" * _wire.MAX_FRAME_BYTES])


def test_messages_above_the_pools_cap_are_refused_by_name():
    """After authentication the cap is the pool's max_message_bytes: a
    worker whose result would be larger answers with an error naming the
    cap (no such message is sent), and its pool goes on."""
    with WorkerPool(1, timeout=20, max_message_bytes=4096) as pool:
        assert dict(pool.map(Echo, {"a": np.zeros(10)}))["a"]["item"].size \
            == 10
        with pytest.raises(WorkerError, match="result is [0-9]+ bytes, more "
                           "than the master takes \\(max_message_bytes="
                           "4096\\)"):
            list(pool.map(Echo, {"a": np.zeros(1000)}))
        assert len(pool.alive()) == 1
        assert dict(pool.map(Echo, {"b": 1}))["b"]["item"] == 1


# ------------------------------------------------------------------ faults

def within(seconds, function, *args):
    """``function(*args)``, failing the test if it has not returned after
    a generous ``seconds`` (a hang, not a slow machine)."""
    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        return executor.submit(function, *args).result(timeout=seconds)


KILLED_AT_START = """
import os, signal, sys
dead, arguments = sys.argv[1].split(","), sys.argv[2:]
if arguments[2] in dead:  # worker ARGUMENTS: worker ADDRESS ID HOST
    os.kill(os.getpid(), signal.SIGKILL)
from amp.parallel.worker import main
main(arguments)
"""


def test_worker_killed_while_the_pool_starts(tmp_path):
    """A worker killed while the pool starts is logged and left out; the
    others do the work. With reassign=False, or when none is left, the
    start fails with a WorkerError naming the workers and how they
    ended, and leaves no worker behind."""
    script = tmp_path / "killed_at_start.py"
    script.write_text(KILLED_AT_START)
    lines = []
    with WorkerPool(3, log=lines.append, timeout=20, workercommand=[
            sys.executable, str(script), "1"]) as pool:
        assert [peer.id for peer in pool.alive()] == [0, 2]
        assert len(pool.failures) == 1
        assert "worker 1 on localhost" in pool.failures[0]
        assert "SIGKILL" in pool.failures[0]
        assert any(pool.failures[0] in line for line in lines)
        values = dict(pool.map(Echo, {"k%d" % i: i for i in range(8)}))
        assert {key: value["item"] for key, value in values.items()} == \
            {"k%d" % i: i for i in range(8)}
        assert {value["pid"] for value in values.values()} <= \
            {pool.peers[0].pid, pool.peers[2].pid}
        started = alive_pids(pool)
    assert all(gone(pid) for pid in started if pid is not None)
    for dead, kwargs in (("1", {"reassign": False}), ("0,1", {})):
        with pytest.raises(WorkerError, match="worker 1 on localhost.*"
                           "SIGKILL"):
            WorkerPool(2, timeout=20, workercommand=[
                sys.executable, str(script), dead], **kwargs)
    assert children_running(str(script)) == []


def children_running(marker):
    """Pids of this process's live children with ``marker`` in argv."""
    found = []
    for name in os.listdir("/proc"):
        try:
            with open("/proc/%s/stat" % name, "rb") as handle:
                stat = handle.read().rpartition(b")")[2].split()
            with open("/proc/%s/cmdline" % name, "rb") as handle:
                argv = handle.read().split(b"\0")
        except (OSError, ValueError):
            continue
        if int(stat[1]) == os.getpid() and stat[0] != b"Z" and \
                marker.encode() in argv:
            found.append(int(name))
    return found


def test_killed_worker_in_map_is_reassigned():
    lines = []
    with WorkerPool(2, timeout=10, log=lines.append) as pool:
        items = {"k%02d" % i: i for i in range(30)}
        results = {}
        victim = pool.peers[1]
        for key, value in pool.map(Echo, items, {"sleep": 0.02}):
            results[key] = value["item"]
            if len(results) == 3:
                os.kill(victim.pid, signal.SIGKILL)
        assert results == items
        assert any("worker 1 on localhost" in line for line in lines)
        assert len(pool.alive()) == 1
    assert all(gone(pid) for pid in alive_pids(pool))


def test_dead_and_stopped_workers_in_persistent_job():
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(90, 4)), rng.normal(size=90)
    shares = [{"X": X[i::3], "y": y[i::3]} for i in range(3)]
    lines = []
    with WorkerPool(3, timeout=1.0, log=lines.append) as pool:
        job = pool.persistent(LeastSquares, shares)
        p = rng.normal(size=4)
        reference = job.call("evaluate", p)
        os.kill(pool.peers[0].pid, signal.SIGKILL)
        os.kill(pool.peers[2].pid, signal.SIGSTOP)  # alive, but silent
        again = within(60, job.call, "evaluate", p)  # no hang
        for a, b in zip(reference, again):
            assert a["loss"] == b["loss"]  # same shares, same sums
            assert np.array_equal(a["gradient"], b["gradient"])
        text = "\n".join(lines)
        # Killed: seen as an exit or as ZMQ's "Host unreachable", by timing.
        assert "worker 0 on localhost" in text and (
            "exited" in text or "unreachable" in text)
        assert "worker 2 on localhost" in text and "stopped answering" in text
        assert set(job.owner.values()) == {pool.peers[1]}
    assert all(gone(pid) for pid in alive_pids(pool))


def test_no_reassign_fails_clearly_and_never_hangs():
    with WorkerPool(2, timeout=1.0, reassign=False) as pool:
        job = pool.persistent(LeastSquares, [{"X": np.eye(2),
                                              "y": np.ones(2)}] * 2)
        os.kill(pool.peers[1].pid, signal.SIGKILL)
        with pytest.raises(WorkerError, match="worker 1 on localhost"):
            within(60, job.call, "evaluate", np.zeros(2))  # no hang
    with WorkerPool(1, timeout=1.0) as pool:
        os.kill(pool.peers[0].pid, signal.SIGKILL)
        with pytest.raises(WorkerError, match="no worker left"):
            list(pool.map(Echo, {"a": 1}))
    assert all(gone(pid) for pid in alive_pids(pool))


MASTER = textwrap.dedent("""
    import signal, sys
    # Ctrl-C as at a terminal, even when this test runs in the background
    # of a shell without job control (which starts it with SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from amp.parallel import WorkerPool
    from parallel_jobs import Echo
    pool = WorkerPool(2)
    print(*[p.pid for p in pool.peers], flush=True)
    try:
        for n, _ in enumerate(pool.map(Echo,
                                       {"k%d" % i: i for i in range(1000)},
                                       {"sleep": 0.5}, chunksize=1)):
            if n == 0:
                print("mapping", flush=True)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        pool.close()
        sys.exit(3)
""")


@pytest.mark.parametrize("how", ["SIGINT", "SIGKILL"])
def test_master_interrupted_or_killed_leaves_no_workers(how):
    master = subprocess.Popen([sys.executable, "-c", MASTER], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in master.stdout.readline().split()]
        assert len(pids) == 2
        assert master.stdout.readline().strip() == "mapping"  # running
        master.send_signal(getattr(signal, how))
        code = master.wait(60)  # generous: a loaded machine is slow
        if how == "SIGINT":
            assert code == 3 and "interrupted" in master.stdout.read()
        assert all(gone(pid) for pid in pids)
    finally:
        master.kill()
        master.wait()


# --------------------------------------------------------------------- SSH

@pytest.fixture(scope="module")
def ssh_pool(ssh_alias):
    with WorkerPool({ssh_alias: 2}, envcommand=ENVCOMMAND,
                    timeout=20) as pool:
        yield pool
    assert all(gone(pid) for pid in alive_pids(pool))


@pytest.mark.ssh
def test_ssh_fingerprints_equal_serial(ssh_pool, serial_fingerprints):
    assert [peer.host for peer in ssh_pool.peers] == ["amp-ssh-test"] * 2
    assert all(peer.process is None for peer in ssh_pool.peers)
    job, setup = fingerprint_job(descriptor(), derivatives=True)
    values = dict(compute_in_workers(ssh_pool, job, images(), setup))
    assert_same_entries(values, serial_fingerprints)
    pids = {peer.pid for peer in ssh_pool.peers}
    for peer in ssh_pool.peers:  # the secret is not on the command line
        with open("/proc/%d/cmdline" % peer.pid, "rb") as handle:
            assert ssh_pool.secret.encode() not in handle.read()
    assert len(pids) == 2


@pytest.mark.ssh
def test_ssh_persistent_job_equals_serial(ssh_pool):
    rng = np.random.default_rng(7)
    X, y = rng.normal(size=(200, 6)), rng.normal(size=200)
    shares = [{"X": X[:120], "y": y[:120]}, {"X": X[120:], "y": y[120:]}]
    with ssh_pool.persistent(LeastSquares, shares) as job:
        p = rng.normal(size=6)
        parts = job.call("evaluate", p)
        assert {job.call("pid")[i] for i in range(2)} == \
            {peer.pid for peer in ssh_pool.peers}
    r = X @ p - y
    loss = sum(part["loss"] for part in parts)
    assert abs(loss - 0.5 * r @ r) <= 1e-12 * loss
    assert np.allclose(sum(part["gradient"] for part in parts), X.T @ r,
                       rtol=1e-12, atol=0)
