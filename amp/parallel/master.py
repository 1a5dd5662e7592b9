"""Parallel fingerprinting and training: a master and ZMQ workers.

Workers run on this machine (subprocesses) or on other hosts (started in an
SSH session through pexpect's ``pxssh``, as the current user, with key
authentication). Each connects back to the master's ZMQ ``ROUTER`` socket
and must prove it knows the run's random secret (HMAC challenge-response,
:mod:`amp.parallel.wire`) before it is served; the secret reaches workers through
stdin, never argv. Messages are a JSON header and raw numpy buffers, never
pickles. See ``docs/parallel.md``.

Entry points
------------
* :class:`WorkerPool` (``with WorkerPool(cores=4) as pool:``) -- starts,
  supervises and stops the workers.
* :meth:`WorkerPool.map` -- stateless jobs over many items (fingerprints),
  load-balanced.
* :meth:`WorkerPool.persistent` -- a :class:`PersistentJob`: each worker
  keeps its shares (e.g. images and fingerprints) for a whole fit and
  answers repeated calls (e.g. parameter vector -> partial loss sums).

How the library asks for a pool (:func:`~amp.parallel.api.parallel_settings`,
:func:`~amp.parallel.api.pool_for`, :func:`~amp.parallel.api.compute_in_workers`)
and Amp's names (:func:`~amp.parallel.hosts.assign_cores`,
:func:`~amp.parallel.api.setup_parallel`, :func:`~amp.parallel.launch.start_workers`,
:func:`~amp.parallel.hosts.make_sublists`, :class:`~amp.parallel.api.MessageDictionary`)
live in their own modules and are importable from :mod:`amp.parallel` (and
Amp's from :mod:`amp.utilities`). Worker processes run ``python -m
amp.parallel`` (:mod:`amp.parallel.worker`); they are started by
:mod:`amp.parallel.launch`, and :class:`PersistentJob` lives in
:mod:`amp.parallel.persistent`.
"""

import atexit
import collections
import itertools
import logging
import math
import re
import secrets
import signal
import subprocess
import time
import weakref

from . import wire as _wire
from .gate import Gate, secure_master_socket
from .hosts import assign_cores, make_sublists  # noqa: F401 (public)
from .launch import (WorkerError, is_local, login, remote_run,  # noqa: F401
                      start_workers)
from .persistent import PersistentJob
from .worker import Fingerprints, get_job, job_name, register_job  # noqa: F401

_logger = logging.getLogger("amp.parallel")


def _exit_status(code):
    """Words for a worker process's exit status (``Popen.returncode``)."""
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "signal %d" % -code
        return "its process exited: killed by %s (exit status %d)" % (
            name, code)
    return "its process exited with exit status %s" % code


def _noop_log(message, **_):
    pass


class _Peer:
    """What the master knows of one worker."""

    def __init__(self, process_id, host):
        self.id, self.host = process_id, host
        self.process = self.session = self.identity = self.pid = None
        self.alive = True
        self.last_seen = time.monotonic()

    def __repr__(self):
        return "worker %d on %s" % (self.id, self.host)


_POOLS = weakref.WeakSet()


@atexit.register
def _close_all():
    for pool in list(_POOLS):
        pool.close()


