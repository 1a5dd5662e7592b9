"""A lock that says who holds it: one running process per name.

:func:`owner_lock` holds a lock file for as long as a block runs. The file
records the owner (pid, host, start time), so a second process is refused
at once with an :class:`InUseError` that names the owner. The lock is an
``flock`` on the file, which the kernel releases when its process ends
however it ends, so a lock left by a killed process is simply taken over;
where ``flock`` is not available the recorded pid is checked instead (a
dead pid on this host: taken over).
"""

from __future__ import annotations

import contextlib
import errno
from typing import Iterator
import json
import os
import socket
import time

from .files import UnsafeFileError, process_is_gone, read_file

try:
    import fcntl
except ImportError:  # not POSIX: the recorded pid decides
    fcntl = None  # type: ignore[assignment]

_OWNER_BYTES = 4096


class InUseError(RuntimeError):
    """Another running process holds the lock (its pid is in the
    message)."""


def _owner_text(path):
    """The owner recorded in ``path``, in words (or why it is unknown)."""
    try:
        record = json.loads(read_file(path, _OWNER_BYTES, "lock %s" % path))
        return "pid %d on %s since %s" % (
            int(record["pid"]), str(record["host"])[:200],
            time.strftime("%Y-%m-%d %H:%M:%S",
                          time.localtime(float(record["started"]))))
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not written its pid yet"


def _recorded_owner_is_gone(path):
    """For file systems without ``flock``: True when the recorded owner is
    a pid of this host that no longer runs."""
    try:
        record = json.loads(read_file(path, _OWNER_BYTES, "lock %s" % path))
        pid, host = int(record["pid"]), record["host"]
    except FileNotFoundError:
        return True
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return host == socket.gethostname() and process_is_gone(pid)


def _open(path):
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | \
        getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(path, flags, 0o644)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.EMLINK):
            raise UnsafeFileError("the lock %s is a symbolic link, which is "
                                  "never followed; delete it" % path) \
                from None
        raise


def _take(path, refuse):
    """Open ``path`` and lock it; return the descriptor or raise."""
    while True:
        fd = _open(path)
        locked = False
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = True
            except BlockingIOError:
                os.close(fd)
                raise refuse(_owner_text(path)) from None
            except OSError:  # no flock on this file system
                pass
        if not locked:
            size = os.fstat(fd).st_size
            if size and not _recorded_owner_is_gone(path):
                os.close(fd)
                raise refuse(_owner_text(path))
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        # The previous owner removed the file between our open and lock:
        # lock the file that has the name now.
        os.close(fd)


@contextlib.contextmanager
def owner_lock(path: str, what: str = "this lock") -> Iterator[None]:
    """Hold ``path`` as a lock while the block runs; refuse if it is held.

    Parameters
    ----------
    path : str
        The lock file (created; removed when the block ends).
    what : str
        Names what the lock guards in the refusal (e.g. ``"label 'run'"``).

    Raises
    ------
    InUseError
        Another running process holds it: the message names its pid and
        host and the lock file.
    """
    path = os.fspath(path)

    def refuse(owner):
        return InUseError(
            "%s is in use by a running process (%s; lock %s): wait for it "
            "to finish or use another name" % (what, owner, path))

    fd = _take(path, refuse)
    try:
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "started": time.time()}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still locked: see _take
        os.close(fd)
