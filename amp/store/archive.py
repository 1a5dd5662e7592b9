"""The files of an ``.ampdb`` folder: its archive, and atomic file writes.

:class:`ArchiveIndex` reads ``archive.tar.gz`` (decompressed once, then one
seek per member); :class:`Archiving` is the half of
:class:`amp.store.database.FileDatabase` that finds the current archive and that
moves loose entries into a new one under ``flock``. Files are written
through :func:`amp.store.files.atomic_file`.
"""

import contextlib
import gzip
import hashlib
import io
import os
import secrets
import tarfile
import tempfile
import time
import zlib

from . import limits
from .files import (TEMPORARY_PREFIX, UnsafeFileError, atomic_file,
                    folder_bytes, open_regular, read_file,
                    remove_dead_temporaries)
from .gzipseek import InflatedView, unconsumed_input
from .entry import (CorruptEntryError, UnsupportedEntryError, decode_entry,
                     is_key)

try:
    import fcntl
except ImportError:  # not POSIX: archive() refuses, everything else works
    fcntl = None

# An archiver's temporary file, this version's and earlier ones' names.
_ARCHIVE_TEMPORARIES = (TEMPORARY_PREFIX + "archive.tar.gz-",
                        TEMPORARY_PREFIX + "archive-")
_STALE_SECONDS = 3600  # a writer's temporary file older than this is debris


# ------------------------------------------------------------ archive index

class _NoRoom(Exception):
    """The inflated copy of an archive could not be written."""


class _Spool:
    """A spooled temporary file whose write failures are :class:`_NoRoom`
    (and which ignores the checkpoints an :class:`InflatedView` keeps)."""

    def __init__(self, spool):
        self._file = spool

    def write(self, data):
        try:
            return self._file.write(data)
        except OSError as error:
            raise _NoRoom(error) from None

    def checkpoint(self, compressed, inflater):
        pass

    def __getattr__(self, name):
        return getattr(self._file, name)


