"""The one way this library writes a file, and the one way it reads one.

Writing:

:func:`atomic_file` writes into a temporary file in the target's folder
(``.tmp-<name>-<host>-<pid>-<random>``), flushes it to disk, and publishes
it with one ``os.replace`` (or, when it must not replace a file, one
``os.link`` that fails if the target exists), then flushes the folder
entry. So a reader sees the old file or the whole new one, never half of
one; concurrent writers cannot interleave, and of writers racing for a new
name with ``overwrite=False`` exactly one wins; a power loss leaves the old
file or the new one. On any failure the temporary file is removed and the
target is untouched; the temporary files of a writer that was killed are
removed by the next writer in that folder (:func:`remove_dead_temporaries`).

Reading: :func:`read_file` opens only regular files, without following a
symbolic link and without blocking on a FIFO, checks the size with
``fstat`` before reading, and never reads more than a cap, so a file that
someone else controls cannot make a reader hang, read outside its folder
or allocate without bound. Every reader of outside data uses it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import socket
import stat
from typing import IO, Any, Iterator

TEMPORARY_PREFIX = ".tmp-"


def _host_tag() -> str:
    """Eight hex digits naming this host in temporary names, so that a
    writer on a shared folder only ever judges its own host's pids."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def temporary_name(folder: str, name: str) -> str:
    """Return a fresh temporary path in ``folder`` for writing ``name``:
    ``.tmp-<name>-<host>-<pid>-<random>``."""
    return os.path.join(folder, "%s%s-%s-%d-%s" % (
        TEMPORARY_PREFIX, name[:40], _host_tag(), os.getpid(),
        secrets.token_hex(6)))


def _writer_is_dead(name: str, host: str) -> bool:
    """True when ``name`` is a temporary file of a writer on this host
    whose process no longer exists."""
    parts = name[len(TEMPORARY_PREFIX):].rsplit("-", 3)
    if len(parts) != 4 or parts[1] != host or not parts[2].isdigit() or \
            len(parts[3]) != 12:
        return False
    pid = int(parts[2])
    return pid != os.getpid() and process_is_gone(pid)


def process_is_gone(pid: int) -> bool:
    """True when no process ``pid`` runs on this host (a process of
    another user still counts as running)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, someone else's
        return False
    return False


def remove_dead_temporaries(folder: str) -> list[str]:
    """Remove the temporary files that writers on this host left in
    ``folder`` when they died (killed, or the machine stopped).

    Only regular files named by :func:`temporary_name` whose pid is not a
    running process of this host are removed; a live writer's file,
    another host's and anything else stay. Best effort: errors are
    ignored.

    Returns
    -------
    list of str
        The names removed.
    """
    removed, host = [], _host_tag()
    with contextlib.suppress(OSError):
        with os.scandir(folder) as listing:
            for item in listing:
                if item.name.startswith(TEMPORARY_PREFIX) and \
                        item.is_file(follow_symlinks=False) and \
                        _writer_is_dead(item.name, host):
                    with contextlib.suppress(OSError):
                        os.unlink(item.path)
                        removed.append(item.name)
    return removed


def fsync_folder(folder: str) -> None:
    """Flush ``folder``'s directory entries to disk (best effort)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _publish_new(temporary, path):
    """Give ``temporary`` the name ``path`` only if nothing has it yet.

    ``os.link`` fails atomically when ``path`` exists, so of writers
    racing for a new name exactly one wins. Where the file system has no
    hard links the name is claimed with ``O_EXCL`` first (a reader may
    then see it empty for a moment, never another writer's file lost).
    """
    try:
        os.link(temporary, path)
        return
    except FileExistsError:
        raise FileExistsError("%s exists (another writer created it "
                              "meanwhile); pass overwrite=True to replace "
                              "it" % path) from None
    except OSError:  # no hard links on this file system
        pass
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except FileExistsError:
        raise FileExistsError("%s exists (another writer created it "
                              "meanwhile); pass overwrite=True to replace "
                              "it" % path) from None
    os.replace(temporary, path)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, fsync: bool = True,
                overwrite: bool = True, replace: bool = True,
                tidy: bool = True) -> Iterator[IO[bytes]]:
    """Open a binary file that becomes ``path`` when the block succeeds.

    Guarantees: a reader sees the old file or the whole new one, never
    half of one; on any failure (an exception, a full disk) the temporary
    file is removed and ``path`` is untouched; with ``overwrite=False``
    an existing file is never replaced, even by writers racing for the
    same new name (exactly one wins); with ``fsync`` the data and then
    the folder entry are on disk when the block returns, so a power loss
    leaves the old file or the new one, not an empty one.

    Parameters
    ----------
    path : str or path-like
        The target.
    fsync : bool, optional
        Flush the data to disk before the file is published, and the
        folder entry after (the default; off for caches that can be
        recomputed, such as loose database entries).
    overwrite : bool, optional
        When False, raise ``FileExistsError`` if ``path`` exists, before
        anything is written or, if another writer created it meanwhile,
        at publication (``os.link``, which never replaces).
    replace : bool, optional
        When False, publish with ``os.link`` as for ``overwrite=False``
        (the first writer wins); when True (and ``overwrite``),
        ``os.replace`` (the last wins).
    tidy : bool, optional
        First remove the temporary files that dead writers of this host
        left in the folder (:func:`remove_dead_temporaries`).

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
    if tidy:
        remove_dead_temporaries(folder)
    temporary = temporary_name(folder, os.path.basename(path))
    try:
        with open(temporary, "xb") as handle:
            yield handle
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        if replace and overwrite:
            os.replace(temporary, path)
        else:
            _publish_new(temporary, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
    if fsync:
        fsync_folder(folder)


def write_atomically(folder: str, name: str, data: bytes,
                     fsync: bool = False) -> None:
    """Write the bytes ``data`` to ``folder/name`` with :func:`atomic_file`
    (by default without flushing to disk and without tidying the folder:
    for database entries, whose folder the archiver tidies)."""
    with atomic_file(os.path.join(folder, name), fsync=fsync,
                     tidy=False) as handle:
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