class WorkerPool:
    """Workers started for a run, supervised, and stopped on :meth:`close`.

    Parameters
    ----------
    cores : int, dict or None
        As Amp's ``parallel['cores']`` (see :func:`assign_cores`).
    envcommand : str, optional
        Runs in each remote SSH session before its workers start.
    log : callable, optional
        e.g. an :class:`amp.utilities.Logger`; failures and dropped peers
        are reported there and to the ``logging`` logger ``amp.parallel``.
    timeout : float
        A worker with work to do that sends nothing (results or the
        heartbeats it sends every ``timeout / 4`` s, at most every 2 s,
        even while computing) for this long is declared failed.
    task_timeout : float, optional
        Also fail a worker whose one request takes longer than this.
    reassign : bool
        Give a failed worker's work to the others (True), or stop the run
        with :class:`WorkerError` at the first failure (False). A worker
        that dies while the pool starts is likewise left out (logged in
        :attr:`failures`) or fails the start; when none starts, the start
        fails with :class:`WorkerError`.
    workercommand : str or list, optional
        How to run ``python -m amp.parallel`` (remote: a shell string run
        after ``envcommand``; default ``python3 -m amp.parallel``).
    bind : str, optional
        Interface address to bind; by default loopback when all workers are
        local, otherwise the address each SSH server sees this machine
        connect from (``$SSH_CONNECTION``), i.e. the interface that reaches
        the workers.
    start_timeout : float
        Seconds to wait for every worker to connect and authenticate.
    max_message_bytes : int, optional
        The largest message a worker may send once authenticated (default
        :data:`amp.store.limits.MAX_MESSAGE_BYTES`); a worker whose result
        would be larger reports an error instead, and a worker that sends
        one anyway is failed. Before authentication nothing is taken: the
        socket admits only connections that prove they know the run's
        secret (:mod:`amp.parallel.gate`), and no frame may exceed
        :data:`amp.parallel.wire.MAX_FRAME_BYTES`.
    lazy : bool
        Start the workers only when they are first needed (:meth:`alive`,
        :meth:`map`, :meth:`persistent`, ...), so that a run that finds
        its work too small for workers never pays for starting them;
        :attr:`started` tells whether they were. :meth:`launch` starts
        them without waiting, for the caller to work meanwhile.

    Attributes
    ----------
    server : zmq.Socket or None
        The master's socket (Amp's ``server``), made when the workers
        start.
    connections : dict
        ``{host: pxssh session or list of subprocess.Popen}``.
    n_pids : int
        Number of workers started.
    failures : list of str
        One line per worker that failed.
    efficiency : float or None
        How fast the workers turned out on the work they were last given
        as a map job (fingerprints), per worker and relative to the
        master's own speed on the same work (1: as fast, counting the
        messages); None until measured. The loss function predicts its
        shares' time from it (:func:`amp.model._shares.decide`).
    """

    def __init__(self, cores=None, envcommand=None, log=None, timeout=60.0,
                 task_timeout=None, reassign=True, workercommand=None,
                 bind=None, start_timeout=60.0, lazy=False,
                 max_message_bytes=None):
        from ..store import limits

        self.log = log if log is not None else _noop_log
        self.max_message_bytes = int(limits.MAX_MESSAGE_BYTES
                                     if max_message_bytes is None
                                     else max_message_bytes)
        self.timeout, self.task_timeout = float(timeout), task_timeout
        self.reassign = reassign
        self.heartbeat = min(2.0, max(0.05, self.timeout / 4))
        self.failures, self.connections, self.peers = [], {}, []
        self.efficiency = None
        self._closed = False
        self._identities, self._pending_auth, self._banned = {}, {}, set()
        self._tokens = itertools.count()
        # A dict is taken as resolved (parallel_settings logged it).
        self.hosts = assign_cores(
            cores, None if isinstance(cores, dict) else self.log)
        self.n_pids = sum(self.hosts.values())
        self.secret = secrets.token_hex(32)
        # The socket (and the admission gate) are made when the workers
        # start: a lazy pool whose work stays serial costs no ZMQ context
        # (nor its I/O thread).
        self.context = self.server = self.gate = None
        _POOLS.add(self)
        self.started = False
        self._connecting = None  # (start time, deadline) until connected
        self._start_arguments = (envcommand, workercommand, bind,
                                 start_timeout)
        if not lazy:
            self.start()

    def start(self):
        """Start the workers and wait until every one has connected (once;
        :meth:`alive` and the work methods call it)."""
        self.launch()
        if self._connecting is not None:
            try:
                while not self.ready(0.05):
                    pass
            except BaseException:
                self.close()
                raise

    def launch(self):
        """Start the workers' processes (once) without waiting for them to
        connect: the caller may work meanwhile and ask :meth:`ready`
        (processes on other hosts are started over SSH, which waits)."""
        if self.started:
            return
        if self._closed:
            raise WorkerError("the pool is closed")
        self.started = True
        try:
            self._start(*self._start_arguments)
        except BaseException:
            self.close()
            raise

    def ready(self, seconds=0.0):
        """Whether every worker has connected, after handling what arrives
        within ``seconds``; raises :class:`WorkerError` when one died
        before connecting or the start timeout passed."""
        if not self.started:
            return False
        if self._connecting is None:
            return True
        started, deadline = self._connecting
        self._poll(seconds)
        for peer in self.peers:
            reason = peer.identity is None and peer.alive and \
                self._dead_reason(peer)
            if reason and not self.reassign:
                raise WorkerError("%r did not start: %s" % (peer, reason))
            if reason:  # the others go on without it
                self._fail(peer, "did not start: " + reason)
        if not any(peer.alive for peer in self.peers):
            raise WorkerError("no worker started: %s"
                              % "; ".join(self.failures))
        if any(peer.identity is None and peer.alive for peer in self.peers):
            if time.monotonic() > deadline:
                missing = [repr(p) for p in self.peers if p.identity is None]
                raise WorkerError("workers did not connect within %.0f s: %s"
                                  % (deadline - started, ", ".join(missing)))
            return False
        self._connecting = None
        self.start_time = time.monotonic() - started
        self.log(" %d workers ready in %.2f s." % (len(self.alive()),
                                                   self.start_time))
        return True

    # Starting ------------------------------------------------------------

    def _bind(self, address):
        if ":" in address:  # IPv6
            self.server.ipv6 = True
            address = "[%s]" % address
        self.server.bind("tcp://%s:0" % address)
        return self.server.last_endpoint.decode()

    def _start(self, envcommand, workercommand, bind, start_timeout):
        import zmq

        started = time.monotonic()
        self.context = zmq.Context()
        # Admission (ZAP) before the socket exists, so no connection is
        # ever taken unchecked.
        self.gate = Gate(self.context, self.secret)
        self.server = self.context.socket(zmq.ROUTER)
        self.server.linger = 0
        self.server.setsockopt(zmq.ROUTER_MANDATORY, 1)
        secure_master_socket(self.server)
        sessions, addresses = {}, {}
        for host in self.hosts:
            if not is_local(host):
                sessions[host] = login(host, start_timeout)
        for host in self.hosts:
            if is_local(host):
                interface = bind or "127.0.0.1"
            else:
                seen = "\n".join(remote_run(
                    sessions[host], 'echo "<amp-from>$SSH_CONNECTION"'))
                # The echoed command line has the variable's name, the
                # output its value: the address this host sees us at.
                found = re.search(r"<amp-from>([0-9A-Fa-f.:]+) ", seen)
                interface = bind or (found.group(1) if found else None)
                if interface is None:
                    raise WorkerError("cannot tell which address %s reaches "
                                      "this machine at; give bind=" % host)
            if interface not in addresses:
                addresses[interface] = self._bind(interface)
                self.log(" Master listening on %s." % addresses[interface])
            process_ids = list(range(len(self.peers),
                                     len(self.peers) + self.hosts[host]))
            peers = [_Peer(i, host) for i in process_ids]
            self.peers.extend(peers)
            connection = start_workers(
                process_ids, host, workercommand, self.log, envcommand,
                addresses[interface], self.secret, sessions.get(host),
                start_timeout)
            self.connections[host] = connection
            for index, peer in enumerate(peers):
                if isinstance(connection, list):
                    peer.process = connection[index]
                else:
                    peer.session = connection
        # They connect and authenticate while ready() (or start()) polls.
        self._connecting = (started, started + start_timeout)

    # Messages ------------------------------------------------------------

    def _drop(self, identity, reason):
        self._banned.add(identity)
        self._pending_auth.pop(identity, None)
        message = "Dropped unauthenticated peer %s: %s" % (identity.hex(),
                                                            reason)
        self.log(" " + message)
        _logger.warning(message)

    def _handshake(self, identity, frames):
        if identity in self._banned:
            return
        try:
            head = _wire.decode_header(frames[0], _wire.MAX_HANDSHAKE_BYTES)
        except (_wire.ProtocolError, IndexError) as error:
            return self._drop(identity, error)
        if identity in self._pending_auth:
            nonce, peer = self._pending_auth.pop(identity)
            if head["subject"] != "auth" or not _wire.check_proof(
                    self.secret, "worker", nonce, head.get("proof")):
                return self._drop(identity, "wrong secret")
            if peer.identity is not None:
                return self._drop(identity, "%r is already connected" % peer)
            peer.identity, peer.pid = identity, peer.pid
            peer.last_seen = time.monotonic()
            self._identities[identity] = peer
            self._send(peer, _wire.encode({
                "subject": "welcome", "heartbeat": self.heartbeat,
                "max_message_bytes": self.max_message_bytes,
                "proof": _wire.proof(self.secret, "master", nonce)}))
            return
        peer_id = head.get("id")
        peer = self.peers[peer_id] if head["subject"] == "hello" and \
            type(peer_id) is int and 0 <= peer_id < len(self.peers) else None
        if peer is None or peer.identity is not None:
            return self._drop(identity, "unexpected %r" % head["subject"])
        nonce = secrets.token_hex(16)
        self._pending_auth[identity] = (nonce, peer)
        if isinstance(head.get("pid"), int):
            peer.pid = head["pid"]
        self.server.send_multipart([identity] + _wire.encode(
            {"subject": "challenge", "nonce": nonce}))

    def _poll(self, seconds):
        """Receive what arrives within ``seconds``; return worker replies."""
        import zmq

        replies = []
        while self.gate.refused:
            self.log(" " + self.gate.refused.popleft())
        if not self.server.poll(seconds * 1000):
            return replies
        # Read what is queued; EVENTS says when it is all read (cheaper
        # than waiting for zmq.Again).
        while self.server.get(zmq.EVENTS) & zmq.POLLIN:
            frames = self.server.recv_multipart(copy=False)
            identity = frames[0].bytes
            peer = self._identities.get(identity)
            if peer is None:
                self._handshake(identity, frames[1:])
                continue
            if not peer.alive:
                continue  # already failed and reassigned: ignore late words
            peer.last_seen = time.monotonic()
            size = _wire.message_bytes(frames[1:])
            if size > self.max_message_bytes:
                self._fail(peer, "sent a message of %d bytes, more than "
                           "max_message_bytes=%d" % (size,
                                                     self.max_message_bytes))
                continue
            try:
                head, data = _wire.decode(frames[1:])
            except _wire.ProtocolError as error:
                self._fail(peer, "sent a malformed message (%s)" % error)
                continue
            if head["subject"] != "heartbeat":
                replies.append((peer, head, data))
        return replies

    def _send(self, peer, frames):
        import zmq

        try:
            self.server.send_multipart([peer.identity] + frames, copy=False)
            return True
        except zmq.ZMQError as error:  # peer disconnected (ROUTER_MANDATORY)
            self._fail(peer, self._exit_reason(peer)
                       or "cannot be reached (%s)" % error)
            return False

    @staticmethod
    def _exit_reason(peer, wait=2.0):
        """How a local worker's process ended, or None if it still runs.

        A disconnected local worker has almost always exited: its status
        is waited for briefly so the log says so, not "Host unreachable".
        """
        if peer.process is None:
            return None
        try:
            code = peer.process.wait(wait)
        except subprocess.TimeoutExpired:
            return None
        return _exit_status(code)

    def _dead_reason(self, peer, sent=None):
        now = time.monotonic()
        if peer.process is not None and peer.process.poll() is not None:
            return _exit_status(peer.process.returncode)
        if peer.session is not None and not peer.session.isalive():
            return "its SSH session to %s ended" % peer.host
        if peer.identity is not None and now - peer.last_seen > self.timeout:
            return "stopped answering (nothing for %.1f s; timeout %.1f s)" \
                % (now - peer.last_seen, self.timeout)
        if sent is not None and self.task_timeout is not None and \
                now - sent > self.task_timeout:
            return "did not finish a request within task_timeout %.1f s" \
                % self.task_timeout
        return None

    def _fail(self, peer, reason):
        if not peer.alive:
            return
        peer.alive = False
        line = "%r (pid %s) failed: %s" % (peer, peer.pid, reason)
        self.failures.append(line)
        self.log(" " + line)
        _logger.warning(line)
        if peer.process is not None and peer.process.poll() is None:
            peer.process.kill()  # also ends a stopped (SIGSTOP) process
        self._identities.pop(peer.identity, None)
        self._banned.add(peer.identity)

    def alive(self):
        """The workers still in service, by id (started if need be)."""
        self.start()
        return [peer for peer in self.peers if peer.alive]

    def _check_failures(self, pending):
        """Fail workers of ``pending`` requests that are dead or silent.

        Returns the requests of failed workers (removed from ``pending``),
        or raises :class:`WorkerError` when work may not or cannot move.
        """
        for token, (peer, _, sent) in list(pending.items()):
            reason = peer.alive and self._dead_reason(peer, sent)
            if reason:
                self._fail(peer, reason)
        lost = {token: pending.pop(token) for token, (peer, _, _)
                in list(pending.items()) if not peer.alive}
        if lost and (not self.reassign or not self.alive()):
            raise WorkerError(
                "parallel run failed: %s%s" % ("; ".join(self.failures), (
                    "" if self.alive() else " (no worker left)")))
        return list(lost.values())

    def _request(self, peer, pending, head, data, context):
        token = next(self._tokens)
        # Recorded even when sending fails: the next check moves it on.
        self._send(peer, _wire.encode(dict(head, token=token), data))
        pending[token] = (peer, context, time.monotonic())

    def _answers(self, pending):
        """Yield ``(context, data)`` for each reply, received within 0.1 s,
        to a request in ``pending`` (which it leaves); an error reply
        raises :class:`WorkerError`."""
        for peer, reply, data in self._poll(0.1):
            request = pending.pop(reply.get("token"), None)
            if request is None:
                continue
            if reply["subject"] == "error":
                raise WorkerError("%r raised an error:\n%s"
                                  % (peer, reply.get("error")))
            yield request[1], data

    # Work ------------------------------------------------------------------

    def map(self, job, items, setup=None, chunksize=None):
        """Run a map job over ``items``; yield ``(key, value)`` as they come.

        Parameters
        ----------
        job : class or str
            A map job registered with :func:`register_job` (e.g.
            :class:`amp.parallel.worker.Fingerprints`).
        items : dict
            ``{str key: item}``; items may be ase.Atoms.
        setup : object, optional
            Given to ``job(setup)`` once per worker.
        chunksize : int, optional
            Items per request; by default about a quarter of a worker's
            share, so fast workers take more (load balancing) and a
            failure costs little.

        Yields
        ------
        (str, object)
            Every key exactly once, in completion order. Work of a failed
            worker goes to the others (``reassign=True``), otherwise
            :class:`WorkerError` is raised.
        """
        name, keys = job_name(job), list(items)
        if not self.alive():
            raise WorkerError("no worker left: %s" % "; ".join(self.failures))
        if chunksize is None:
            chunksize = max(1, math.ceil(len(keys) / (4 * len(self.alive()))))
        chunks = collections.deque(keys[i:i + chunksize]
                                   for i in range(0, len(keys), chunksize))
        head = {"subject": "map", "job": name,
                "setup_id": secrets.token_hex(8)}
        pending = {}
        while chunks or pending:
            for peer in self.alive():  # two requests each: no idle gaps
                while chunks and sum(p is peer for p, _, _ in
                                     pending.values()) < 2:
                    chunk = chunks.popleft()
                    self._request(peer, pending, head, {
                        "setup": setup, "keys": chunk,
                        "items": [items[key] for key in chunk]}, chunk)
            for chunk, data in self._answers(pending):
                for key in chunk:
                    yield key, data[key]
            for _, chunk, _ in self._check_failures(pending):
                chunks.appendleft(chunk)

    def persistent(self, job, shares, setup=None, peers=None):
        """Start a :class:`PersistentJob`: ``job(setup, share)`` per share.

        Parameters
        ----------
        job : class or str
            Registered with :func:`register_job`, with a ``methods`` tuple.
        shares : list
            One payload per share (e.g. from :meth:`split`); share ``i``
            goes to worker ``i % n``.
        setup : object, optional
            Common to all shares (e.g. the model's description).
        peers : list, optional
            The workers to give shares to (default every live worker); a
            failed one's shares still move to any survivor.
        """
        return PersistentJob(self, job, shares, setup, peers)

    def split(self, keys):
        """Split ``keys`` into one contiguous, ordered list per live worker."""
        n = len(self.alive())
        bounds = [round(i * len(keys) / n) for i in range(n + 1)]
        return [list(keys[bounds[i]:bounds[i + 1]]) for i in range(n)]

    # Ending ----------------------------------------------------------------

    def close(self):
        """Stop every worker and end the SSH sessions (idempotent).

        Workers are asked to exit, then terminated and killed if still
        there after 2 s; remote launchers are told to stop and their
        sessions closed, which hangs up on any worker left.
        """
        if self._closed:
            return
        self._closed = True
        _POOLS.discard(self)
        for peer in self.peers:
            if peer.alive and peer.identity is not None:
                try:
                    self.server.send_multipart(
                        [peer.identity] + _wire.encode({"subject": "exit"}))
                except Exception:
                    pass
        for connection in self.connections.values():
            if not isinstance(connection, list):
                try:
                    connection.sendline("stop")
                except Exception:
                    pass
        deadline = time.monotonic() + 2.0
        for peer in self.peers:
            process = peer.process
            if process is None:
                continue
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdin is not None:
                process.stdin.close()
        for connection in self.connections.values():
            if not isinstance(connection, list):
                try:
                    connection.expect(connection.PROMPT, timeout=3)
                    connection.logout()
                except Exception:
                    pass
                connection.close(force=True)
        if self.server is not None:
            self.server.close(0)
        if self.gate is not None:
            self.gate.close()
        if self.context is not None:
            # Whatever socket of this pool is still open goes with it
            # (term() alone would wait for it).
            self.context.destroy(linger=0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __iter__(self):
        """Unpack as Amp's ``server, connections, n_pids``."""
        self.start()
        return iter((self.server, self.connections, self.n_pids))


# ------------------------------------------------------------ entry points