class ArchiveIndex:
    """The members of one ``archive.tar.gz``, decompressed once.

    gzip cannot seek, so the archive is decompressed in a single pass into
    a spooled temporary file (memory up to ``SPOOL_BYTES``, then an unnamed
    file) and the tar headers are indexed; a read is then one seek. When
    that file cannot be written (a full disk, a file-size limit) the
    archive is indexed again without a copy
    (:class:`amp.store.gzipseek.InflatedView`: bounded memory, no disk), so
    reading never needs room on a disk.
    Inflating stops at the tar end-of-archive block, so a gzip stream that
    goes on beyond the last member costs nothing, and at
    :data:`amp.store.limits.MAX_ARCHIVE_BYTES`; a member larger than
    :data:`amp.store.limits.MAX_ENTRY_BYTES` ends the index there.

    Attributes
    ----------
    members : dict
        ``{key: (offset, size)}`` in the decompressed copy.
    capped : str or None
        Why reading stopped at a cap (None when the whole archive was
        read); ``archive()`` refuses to rewrite such an archive, which
        would drop the members beyond the cap.

    Raises
    ------
    UnsafeFileError
        ``path`` is a link, FIFO, device or folder, or larger than the cap.
    """

    SPOOL_BYTES = 16 * 2 ** 20
    _BLOCK = 512  # tar's block size
    _METADATA_BYTES = 2 ** 20  # pax and GNU long-name records are small

    def __init__(self, path, report, spill_folder):
        self.members = {}
        self.capped = None
        self.pid = os.getpid()  # a forked child must not share the offset
        fd, _ = open_regular(path, limits.MAX_ARCHIVE_BYTES,
                             "archive %s" % path)
        with open(fd, "rb") as handle:
            status = os.fstat(handle.fileno())
            self.signature = (status.st_dev, status.st_ino,
                              status.st_mtime_ns, status.st_size)
            self._spool = _Spool(tempfile.SpooledTemporaryFile(
                self.SPOOL_BYTES, dir=spill_folder))
            try:
                problem = self._decompress(handle)
            except _NoRoom as error:
                # Reading must not need room on a disk: no copy, then.
                self._spool.close()
                report("archive %s: no room for its inflated copy (%s); it "
                       "is read from the compressed file instead, which is "
                       "slower" % (path, error))
                self.capped = None
                handle.seek(0)
                self._spool = InflatedView(handle.fileno())
                problem = self._decompress(handle)
            if self.capped:
                report("archive %s: %s; the members before it are used and "
                       "archive() will not rewrite it until the cap is "
                       "raised" % (path, self.capped))
            elif problem:
                report("archive %s is damaged after %d bytes (%s); entries "
                       "beyond that point are treated as missing"
                       % (path, self._spool.tell(), problem))
        total = self._spool.tell()
        self._spool.seek(0)
        try:
            tar = tarfile.open(fileobj=self._spool, mode="r:")
        except (tarfile.TarError, OSError, EOFError) as error:
            report("archive %s has no readable members (%s)" % (path, error))
            return
        while True:
            try:
                info = tar.next()
            except (tarfile.TarError, OSError, EOFError, ValueError) as error:
                report("archive %s ends in a damaged member (%s); the members "
                       "before it are used" % (path, error))
                break
            if info is None:
                break
            if info.isreg() and is_key(info.name) and \
                    info.offset_data + info.size <= total:
                self.members[info.name] = (info.offset_data, info.size)
        tar.members = []

    def _tar_ends(self, position, written):
        """Follow the tar headers from ``position`` through what has been
        inflated (``written`` bytes); return ``(next header, done)``.

        ``done`` is True at the end-of-archive block, at a header that is
        not one (the tar reader stops there too) and at a member above its
        cap (which sets :attr:`capped`); the copy is then cut there, so it
        holds the members before that point and nothing more.
        """
        while written >= position + self._BLOCK:
            self._spool.seek(position)
            block = self._spool.read(self._BLOCK)
            self._spool.seek(written)
            if block == bytes(self._BLOCK):
                # The end: keep this block (tar's end marker), nothing after.
                return self._cut(position + self._BLOCK), True
            try:
                info = tarfile.TarInfo.frombuf(block, "utf-8",
                                               "surrogateescape")
            except (tarfile.HeaderError, ValueError):
                return self._cut(position), True
            cap = self._METADATA_BYTES if info.type in tarfile.XHDTYPE + \
                tarfile.XGLTYPE + tarfile.GNUTYPE_LONGNAME + \
                tarfile.GNUTYPE_LONGLINK else limits.MAX_ENTRY_BYTES
            if info.size > cap:
                self.capped = ("member %r declares %d bytes, more than the "
                               "cap of %d (amp.store.limits)"
                               % (info.name, info.size, cap))
                return self._cut(position), True
            blocks = -(-info.size // self._BLOCK)
            position += self._BLOCK * (1 + blocks)
        return position, False

    def _cut(self, position):
        self._spool.truncate(position)
        self._spool.seek(position)
        return position

    def _decompress(self, handle):
        """Inflate ``handle`` into the spool; return a problem or None.

        zlib is driven by hand, in small chunks, so that the data before a
        damaged or truncated spot is kept (``gzip.GzipFile`` drops it), and
        with a bound on each step's output, so that inflating stops soon
        after the last tar member or at the cap, however well the rest
        compresses.
        """
        step = 2 ** 20
        inflater, fed = zlib.decompressobj(wbits=31), False
        header, written, offset = 0, 0, 0
        try:
            while True:
                chunk = handle.read(2 ** 16)
                if not chunk:
                    break
                while chunk or fed:
                    fed = True
                    out = inflater.decompress(chunk, step)
                    self._spool.write(out)
                    written += len(out)
                    # The compressed offset of the first byte zlib has not
                    # consumed: inflating may start again there.
                    offset += len(chunk) - len(unconsumed_input(inflater))
                    self._spool.checkpoint(offset, None if inflater.eof
                                           else inflater)
                    header, done = self._tar_ends(header, written)
                    if (header if done else written) > \
                            limits.MAX_ARCHIVE_BYTES:
                        self.capped = ("it inflates to more than the cap of "
                                       "%d bytes (amp.store.limits)"
                                       % limits.MAX_ARCHIVE_BYTES)
                        self._cut(limits.MAX_ARCHIVE_BYTES)
                        return None
                    if done:
                        return None
                    if inflater.eof:  # another gzip member may follow
                        chunk = inflater.unused_data
                        inflater, fed = zlib.decompressobj(wbits=31), False
                    else:
                        chunk = inflater.unconsumed_tail
                        if not chunk and len(out) < step:
                            break  # all input used and all output given
        except zlib.error as error:
            return str(error)
        if fed:
            self._spool.write(inflater.flush())
            return "the file ends inside the gzip stream"
        return None

    def __contains__(self, key):
        return key in self.members

    def read(self, key):
        """Return the raw bytes of member ``key``."""
        offset, size = self.members[key]
        self._spool.seek(offset)
        return self._spool.read(size)

    def close(self):
        """Release the decompressed copy."""
        self._spool.close()


# ---------------------------------------------------------------- archiving

class Archiving:
    """The archive methods of :class:`amp.store.database.FileDatabase`.

    The class using it sets ``path``, ``loosepath``, ``tarpath`` and
    ``_index`` (None at first) and provides ``_report(message)`` and
    ``_unsupported(error, key, where)``.
    """

    def _archive_index(self):
        """Return the index of the current archive, or None without one.

        An ``archive.tar.gz`` that is not a regular file (a link, FIFO,
        device) or is above the cap is reported once and treated as absent.
        """
        try:
            status = os.lstat(self.tarpath)
        except FileNotFoundError:
            status = None
        index = self._index
        if index is not None and (status is None or index.pid != os.getpid()
                                  or index.signature != (
                                      status.st_dev, status.st_ino,
                                      status.st_mtime_ns, status.st_size)):
            index.close()
            index = self._index = None
        if index is None and status is not None:
            signature = (status.st_dev, status.st_ino, status.st_mtime_ns,
                         status.st_size)
            refused = getattr(self, "_refused_archive", None)
            if refused is not None and refused[0] == signature:
                return None  # reported already
            spill = self.path if os.access(self.path, os.W_OK) else None
            try:
                index = self._index = ArchiveIndex(self.tarpath, self._report,
                                                   spill)
            except FileNotFoundError:  # replaced between stat and open
                return self._archive_index()
            except UnsafeFileError as error:
                self._refused_archive = (signature, str(error))
                self._report("%s; its entries are treated as missing"
                             % error)
                return None
        return index

    def _read_loose(self, key):
        """The bytes of ``loose/key``, read through
        :func:`amp.store.files.read_file` (regular files of at most
        :data:`amp.store.limits.MAX_ENTRY_BYTES` only)."""
        return read_file(os.path.join(self.loosepath, key),
                         limits.MAX_ENTRY_BYTES,
                         "entry %r in loose/ of %s" % (key, self.path))

    @contextlib.contextmanager
    def _lock(self):
        if fcntl is None:
            raise OSError("archive() needs fcntl.flock, which this system "
                          "lacks")
        os.makedirs(self.path, exist_ok=True)
        # Never through a link, and never a FIFO or device: the lock is a
        # regular file inside this folder (open_regular adds O_NOFOLLOW).
        lock = os.path.join(self.path, "lock")
        try:
            descriptor, _ = open_regular(
                lock, None, "the lock file %s" % lock,
                flags=os.O_RDWR | os.O_CREAT | getattr(os, "O_NONBLOCK", 0)
                | getattr(os, "O_CLOEXEC", 0))
        except UnsafeFileError as error:
            raise UnsafeFileError("%s; archive() creates nothing outside the "
                                  "database: delete %s and run it again"
                                  % (error, lock)) from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)  # releases the lock

    def _recover(self):
        """Clear what a crashed writer or archiver left (lock held):
        temporary files of dead writers of this host at once, anybody's
        after an hour."""
        remove_dead_temporaries(self.path)
        remove_dead_temporaries(self.loosepath)
        for name in os.listdir(self.path):
            if name.startswith(_ARCHIVE_TEMPORARIES) or (
                    name.startswith(TEMPORARY_PREFIX) and self._stale(self.path, name)):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.path, name))
        for name in os.listdir(self.loosepath):
            if name.startswith(".archiving-"):  # only archivers make these
                key = name[len(".archiving-"):].rsplit("-", 2)[0]
                self._put_back(os.path.join(self.loosepath, name), key)
            elif name.startswith(TEMPORARY_PREFIX) and self._stale(self.loosepath,
                                                          name):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.loosepath, name))

    @staticmethod
    def _stale(folder, name):
        with contextlib.suppress(OSError):
            age = time.time() - os.lstat(os.path.join(folder, name)).st_mtime
            return age > _STALE_SECONDS
        return False

    def _put_back(self, aside, key):
        """Return ``aside`` to ``loose/key`` unless a newer file is there."""
        if is_key(key):
            target = os.path.join(self.loosepath, key)
            try:
                # Never clobbers; a link is linked as a link, not its target.
                os.link(aside, target, follow_symlinks=False)
            except FileExistsError:
                pass
            except OSError:  # no hard links here: near-enough fallback
                if not os.path.exists(target):
                    os.replace(aside, target)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(aside)

    def archive(self, compresslevel=6):
        """Move every loose entry into ``archive.tar.gz``.

        Under an exclusive lock (so archivers never race; writers need no
        lock): each valid loose entry is merged with the existing archive
        (loose wins), the new archive is written under a temporary name,
        fsynced and ``os.replace``\\ d, and then each loose file is removed
        only if it still holds the bytes that were archived. Damaged loose
        entries are dropped and reported. Running it again is harmless.

        Parameters
        ----------
        compresslevel : int
            gzip level, 0 (stored: a valid gzip stream, no compression, as
            fast as a copy) to 9. Float64 arrays such as fingerprint
            derivatives shrink by under 10 % at any level, at tens of
            MB/s; index arrays and fingerprints shrink well.

        Returns
        -------
        dict
            ``moved`` (loose entries archived), ``dropped`` (damaged loose
            entries removed), ``entries`` (members of the archive),
            ``bytes_before`` and ``bytes_after`` (size of the folder).

        Loose entries that are not regular files (links, FIFOs, devices,
        folders) or are above :data:`amp.store.limits.MAX_ENTRY_BYTES` are
        reported by name and left as they are.

        Raises
        ------
        UnsupportedEntryError
            When a loose entry is a pickle; nothing is changed then.
        UnsafeFileError
            The lock file is a link, FIFO or device, or ``archive.tar.gz``
            is one or could be read only up to a cap (rewriting it would
            drop what it holds); nothing is changed then.
        """
        if not os.path.isdir(self.path):
            return {"moved": 0, "dropped": 0, "entries": 0,
                    "bytes_before": 0, "bytes_after": 0}
        bytes_before = folder_bytes(self.path)
        with self._lock():
            os.makedirs(self.loosepath, exist_ok=True)
            self._recover()
            names = sorted(name for name in os.listdir(self.loosepath)
                           if is_key(name))
            index = self._archive_index()
            if index is None and os.path.lexists(self.tarpath):
                # A link (perhaps the user's own, to another disk), FIFO or
                # oversized file: replacing it could lose what it holds.
                refused = getattr(self, "_refused_archive", None)
                raise UnsafeFileError(
                    "archive() leaves %s as it is: %s; move it away (its "
                    "entries are then recomputed) or raise the cap, and run "
                    "archive() again" % (self.tarpath, refused[1] if refused
                                         else "it cannot be read"))
            if index is not None and index.capped:
                raise UnsafeFileError(
                    "archive() leaves %s as it is: %s, so rewriting it would "
                    "drop the members beyond; raise the cap in "
                    "amp.store.limits first" % (self.tarpath, index.capped))
            entries = len(index.members) if index is not None else 0
            digests, damaged = {}, {}
            if names:
                entries = self._write_archive(names, index, digests, damaged,
                                              compresslevel)
            for key, digest in list(digests.items()) + list(damaged.items()):
                self._remove_if_unchanged(key, digest)
        return {"moved": len(digests), "dropped": len(damaged),
                "entries": entries, "bytes_before": bytes_before,
                "bytes_after": folder_bytes(self.path)}

    def _write_archive(self, names, index, digests, damaged,
                       compresslevel=6):
        """Write the merged archive; fill ``digests`` of what went in."""
        stamp = int(time.time())

        def add(tar, key, data):
            info = tarfile.TarInfo(key)
            info.size, info.mtime, info.mode = len(data), stamp, 0o644
            tar.addfile(info, io.BytesIO(data))

        with atomic_file(self.tarpath, fsync=True) as raw:
                with gzip.GzipFile(fileobj=raw, mode="wb",
                                   compresslevel=compresslevel,
                                   mtime=0) as stream, \
                        tarfile.open(fileobj=stream, mode="w",
                                     format=tarfile.PAX_FORMAT) as tar:
                    for key in names:  # streamed: memory stays small
                        try:
                            data = self._read_loose(key)
                        except FileNotFoundError:
                            continue
                        except UnsafeFileError as error:
                            self._report("%s; it is skipped" % error)
                            continue
                        # SHA-256: hardware SHA instructions (most x86-64
                        # and ARM64 CPUs) make it ~2x faster than BLAKE2b.
                        digest = hashlib.sha256(data).digest()
                        try:
                            decode_entry(data)
                        except UnsupportedEntryError as error:
                            raise self._unsupported(error, key, "loose/") \
                                from None
                        except CorruptEntryError as error:
                            damaged[key] = digest
                            self._report("loose entry %r of %s is damaged "
                                         "(%s); dropped" % (key, self.path,
                                                            error))
                            continue
                        add(tar, key, data)
                        digests[key] = digest
                    kept = [key for key in (index.members if index else ())
                            if key not in digests]
                    for key in kept:
                        add(tar, key, index.read(key))
        return len(digests) + len(kept)

    def _remove_if_unchanged(self, key, digest):
        """Remove ``loose/key`` if it still holds the bytes with ``digest``."""
        path = os.path.join(self.loosepath, key)
        aside = os.path.join(self.loosepath, ".archiving-%s-%d-%s" % (
            key, os.getpid(), secrets.token_hex(6)))
        try:
            os.rename(path, aside)  # atomic: a writer now creates a new file
        except FileNotFoundError:
            return
        try:
            same = hashlib.sha256(read_file(
                aside, limits.MAX_ENTRY_BYTES)).digest() == digest
        except UnsafeFileError:  # swapped for a link or FIFO meanwhile
            same = False
        if same:
            os.unlink(aside)
        else:  # rewritten since it was archived: it must stay loose
            self._put_back(aside, key)
