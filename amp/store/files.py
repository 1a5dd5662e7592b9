"""The one way this library writes a file: atomically, beside its target.

:func:`atomic_file` writes into a temporary file in the target's folder
(``.tmp-<name>-<pid>-<random>``) and publishes it with one ``os.replace``
(or, with ``replace=False``, one ``os.link`` that fails if the target
exists), so a reader sees the old file or the whole new one, never half of
one, and concurrent writers cannot interleave. On any failure the
temporary file is removed and the target is untouched.
"""

import contextlib
import os
import secrets

TEMPORARY_PREFIX = ".tmp-"


def temporary_name(folder, name):
    """Return a fresh temporary path in ``folder`` for writing ``name``."""
    return os.path.join(folder, "%s%s-%d-%s" % (
        TEMPORARY_PREFIX, name[:40], os.getpid(), secrets.token_hex(6)))


def fsync_folder(folder):
    """Flush ``folder``'s directory entries to disk (best effort)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


@contextlib.contextmanager
def atomic_file(path, fsync=False, overwrite=True, replace=True):
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


def write_atomically(folder, name, data, fsync=False):
    """Write the bytes ``data`` to ``folder/name`` with :func:`atomic_file`."""
    with atomic_file(os.path.join(folder, name), fsync=fsync) as handle:
        handle.write(data)


def read_file(path):
    """Return the bytes of ``path``."""
    with open(path, "rb") as handle:
        return handle.read()


def folder_bytes(path):
    """Total size of the files below ``path`` (links not followed)."""
    total = 0
    for root, _, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total
