"""Worker side of :mod:`amp.parallel`: the job registry, the worker process,
the per-host launcher used over SSH, and the built-in jobs.

Jobs
----
A job is a class registered with :func:`register_job`; its name is
``"module:QualName"`` and a worker imports ``module`` to find it, but serves
only registered classes. Two kinds:

* map jobs (:meth:`amp.parallel.WorkerPool.map`): ``Job(setup)`` once per
  worker and setup, then ``job(key, item) -> value`` for each item;
* persistent jobs (:meth:`amp.parallel.WorkerPool.persistent`):
  ``Job(setup, share)`` per share held by the worker, kept for the whole fit,
  then ``getattr(job, method)(args) -> value`` for each method named in the
  class attribute ``methods``.

Values and items are anything :mod:`amp.parallel.wire` carries (numpy arrays,
numbers, str, lists, dicts, ase.Atoms).
"""

import importlib
import os
import select
import signal
import subprocess
import sys
import threading
import time
import traceback


from ..importing import from_importname
from . import wire as _wire
from .gate import secure_worker_socket

_JOBS = {}


def job_name(job):
    """Return the registry name of a job class (or check a name string)."""
    if isinstance(job, str):
        return job
    return "%s:%s" % (job.__module__, job.__qualname__)


def register_job(cls):
    """Class decorator: let workers run ``cls`` (see the module docstring)."""
    _JOBS[job_name(cls)] = cls
    return cls


def get_job(name):
    """Return the registered job class called ``name``, importing its module.

    Raises
    ------
    KeyError
        When the module does not register a job of that name.
    """
    if name not in _JOBS:
        module = name.partition(":")[0]
        if module:
            importlib.import_module(module)
    if name not in _JOBS:
        raise KeyError("no registered parallel job %r" % name)
    return _JOBS[name]


# ----------------------------------------------------------- built-in jobs

@register_job
class Fingerprints:
    """Map job: fingerprints of images, as ``ImageFingerprints.todict``.

    ``setup``: ``{'descriptor': descriptor.todict(), 'derivatives': bool,
    'parts': ['values', 'derivatives'], 'dblabel': str or None}``; items
    are ase.Atoms; each value is ``descriptor.compute(atoms,
    derivatives).todict(parts)``. With a ``dblabel`` (workers on the
    master's machine) the worker stores the fingerprints in those
    databases itself, as the master would, and returns ``{'stored':
    True}``: nothing large crosses to the master, which would otherwise
    spend about a quarter of the work decoding and storing.
    """

    def __init__(self, setup):
        self.descriptor = from_importname(setup["descriptor"])
        self.derivatives = bool(setup.get("derivatives", False))
        self.parts = tuple(setup.get("parts", ("values", "derivatives")))
        dblabel = setup.get("dblabel")
        # The worker only writes: nothing is kept in its memory.
        self.store = None if dblabel is None else \
            self.descriptor.open_store(dblabel, keep_in_memory=False)

    def __call__(self, key, atoms):
        fingerprints = self.descriptor.compute(atoms, self.derivatives)
        if self.store is not None:
            self.store.put(key, fingerprints)
            return {"stored": True}
        return fingerprints.todict(parts=self.parts)


# ---------------------------------------------------------- worker process

def _read_secret():
    line = sys.stdin.readline()
    if not line.strip():
        sys.exit("amp worker: no secret on stdin")
    return line.strip()


def _watch_stdin():
    """Exit when stdin closes: the master (or launcher) is gone."""
    def watch():
        try:
            while sys.stdin.readline():
                pass
        finally:
            os._exit(0)
    threading.Thread(target=watch, daemon=True).start()


