"""Scratch memory that the symmetry-function kernels reuse chunk after chunk.

The kernels work on a few centre atoms at a time; one such chunk of a
periodic metal makes some tens of temporaries of 0.1–1 MB (per-triplet
arrays, the ``(centre, slot, slot)`` Gram matrix and masks). Left to numpy,
each is a fresh allocation, and glibc gives the freed top of its heap back
to the kernel as soon as more than its (adaptive) trim threshold is free;
on a 108-atom Cu cell that meant new memory, page-faulted in again, for
every chunk: fingerprints took 17 ms instead of 8 ms and fingerprints with
derivatives 47 ms instead of 20 ms (measured against a process whose malloc
thresholds were raised). A :class:`Workspace` hands out views of one buffer
instead, kept from chunk to chunk and call to call, so the memory is
faulted in once; the host process's allocator is left as it is. With it,
the figures equal those of the tuned process (8.3-8.7 ms and 21-25 ms,
interleaved runs).
"""

import contextlib
import math
import threading

import numpy as np

# Views start on cache-line boundaries.
_ALIGN = 64


class Workspace:
    """A bump allocator over one reusable buffer.

    Within a chunk, :meth:`empty` hands out consecutive, non-overlapping
    views; :meth:`reset` makes the whole buffer free again for the next
    chunk. A request that does not fit is served by a fresh array and
    recorded, so the buffer grows, at the next :meth:`reset`, to the most
    a chunk has needed: its size follows the largest chunk seen (it depends
    on the neighbours per atom, not on the number of atoms).

    Views must not outlive the chunk they were made for: nothing a kernel
    returns to its caller may be one.

    Copies and pickles of a workspace are new, empty workspaces.
    """

    def __init__(self):
        self._buffer = np.empty(0, dtype=np.uint8)
        self._used = 0
        self._peak = 0
        self._lock = threading.Lock()

    def __reduce__(self):
        return (Workspace, ())

    @property
    def nbytes(self):
        """Size of the buffer held between calls, in bytes."""
        return self._buffer.nbytes

    @contextlib.contextmanager
    def lend(self):
        """This workspace for one computation, or a new one when it is
        already in use (by another thread, or a re-entrant call).

        Yields
        ------
        Workspace
        """
        if not self._lock.acquire(blocking=False):
            yield Workspace()
            return
        try:
            yield self
        finally:
            self._used = 0
            self._lock.release()

    def reset(self):
        """Free every view handed out so far; grow the buffer to the most
        that one chunk has needed."""
        if self._peak > len(self._buffer):
            raw = np.empty(self._peak + _ALIGN, dtype=np.uint8)
            skip = -raw.ctypes.data % _ALIGN
            self._buffer = raw[skip:skip + self._peak]
        self._used = 0

    def mark(self):
        """The current fill level, for :meth:`release`."""
        return self._used

    def release(self, mark):
        """Free the views handed out since :meth:`mark` returned ``mark``."""
        self._used = mark

    def empty(self, shape, dtype=np.float64):
        """An uninitialised array of ``shape`` (an int or a tuple) and
        ``dtype``: a view of the buffer when it fits, else a new array."""
        # Called some sixty times per chunk: plain Python arithmetic, no
        # numpy calls but the one that makes the view (np.prod and
        # np.broadcast_shapes here cost 6 ms per 108-atom image).
        if not isinstance(dtype, np.dtype):
            dtype = np.dtype(dtype)
        if isinstance(shape, int):
            shape = (shape,)
        nbytes = math.prod(shape) * dtype.itemsize
        start = self._used
        self._used = start + -(-nbytes // _ALIGN) * _ALIGN
        if self._used > self._peak:
            self._peak = self._used
        if self._used > len(self._buffer):
            return np.empty(shape, dtype)
        return np.ndarray(shape, dtype, buffer=self._buffer, offset=start)

    def zeros(self, shape, dtype=np.float64):
        """As :meth:`empty`, filled with zeros."""
        out = self.empty(shape, dtype)
        out.fill(0)
        return out

    def gather(self, source, index):
        """``source[index]`` for a 1-D ``source`` and in-range ``index``."""
        # mode="clip": with the default mode="raise" numpy copies through
        # a temporary buffer when ``out`` is given.
        return np.take(source, index, out=self.empty(len(index),
                                                     source.dtype),
                       mode="clip")

    def multiply(self, a, b):
        """``a * b`` (float64) in a new view; ``a`` and ``b`` are arrays
        of one shape, or an array and a scalar."""
        shape = a.shape if isinstance(a, np.ndarray) else b.shape
        return np.multiply(a, b, out=self.empty(shape))
