"""Wire format and handshake of the master/worker protocol (no pickle).

A message is a ZMQ multipart message: one JSON header frame, then one raw
frame per numpy array. The header is a dict with at least ``subject``; its
``data`` is a JSON tree in which each array is ``{"$a": N}`` (frame N + 1),
``ase.Atoms`` are ``{"$atoms": {...}}`` and dict keys starting with ``$``
carry one extra ``$``; ``arrays`` lists ``[dtype, shape]`` of every frame.
Only plain numeric/bool/bytes dtypes are accepted, and each frame's length
must match its description, so a peer can make the receiver build nothing
but arrays of numbers, strings, lists and dicts.

Authentication is a challenge-response on a per-run secret (HMAC-SHA256),
so the secret itself never crosses the network: the worker says ``hello``,
the master answers a ``challenge`` nonce, the worker answers ``auth`` with
``proof(secret, 'worker', nonce)``, and the master's ``welcome`` carries
``proof(secret, 'master', nonce)`` so the worker knows it talks to its own
master.
"""

import hashlib
import hmac
import json
import math

import numpy as np

from ..store.arrays import (from_bytes, from_tree, is_shape, plain_dtype,
                      reference, to_tree)

#: Header frames of peers that have not authenticated may not exceed this.
MAX_HANDSHAKE_BYTES = 4096

#: No frame on any socket of a pool may exceed this (ZMQ's ``MAXMSGSIZE``:
#: a peer announcing a larger frame is disconnected before it is taken);
#: arrays larger than this travel in several frames.
MAX_FRAME_BYTES = 16 * 2 ** 20
_SAFE_KINDS = "biufcSV"  # no objects, no structured-with-object dtypes


class ProtocolError(ValueError):
    """A message that does not follow the wire format."""


def proof(secret, role, nonce):
    """HMAC-SHA256 of ``role:nonce`` under the run's secret, as hex."""
    return hmac.new(secret.encode(), ("%s:%s" % (role, nonce)).encode(),
                    hashlib.sha256).hexdigest()


def check_proof(secret, role, nonce, claimed):
    """True when ``claimed`` is the right :func:`proof` (constant time)."""
    if not isinstance(claimed, str):
        return False
    return hmac.compare_digest(proof(secret, role, nonce), claimed)


def _atoms_tree(atoms, arrays):
    image = {"numbers": atoms.numbers, "positions": atoms.positions,
             "cell": np.asarray(atoms.cell), "pbc": np.asarray(atoms.pbc)}
    results = getattr(atoms.calc, "results", None) or {}
    # Energies and forces travel with the image, so training shares are
    # complete without a calculator object on the worker.
    for name in ("energy", "free_energy", "forces"):
        if name in results:
            image[name] = results[name]
    return {"$atoms": _to_tree(image, arrays)}


def _to_tree(value, arrays):
    def special(value, walk):
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, tuple):
            return [walk(item) for item in value]
        if hasattr(value, "get_positions") and hasattr(value, "numbers"):
            return _atoms_tree(value, arrays)
        return NotImplemented

    return to_tree(value, arrays, "$a", _SAFE_KINDS, "a worker message",
                   special)


def _from_tree(node, arrays):
    return from_tree(node, {
        "$a": lambda content, walk: reference(content, arrays,
                                              ProtocolError),
        "$atoms": lambda content, walk: _build_atoms(walk(content))})


def _build_atoms(image):
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms = Atoms(numbers=image["numbers"], positions=image["positions"],
                  cell=image["cell"], pbc=image["pbc"])
    # Positions are set as given (Atoms copies them): no wrapping, so the
    # worker's image hashes and fingerprints like the master's.
    results = {name: image[name] for name in ("energy", "free_energy",
                                              "forces") if name in image}
    if results:
        atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def encode(header, data=None):
    """Return the frames of a message: header JSON, then array buffers.

    Parameters
    ----------
    header : dict
        JSON-able fields (``subject``, ``token``, ...).
    data : object, optional
        Arrays, numbers, str, None, ase.Atoms, lists and str-keyed dicts.
    """
    arrays = []
    head = dict(header)
    head["data"] = _to_tree(data, arrays)
    arrays = [np.ascontiguousarray(a) for a in arrays]
    frames = []
    head["arrays"] = []
    for a in arrays:
        data = memoryview(a).cast("B") if a.size else b""
        parts = [data[i:i + MAX_FRAME_BYTES]
                 for i in range(0, len(data), MAX_FRAME_BYTES)] or [b""]
        head["arrays"].append([a.dtype.str, list(a.shape), len(parts)])
        frames.extend(parts)
    text = json.dumps(head, allow_nan=True).encode()
    if len(text) > MAX_FRAME_BYTES:
        raise ProtocolError(
            "a message header of %d bytes is more than a frame may hold "
            "(%d bytes): send large data as numpy arrays"
            % (len(text), MAX_FRAME_BYTES))
    return [text] + frames


