"""Keep freed memory in the process instead of returning it at once.

Used only inside this library's own worker processes (and benchmarks that
ask for it): the library never changes the allocator of a user's process.
Training work creates many temporaries of a few hundred kB to a few MB;
glibc hands such blocks back to the kernel when freed (``mmap``/trim
thresholds), so every new temporary is fresh memory that is page-faulted
in again (measured on a 108-atom cell: about twice the cost of fingerprint
derivatives without buffer reuse). Raising the thresholds keeps up to a
few hundred MB of freed memory for reuse in the worker.

Set ``AMP_NO_MALLOC_TUNING=1`` to leave the allocator alone.
"""

import ctypes
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_done = False


def tune_malloc(mmap_threshold=32 << 20, trim_threshold=256 << 20):
    """Raise glibc's mmap and trim thresholds once (Linux/glibc only).

    Returns
    -------
    bool
        Whether the allocator was tuned.
    """
    global _done
    if _done or os.environ.get("AMP_NO_MALLOC_TUNING") \
            or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = (libc.mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)) == 1
              and libc.mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)) == 1)
    except (OSError, AttributeError):  # not glibc
        return False
    _done = ok
    return ok