def _connect(context, address, process_id, host, secret):
    """Connect a DEALER socket to the master and authenticate both ways.

    Returns
    -------
    dealer : zmq.Socket
    heartbeat : float
        Seconds between heartbeats, as the master asked.
    """
    import zmq

    dealer = context.socket(zmq.DEALER)
    dealer.linger = 1000
    secure_worker_socket(dealer, secret)
    dealer.connect(address)
    dealer.send_multipart(_wire.encode({
        "subject": "hello", "id": process_id, "host": host,
        "pid": os.getpid()}))
    if not dealer.poll(30000):
        raise RuntimeError("no answer from the master at %s" % address)
    head, _ = _wire.decode(dealer.recv_multipart())
    if head["subject"] != "challenge":
        raise RuntimeError("master refused: %s" % head.get("reason"))
    nonce = head["nonce"]
    dealer.send_multipart(_wire.encode({
        "subject": "auth", "proof": _wire.proof(secret, "worker", nonce)}))
    if not dealer.poll(30000):
        raise RuntimeError("the master did not welcome this worker")
    head, _ = _wire.decode(dealer.recv_multipart())
    if head["subject"] != "welcome" or not _wire.check_proof(
            secret, "master", nonce, head.get("proof")):
        raise RuntimeError("the peer at %s is not this run's master"
                           % address)
    return dealer, float(head.get("heartbeat", 1.0)), \
        int(head.get("max_message_bytes", 0)) or None


class _Channel:
    """The worker's socket, shared by the main thread and a heartbeat
    thread under a lock (a ZMQ socket may change threads across a lock,
    never be used by two at once).

    The main thread waits for requests and answers them on the socket
    itself, so a request costs no hop between threads; while it computes,
    the heartbeat thread sends a heartbeat every ``heartbeat`` seconds so
    the master can tell busy from dead. Idle, the main thread sends them.
    """

    def __init__(self, dealer, heartbeat, max_message_bytes=None):
        self.dealer, self.heartbeat = dealer, heartbeat
        self.max_message_bytes = max_message_bytes
        self.lock = threading.Lock()
        self.busy = threading.Event()
        self.beat = _wire.encode({"subject": "heartbeat"})
        threading.Thread(target=self._beat_while_busy, daemon=True).start()

    def _beat_while_busy(self):
        while True:
            self.busy.wait()
            time.sleep(self.heartbeat)
            if self.busy.is_set():
                with self.lock:
                    self.dealer.send_multipart(self.beat)

    def receive(self):
        """The next request's frames (sending heartbeats while idle)."""
        while True:
            with self.lock:
                if self.dealer.poll(self.heartbeat * 1000):
                    frames = self.dealer.recv_multipart(copy=False)
                    self.busy.set()
                    return frames
                self.dealer.send_multipart(self.beat)

    def reply(self, frames):
        """Send a reply; heartbeats stop until the next request."""
        with self.lock:
            self.busy.clear()
            self.dealer.send_multipart(frames, copy=False)


class _Worker:
    def __init__(self):
        self.maps = {}      # (job name, setup id) -> map job instance
        self.shares = {}    # (job id, share id) -> persistent job instance

    def handle(self, head, data):
        subject = head["subject"]
        if subject == "map":
            cache_key = (head["job"], head["setup_id"])
            job = self.maps.get(cache_key)
            if job is None:
                if len(self.maps) > 8:  # setups of finished map calls
                    self.maps.clear()
                job = self.maps[cache_key] = get_job(head["job"])(
                    data["setup"])
            return {key: job(key, item) for key, item in
                    zip(data["keys"], data["items"])}
        if subject == "init":
            cls = get_job(head["job"])
            self.shares[(head["job_id"], head["share"])] = cls(
                data["setup"], data["share"])
            return None
        if subject == "call":
            results = {}
            for share in head["shares"]:
                job = self.shares[(head["job_id"], share)]
                if head["method"] not in getattr(job, "methods", ()):
                    raise ValueError("%s has no parallel method %r"
                                     % (type(job).__name__, head["method"]))
                results[str(share)] = getattr(job, head["method"])(data)
            return results
        if subject == "drop":
            for key in [k for k in self.shares if k[0] == head["job_id"]]:
                del self.shares[key]
            return None
        raise ValueError("unknown request %r" % subject)


