"""Who may connect to the master: admission before any message is taken.

ZMQ takes a peer's messages as soon as its connection is made, and keeps
the frames of a multipart message until its last one arrives, so a size
cap per frame (``MAXMSGSIZE``) alone would let a stranger make the master
hold as many frames as it cares to send. The master's socket therefore
admits a connection only after its ZMQ handshake (the PLAIN mechanism)
carried one-time credentials that only the run's secret can make: a
random nonce as user name and ``proof(secret, 'connect', nonce)`` as
password (the secret itself never crosses the network; a nonce is
accepted once). The check is a ZAP handler (ZMQ RFC 27) served by
:class:`Gate` in a thread of the master. Before admission a peer can send
the ZMTP greeting and one handshake command, which ``MAXMSGSIZE`` caps;
a peer with another mechanism is dropped at the greeting.

The challenge-response of :mod:`amp.parallel.wire` still follows, inside
the admitted connection: it tells each worker apart and lets the worker
check that it talks to its own master.
"""

import collections
import hmac
import logging
import secrets
import threading

from . import wire

_logger = logging.getLogger("amp.parallel")

#: The ZAP domain of the master's socket.
DOMAIN = b"amp"
_ZAP_ENDPOINT = "inproc://zeromq.zap.01"  # fixed by RFC 27
_MAX_NONCES = 100000  # admissions per run


def credentials(secret):
    """The PLAIN user name and password with which a worker connects: a
    fresh nonce, and its proof under the run's ``secret``."""
    nonce = secrets.token_hex(16)
    return ("amp:" + nonce).encode(), \
        wire.proof(secret, "connect", nonce).encode()


def secure_master_socket(socket):
    """Make ``socket`` (the master's, before it binds) admit only peers
    that :class:`Gate` approves, and cap every frame."""
    import zmq

    socket.setsockopt(zmq.MAXMSGSIZE, wire.MAX_FRAME_BYTES)
    socket.plain_server = True
    socket.zap_domain = DOMAIN


def secure_worker_socket(socket, secret):
    """Give a worker's socket (before it connects) its credentials and
    the frame cap."""
    import zmq

    socket.setsockopt(zmq.MAXMSGSIZE, wire.MAX_FRAME_BYTES)
    socket.plain_username, socket.plain_password = credentials(secret)


class Gate:
    """The ZAP handler of one pool's ZMQ context, in a thread.

    Parameters
    ----------
    context : zmq.Context
        The pool's own context (ZAP handlers are per context).
    secret : str
        The run's secret.

    Attributes
    ----------
    refused : collections.deque
        One line per refused connection (the pool logs them).
    """

    def __init__(self, context, secret):
        import zmq

        self.secret = secret
        self.refused = collections.deque(maxlen=1000)
        self._used = set()
        self._stop = threading.Event()
        self._socket = context.socket(zmq.REP)
        self._socket.linger = 0
        self._socket.bind(_ZAP_ENDPOINT)
        self._thread = threading.Thread(target=self._serve, name="amp-gate",
                                        daemon=True)
        self._thread.start()

    def _serve(self):
        socket = self._socket
        while not self._stop.is_set():
            if not socket.poll(50):
                continue
            request = socket.recv_multipart()
            socket.send_multipart(self._answer(request))

    def _answer(self, request):
        if len(request) < 6 or request[0] != b"1.0":
            return [b"1.0", request[1] if len(request) > 1 else b"",
                    b"400", b"malformed ZAP request", b"", b""]
        version, request_id, domain, address, _, mechanism = request[:6]
        reason = self._check(domain, mechanism, request[6:])
        if reason is None:
            return [version, request_id, b"200", b"OK", b"", b""]
        peer = address.decode(errors="replace")[:100]
        line = "Refused a connection from %s: %s" % (peer, reason)
        self.refused.append(line)
        _logger.warning(line)
        return [version, request_id, b"400", reason.encode()[:200], b"", b""]

    def _check(self, domain, mechanism, credentials):
        if domain != DOMAIN or mechanism != b"PLAIN" or \
                len(credentials) != 2:
            return "not a worker of this run (mechanism %s)" % (
                mechanism.decode(errors="replace")[:20])
        user, password = credentials
        nonce = user[4:].decode("ascii", errors="replace") \
            if user.startswith(b"amp:") else ""
        if len(nonce) != 32 or not hmac.compare_digest(
                wire.proof(self.secret, "connect", nonce).encode(),
                password):
            return "wrong credentials (it does not know the run's secret)"
        if nonce in self._used or len(self._used) >= _MAX_NONCES:
            return "credentials used before (a replay)"
        self._used.add(nonce)
        return None

    def close(self):
        """Stop the thread and close the socket (before the context ends)."""
        self._stop.set()
        self._thread.join()
        self._socket.close(0)
