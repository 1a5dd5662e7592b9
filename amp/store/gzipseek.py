"""Random access into a gzip stream without an inflated copy anywhere.

gzip cannot seek. :class:`InflatedView` stands for the inflated stream
without holding it: while the stream is inflated once, front to back, it
keeps a copy of the inflater's state (``zlib.decompressobj().copy()``,
about 40 kB with its 32 kB window) every ``spacing`` inflated bytes,
together with the compressed offset it had reached. A read at any offset
restores the nearest checkpoint before it and inflates forward from there;
a read at or after the previous one just goes on inflating, so a front to
back pass costs one inflation. The last few MB written are kept as they
are, for the reads that follow the writing closely.

Memory is bounded: at most ``MAX_CHECKPOINTS`` states (when there would be
more, every other one is dropped and the spacing doubles) plus the tail.
It needs no room on any disk, which is why
:class:`amp.store.archive.ArchiveIndex` turns to it when its inflated copy
cannot be written (a full disk, a file-size limit, a read-only folder).
"""

import os
import zlib


def unconsumed_input(inflater):
    """The input ``inflater`` has not consumed after its last call: at the
    end of a gzip member the bytes beyond it (``unconsumed_tail`` may then
    repeat them, so it is not added), otherwise its unconsumed tail."""
    return inflater.unused_data if inflater.eof else inflater.unconsumed_tail


class InflatedView:
    """The inflated bytes of the gzip file open as ``fd``, readable at any
    offset, built by the writer that inflates it (:meth:`write` and
    :meth:`checkpoint`) and then read like a file (``seek``, ``read``,
    ``tell``).

    Parameters
    ----------
    fd : int
        The gzip file, open for reading; it is duplicated (the caller may
        close its own) and read with ``os.pread`` only.
    """

    SPACING = 2 ** 20
    MAX_CHECKPOINTS = 256
    TAIL_BYTES = 3 * 2 ** 20
    _READ = 2 ** 16

    def __init__(self, fd):
        self._fd = os.dup(fd)
        self.spacing = self.SPACING
        # (inflated offset, compressed offset, inflater or None at a member
        # boundary): where inflating may start again.
        self._checkpoints = [(0, 0, None)]
        self._size = 0           # inflated bytes so far (or after a cut)
        self._tail = bytearray()  # the last TAIL_BYTES of them
        self._position = 0
        self._cursor = None       # (inflated offset, compressed, inflater)

    # Building: the inflating writer calls these, in order ---------------

    def write(self, data):
        """Append inflated bytes."""
        self._size += len(data)
        self._tail += data
        if len(self._tail) > self.TAIL_BYTES:
            del self._tail[:len(self._tail) - self.TAIL_BYTES]
        self._position = self._size
        return len(data)

    def checkpoint(self, compressed, inflater):
        """Note that inflating from ``compressed`` (an offset in the gzip
        file) with ``inflater`` (None: a new gzip member starts there)
        continues the stream at the current size."""
        if self._size - self._checkpoints[-1][0] < self.spacing:
            return
        self._checkpoints.append((self._size, compressed,
                                  None if inflater is None
                                  else inflater.copy()))
        if len(self._checkpoints) > self.MAX_CHECKPOINTS:
            self._checkpoints = self._checkpoints[::2]
            self.spacing *= 2

    def truncate(self, size):
        """Forget what lies beyond ``size``."""
        if size < self._size:
            keep = len(self._tail) - (self._size - size)
            del self._tail[max(0, keep):]
            self._size = size
            self._checkpoints = [c for c in self._checkpoints
                                 if c[0] <= size]
        return size

    # Reading ---------------------------------------------------------------

    def tell(self):
        return self._position

    def seek(self, offset, whence=0):
        base = (0, self._position, self._size)[whence]
        self._position = max(0, base + offset)
        return self._position

    def read(self, size=-1):
        """Up to ``size`` bytes from the current offset (all when -1)."""
        start = self._position
        end = self._size if size is None or size < 0 else \
            min(self._size, start + size)
        if end <= start:
            return b""
        self._position = end
        tail_start = self._size - len(self._tail)
        if start >= tail_start:
            return bytes(self._tail[start - tail_start:end - tail_start])
        return self._inflate(start, end)

    def _inflate(self, start, end):
        """Inflate ``[start, end)`` from the best place: the state the
        previous read ended in, or the last checkpoint before ``start``."""
        checkpoint = self._checkpoint_before(start)
        cursor = self._cursor
        if cursor is not None and checkpoint[0] <= cursor[0] <= start:
            offset, compressed, inflater = cursor
        else:
            offset, compressed, inflater = checkpoint
            inflater = inflater.copy() if inflater is not None else None
        parts = []
        # ``compressed`` is always the first byte zlib has not consumed;
        # an inflater's unconsumed tail holds the bytes from there.
        while offset < end:
            if inflater is None:
                inflater = zlib.decompressobj(wbits=31)
            data = inflater.unconsumed_tail or \
                os.pread(self._fd, self._READ, compressed)
            out = inflater.decompress(data, min(self._READ, end - offset))
            compressed += len(data) - len(unconsumed_input(inflater))
            if inflater.eof:
                inflater = None  # the next gzip member starts at compressed
            elif not out and not data:
                break  # the file ended: what it had is all there is
            if offset + len(out) > start:
                parts.append(out[max(0, start - offset):])
            offset += len(out)
        self._cursor = (offset, compressed, inflater)
        return b"".join(parts)

    def _checkpoint_before(self, offset):
        low, high = 0, len(self._checkpoints)
        while high - low > 1:
            middle = (low + high) // 2
            if self._checkpoints[middle][0] <= offset:
                low = middle
            else:
                high = middle
        return self._checkpoints[low]

    def close(self):
        """Release the duplicated descriptor and the checkpoints."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._checkpoints, self._tail, self._cursor = [], bytearray(), None