def worker_main(address, process_id, host):
    """Run one worker: read the secret from stdin, serve until told to stop.

    Ctrl-C in the master's terminal reaches the workers too; they ignore it
    and leave when the master says so or when stdin closes.
    """
    import zmq

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Every job (fingerprints, loss shares) makes large temporaries: keep
    # freed memory for reuse (amp.parallel.memory.tune_malloc).
    from .memory import tune_malloc
    tune_malloc()
    secret = _read_secret()
    _watch_stdin()
    context = zmq.Context()
    try:
        channel = _Channel(*_connect(context, address, process_id, host,
                                     secret))
    except Exception as error:
        sys.exit("amp worker %s on %s: %s" % (process_id, host, error))
    worker = _Worker()
    while True:
        frames = channel.receive()
        head, data = _wire.decode(frames)
        if head["subject"] == "exit":
            os._exit(0)
        try:
            value = worker.handle(head, data)
            reply = _wire.encode({"subject": "result",
                                  "token": head.get("token")}, value)
            size = _wire.message_bytes(reply)
            if channel.max_message_bytes and \
                    size > channel.max_message_bytes:
                raise ValueError(
                    "the result is %d bytes, more than the master takes "
                    "(max_message_bytes=%d); raise it with WorkerPool("
                    "max_message_bytes=...) or amp.store.limits."
                    "MAX_MESSAGE_BYTES" % (size, channel.max_message_bytes))
        except Exception:
            reply = _wire.encode({"subject": "error",
                                  "token": head.get("token"),
                                  "error": traceback.format_exc()})
        channel.reply(reply)


# ------------------------------------------------------ launcher over SSH

def launcher_main(address, ids, host):
    """Start the workers of one host; stop them when the session ends.

    Runs in the foreground of the master's SSH session. It turns terminal
    echo off, asks for the secret on stdin (so it shows neither in ``ps``
    nor on the terminal), hands it to each worker through a pipe, then
    waits: a ``stop`` line, end of input or a hang-up stops the workers.
    """
    import termios

    if sys.stdin.isatty():
        attributes = termios.tcgetattr(0)
        attributes[3] &= ~termios.ECHO
        termios.tcsetattr(0, termios.TCSANOW, attributes)
    print("<amp-secret>", flush=True)
    secret = _read_secret()
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               MKL_NUM_THREADS="1")
    children = []

    def stop(*_):
        for child in children:
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + 2
        for child in children:
            try:
                child.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
        os._exit(0)

    for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    for process_id in ids:
        child = subprocess.Popen(
            [sys.executable, "-m", "amp.parallel", "worker", address,
             str(process_id), host], stdin=subprocess.PIPE, env=env)
        child.stdin.write((secret + "\n").encode())
        child.stdin.flush()
        children.append(child)
    print("<amp-launched %d>" % len(children), flush=True)
    try:
        while True:
            readable, _, _ = select.select([sys.stdin], [], [], 1.0)
            if readable:
                line = sys.stdin.readline()
                if not line or line.strip() == "stop":
                    break
    finally:
        stop()


def main(argv=None):
    """``python -m amp.parallel worker ADDRESS ID HOST`` or
    ``python -m amp.parallel launch ADDRESS ID,ID,... HOST``."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 4 and argv[0] == "worker":
        worker_main(argv[1], int(argv[2]), argv[3])
    elif len(argv) == 4 and argv[0] == "launch":
        launcher_main(argv[1], [int(i) for i in argv[2].split(",")], argv[3])
    else:
        sys.exit("usage: python -m amp.parallel worker ADDRESS ID HOST\n"
                 "       python -m amp.parallel launch ADDRESS ID,... HOST\n"
                 "(the secret is read from stdin)")