def message_bytes(frames):
    """The size of a message: the bytes of all its frames."""
    return sum(len(frame.buffer if hasattr(frame, "buffer") else frame)
               for frame in frames)


def decode_header(frame, limit=None):
    """Parse a header frame (bytes or zmq.Frame) into a dict."""
    raw = frame.bytes if hasattr(frame, "bytes") else bytes(frame)
    if limit is not None and len(raw) > limit:
        raise ProtocolError("header of %d bytes before authentication"
                            % len(raw))
    try:
        head = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        # RecursionError: nested deeper than the JSON parser goes.
        raise ProtocolError("header is not JSON: %s: %s"
                            % (type(error).__name__, error)) from None
    if not isinstance(head, dict) or not isinstance(head.get("subject"), str):
        raise ProtocolError("header is not a dict with a subject")
    return head


def decode(frames, head=None):
    """Return ``(header, data)`` of a message's frames.

    Raises
    ------
    ProtocolError
        For anything that is not a well-formed message, whatever the cause.
    """
    try:
        return _decode(frames, head)
    except ProtocolError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError,
            RecursionError, MemoryError, OverflowError) as error:
        # e.g. an image without positions, or data nested too deeply
        raise ProtocolError("malformed message: %s: %s"
                            % (type(error).__name__, str(error)[:200])) \
            from None


def _decode(frames, head):
    if head is None:
        head = decode_header(frames[0])
    described = head.get("arrays", [])
    if not isinstance(described, list):
        raise ProtocolError("bad array descriptions %.80r" % (described,))
    for description in described:
        if not isinstance(description, list) or len(description) not in (2,
                                                                          3):
            raise ProtocolError("bad array description %.80r"
                                % (description,))
    counts = [d[2] if len(d) == 3 else 1 for d in described]
    if not all(type(n) is int and n >= 1 for n in counts) or \
            sum(counts) != len(frames) - 1:
        raise ProtocolError("array descriptions do not match the frames")
    arrays, start = [], 1
    for description, count in zip(described, counts):
        dtype, shape = description[:2]
        parts, start = frames[start:start + count], start + count
        try:
            dtype = np.dtype(dtype)
        except (TypeError, ValueError, SyntaxError):
            raise ProtocolError("bad dtype %.80r" % (dtype,)) from None
        # No sub-array or structured dtypes: only what encode() sends.
        if not plain_dtype(dtype, _SAFE_KINDS) or not is_shape(shape) or \
                dtype.subdtype is not None or dtype.names is not None:
            raise ProtocolError("bad array description %r %r"
                                % (dtype, shape))
        try:  # a copy: the frame's memory is read-only and owned by ZMQ
            arrays.append(_joined(parts, dtype, shape))
        except ValueError:
            raise ProtocolError("array frame length does not match %s %r"
                                % (dtype, shape)) from None
    return head, _from_tree(head.get("data"), arrays)


def _joined(parts, dtype, shape):
    """The array held by the frames ``parts``, checked before allocating."""
    buffers = [part.buffer if hasattr(part, "buffer") else part
               for part in parts]
    if len(buffers) == 1:
        return from_bytes(buffers[0], dtype, shape)
    sizes = [len(memoryview(b).cast("B")) for b in buffers]
    if not is_shape(shape) or sum(sizes) != math.prod(shape) * dtype.itemsize:
        raise ValueError("array data does not match its description")
    array = np.empty(shape, dtype)
    flat, position = memoryview(array.reshape(-1)).cast("B"), 0
    for buffer, size in zip(buffers, sizes):
        flat[position:position + size] = memoryview(buffer).cast("B")
        position += size
    return array
