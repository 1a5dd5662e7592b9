"""The one way this library writes a file, and the one way it reads one.

Writing:

:func:`atomic_file` writes into a temporary file in the target's folder
(``.tmp-<name>-<pid>-<random>``) and publishes it with one ``os.replace``
(or, with ``replace=False``, one ``os.link`` that fails if the target
exists), so a reader sees the old file or the whole new one, never half of
one, and concurrent writers cannot interleave. On any failure the
temporary file is removed and the target is untouched.

Reading: :func:`read_file` opens only regular files, without following a
symbolic link and without blocking on a FIFO, checks the size with
``fstat`` before reading, and never reads more than a cap, so a file that
someone else controls cannot make a reader hang, read outside its folder
or allocate without bound. Every reader of outside data uses it.
"""

from __future__ import annotations

import contextlib
import errno
from typing import IO, Any, Iterator
import os
import secrets
import stat

TEMPORARY_PREFIX = ".tmp-"


def temporary_name(folder: str, name: str) -> str:
    """Return a fresh temporary path in ``folder`` for writing ``name``."""
    return os.path.join(folder, "%s%s-%d-%s" % (
        TEMPORARY_PREFIX, name[:40], os.getpid(), secrets.token_hex(6)))


def fsync_folder(folder: str) -> None:
    """Flush ``folder``'s directory entries to disk (best effort)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, fsync: bool = False,
                overwrite: bool = True,
                replace: bool = True) -> Iterator[IO[bytes]]:
    """Open a binary file that becomes ``path`` when the block succeeds.

    Parameters
    ----------
    path : str or path-like
        The target.
    fsync : bool, optional
        Flush the data and the folder entry to disk before returning.
    overwrite : bool, optional
        When False and ``path`` exists, raise ``FileExistsError`` before
        anything is written.
    replace : bool, optional
        When False, publish with ``os.link``, which fails with
        ``FileExistsError`` if another writer created ``path`` meanwhile
        (the first writer wins); when True, ``os.replace`` (the last wins).

    Yields
    ------
    file
        The temporary file, opened ``"xb"``.
    """
    path = os.fspath(path)
    if not overwrite and os.path.lexists(path):
        raise FileExistsError("%s exists; pass overwrite=True to replace it"
                              % path)
    folder = os.path.dirname(os.path.abspath(path))
    temporary = temporary_name(folder, os.path.basename(path))
    try:
        with open(temporary, "xb") as handle:
            yield handle
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        if replace:
            os.replace(temporary, path)
        else:
            try:
                os.link(temporary, path)
            except FileExistsError:
                raise
            except OSError:  # no hard links on this file system
                if os.path.lexists(path):
                    raise FileExistsError(path) from None
                os.replace(temporary, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
    if fsync:
        fsync_folder(folder)


def write_atomically(folder: str, name: str, data: bytes,
                     fsync: bool = False) -> None:
    """Write the bytes ``data`` to ``folder/name`` with :func:`atomic_file`."""
    with atomic_file(os.path.join(folder, name), fsync=fsync) as handle:
        handle.write(data)


class UnsafeFileError(OSError):
    """A file was refused before reading: it is not a regular file (a
    symbolic link, FIFO, device or folder) or it is larger than its cap."""


def _kind(mode):
    for test, name in ((stat.S_ISLNK, "a symbolic link"),
                       (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISDIR, "a folder"),
                       (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


# O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused
# right after, by fstat). O_NOFOLLOW: a link is never followed.
_READ_FLAGS = (os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
               | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
               | getattr(os, "O_BINARY", 0))


def open_regular(path: str | os.PathLike, max_bytes: int | None,
                 what: str = "file", flags: int = _READ_FLAGS,
                 mode: int = 0o666, dir_fd: int | None = None,
                 follow_links: bool = False) -> tuple[int, int]:
    """Open ``path`` only if it is a regular file of at most ``max_bytes``.

    Parameters
    ----------
    path : str or path-like
        Its last component is never followed if it is a symbolic link.
    max_bytes : int or None
        Refuse a larger file (None: no cap).
    what : str
        Names the file in error messages (e.g. ``"entry 'k' of x.ampdb"``).
    flags, mode : int
        ``os.open`` flags (``O_NOFOLLOW`` is always added) and creation
        mode, for callers that create the file (the database lock).
    dir_fd : int, optional
        Resolve ``path`` relative to this open folder.
    follow_links : bool
        Open what a symbolic link points to (for a path the user gave
        explicitly, such as a dataset); by default a link is refused.

    Returns
    -------
    fd : int
        An open descriptor (the caller closes it), in blocking mode.
    size : int
        The file's size when it was checked.

    Raises
    ------
    UnsafeFileError
        A symbolic link, FIFO, device, socket or folder, or too large.
    FileNotFoundError
        No such file.
    """
    path = os.fspath(path)
    try:
        nofollow = getattr(os, "O_NOFOLLOW", 0)
        flags = flags & ~nofollow if follow_links else flags | nofollow
        fd = os.open(path, flags, mode, dir_fd=dir_fd)
    except OSError as error:
        # ELOOP (EMLINK on some BSDs): the last component is a link.
        if error.errno in (errno.ELOOP, errno.EMLINK):
            raise UnsafeFileError("%s is a symbolic link, which is never "
                                  "followed" % what) from None
        raise
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise UnsafeFileError("%s is %s, not a regular file"
                                  % (what, _kind(status.st_mode)))
        if max_bytes is not None and status.st_size > max_bytes:
            raise UnsafeFileError(
                "%s has %d bytes, more than the cap of %d (see "
                "amp.store.limits)" % (what, status.st_size, max_bytes))
        if flags & getattr(os, "O_NONBLOCK", 0):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, status.st_size


def read_file(path: str | os.PathLike, max_bytes: int | None = None,
              what: str | None = None, dir_fd: int | None = None) -> bytes:
    """Return the bytes of the regular file ``path`` (see
    :func:`open_regular`), refusing more than ``max_bytes``.

    A file that grows past the cap while it is read is refused as well.
    """
    what = what or os.fspath(path)
    fd, size = open_regular(path, max_bytes, what, dir_fd=dir_fd)
    with open(fd, "rb", closefd=True) as handle:
        if max_bytes is None:
            return handle.read()
        return read_capped(handle, max_bytes, what, size)


def read_capped(handle: Any, max_bytes: int, what: str | None,
                expected: int = 0) -> bytes:
    """Read ``handle`` to its end, refusing more than ``max_bytes``.

    ``read(n)`` reserves ``n`` bytes before reading, so the cap is never
    asked for at once: the expected size first, then bounded chunks.
    """
    chunks = [handle.read(min(expected, max_bytes) + 1)]
    total = len(chunks[0])
    while chunks[-1] and total <= max_bytes:
        chunks.append(handle.read(min(2 ** 20, max_bytes + 1 - total)))
        total += len(chunks[-1])
    if total > max_bytes:
        raise UnsafeFileError("%s is longer than the cap of %d bytes (see "
                              "amp.store.limits)" % (what, max_bytes))
    return chunks[0][:0].join(chunks)


def folder_bytes(path: str) -> int:
    """Total size of the files below ``path`` (links not followed)."""
    total = 0
    for root, _, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total
